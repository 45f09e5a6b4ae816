"""Animating a still image with a driving video (chapter 8).

The model moves the source image so that its keypoints follow the driving
video's. How the driving keypoints are mapped onto the source is the choice of
:func:`normalize_kp`, as in the reference's ``animate.py``:

* **absolute** (default off): use the driving keypoints as they are; the source
  takes the driving frame's pose, and its shape too (a wide face becomes narrow);
* **relative movement**: add the driving keypoints' *displacement* since the
  first driving frame to the source keypoints, so the source keeps its own
  shape and only moves;
* **relative Jacobians**: likewise compose the local affine frames:
  ``J = J_D J_D0^-1 J_S``;
* **adapt movement scale**: scale displacements by ``sqrt(area_S / area_D0)``,
  the ratio of the keypoints' convex hulls, so a small face moves less.

Keypoints are ``(B, K, 2)`` (x, y) in [-1, 1]; Jacobians ``(B, K, 2, 2)``;
frames NHWC float32 in [0, 1].
"""

import numpy as np
from keras import ops

from kmt.coordinates import inverse_2x2

__all__ = ["convex_hull_area", "normalize_kp", "normalized_shape", "find_best_frame", "face_alignment_landmarks",
           "best_driving_frame", "Animator", "animate", "animate_to_file"]

BEST_FRAME_LANDMARKS = ("kmt", "dlib", "face-alignment")


