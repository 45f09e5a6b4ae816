"""Real-face evaluators (chapter 9): dlib's face detector, its 68 face landmarks and its face descriptor.

The paper measures AKD and MKR on faces with a pretrained face-landmark detector and AED
with a face-identity network. :class:`FaceEvaluators` gives kmt's measures the same for
real faces, offline, with the interface of :class:`kmt.evaluators.Evaluators`:

* ``detect(frames)`` -> keypoints ``(N, 68, 2)`` as (x, y) in [-1, 1] (-1 at the centre of
  the first pixel: ``x_norm = 2 * x_px / (W - 1) - 1``) and visibility ``(N, 68)``: 1.0 in
  the frames where a face is found, 0.0 elsewhere;
* ``embed(frames)`` -> ``(N, 128)`` face descriptors; a Euclidean distance under about 0.6
  means the same person (:data:`SAME_PERSON_DISTANCE`, dlib's threshold).

Frames are ``(N, H, W, 3)`` float32 in [0, 1] (uint8 is accepted too), face crops of any
size (``image_size`` is ``None``). Per frame: the frame is resized so that its longer
side is ``detection_size`` pixels (160 by default) and dlib's HOG face detector runs on it
with one upsampling (it finds faces of about 40 pixels and more there). Measured on
real-face crops whose face box spans 1/3 to 5/6 of the frame, this finds the face at 64
and at 256 pixels alike; on 64-pixel crops left at their size the detector finds 2 faces
in 32 (upsampled once). Where several faces are found the largest counts; strongly tilted
heads are missed (the last frames of the carphone clip). The 68-point shape predictor then
runs on that resized image when it is larger than the frame (small frames: the landmarks
come out at sub-pixel precision, dlib's points being whole pixels), else on the frame
itself, and the points are mapped back to the frame's pixels.

Frames where no face is found still get landmarks and a descriptor, both from a centred
square box of side ``fallback_face_size`` (a fraction of the shorter side; 1.0 is the
whole frame): the input is a face crop, so AED is defined on every frame. The keypoints of
such frames are marked not visible (MKR counts them missing, AKD leaves them out). The
default, 0.5, was measured on twelve real-face crops at 64 and 256 pixels: its descriptor
lies 0.27 to 0.29 on average from the one of the detected face, against 0.67 with the
whole frame, which is already a different person on dlib's scale (a centred box still
misses faces far from the centre).

:func:`face_landmarks` gives the landmarks in pixels (``None`` where no face is found),
for choosing the best driving frame; :func:`compression_floor` measures the detector
against itself after an H.264 round trip, the floor of AKD and MKR and the noise of AED.

Where the models come from, and their terms (as the installed packages state them):

* dlib (the ``dlib-bin`` wheel): Boost Software License 1.0. The HOG frontal face
  detector is part of dlib itself.
* ``face_recognition_models`` 0.3.0 holds ``shape_predictor_68_face_landmarks.dat`` and
  ``dlib_face_recognition_resnet_model_v1.dat``, created by Davis King (dlib-models). Its
  metadata declares the MIT licence; its README says the models are public domain or
  CC0 1.0 Universal, and the licence file it ships is CC0 1.0.
* The 68-point landmark model was trained on the iBUG 300-W dataset, whose licence
  excludes commercial use: use it for non-commercial research only.

Install both with ``pip install "keras-motion-transfer[faces]"``. dlib is imported when an
evaluator is built, not with this module; the model files are found without importing
``face_recognition_models`` (which needs ``pkg_resources``). Nothing is downloaded.
"""

import functools
import importlib.util
import os

import numpy as np

from kmt.coordinates import to_normalized

__all__ = ["FaceEvaluators", "face_landmarks", "compression_floor", "model_path", "FAMILY", "DESCRIPTION",
           "NUM_LANDMARKS", "DESCRIPTOR_SIZE", "SAME_PERSON_DISTANCE", "INSTALL_HINT"]

