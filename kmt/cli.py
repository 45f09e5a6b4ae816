"""The ``kmt`` command line: animate, train, reconstruct, evaluate, convert, synth.

``kmt <command> --help`` describes each command. Exit status: 0 on success, 2
for a usage error (a bad flag, a missing or unreadable file, a config or
checkpoint that does not fit), 1 for anything else. Messages go to stderr,
results to stdout.
"""

import argparse
import os
import sys

__all__ = ["main"]


class UsageError(Exception):
    """A mistake in what the user asked for: reported in one line, exit status 2."""


def _progress(label):
    from keras.utils import Progbar

    bar = {}

    def update(done, total):
        if "bar" not in bar:
            bar["bar"] = Progbar(total, unit_name=label)
        bar["bar"].update(done)

    return update


def _resolve_checkpoint(path):
    if path is None:
        from kmt.pretrained import default_checkpoint

        return default_checkpoint()
    if not os.path.exists(path):
        raise UsageError(f"--checkpoint: no file at {path!r}.")
    return path


# animate ------------------------------------------------------------------------------------
def _require_file(path, label):
    if path is not None and not os.path.exists(path):
        raise UsageError(f"{label}: no file at {path!r}.")


def cmd_animate(args):
    _require_file(args.source, "--source")
    _require_file(args.driving, "--driving")
    _require_file(args.checkpoint, "--checkpoint")
    if not str(args.out).lower().endswith((".mp4", ".mov", ".gif")):
        raise UsageError(f"--out must end in .mp4, .mov or .gif; got {args.out!r}.")
    if args.best_frame_landmarks != "kmt":
        if not args.find_best_frame:
            raise UsageError("--best-frame-landmarks only applies with --find-best-frame; add it or drop the option.")
        import importlib.util

        if importlib.util.find_spec("face_alignment") is None:
            raise UsageError("--best-frame-landmarks face-alignment needs the face-alignment package, which is not "
                             "installed (pip install face-alignment); the default, kmt, needs nothing else.")
    from kmt import animation
    from kmt.checkpoint import load
    from kmt.media import compose_side_by_side, read_frames_for_model, read_image, save_animation

    loaded = load(_resolve_checkpoint(args.checkpoint), networks=("kp_detector", "generator"))
    size = loaded.image_size or (256, 256)
    if args.config:
        from kmt.config import load_config

        given = load_config(args.config)["model_params"]
        if given != loaded.config["model_params"]:
            raise UsageError(f"--config {args.config!r}: its model_params differ from the checkpoint's; omit --config "
                             "(the checkpoint carries its own) or pass the config it was trained with.")
    source = read_image(args.source, size, label="--source")
    driving, fps = read_frames_for_model(args.driving, size, label="--driving", max_frames=args.max_frames)
    animator = animation.Animator(loaded.kp_detector, loaded.generator, batch_size=args.batch_size,
                                  convolutions=args.convolutions)
    best = None
    if args.find_best_frame:
        best = animation.best_driving_frame(animator, source, driving, landmarks=args.best_frame_landmarks)
        print(f"best frame: {best}", file=sys.stderr)
    frames = animator.animate(source, driving, relative=args.relative, adapt_movement_scale=args.adapt_scale,
                              best_frame=best, progress=_progress("frames"))
    if args.side_by_side or args.keypoints:
        kp = animator.keypoints(frames) if args.keypoints else None
        kp_driving = animator.keypoints(driving) if args.keypoints else None
        frames = compose_side_by_side(source, driving, frames, kp_driving=kp_driving, kp_result=kp,
                                      panels=args.side_by_side)
    save_animation(args.out, frames, fps=args.fps or fps)
    print(args.out)


# train ----------------------------------------------------------------------------------------
def cmd_train(args):
    from kmt.config import load_config, override_config
    from kmt.training import Trainer
    from kmt.training_data import training_batches

    config = override_config(args.config, args.set) if args.set else load_config(args.config)
    if "train_params" not in config:
        raise UsageError(f"--config {args.config!r} has no train_params section.")
    if args.resume and args.init_from:
        raise UsageError("give --resume (continue a run) or --init-from (start a run from a checkpoint's weights), "
                         "not both.")
    _require_file(args.resume, "--resume")
    _require_file(args.init_from, "--init-from")
    trainer = Trainer(config, args.log_dir, resume=args.resume or None, seed=args.seed, jit=not args.no_jit,
                      init_from=args.init_from)
    batches_for_epoch, steps = training_batches(config, seed=args.seed, steps_per_epoch=args.steps_per_epoch)
    trainer.train(batches_for_epoch, steps, num_epochs=args.epochs)
    print(os.path.join(args.log_dir, "last.kmt"))


# reconstruct / evaluate ------------------------------------------------------------------------
def cmd_reconstruct(args):
    from kmt.checkpoint import load
    from kmt.metrics import reconstruct_dataset

    loaded = load(_resolve_checkpoint(args.checkpoint), networks=("kp_detector", "generator"))
    result = reconstruct_dataset(loaded, args.data, out_dir=args.out, num_videos=args.num_videos,
                                 progress=_progress("videos"))
    print(f"reconstruction L1: {result['l1']:.4f} over {result['videos']} videos")


def cmd_evaluate(args):
    from kmt.checkpoint import load
    from kmt.metrics import evaluate, format_table

    loaded = load(_resolve_checkpoint(args.checkpoint), networks=("kp_detector", "generator"))
    table = evaluate(loaded, args.data, num_videos=args.num_videos, evaluators=args.evaluators,
                     progress=_progress("videos"))
    print(format_table(table))


