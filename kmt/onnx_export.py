"""Export a trained model to ONNX: the keypoint detector and the generator, as three graphs.

``export(out, checkpoint)`` writes into ``out``:

* ``kp_detector.onnx``: ``image`` ``(N, H, W, C)`` float32 in [0, 1], NHWC, ``N`` free ->
  ``value`` ``(N, K, 2)`` keypoints as normalised (x, y) in [-1, 1] and, when the model
  estimates them, ``jacobian`` ``(N, K, 2, 2)``;
* ``source_encoder.onnx``: ``source`` ``(1, H, W, C)`` -> ``source_features``
  ``(1, H / 2**n, W / 2**n, F)``, the generator's encoder, run once per source image;
* ``generator.onnx``: ``source``, ``source_features``, ``kp_source_value``,
  ``kp_source_jacobian``, ``kp_driving_value``, ``kp_driving_jacobian`` (batch of one; no
  Jacobian inputs for a model without them) -> ``prediction`` ``(1, H, W, C)``, one frame;
* ``kmt-export.json``: what a runtime needs to drive them (image size, number of keypoints,
  ``align_corners``, every input and output with its shape, layout and dtype, the kmt version).

The graphs are traced on the PyTorch backend by ``torch.onnx.export`` (its ``torch.export``
path, ONNX opset 18): on that backend :func:`kmt.grid_sample` is PyTorch's own
``grid_sample``, which becomes the ONNX ``GridSample`` operator with ``align_corners`` kept.
From TensorFlow or JAX, :func:`export` runs ``python -m kmt export`` on PyTorch in a
subprocess; the checkpoint file holds the same weights for every backend.
"""

import json
import os
import subprocess
import sys

__all__ = ["export", "read_export", "EXPORT_FORMATS", "METADATA_FILE", "OPSET"]

EXPORT_FORMATS = ("onnx",)
METADATA_FILE = "kmt-export.json"
OPSET = 18  # the opset torch.onnx.export writes natively; GridSample needs 16 or later
GRAPH_FILES = {"kp_detector": "kp_detector.onnx", "source_encoder": "source_encoder.onnx",
               "generator": "generator.onnx"}


def _check_arguments(out, checkpoint, format, opset):
    if format not in EXPORT_FORMATS:
        raise ValueError(f"`format` must be one of {EXPORT_FORMATS}; got {format!r}.")
    if int(opset) != opset or opset < OPSET:
        raise ValueError(f"`opset` must be a whole number of at least {OPSET} (torch.onnx.export writes opset 18 and "
                         f"later; GridSample needs 16 or later); got {opset!r}.")
    if not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"`out` must be a folder path; got {type(out).__name__}.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"`out` must be a folder; {os.fspath(out)!r} is a file.")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        path = getattr(checkpoint, "path", None)
        if not path:
            raise ValueError("`checkpoint` must be a .kmt path, None (the shipped model) or a loaded "
                             f"kmt.checkpoint.Checkpoint; got {type(checkpoint).__name__}.")