FAMILY = "real-faces"
DESCRIPTION = "dlib 68-point landmarks + ResNet face descriptor"
NUM_LANDMARKS = 68
DESCRIPTOR_SIZE = 128
SAME_PERSON_DISTANCE = 0.6
INSTALL_HINT = 'pip install "keras-motion-transfer[faces]"'
MODEL_FILES = {"landmarks": "shape_predictor_68_face_landmarks.dat",
               "descriptor": "dlib_face_recognition_resnet_model_v1.dat"}


def _missing(what):
    return ImportError(f"real-face evaluation needs {what}, which is not installed: {INSTALL_HINT} "
                       "(installs dlib-bin and face_recognition_models).")


def _import_dlib():
    try:
        import dlib
    except ImportError as error:
        raise _missing("dlib (the dlib-bin wheel)") from error
    return dlib


def model_path(name):
    """The path of one of dlib's model files inside the installed ``face_recognition_models``.

    ``name`` is ``"landmarks"`` (the 68-point shape predictor) or ``"descriptor"`` (the
    ResNet face descriptor). Raises ImportError when the package is not installed.
    """
    if name not in MODEL_FILES:
        raise ValueError(f"`name` must be one of {sorted(MODEL_FILES)}; got {name!r}.")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("the face_recognition_models package (dlib's model files)")
    path = os.path.join(spec.submodule_search_locations[0], "models", MODEL_FILES[name])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"face_recognition_models is installed but lacks {path!r}; reinstall it: "
                                f"{INSTALL_HINT}.")
    return path


def _uint8_frames(frames, name="frames"):
    """``(N, H, W, 3)`` frames, float in [0, 1] or uint8, as uint8."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[1:3], default=0) < 2:
        raise ValueError(f"`{name}` must be RGB frames (N, height, width, 3) of at least 2 x 2 pixels; "
                         f"got shape {frames.shape}.")
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"`{name}` must be float frames in [0, 1] (or uint8); got dtype {frames.dtype}.")
    if frames.size and not (np.all(np.isfinite(frames)) and frames.min() >= -1e-3 and frames.max() <= 1 + 1e-3):
        raise ValueError(f"`{name}` must hold values in [0, 1]; got values from {np.nanmin(frames):.4g} to "
                         f"{np.nanmax(frames):.4g}.")
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _resized(image, height, width):
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


@functools.lru_cache(maxsize=None)
def _dlib_model(kind, path):
    """One dlib model, loaded once per process and shared by every :class:`FaceEvaluators`."""
    dlib = _import_dlib()
    return dlib.get_frontal_face_detector() if kind == "detector" else getattr(dlib, kind)(path)


class _Face:
    """One frame analysed: the image the landmarks were found on, dlib's shape, whether a face was found."""

    def __init__(self, image, shape, found, frame_size):
        self.image, self.shape, self.found = image, shape, found
        height, width = frame_size
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype="float64")
        # Pixel centres map between the two sizes as a resize maps them.
        scale = np.array([width / image.shape[1], height / image.shape[0]])
        self.pixels = (points + 0.5) * scale - 0.5