def convex_hull_area(points):
    """Area of the convex hull of ``(N, 2)`` points (0 for fewer than three non-collinear points)."""
    points = np.unique(np.asarray(points, dtype="float64").reshape(-1, 2), axis=0)
    if len(points) < 3:
        return 0.0
    points = points[np.lexsort((points[:, 1], points[:, 0]))]

    def turn(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(sequence):
        hull = []
        for p in sequence:
            while len(hull) >= 2 and turn(hull[-2], hull[-1], p) <= 0:
                hull.pop()
            hull.append(p)
        return hull

    hull = np.array(half(points)[:-1] + half(points[::-1])[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def normalize_kp(kp_source, kp_driving, kp_driving_initial, adapt_movement_scale=False,
                 use_relative_movement=False, use_relative_jacobian=False):
    """The keypoints that drive the source: ``kp_driving`` made relative to the source, or not.

    Args:
        kp_source: keypoints of the source image, batch of one (``{"value", "jacobian"}``).
        kp_driving: keypoints of the driving frames, ``(T, K, 2)`` (and Jacobians).
        kp_driving_initial: keypoints of the driving frame the motion starts from.
        adapt_movement_scale: scale the motion by the ratio of the keypoints'
            convex-hull sizes, ``sqrt(area(source) / area(initial))``.
        use_relative_movement: move the source keypoints by the driving
            displacement instead of replacing them.
        use_relative_jacobian: with relative movement, compose Jacobians too.
    """
    scale = 1.0
    if adapt_movement_scale:
        source_area = convex_hull_area(ops.convert_to_numpy(kp_source["value"])[0])
        driving_area = convex_hull_area(ops.convert_to_numpy(kp_driving_initial["value"])[0])
        if driving_area <= 0:
            raise ValueError("adapt_movement_scale: the initial driving keypoints enclose no area.")
        scale = float(np.sqrt(source_area) / np.sqrt(driving_area))
    new = dict(kp_driving)
    if use_relative_movement:
        displacement = ops.subtract(kp_driving["value"], kp_driving_initial["value"]) * scale
        new["value"] = displacement + kp_source["value"]
        if use_relative_jacobian and "jacobian" in kp_driving:
            change = ops.matmul(kp_driving["jacobian"], inverse_2x2(kp_driving_initial["jacobian"]))
            new["jacobian"] = ops.matmul(change, kp_source["jacobian"])
    return new


def normalized_shape(points):
    """``(K, 2)`` points centred and divided by the square root of their hull area (pose-free shape)."""
    points = np.asarray(points, dtype="float64").reshape(-1, 2)
    points = points - points.mean(axis=0, keepdims=True)
    area = convex_hull_area(points)
    return points / np.sqrt(area) if area > 0 else points


def find_best_frame(source_keypoints, driving_keypoints):
    """Index of the driving frame whose keypoint *shape* is closest to the source's.

    Both are ``(K, 2)`` / ``(T, K, 2)`` landmarks of one detector; each set is
    centred and scaled by its hull area first, so position and size do not count,
    only pose. The reference does this with a face-landmark detector; kmt uses
    whichever detector the caller passes landmarks from.
    """
    source = normalized_shape(source_keypoints)
    distances = [np.sum((source - normalized_shape(frame)) ** 2) for frame in np.asarray(driving_keypoints)]
    return int(np.argmin(distances))


def face_alignment_landmarks(frames, detector=None):
    """68 face landmarks per frame from the ``face-alignment`` package, the detector the reference uses.

    Args:
        frames: ``(T, H, W, 3)`` float frames in [0, 1].
        detector: a ``face_alignment.FaceAlignment``; default: a 2-D one built here (on the GPU
            when PyTorch sees one). face-alignment fetches its own weights the first time it
            builds one, which is why kmt only calls it when asked.

    Returns a list of ``T`` items: a ``(68, 2)`` array of (x, y) pixels, or ``None`` where no
    face was found.
    """
    if detector is None:
        try:
            import face_alignment
        except ImportError as error:
            raise ImportError(
                "best-frame landmarks 'face-alignment' need the face-alignment package, which is not "
                "installed (pip install face-alignment); the default, 'kmt', uses the model's own "
                "keypoint detector and needs nothing else.") from error
        import torch

        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or getattr(face_alignment.LandmarksType, "_2D")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        detector = face_alignment.FaceAlignment(kind, flip_input=True, device=device)
    landmarks = []
    for frame in np.asarray(frames, dtype="float32"):
        found = detector.get_landmarks(np.round(np.clip(frame * 255.0, 0.0, 255.0)).astype("uint8"))
        landmarks.append(np.asarray(found[0], dtype="float64")[:, :2] if found else None)
    return landmarks


def best_driving_frame(animator, source, driving, landmarks="kmt", detector=None):
    """Index of the driving frame to start from (:func:`find_best_frame`) with the chosen landmarks.

    Args:
        animator: an :class:`Animator`, whose keypoint detector gives the ``"kmt"`` landmarks.
        source: ``(H, W, 3)`` image; driving: ``(T, H, W, 3)`` frames, both in [0, 1].
        landmarks: ``"kmt"`` (the model's own keypoints), ``"dlib"`` (68 face landmarks from
            :func:`kmt.face_evaluators.face_landmarks`, offline) or ``"face-alignment"`` (the
            reference's 68 face landmarks, needs that package). With face landmarks, frames
            where no face is found are skipped.
        detector: passed to :func:`face_alignment_landmarks` (``"face-alignment"`` only).
    """
    if landmarks not in BEST_FRAME_LANDMARKS:
        raise ValueError(f"`landmarks` must be one of {BEST_FRAME_LANDMARKS}; got {landmarks!r}.")
    if landmarks == "kmt":
        return find_best_frame(animator.keypoints(source[None])["value"][0], animator.keypoints(driving)["value"])
    if landmarks == "dlib":
        from kmt.face_evaluators import face_landmarks

        def find(frames):
            return face_landmarks(frames)
    else:
        def find(frames):
            return face_alignment_landmarks(frames, detector)
    (source_points,) = find(source[None])
    if source_points is None:
        raise ValueError(f"`source`: {landmarks} finds no face in the source image; use landmarks='kmt'.")
    driving_points = find(driving)
    found = [t for t, points in enumerate(driving_points) if points is not None]
    if not found:
        raise ValueError(f"`driving`: {landmarks} finds no face in any of its {len(driving_points)} frames; "
                         "use landmarks='kmt'.")
    return found[find_best_frame(source_points, np.stack([driving_points[t] for t in found]))]


def _inference_context():
    """A context without gradient tracking on PyTorch (``torch.no_grad``), a null context elsewhere.

    On PyTorch the models run eagerly, and their parameters require gradients, so without it every
    activation of a batch of frames is kept for a backward pass that never comes (several times the
    memory, and slower).
    """
    import contextlib

    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad
    return contextlib.nullcontext


class Animator:
    """Compiled animation of a source image by driving frames, in batches.

    Args:
        kp_detector, generator: trained models (e.g. ``kmt.checkpoint.load(path)``).
        batch_size: driving frames per compiled call (the last batch is padded,
            so every call has the same shape and compiles once).
        jit: compile on TensorFlow and JAX. JAX always uses XLA; TensorFlow uses XLA
            for one frame per call and its oneDNN graph for batches, the faster of the two
            at 1 and at 8 frames per call in ``benchmarks/animate.py`` (both exact in float32).
        convolutions: ``"float32"`` (exact) or ``"bfloat16"``: the convolutions
            in bfloat16 (:func:`kmt.fast_layers.convolution_dtype`), faster on CPUs
            that multiply bfloat16 in hardware, about 1e-2 from float32. On
            TensorFlow it compiles without XLA, whose CPU convolutions do not
            use those instructions.
        cache_source: encode the source once and reuse its features for every frame
            (default); ``False`` runs the whole generator, encoder included, for every
            frame, as the official demo does (the same frames; for comparisons).
    """

    def __init__(self, kp_detector, generator, batch_size=8, jit=True, convolutions="float32", cache_source=True):
        from kmt.compile import compile_function
        from kmt.fast_layers import convolution_dtype

        if convolutions not in ("float32", "bfloat16"):
            raise ValueError(f"`convolutions` must be 'float32' or 'bfloat16'; got {convolutions!r}.")
        self.kp_detector = kp_detector
        self.generator = generator
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"`batch_size` must be a whole number of frames, at least 1; got {batch_size!r}.")
        self.batch_size = int(batch_size)
        self.convolutions = convolutions
        self.cache_source = bool(cache_source)
        self.uses_xla = convolutions == "float32" and self.batch_size == 1

        no_grad = _inference_context()

        def in_precision(fn):
            def run(*args):
                with no_grad(), convolution_dtype(convolutions):
                    return fn(*args)
            return compile_function(run, jit, variables, xla=self.uses_xla)

        variables = list(kp_detector.variables) + list(generator.variables)
        self._detect = in_precision(lambda frames: self.kp_detector(frames, training=False))
        self._encode = in_precision(lambda image: self.generator.encode_source(image, training=False))
        self._generate = in_precision(self._generate_eager)

    def _generate_eager(self, source, source_features, kp_source, kp_driving):
        repeat = ops.shape(kp_driving["value"])[0]
        sources = ops.repeat(source, repeat, axis=0)
        features = None if source_features is None else ops.repeat(source_features, repeat, axis=0)
        kp_sources = {k: ops.repeat(v, repeat, axis=0) for k, v in kp_source.items() if k != "heatmap"}
        kp_driving = {k: v for k, v in kp_driving.items() if k != "heatmap"}
        out = self.generator(sources, kp_driving=kp_driving, kp_source=kp_sources, source_features=features,
                             training=False)
        return out["prediction"]

    def keypoints(self, frames):
        """Keypoints of ``(T, H, W, C)`` frames, computed in batches: ``{"value", "jacobian"}`` numpy."""
        frames = np.asarray(frames, dtype="float32")
        parts = {}
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start:start + self.batch_size]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - len(chunk), axis=0)])
            out = self._detect(padded)
            for key in ("value", "jacobian"):
                if key in out:
                    parts.setdefault(key, []).append(np.asarray(ops.convert_to_numpy(out[key]))[: len(chunk)])
        return {key: np.concatenate(value) for key, value in parts.items()}

    def animate(self, source, driving, relative=True, adapt_movement_scale=False, best_frame=None, progress=None):
        """Frames of ``source`` moving like ``driving``.

        Args:
            source: ``(H, W, C)`` or ``(1, H, W, C)`` image in [0, 1].
            driving: ``(T, H, W, C)`` frames in [0, 1], the size of ``source``.
            relative: relative movement and Jacobians (else absolute keypoints).
            adapt_movement_scale: scale the motion by the keypoint hull areas.
            best_frame: ``None`` to start from the first driving frame; an index to
                start there and animate forwards and backwards from it (what
                ``find_best_frame`` is for).
            progress: an optional callable ``progress(done, total)``.

        Returns:
            ``(T, H, W, C)`` float32 frames in [0, 1].
        """
        source = np.asarray(source, dtype="float32")
        source = source[None] if source.ndim == 3 else source
        driving = np.asarray(driving, dtype="float32")
        if driving.ndim != 4 or driving.shape[0] == 0:
            raise ValueError(f"`driving` must be (frames, height, width, channels) with at least one frame; got {driving.shape}.")
        if driving.shape[1:] != source.shape[1:]:
            raise ValueError(f"`source` {source.shape[1:]} and `driving` frames {driving.shape[1:]} must have the same size.")
        kp_source = {k: v for k, v in self._detect(np.repeat(source, self.batch_size, axis=0)).items() if k != "heatmap"}
        kp_source = {k: np.asarray(ops.convert_to_numpy(v))[:1] for k, v in kp_source.items()}
        # The source is encoded once, not once per frame (unless cache_source=False).
        source_features = self._encode(source) if self.cache_source else None
        kp_driving = self.keypoints(driving)
        start = 0 if best_frame is None else int(best_frame)
        if not 0 <= start < len(driving):
            raise ValueError(f"`best_frame` must be an index into the {len(driving)} driving frames; got {best_frame}.")
        initial = {k: v[start:start + 1] for k, v in kp_driving.items()}
        kp_norm = normalize_kp(kp_source, kp_driving, initial, adapt_movement_scale, relative, relative)
        kp_norm = {k: np.asarray(ops.convert_to_numpy(v), dtype="float32") for k, v in kp_norm.items()}
        frames = []
        for begin in range(0, len(driving), self.batch_size):
            chunk = {k: v[begin:begin + self.batch_size] for k, v in kp_norm.items()}
            count = len(chunk["value"])
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], self.batch_size - count, axis=0)]) for k, v in chunk.items()}
            out = self._generate(source, source_features, kp_source, chunk)
            frames.append(np.asarray(ops.convert_to_numpy(out))[:count])
            if progress:
                progress(min(begin + count, len(driving)), len(driving))
        return np.clip(np.concatenate(frames), 0.0, 1.0)


