"""Write the animation on the book's landing page: the shipped model animating a face it never saw.

    python tools/landing_animation.py                      # with kmt's shipped model
    python tools/landing_animation.py --checkpoint log/synthetic-faces-64/last.kmt

The page (book/index.md) includes the file this writes, book/images/landing-animation.html: a
``kmt.media.animation_html`` player (matplotlib's ``to_jshtml``) of three panels, the source
image, the driving video and the animated result, that plays in the page without a kernel. The
first line records the checkpoint's SHA-256, and a test of the site fails when the shipped
model changes without this file being written again. Test identities and motions (never seen
in training) are used; ``--identity`` and ``--motion`` pick others.
"""

import argparse
import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "images" / "landing-animation.html"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a .kmt checkpoint (default: the model shipped with kmt)")
    parser.add_argument("--identity", type=int, default=None, help="synthetic identity of the source face")
    parser.add_argument("--motion", type=int, default=None, help="synthetic motion of the driving video")
    parser.add_argument("--frames", type=int, default=48, help="number of frames (default 48)")
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import matplotlib
    import numpy as np

    import kmt.pretrained
    from kmt.animation import Animator
    from kmt.checkpoint import load
    from kmt.data.synthetic import TEST_OFFSET, render_video
    from kmt.media import animation_html

    checkpoint = args.checkpoint or kmt.pretrained.default_checkpoint()
    loaded = load(checkpoint, networks=("kp_detector", "generator"))
    size = (loaded.image_size or (64, 64))[0]
    identity = TEST_OFFSET + 3 if args.identity is None else args.identity
    motion = TEST_OFFSET + 11 if args.motion is None else args.motion
    family = loaded.config.get("synthetic_params", {}).get("family", "faces")
    source = render_video(family, identity=identity, motion=identity, num_frames=1, size=size).frames[0]
    driving = render_video(family, identity=motion, motion=motion, num_frames=args.frames, size=size).frames
    result = Animator(loaded.kp_detector, loaded.generator).animate(source, driving, relative=True,
                                                                    adapt_movement_scale=True)
    still = np.repeat(np.asarray(source)[None], len(driving), axis=0)
    # JPEG frames at 80 dpi keep the page light (PNG frames of this player weigh several MB).
    with matplotlib.rc_context({"animation.frame_format": "jpeg", "savefig.dpi": 80, "figure.dpi": 80}):
        html = animation_html([still, driving, result], fps=args.fps, size=2.4,
                              titles=["source image", "driving video", "animated by kmt"])
    header = (f"<!-- written by tools/landing_animation.py from {Path(checkpoint).name} "
              f"sha256={sha256(checkpoint)} identity={identity} motion={motion} frames={len(driving)} -->\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + html)
    print(f"{args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