class FaceEvaluators:
    """dlib's face landmarks and face descriptor with the interface of :class:`kmt.evaluators.Evaluators`.

    Args:
        detection_size: the longer side, in pixels, frames are resized to for face detection.
        upsample: how many times dlib's detector doubles that image (1 finds faces of about
            40 pixels in it).
        fallback_face_size: the side of the centred box used where no face is found, as a
            fraction of the frame's shorter side (1.0: the whole frame).

    Attributes: ``family`` (``"real-faces"``), ``path`` (a description for tables),
    ``image_size`` (``None``: any frame size), ``num_kp`` (68), ``embedding_dim`` (128),
    ``info`` (the settings and the model files). The models load on first use, once per
    process (instances share them).
    """

    family = FAMILY
    image_size = None
    num_kp = NUM_LANDMARKS
    embedding_dim = DESCRIPTOR_SIZE

    def __init__(self, detection_size=160, upsample=1, fallback_face_size=0.5):
        if not isinstance(detection_size, (int, np.integer)) or detection_size < 32:
            raise ValueError(f"`detection_size` must be an integer of at least 32 pixels; got {detection_size!r}.")
        if not isinstance(upsample, (int, np.integer)) or not 0 <= upsample <= 3:
            raise ValueError(f"`upsample` must be an integer from 0 to 3; got {upsample!r}.")
        if not isinstance(fallback_face_size, (int, float, np.number)) or not 0.1 <= fallback_face_size <= 1.0:
            raise ValueError(f"`fallback_face_size` must be a fraction from 0.1 to 1.0; got {fallback_face_size!r}.")
        self.detection_size, self.upsample = int(detection_size), int(upsample)
        self.fallback_face_size = float(fallback_face_size)
        self._dlib = _import_dlib()
        self.info = {"detector": "dlib HOG frontal face detector",
                     **{name: model_path(name) for name in MODEL_FILES},
                     "detection_size": self.detection_size, "upsample": self.upsample,
                     "fallback_face_size": self.fallback_face_size,
                     "licence": "dlib: Boost 1.0; 68-point model trained on iBUG 300-W, non-commercial research use"}
        self.path = DESCRIPTION

    def _analyse(self, frame):
        """A :class:`_Face` for one ``(H, W, 3)`` uint8 frame."""
        detector = _dlib_model("detector", "")
        predictor = _dlib_model("shape_predictor", self.info["landmarks"])
        height, width = frame.shape[:2]
        scale = self.detection_size / max(height, width)
        small = _resized(frame, max(1, round(height * scale)), max(1, round(width * scale)))
        boxes = list(detector(small, self.upsample))
        image = small if scale > 1 else frame
        if boxes:
            box = max(boxes, key=lambda b: b.width() * b.height())
            # Box edges (not pixel centres) scale: pixel i spans [i, i + 1) in edge units.
            sx, sy = image.shape[1] / small.shape[1], image.shape[0] / small.shape[0]
            rect = self._dlib.rectangle(int(round(box.left() * sx)), int(round(box.top() * sy)),
                                        int(round((box.right() + 1) * sx)) - 1, int(round((box.bottom() + 1) * sy)) - 1)
        else:
            side = self.fallback_face_size * min(image.shape[:2])
            left, top = (image.shape[1] - side) / 2, (image.shape[0] - side) / 2
            rect = self._dlib.rectangle(int(round(left)), int(round(top)), int(round(left + side)) - 1,
                                        int(round(top + side)) - 1)
        return _Face(image, predictor(image, rect), bool(boxes), (height, width))

    def landmarks(self, frames):
        """68 landmarks per frame in pixels: a list of ``(68, 2)`` (x, y) arrays, ``None`` where no face is found.

        ``frames``: ``(N, H, W, 3)`` float in [0, 1] (or uint8).
        """
        faces = [self._analyse(frame) for frame in _uint8_frames(frames)]
        return [face.pixels if face.found else None for face in faces]

    def detect(self, frames):
        """Keypoints ``(N, 68, 2)`` (x, y) in [-1, 1] and visibility ``(N, 68)`` (1.0 where a face is found).

        Frames without a face get the landmarks found in the fallback box, with visibility 0.
        Points may lie outside [-1, 1] where the face leaves the frame.
        """
        frames = _uint8_frames(frames)
        keypoints = np.zeros((len(frames), NUM_LANDMARKS, 2), "float32")
        visibility = np.zeros((len(frames), NUM_LANDMARKS), "float32")
        height, width = frames.shape[1:3]
        for index, frame in enumerate(frames):
            face = self._analyse(frame)
            keypoints[index] = to_normalized(face.pixels, height, width)
            visibility[index] = float(face.found)
        return keypoints, visibility

    def embed(self, frames):
        """Face descriptors ``(N, 128)`` (Euclidean distance under about 0.6: the same person).

        The descriptor is computed on the face aligned by its landmarks (dlib's 150 x 150
        chip, padding 0.25); where no face is found, by the landmarks of the fallback box.
        """
        frames = _uint8_frames(frames)
        descriptor = _dlib_model("face_recognition_model_v1", self.info["descriptor"])
        out = np.zeros((len(frames), DESCRIPTOR_SIZE), "float32")
        for index, frame in enumerate(frames):
            face = self._analyse(frame)
            out[index] = np.asarray(descriptor.compute_face_descriptor(face.image, face.shape), dtype="float32")
        return out

    def __repr__(self):
        return (f"FaceEvaluators(detection_size={self.detection_size}, upsample={self.upsample}, "
                f"fallback_face_size={self.fallback_face_size})")