def _check_best_frame_options(find_best, best_frame_landmarks):
    if best_frame_landmarks not in BEST_FRAME_LANDMARKS:
        raise ValueError(f"`best_frame_landmarks` must be one of {BEST_FRAME_LANDMARKS}; got {best_frame_landmarks!r}.")
    if best_frame_landmarks != "kmt" and not find_best:
        raise ValueError("`best_frame_landmarks` only applies with `find_best=True`.")
    import importlib.util

    needs = {"face-alignment": ("face_alignment", "face-alignment", "pip install face-alignment"),
             "dlib": ("dlib", "dlib-bin", 'pip install "keras-motion-transfer[faces]"')}.get(best_frame_landmarks)
    if needs and importlib.util.find_spec(needs[0]) is None:
        raise ImportError(f"`best_frame_landmarks` {best_frame_landmarks!r} needs the {needs[1]} package, which is not "
                          f"installed ({needs[2]}); the default, 'kmt', needs nothing else.")


def _is_path(value):
    return isinstance(value, (str, bytes)) or hasattr(value, "__fspath__")


def _loaded_model(checkpoint, runtime, batch_size, convolutions):
    """The checkpoint loaded for ``runtime``: a :class:`kmt.checkpoint.Checkpoint` or an ``OnnxAnimator``."""
    from kmt.onnx_runtime import RUNTIMES, OnnxAnimator, is_export_folder

    if runtime not in RUNTIMES:
        raise ValueError(f"`runtime` must be one of {RUNTIMES}; got {runtime!r}.")
    if runtime == "keras":
        from kmt.checkpoint import load

        return load(checkpoint, networks=("kp_detector", "generator"))
    if not is_export_folder(checkpoint):
        raise ValueError("runtime 'onnxruntime' runs the graphs `kmt export` writes: `checkpoint` must be the folder "
                         f"`kmt export --out` wrote (it holds kmt-export.json); got {checkpoint!r}.")
    if convolutions != "float32":
        raise ValueError(f"`convolutions` {convolutions!r} is for the Keras runtime; the ONNX graphs run in float32.")
    return OnnxAnimator(checkpoint, batch_size=batch_size)


