"""Train the evaluator networks behind AKD, MKR and AED and write kmt/pretrained/evaluators-<family>-<size>.kmt-eval.

Usage (the shipped files were made with exactly this, see kmt/pretrained/EVALUATORS.md):

    KERAS_BACKEND=tensorflow python tools/train_evaluators.py --family faces --size 64
    KERAS_BACKEND=tensorflow python tools/train_evaluators.py --family figures --size 64

Each run is deterministic from --seed, takes a few minutes on two CPU cores, prints the
accuracy measured on test identities and motions never seen in training, and records it
in the file. Any Keras backend trains them; the files load on every backend.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from kmt.evaluator_training import train_evaluators  # noqa: E402
from kmt.evaluators import pretrained_path  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=["faces", "figures"])
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--landmark-steps", type=int, default=1500)
    parser.add_argument("--identity-steps", type=int, default=1000)
    parser.add_argument("--out", help="where to write the .kmt-eval file (default: the shipped location)")
    args = parser.parse_args(argv)
    out = args.out or pretrained_path(args.family, args.size)
    started = time.time()
    evaluators = train_evaluators(args.family, args.size, seed=args.seed, landmark_steps=args.landmark_steps,
                                  identity_steps=args.identity_steps, out=out,
                                  verbose=1 if sys.stdout.isatty() else 2)
    print(json.dumps(evaluators.info["accuracy"], indent=2))
    print(f"{out}: {os.path.getsize(out) / 1024:.0f} KiB, trained in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
