"""Turn a training checkpoint into the small inference checkpoint that ships with kmt.

Keeps the config, the keypoint detector and the generator (no discriminator, no optimizer
state), in kmt's one checkpoint format:

    python tools/export_model.py LOG_DIR/last.kmt kmt/pretrained/synthetic-faces-64.kmt
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kmt import checkpoint  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("training_checkpoint")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    loaded = checkpoint.load(args.training_checkpoint, networks=("kp_detector", "generator"))
    checkpoint.save(args.out, loaded.config, loaded.models, align_corners=loaded.align_corners,
                    image_size=loaded.image_size)
    epoch = (loaded.training or {}).get("epoch")
    print(json.dumps({"out": args.out, "epoch": epoch, "bytes": os.path.getsize(args.out)}))


if __name__ == "__main__":
    main()