def _require_exporter():
    missing = []
    for name in ("torch", "onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"exporting to ONNX needs {', '.join(missing)}, not installed: `pip install torch onnx "
                          "onnxscript` (PyTorch traces the graphs, onnx and onnxscript write them).")


def export(out, checkpoint=None, format="onnx", opset=OPSET):
    """Write the ONNX graphs of ``checkpoint`` and their ``kmt-export.json`` into ``out``.

    Args:
        out: the folder to write (created; files of an earlier export are replaced).
        checkpoint: a ``.kmt`` file, a loaded :class:`kmt.checkpoint.Checkpoint` read from one,
            or ``None`` for the model shipped with kmt.
        format: ``"onnx"`` (the only format).
        opset: the ONNX opset, 18 or later.

    Returns:
        the metadata written to ``kmt-export.json`` (a dict).

    Needs PyTorch, ``onnx`` and ``onnxscript``. On TensorFlow or JAX the export runs in a
    subprocess on the PyTorch backend.
    """
    _check_arguments(out, checkpoint, format, opset)
    _require_exporter()
    import keras

    path = checkpoint if checkpoint is None or isinstance(checkpoint, (str, os.PathLike)) else checkpoint.path
    if keras.backend.backend() != "torch":
        command = [sys.executable, "-m", "kmt", "export", "--format", format, "--out", os.fspath(out),
                   "--opset", str(int(opset))]
        if path is not None:
            command += ["--checkpoint", os.fspath(path)]
        done = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": "torch"}, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"`kmt export` on the PyTorch backend failed:\n{done.stderr.strip()[-2000:]}")
        return read_export(out)
    from kmt.checkpoint import load

    loaded = load(checkpoint, networks=("kp_detector", "generator"))
    os.makedirs(out, exist_ok=True)
    return _export_torch(loaded, os.fspath(out), int(opset))


def _export_torch(loaded, out, opset):
    import torch

    from kmt import __version__

    kp_detector, generator = loaded.kp_detector, loaded.generator
    height, width = loaded.image_size or (256, 256)
    channels, num_kp = kp_detector.num_channels, kp_detector.num_kp
    jacobian = bool(kp_detector.estimate_jacobian)
    image = torch.rand(2, height, width, channels, generator=torch.Generator().manual_seed(0))
    source = image[:1]
    with torch.no_grad():
        kp = kp_detector(source, training=False)
        features = generator.encode_source(source, training=False)
    kp_names = ["value", "jacobian"] if jacobian else ["value"]
    kp_shapes = {"value": [num_kp, 2], "jacobian": [num_kp, 2, 2]}
    feature_shape = [int(s) for s in features.shape[1:]]
    image_spec = lambda name, batch: {"name": name, "shape": [batch, height, width, channels], "dtype": "float32",  # noqa: E731
                                      "layout": "NHWC", "range": [0, 1]}
    kp_spec = lambda name, key, batch: {"name": name, "shape": [batch, *kp_shapes[key]], "dtype": "float32",  # noqa: E731
                                        "layout": "NK2" if key == "value" else "NK22"}
    graphs = {
        "kp_detector": {
            "inputs": [image_spec("image", "batch")],
            "outputs": [kp_spec(key, key, "batch") for key in kp_names],
        },
        "source_encoder": {
            "inputs": [image_spec("source", 1)],
            "outputs": [{"name": "source_features", "shape": [1, *feature_shape], "dtype": "float32", "layout": "NHWC"}],
        },
        "generator": {
            "inputs": [image_spec("source", 1),
                       {"name": "source_features", "shape": [1, *feature_shape], "dtype": "float32", "layout": "NHWC"}]
            + [kp_spec(f"kp_{who}_{key}", key, 1) for who in ("source", "driving") for key in kp_names],
            "outputs": [{**image_spec("prediction", 1), "range": [0, 1]}],
        },
    }

    class Detector(torch.nn.Module):
        def forward(self, frames):
            out = kp_detector(frames, training=False)
            return tuple(out[key] for key in kp_names)

    class Encoder(torch.nn.Module):
        def forward(self, source_image):
            return generator.encode_source(source_image, training=False)

    class Generator(torch.nn.Module):
        def forward(self, source_image, source_features, *keypoints):
            kp_source = dict(zip(kp_names, keypoints[: len(kp_names)]))
            kp_driving = dict(zip(kp_names, keypoints[len(kp_names):]))
            out = generator(source_image, kp_driving=kp_driving, kp_source=kp_source,
                            source_features=source_features, training=False)
            return out["prediction"]

    kp_driving = {key: torch.flip(value, (1,)) for key, value in kp.items() if key in kp_names}
    examples = {
        "kp_detector": (Detector().eval(), (image,), {"frames": {0: torch.export.Dim("batch", min=1, max=4096)}}),
        "source_encoder": (Encoder().eval(), (source,), None),
        "generator": (Generator().eval(), (source, features, *[kp[k] for k in kp_names], *[kp_driving[k] for k in kp_names]),
                      None),
    }
    for name, (module, args, dynamic) in examples.items():
        target = os.path.join(out, GRAPH_FILES[name])
        spec = graphs[name]
        try:
            with torch.no_grad():
                program = torch.onnx.export(
                    module, args, dynamic_shapes=dynamic, input_names=[i["name"] for i in spec["inputs"]],
                    output_names=[o["name"] for o in spec["outputs"]], opset_version=opset, dynamo=True,
                    external_data=False, verbose=False, optimize=True)
                program.save(target, external_data=False)
        except Exception as error:  # the exporter raises many kinds; say which graph failed and why
            raise RuntimeError(f"the {name} graph of the checkpoint could not be exported to ONNX: "
                               f"{type(error).__name__}: {str(error).strip()[:1500]}") from error
        spec["file"] = GRAPH_FILES[name]
        spec["operators"] = _operators(target)
    metadata = {
        "format": "onnx",
        "opset": opset,
        "kmt_version": __version__,
        "checkpoint": os.path.basename(loaded.path) if loaded.path else None,
        "image_size": [int(height), int(width)],
        "num_channels": int(channels),
        "num_kp": int(num_kp),
        "estimate_jacobian": jacobian,
        "align_corners": bool(loaded.align_corners),
        "model_params": loaded.config["model_params"],
        "graphs": graphs,
    }
    with open(os.path.join(out, METADATA_FILE), "w") as file:
        json.dump(metadata, file, indent=1)
        file.write("\n")
    return metadata


def _operators(path):
    """The sorted ONNX operator types a graph file holds."""
    import onnx

    return sorted({node.op_type for node in onnx.load(path, load_external_data=False).graph.node})


def read_export(out):
    """The ``kmt-export.json`` of a folder written by :func:`export`, checked to name its graph files."""
    path = os.path.join(os.fspath(out), METADATA_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{os.fspath(out)!r} is not a folder written by `kmt export`: it has no {METADATA_FILE}.")
    with open(path) as file:
        metadata = json.load(file)
    if metadata.get("format") != "onnx" or set(metadata.get("graphs", ())) != set(GRAPH_FILES):
        raise ValueError(f"{path}: expected format 'onnx' and the graphs {sorted(GRAPH_FILES)}; found "
                         f"format {metadata.get('format')!r} and graphs {sorted(metadata.get('graphs', ()))}.")
    for name, graph in metadata["graphs"].items():
        if not os.path.isfile(os.path.join(os.fspath(out), graph["file"])):
            raise ValueError(f"{os.fspath(out)!r}: {METADATA_FILE} names {graph['file']} ({name}), which is missing.")
    return metadata