@functools.lru_cache(maxsize=1)
def _default_evaluators():
    return FaceEvaluators()


def face_landmarks(frames, evaluators=None):
    """68 face landmarks per frame from dlib, offline (the contract of :func:`kmt.animation.face_alignment_landmarks`).

    Args:
        frames: ``(T, H, W, 3)`` float frames in [0, 1].
        evaluators: a :class:`FaceEvaluators`; default: one built on first use and kept.

    Returns a list of ``T`` items: a ``(68, 2)`` array of (x, y) pixels, or ``None`` where no
    face was found.
    """
    return (evaluators or _default_evaluators()).landmarks(frames)


def compression_floor(frames, quality=8, evaluators=None, fps=25):
    """The evaluators against themselves after an H.264 round trip: the floor of AKD and MKR, the noise of AED.

    The frames are written to a temporary ``.mp4`` (:func:`kmt.data.video_io.write_video`,
    libx264 at ``quality`` 0-10) and read back; the landmarks and descriptors of the
    originals (the targets) and of the decoded frames are then compared.

    Args:
        frames: ``(N, H, W, 3)`` float frames in [0, 1], ``H`` and ``W`` even (H.264).
        quality: the encoder's quality, 0 (worst) to 10.
        evaluators: a :class:`FaceEvaluators`; default: the shared one of :func:`face_landmarks`.
        fps: the frame rate written in the file.

    Returns:
        ``{"akd": pixels, "mkr": fraction, "aed": distance, "frames": N, "found": fraction of
        original frames with a face, "found_after": the same after the round trip,
        "quality": quality, "image_size": (H, W)}``; ``akd`` and ``mkr`` are ``nan`` when no
        face is found in the originals.

    Measured on the 120 frames of the carphone clip cut to its face (a fixed 128-pixel box)
    at quality 8: AKD 0.16 pixels, MKR 0.009, AED 0.14 at 64 x 64; AKD 0.55 pixels, MKR 0,
    AED 0.06 at 256 x 256.
    """
    from kmt.media import h264_round_trip
    from kmt.metrics import average_euclidean_distance, average_keypoint_distance, missing_keypoint_rate

    frames = _uint8_frames(frames)
    if not len(frames):
        raise ValueError(f"`frames` must hold at least one frame; got shape {frames.shape}.")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"`frames` must have an even height and width for H.264; got {frames.shape[1:3]}.")
    if not isinstance(quality, (int, np.integer, float)) or not 0 <= quality <= 10:
        raise ValueError(f"`quality` must be a number from 0 to 10; got {quality!r}.")
    evaluators = evaluators or _default_evaluators()
    decoded = h264_round_trip(frames, quality=quality, fps=fps)
    kp_target, seen_target = evaluators.detect(frames)
    kp_decoded, seen_decoded = evaluators.detect(decoded)
    size = frames.shape[1:3]
    return {"akd": average_keypoint_distance(kp_decoded, kp_target, size, seen_decoded, seen_target),
            "mkr": missing_keypoint_rate(seen_decoded, seen_target),
            "aed": average_euclidean_distance(evaluators.embed(decoded), evaluators.embed(frames)),
            "frames": len(frames), "found": float(seen_target[:, 0].mean()),
            "found_after": float(seen_decoded[:, 0].mean()), "quality": quality, "image_size": tuple(size)}