def _prepared(source, driving, checkpoint, max_frames, fit="crop", runtime="keras", batch_size=8,
              convolutions="float32"):
    """The loaded model, the source ``(h, w, 3)`` and driving ``(T, h, w, 3)`` at its size, and the fps."""
    from kmt.media import FITS, fit_frames, read_frames_for_model, read_image

    if fit not in FITS:
        raise ValueError(f"`fit` must be one of {FITS}; got {fit!r}.")

    loaded = _loaded_model(checkpoint, runtime, batch_size, convolutions)
    size = loaded.image_size or (256, 256)
    if max_frames is not None and (int(max_frames) != max_frames or max_frames < 1):
        raise ValueError(f"`max_frames` must be a whole number of at least 1 (or None for all); got {max_frames!r}.")
    fps = 25.0
    if _is_path(source):
        source = read_image(source, size, label="source", fit=fit)
    if _is_path(driving):
        driving, fps = read_frames_for_model(driving, size, label="driving", max_frames=max_frames, fit=fit)
    source, driving = np.asarray(source, "float32"), np.asarray(driving, "float32")
    driving = driving if max_frames is None else driving[: int(max_frames)]
    source = source[0] if source.ndim == 4 else source
    source = fit_frames(source, size, fit)[0]
    if driving.ndim == 4:
        driving = fit_frames(driving, size, fit)[0]
    return loaded, source, driving, fps


