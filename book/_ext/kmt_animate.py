"""The files behind the page *Animate in your browser*: the exported model and the page's inputs.

When the site is built, this extension

* exports the model shipped with kmt to ONNX (``kmt export --format onnx``, on the PyTorch
  backend, in a subprocess) into ``_static/animate/model/``: ``kp_detector.onnx``,
  ``source_encoder.onnx``, ``generator.onnx`` and ``kmt-export.json``;
* renders the page's inputs with kmt's synthetic data generator (the test split, never seen in
  training, as in chapter 8) into ``_static/animate/inputs/``:

  - ``sources.bin``: ``(S, 64, 64, 3)`` uint8 source faces, and ``source-<i>.png`` of each;
  - ``clips.bin``: ``(C, T, 64, 64, 3)`` uint8 driving clips, and ``clip-<i>.png``, the first frame;
  - ``inputs.json``: the shapes and what each image is (identity, motion).

Both are kept in a cache (``_build/animate/<key>/`` beside the book, or ``$KMT_ANIMATE_CACHE``),
keyed by the checkpoint's and the exporter's bytes and by the inputs' settings, so a rebuild
copies them. Where the export fails the build logs a warning (a failed page, not a silent one).

Run as a script, ``python kmt_animate.py inputs DIR`` writes the inputs alone.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Test identities of the source faces, and (identity, motion) of the driving clips.
SOURCE_IDENTITIES = (3, 0, 1, 2)
CLIPS = ((7, 5), (11, 11), (5, 9))
NUM_FRAMES = 24
SIZE = 64


def write_inputs(out):
    """Render the sources and the clips into ``out`` (see the module docstring); returns the manifest."""
    import numpy as np
    from PIL import Image

    from kmt.data.synthetic import TEST_OFFSET, render_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    def to_uint8(frames):
        return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype("uint8")

    sources = np.stack([to_uint8(render_video("faces", identity=TEST_OFFSET + i, motion=TEST_OFFSET + i,
                                              num_frames=1, size=SIZE).frames[0]) for i in SOURCE_IDENTITIES])
    clips = np.stack([to_uint8(render_video("faces", identity=TEST_OFFSET + i, motion=TEST_OFFSET + m,
                                            num_frames=NUM_FRAMES, size=SIZE).frames) for i, m in CLIPS])
    sources.tofile(out / "sources.bin")
    clips.tofile(out / "clips.bin")
    for index, image in enumerate(sources):
        Image.fromarray(image).save(out / f"source-{index}.png")
    for index, clip in enumerate(clips):
        Image.fromarray(clip[0]).save(out / f"clip-{index}.png")
    manifest = {
        "layout": "NHWC uint8, row-major; divide by 255 for the model's [0, 1] floats",
        "sources": {"file": "sources.bin", "shape": list(sources.shape),
                    "items": [{"identity": i, "image": f"source-{n}.png"} for n, i in enumerate(SOURCE_IDENTITIES)]},
        "clips": {"file": "clips.bin", "shape": list(clips.shape),
                  "items": [{"identity": i, "motion": m, "image": f"clip-{n}.png"} for n, (i, m) in enumerate(CLIPS)]},
        "generator": "kmt.data.synthetic.render_video, family 'faces', test split (ids from TEST_OFFSET)",
    }
    (out / "inputs.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _key(root):
    """What the cached files depend on: the shipped checkpoint, the exporter, this file."""
    digest = hashlib.sha256()
    for path in (root / "kmt" / "pretrained" / "synthetic-faces-64.kmt", root / "kmt" / "onnx_export.py", Path(__file__)):
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:16]


def _cache_root(app):
    configured = os.environ.get("KMT_ANIMATE_CACHE")
    return Path(configured) if configured else Path(app.srcdir).parent / "_build" / "animate"


def _run(command, what):
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONHASHSEED="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        return f"{what} failed: {(done.stderr or done.stdout).strip()[-800:]}"
    return None


def _prepare(app):
    """Export the model and write the inputs into the cache, unless they are there already."""
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    app.kmt_animate = None
    if app.builder.format != "html":
        return
    root = Path(app.srcdir).parent
    target = _cache_root(app) / _key(root)
    if not (target / "complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        (target / "model").mkdir(parents=True)
        logger.info("kmt_animate: exporting the shipped model to ONNX and rendering the page's inputs")
        problem = (_run([sys.executable, "-m", "kmt", "export", "--format", "onnx", "--out", str(target / "model")],
                        "kmt export")
                   or _run([sys.executable, __file__, "inputs", str(target / "inputs")], "rendering the inputs"))
        if problem:
            logger.warning(f"kmt_animate: {problem}")
            return
        (target / "complete").write_text("")
    app.kmt_animate = target


def _copy(app, exception):
    if exception is not None or getattr(app, "kmt_animate", None) is None:
        return
    static = Path(app.outdir) / "_static" / "animate"
    for part in ("model", "inputs"):
        shutil.copytree(app.kmt_animate / part, static / part, dirs_exist_ok=True)


def setup(app):
    app.connect("builder-inited", _prepare)
    app.connect("build-finished", _copy)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "inputs":
        sys.exit("usage: python kmt_animate.py inputs DIR")
    write_inputs(sys.argv[2])