# convert --------------------------------------------------------------------------------------
def cmd_convert(args):
    from kmt import checkpoint
    from kmt.config import load_config
    from kmt.convert import load_checkpoint

    config = load_config(args.config)
    models = load_checkpoint(args.checkpoint, config, align_corners=not args.pytorch13)
    size = tuple(config.get("dataset_params", {}).get("frame_shape", (256, 256, 3))[:2])
    checkpoint.save(args.out, config, models, align_corners=not args.pytorch13, image_size=size)
    print(args.out)


# synth ----------------------------------------------------------------------------------------
def cmd_synth(args):
    from kmt.data import write_dataset

    metadata = write_dataset(args.out, family=args.family, num_train=args.num_train, num_test=args.num_test,
                             num_frames=args.num_frames, size=args.size, seed=args.seed, layout=args.layout,
                             overwrite=args.overwrite)
    print(f"{args.out}: {len(metadata['videos'])} videos ({args.family}, {args.size} px, {args.layout})")


def build_parser():
    parser = argparse.ArgumentParser(prog="kmt", description="The First Order Motion Model in Keras 3.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("animate", help="animate a source image with a driving video",
                       description="Make SOURCE move like DRIVING and write the result as mp4 or gif.")
    p.add_argument("--source", required=True, help="source image (png, jpg, ...)")
    p.add_argument("--driving", required=True, help="driving video (mp4, gif, folder of frames, ...)")
    p.add_argument("--checkpoint", help="a .kmt checkpoint (default: the model shipped with kmt)")
    p.add_argument("--config", help="optional: the config the checkpoint was trained with, to check it matches")
    p.add_argument("--out", required=True, help="result video (.mp4 or .gif)")
    p.add_argument("--relative", action="store_true", help="relative keypoint movement and Jacobians")
    p.add_argument("--adapt-scale", action="store_true", help="scale the movement by the keypoint hull areas")
    p.add_argument("--find-best-frame", action="store_true",
                   help="start from the driving frame whose keypoints look most like the source's")
    p.add_argument("--best-frame-landmarks", choices=["kmt", "face-alignment"], default="kmt",
                   help="landmarks --find-best-frame compares: the model's keypoints (default) or, if the "
                        "face-alignment package is installed, its 68 face landmarks as the reference does")
    p.add_argument("--side-by-side", action="store_true", help="write source | driving | result panels")
    p.add_argument("--keypoints", action="store_true", help="draw keypoints on the driving and result panels")
    p.add_argument("--batch-size", type=int, default=8, help="frames per compiled call (default 8)")
    p.add_argument("--convolutions", choices=["float32", "bfloat16"], default="float32",
                   help="bfloat16: faster on CPUs that multiply bfloat16 in hardware, about 1e-2 off")
    p.add_argument("--fps", type=float, help="frames per second of the output (default: the driving video's)")
    p.add_argument("--max-frames", type=int, help="use at most this many driving frames")
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("train", help="train FOMM from a config", description="Train the keypoint detector, "
                       "generator and discriminator as the config's train_params say.")
    p.add_argument("--config", required=True, help="a YAML config (official schema) or the name of a shipped config")
    p.add_argument("--log-dir", default="log", help="where checkpoints, log.csv and samples go (default: log)")
    p.add_argument("--resume", help="a training checkpoint to continue from")
    p.add_argument("--init-from", help="start from this checkpoint's weights with fresh optimisers and epoch 0 "
                   "(fine-tuning; weights-only checkpoints such as the shipped model work)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change one setting of the config, e.g. --set train_params.epoch_milestones=[14] "
                   "(VALUE is YAML; repeatable; only existing keys)")
    p.add_argument("--epochs", type=int, help="stop after this many epochs (default: train_params.num_epochs)")
    p.add_argument("--steps-per-epoch", type=int, help="override the steps per epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-jit", action="store_true", help="run the training step eagerly")
    p.set_defaults(func=cmd_train)

    for name, func, text in (("reconstruct", cmd_reconstruct, "reconstruct test videos from their first frame"),
                             ("evaluate", cmd_evaluate, "L1, AKD, MKR and AED on test videos")):
        p = sub.add_parser(name, help=text, description=text.capitalize() + ".")
        p.add_argument("--data", required=True, help="a dataset folder with test/ (official layout)")
        p.add_argument("--checkpoint", help="a .kmt checkpoint (default: the model shipped with kmt)")
        p.add_argument("--num-videos", type=int, help="use at most this many test videos")
        if name == "reconstruct":
            p.add_argument("--out", help="folder for the reconstructed videos (optional)")
        else:
            p.add_argument("--evaluators", help="evaluator networks (.kmt-eval); default: the shipped ones")
        p.set_defaults(func=func)

    p = sub.add_parser("convert", help="convert an official .pth.tar checkpoint to a .kmt checkpoint")
    p.add_argument("checkpoint", help="official checkpoint, e.g. vox-cpk.pth.tar (needs PyTorch installed)")
    p.add_argument("--config", required=True, help="its official YAML config, e.g. vox-256.yaml")
    p.add_argument("--out", required=True, help="the .kmt file to write")
    p.add_argument("--pytorch13", action="store_true",
                   help="sample with align_corners=False (the official code on PyTorch >= 1.3) instead of True")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("synth", help="write a synthetic video dataset in the official layout")
    p.add_argument("--out", required=True, help="dataset folder (gets train/, test/, metadata.json)")
    p.add_argument("--family", default="faces", choices=["faces", "figures"])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--num-train", type=int, default=64)
    p.add_argument("--num-test", type=int, default=16)
    p.add_argument("--num-frames", type=int, default=32)
    p.add_argument("--layout", default="frames", choices=["frames", "mp4", "mov", "gif", "png"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_synth)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except UsageError as error:
        print(f"kmt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"kmt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kmt {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