def _run(loaded, source, driving, relative, adapt_movement_scale, find_best, batch_size, progress, convolutions,
         best_frame_landmarks):
    if isinstance(loaded, Animator):
        animator = loaded
    else:
        animator = Animator(loaded.kp_detector, loaded.generator, batch_size=batch_size, convolutions=convolutions)
    best = None
    if find_best:
        best = best_driving_frame(animator, source, driving, landmarks=best_frame_landmarks)
    frames = animator.animate(source, driving, relative=relative, adapt_movement_scale=adapt_movement_scale,
                              best_frame=best, progress=progress)
    return frames, animator, best


def animate(source, driving, checkpoint=None, relative=True, adapt_movement_scale=False, find_best=False,
            batch_size=8, progress=None, convolutions="float32", best_frame_landmarks="kmt", max_frames=None,
            fit="crop", runtime="keras"):
    """Frames of ``source`` moving like ``driving``, in one call.

    Args:
        source: an ``(H, W, 3)`` image in [0, 1] (or a path to an image file).
        driving: ``(T, H, W, 3)`` frames in [0, 1] (or a path to a video).
        checkpoint: anything :func:`kmt.checkpoint.load` takes: a ``.kmt`` file, a loaded
            :class:`kmt.checkpoint.Checkpoint`, or ``None`` for the model shipped with kmt.
        relative, adapt_movement_scale: see :func:`normalize_kp`.
        find_best: start from the driving frame whose landmarks look most like the
            source's (:func:`find_best_frame`) and animate both ways from it.
        best_frame_landmarks: whose landmarks ``find_best`` compares: ``"kmt"`` (the model's
            keypoints), ``"dlib"`` (68 face landmarks from dlib, offline, the ``[faces]``
            extra) or ``"face-alignment"`` (the reference's detector; see :func:`best_driving_frame`).
        convolutions: ``"float32"`` or ``"bfloat16"`` (faster, about 1e-2 off;
            see :class:`Animator`).
        max_frames: use at most this many driving frames.
        fit: how images and frames of another aspect ratio than the model's meet it before
            the resize (:func:`kmt.media.fit_frames`): ``"crop"`` their centre (default),
            ``"pad"`` with black, or ``"stretch"``.
        runtime: ``"keras"`` (default) or ``"onnxruntime"``: the graphs ``kmt export`` wrote,
            run by ONNX Runtime (:class:`kmt.onnx_runtime.OnnxAnimator`); ``checkpoint`` is then
            the folder ``kmt export --out`` wrote.

    Inputs of another size than the model's are fitted and resized (read from files, a notice says so).
    Returns ``(T, h, w, 3)`` float32 frames at the model's size.
    """
    _check_best_frame_options(find_best, best_frame_landmarks)
    loaded, source, driving, _ = _prepared(source, driving, checkpoint, max_frames, fit, runtime, batch_size,
                                           convolutions)
    frames, _, _ = _run(loaded, source, driving, relative, adapt_movement_scale, find_best, batch_size, progress,
                        convolutions, best_frame_landmarks)
    return frames


def animate_to_file(out, source, driving, checkpoint=None, relative=True, adapt_movement_scale=False,
                    find_best=False, batch_size=8, progress=None, convolutions="float32", best_frame_landmarks="kmt",
                    max_frames=None, side_by_side=False, keypoints=False, fps=None, config=None, fit="crop",
                    runtime="keras"):
    """:func:`animate`, then write the result as ``.mp4``, ``.mov`` or ``.gif`` (what ``kmt animate`` runs).

    Args:
        out: the video to write.
        side_by_side: write source | driving | result panels.
        keypoints: draw the model's keypoints on the driving and result frames.
        fps: frames per second of the output (default: the driving video's, or 25).
        config: optionally, the config the checkpoint should have been trained with (a path,
            a shipped name or a dict); an error if its ``model_params`` differ.
        runtime: ``"keras"`` or ``"onnxruntime"`` (see :func:`animate`).
        The other arguments are those of :func:`animate`.

    Returns ``(out, best)``: the path written, and the driving frame the animation started
    from when ``find_best`` (else ``None``).
    """
    from kmt.media import compose_side_by_side, save_animation

    if not str(out).lower().endswith((".mp4", ".mov", ".gif")):
        raise ValueError(f"`out` must end in .mp4, .mov or .gif; got {out!r}.")
    _check_best_frame_options(find_best, best_frame_landmarks)
    loaded, source, driving, driving_fps = _prepared(source, driving, checkpoint, max_frames, fit, runtime,
                                                     batch_size, convolutions)
    if config is not None:
        from kmt.config import load_config

        if load_config(config)["model_params"] != loaded.config["model_params"]:
            raise ValueError(f"`config` {config!r}: its model_params differ from the checkpoint's; leave it out (the "
                             "checkpoint carries its own) or pass the config it was trained with.")
    frames, animator, best = _run(loaded, source, driving, relative, adapt_movement_scale, find_best, batch_size,
                                  progress, convolutions, best_frame_landmarks)
    if side_by_side or keypoints:
        kp_result = animator.keypoints(frames) if keypoints else None
        kp_driving = animator.keypoints(driving) if keypoints else None
        frames = compose_side_by_side(source, driving, frames, kp_driving=kp_driving, kp_result=kp_result,
                                      panels=side_by_side)
    save_animation(out, frames, fps=fps or driving_fps)
    return out, best
