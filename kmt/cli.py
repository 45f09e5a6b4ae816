"""The ``kmt`` command line: animate, train, reconstruct, evaluate, convert, synth, crop,
prepare.

``kmt <command> --help`` describes each command. Exit status: 0 on success, 2
for a usage error (a bad flag, a missing or unreadable file, a config or
checkpoint that does not fit), 1 for anything else. Messages go to stderr,
results to stdout. TensorFlow's start-up notices are kept off stderr unless
TF_CPP_MIN_LOG_LEVEL is set (see :mod:`kmt.quiet_start`).
"""

import argparse
import os
import re
import sys
import warnings

from kmt.quiet_start import quiet_backend_start

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


# animate ------------------------------------------------------------------------------------
def _require_file(path, label):
    if path is not None and not os.path.exists(path):
        raise UsageError(f"{label}: no file at {path!r}.")


def cmd_animate(args):
    _require_file(args.source, "--source")
    _require_file(args.driving, "--driving")
    _require_file(args.checkpoint, "--checkpoint")
    from kmt import import_keras_lean

    import_keras_lean()  # Keras without the optional packages animating does not use (faster, leaner)
    from kmt import animation

    try:
        _, best = animation.animate_to_file(
            args.out, args.source, args.driving, checkpoint=args.checkpoint, relative=args.relative,
            adapt_movement_scale=args.adapt_scale, find_best=args.find_best_frame, batch_size=args.batch_size,
            progress=_progress("frames"), convolutions=args.convolutions,
            best_frame_landmarks=args.best_frame_landmarks, max_frames=args.max_frames,
            side_by_side=args.side_by_side, keypoints=args.keypoints, fps=args.fps, config=args.config, fit=args.fit,
            runtime=args.runtime)
    except ImportError as error:
        raise UsageError(str(error).replace("`best_frame_landmarks`", "--best-frame-landmarks")) from None
    except ValueError as error:
        raise UsageError(_flag_names(str(error))) from None
    if best is not None:
        print(f"best frame: {best}", file=sys.stderr)
    print(args.out)


def _flag_names(message, parser=None):
    """A library message with its argument names spelt as this command's flags.

    Besides the names listed here, every ``dest`` of ``parser``'s options is rewritten where it is
    backquoted (`` `num_videos` ``), opens a sentence (``steps_per_epoch must``) or is set (``overwrite=True``).
    """
    for name, flag in (("landmarks='kmt'", "--best-frame-landmarks kmt"), ("`best_frame_landmarks`", "--best-frame-landmarks"), ("`find_best=True`", "--find-best-frame"),
                       ("`max_frames`", "--max-frames"), ("`batch_size`", "--batch-size"), ("`out`", "--out"),
                       ("`config`", "--config"), ("`checkpoint`", "--checkpoint"), ("`fit`", "--fit"),
                       ("`data_root`", "--data"), ("`convolutions`", "--convolutions"), ("`runtime`", "--runtime")):
        message = message.replace(name, flag)
    for action in parser._actions if parser is not None else ():
        flags = [option for option in action.option_strings if option.startswith("--")]
        if flags and action.dest != "help":
            name = re.escape(action.dest)
            message = re.sub(rf"`{name}`|(?<![\w`-]){name}(?= must\b)|(?<![\w`-]){name}=True\b", flags[0], message)
    return re.sub(r" \(or None[^)]*\)", "", message)  # a Python default, not a flag value


# train ----------------------------------------------------------------------------------------
def cmd_train(args):
    if args.cpu_devices is not None:
        _split_cpu(args.cpu_devices)
    from kmt.config import load_config, override_config, with_dataset
    from kmt.training import Trainer
    from kmt.training_data import training_batches

    config = override_config(args.config, args.set) if args.set else load_config(args.config)
    if args.data is not None:
        if not os.path.isdir(args.data):
            raise UsageError(f"--data: no folder at {args.data!r} (a dataset with train/ and test/, e.g. from "
                             "`kmt prepare`).")
        config = with_dataset(config, args.data)
    if "train_params" not in config:
        raise UsageError(f"--config {args.config!r} has no train_params section.")
    if args.resume and args.init_from:
        raise UsageError("give --resume (continue a run) or --init-from (start a run from a checkpoint's weights), "
                         "not both.")
    _require_file(args.resume, "--resume")
    _require_file(args.init_from, "--init-from")
    _require_file(args.vgg_weights, "--vgg-weights")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be a number of epochs >= 1, got {args.epochs}.")
    if args.save_every is not None and args.save_every < 1:
        raise UsageError(f"--save-every must be a number of steps >= 1, got {args.save_every}.")
    trainer = Trainer(config, args.log_dir, resume=args.resume or None, seed=args.seed, jit=not args.no_jit,
                      init_from=args.init_from, vgg_weights=args.vgg_weights, devices=args.devices,
                      precision=args.precision)
    placement = trainer.placement
    if placement.count > 1:
        share = config["train_params"]["batch_size"] // placement.count
        print(f"Data parallel on {placement.count} devices ({', '.join(placement.names)}), {share} samples each.")
    # A resumed run keeps the seed it was started with (the checkpoint's), whatever --seed says.
    batches_for_epoch, steps = training_batches(config, seed=trainer.seed, steps_per_epoch=args.steps_per_epoch)
    trainer.train(batches_for_epoch, steps, num_epochs=args.epochs, save_every=args.save_every)
    print(os.path.join(args.log_dir, "last.kmt"))


def _split_cpu(count):
    """``--cpu-devices``: split the CPU into virtual devices before the backend starts."""
    import kmt.backend

    if count < 1:
        raise UsageError(f"--cpu-devices must be a number of devices >= 1, got {count}.")
    try:
        kmt.backend.split_cpu(count)
    except RuntimeError as error:
        raise UsageError(f"--cpu-devices: {error}") from error


# reconstruct / evaluate ------------------------------------------------------------------------
def cmd_reconstruct(args):
    from kmt.evaluation import reconstruct_dataset

    _require_file(args.checkpoint, "--checkpoint")
    result = reconstruct_dataset(args.checkpoint, args.data, out_dir=args.out, num_videos=args.num_videos,
                                 progress=_progress("videos"))
    print(f"reconstruction L1: {result['l1']:.4f} over {result['videos']} videos")


def cmd_evaluate(args):
    from kmt.evaluation import evaluate, format_table

    _require_file(args.checkpoint, "--checkpoint")
    if args.evaluators not in (None, "faces"):
        _require_file(args.evaluators, "--evaluators")
    try:
        table = evaluate(args.checkpoint, args.data, num_videos=args.num_videos, evaluators=args.evaluators,
                         progress=_progress("videos"))
    except ImportError as error:
        raise UsageError(f"--evaluators faces: {error}") from None
    print(format_table(table))


# convert --------------------------------------------------------------------------------------
def cmd_convert(args):
    from kmt import checkpoint
    from kmt.config import load_config
    from kmt.convert import official_models, read_checkpoint

    config = load_config(args.config)
    state_dicts, others = read_checkpoint(args.checkpoint, other_entries=True)
    models = official_models(state_dicts, config, align_corners=not args.pytorch13)
    size = tuple(config.get("dataset_params", {}).get("frame_shape", (256, 256, 3))[:2])
    checkpoint.save(args.out, config, models, align_corners=not args.pytorch13, image_size=size)
    if others:
        described = [f"epoch {others[k]}" if k == "epoch" else str(k) for k in others]
        print(f"kmt convert: not carried over: {', '.join(described)} (the .kmt holds the weights of "
              f"{', '.join(models)}; `kmt train --init-from {args.out}` starts training from them with fresh "
              "optimizers)", file=sys.stderr)
    print(args.out)


# export ---------------------------------------------------------------------------------------
def cmd_export(args):
    _require_file(args.checkpoint, "--checkpoint")
    from kmt.onnx_export import export

    metadata = export(args.out, checkpoint=args.checkpoint, format=args.format, opset=args.opset)
    for name, graph in metadata["graphs"].items():
        print(f"{os.path.join(args.out, graph['file'])}: {name}, {len(graph['operators'])} operator types",
              file=sys.stderr)
    print(args.out)


# synth ----------------------------------------------------------------------------------------
def cmd_synth(args):
    from kmt.data import write_dataset

    for flag in ("--num-train", "--num-test"):
        if getattr(args, flag[2:].replace("-", "_")) < 0:
            raise UsageError(f"{flag} must be a number of videos >= 0; got {getattr(args, flag[2:].replace('-', '_'))}.")
    metadata = write_dataset(args.out, family=args.family, num_train=args.num_train, num_test=args.num_test,
                             num_frames=args.num_frames, size=args.size, seed=args.seed, layout=args.layout,
                             overwrite=args.overwrite)
    print(f"{args.out}: {len(metadata['videos'])} videos ({args.family}, {args.size} px, {args.layout})")

# crop / prepare ------------------------------------------------------------------------------
def _frame_size(args, square):
    """The output size from --size, or from --config's dataset_params.frame_shape: N, (H, W) or None."""
    if args.size is not None and args.config is not None:
        raise UsageError("give --size or --config (to take its dataset_params.frame_shape), not both.")
    if args.size is not None:
        if args.size < 1:
            raise UsageError(f"--size must be a positive number of pixels; got {args.size}.")
        return args.size
    if args.config is None:
        return None
    from kmt.config import load_config

    shape = (load_config(args.config).get("dataset_params") or {}).get("frame_shape")
    if shape is None:
        raise UsageError(f"--config {args.config!r} has no dataset_params.frame_shape to take the size from; "
                         "give --size instead.")
    height, width = int(shape[0]), int(shape[1])
    if height == width:
        return height
    if square:
        raise UsageError(f"--config {args.config!r}: frame_shape {list(shape)} is not square, and a crop is; "
                         "give --size instead.")
    return height, width


def _refuse(args, flags, reason):
    given = [flag for flag in flags if getattr(args, flag[2:].replace("-", "_")) not in (None, False)]
    if given:
        raise UsageError(f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply {reason}; "
                         f"drop {'it' if len(given) == 1 else 'them'}.")


def _check_crop_numbers(args):
    if args.increase is not None and not args.increase >= 0:
        raise UsageError(f"--increase must be >= 0 (a fraction of the box size); got {args.increase}.")
    if args.max_missing is not None and not 0 <= args.max_missing <= 1:
        raise UsageError(f"--max-missing must be a fraction in [0, 1]; got {args.max_missing}.")


def _crop_report(info, count):
    """Lines describing a crop: the box, and what the detector found."""
    left, top, right, bottom = info["box"]
    height, width = info["frame_shape"]
    side, size = right - left, info["size"]
    change = "kept" if side == size else ("upscaled" if side < size else "resized")
    lines = [f"box (left, top, right, bottom) = ({left}, {top}, {right}, {bottom}): {side}x{side} px of the "
             f"{width}x{height} frame, {change} to {size}x{size}"]
    if info["mode"] == "whole":
        if info.get("motion_box") is not None:
            lines.append(f"moving pixels span {tuple(info['motion_box'])} in {count} frames")
        if info["clamped"]:
            lines.append("the moving subject is larger than the frame's shorter side: the box is the largest "
                         "square that fits")
        return lines
    candidates, missing = info["candidates"], info["missing"]
    if count == 1:
        kept_box, score = info["detections"][0]
        others = [box for box, _ in candidates[0] if box != kept_box]
        lines.append(f"face {kept_box} (score {score:.2f})" + (
            f"; {len(others)} other face(s) found and left out: {others}" if others else ""))
        return lines
    lines.append(f"faces: found in {count - len(missing)} of {count} frames (upsample {info['upsample']})")
    if missing:
        shown = ", ".join(str(t) for t in missing[:20]) + (", ..." if len(missing) > 20 else "")
        lines.append(f"no face in {len(missing)} frame(s), within --max-missing: [{shown}]")
    several = sum(1 for faces in candidates if len(faces) > 1)
    if several:
        lines.append(f"more than one face in {several} frame(s): kept in each the one overlapping the face of "
                     "the neighbouring frame most")
    return lines


def cmd_crop(args):
    from kmt.data.video_io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    if not os.path.exists(args.input):
        raise UsageError(f"INPUT: no file or folder at {args.input!r}.")
    photo = os.path.isfile(args.input) and args.input.lower().endswith(IMAGE_EXTENSIONS)
    if args.image and not photo:
        raise UsageError(f"--image expects a photo ({'/'.join(IMAGE_EXTENSIONS)}) as INPUT; got {args.input!r}.")
    if photo and not args.image:
        raise UsageError(f"INPUT {args.input!r} is an image: add --image to crop a photo.")
    if args.image:
        _refuse(args, ["--max-missing", "--motion-threshold"], "to a photo (--image)")
    if args.whole:
        _refuse(args, ["--max-missing", "--upsample"], "with --whole (no face detector)")
    else:
        _refuse(args, ["--motion-threshold"], "without --whole")
    _check_crop_numbers(args)
    if args.upsample is not None and args.upsample < 0:
        raise UsageError(f"--upsample must be >= 0; got {args.upsample}.")
    size = _frame_size(args, square=True) or 256
    ext = os.path.splitext(args.out)[1].lower()
    allowed = IMAGE_EXTENSIONS if args.image else VIDEO_EXTENSIONS + ("",)
    if ext not in allowed:
        what = "a .png/.jpg/.jpeg image" if args.image else "a .mp4/.mov/.gif video or a folder (no extension)"
        raise UsageError(f"--out must be {what}; got {args.out!r}.")
    if ext in (".mp4", ".mov") and size % 2:
        raise UsageError(f"--out {args.out!r}: H.264 needs an even frame size; --size is {size}.")
    if ext == "" and os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        raise UsageError(f"--out {args.out!r} exists and is not an empty folder; choose another path.")
    from kmt import crop
    from kmt.data.video_io import read_image, read_video, to_uint8, write_video

    options = {"increase": 0.1 if args.increase is None else args.increase, "allow_upscale": args.allow_upscale,
               "whole": args.whole, "name": args.input}
    if not args.whole:
        options["upsample"] = args.upsample
    if args.image:
        frames = read_image(args.input)
        cropped, info = crop.crop_image(frames, size, **options)
        count = 1
    else:
        frames = read_video(args.input)
        if args.whole:
            options["motion_threshold"] = 0.1 if args.motion_threshold is None else args.motion_threshold
        else:
            options["max_missing"] = 0.2 if args.max_missing is None else args.max_missing
        cropped, info = crop.crop_video(frames, size, **options)
        count = len(frames)
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    if args.image:
        from PIL import Image

        Image.fromarray(to_uint8(cropped)).save(args.out)
    else:
        from kmt.media import video_fps

        write_video(args.out, cropped, fps=video_fps(args.input))
    for line in _crop_report(info, count):
        print(line)
    if args.preview:
        from PIL import Image

        Image.fromarray(to_uint8(crop.preview(frames, info))).save(args.preview)
        print(f"preview: {args.preview}")
    print(args.out)


def cmd_prepare(args):
    if not os.path.isdir(args.input_dir):
        raise UsageError(f"INPUT_DIR: no folder at {args.input_dir!r}.")
    if args.crop is None:
        _refuse(args, ["--increase", "--allow-upscale", "--max-missing"], "without --crop")
    elif args.crop == "whole":
        _refuse(args, ["--max-missing"], "with --crop whole (no face detector)")
    if args.split_by == "folders":
        _refuse(args, ["--test-fraction", "--seed"], "with --split-by folders (the input's own train/ and test/)")
    _check_crop_numbers(args)
    size = _frame_size(args, square=args.crop is not None)
    from kmt.prepare import format_summary, prepare_dataset, train_command

    summary = prepare_dataset(
        args.input_dir, args.out, layout=args.layout, crop=args.crop, size=size,
        increase=0.1 if args.increase is None else args.increase, allow_upscale=args.allow_upscale,
        max_missing=0.2 if args.max_missing is None else args.max_missing, split_by=args.split_by,
        test_fraction=0.2 if args.test_fraction is None else args.test_fraction,
        seed=0 if args.seed is None else args.seed, min_frames=args.min_frames, overwrite=args.overwrite,
        log=lambda line: print(line, file=sys.stderr))
    print(format_summary(summary))
    print("train on it with:\n  " + train_command(args.out, summary["frame_shape"], args.config or "vox-256"))


def build_parser():
    parser = argparse.ArgumentParser(prog="kmt", description="The First Order Motion Model in Keras 3.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("animate", help="animate a source image with a driving video",
                       description="Make SOURCE move like DRIVING and write the result as mp4 or gif.")
    p.add_argument("--source", required=True, help="source image (png, jpg, ...)")
    p.add_argument("--driving", required=True, help="driving video (mp4, gif, folder of frames, ...)")
    p.add_argument("--checkpoint", help="a .kmt checkpoint (default: the model shipped with kmt); with --runtime "
                   "onnxruntime, the folder `kmt export --out` wrote")
    p.add_argument("--runtime", choices=["keras", "onnxruntime"], default="keras",
                   help="run the Keras models (default) or, with onnxruntime, the ONNX graphs of `kmt export`")
    p.add_argument("--config", help="optional: the config the checkpoint was trained with, to check it matches")
    p.add_argument("--out", required=True, help="result video (.mp4 or .gif)")
    p.add_argument("--relative", action="store_true", help="relative keypoint movement and Jacobians")
    p.add_argument("--adapt-scale", action="store_true", help="scale the movement by the keypoint hull areas")
    p.add_argument("--find-best-frame", action="store_true",
                   help="start from the driving frame whose keypoints look most like the source's")
    p.add_argument("--best-frame-landmarks", choices=["kmt", "dlib", "face-alignment"], default="kmt",
                   help="landmarks --find-best-frame compares: the model's keypoints (default), dlib's 68 face "
                        "landmarks (offline, the [faces] extra) or, if the face-alignment package is installed, "
                        "its 68 face landmarks as the reference does (it downloads its weights)")
    p.add_argument("--side-by-side", action="store_true", help="write source | driving | result panels")
    p.add_argument("--keypoints", action="store_true", help="draw keypoints on the driving and result panels")
    p.add_argument("--batch-size", type=int, default=8, help="frames per compiled call (default 8)")
    p.add_argument("--convolutions", choices=["float32", "bfloat16"], default="float32",
                   help="bfloat16: faster on CPUs that multiply bfloat16 in hardware, about 1e-2 off")
    p.add_argument("--fps", type=float, help="frames per second of the output (default: the driving video's)")
    p.add_argument("--max-frames", type=int, help="use at most this many driving frames")
    p.add_argument("--fit", choices=["crop", "pad", "stretch"], default="crop",
                   help="a source or driving video of another aspect ratio than the model's (square, for the shipped "
                        "model): crop its centre (default), pad it with black, or stretch it; then it is resized to "
                        "the model's size, and a line on stderr says what was done")
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("train", help="train FOMM from a config", description="Train the keypoint detector, "
                       "generator and discriminator as the config's train_params say.")
    p.add_argument("--config", required=True, help="a YAML config (official schema) or the name of a shipped config")
    p.add_argument("--data", help="train on this dataset folder (train/ and test/, e.g. from `kmt prepare`) instead "
                   "of the config's dataset_params.root_dir or synthetic stream")
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
    p.add_argument("--vgg-weights", help="weights of the perceptual loss's VGG19: torchvision's vgg19-dcbb9e9d.pth "
                   "(the paper's; read with PyTorch) or a Keras notop .h5 (default: Keras' ImageNet file from the "
                   "Keras cache, else random features with a warning)")
    p.add_argument("--save-every", type=int, metavar="STEPS",
                   help="also write LOG_DIR/last.kmt every STEPS steps within an epoch, so a crash loses at most "
                   "STEPS steps (default: only after each epoch); --resume continues from that step")
    p.add_argument("--devices", default="1", metavar="N|all",
                   help="train data-parallel on N devices (GPUs, else CPU devices) or all of them; batch_size is "
                   "the global batch, split evenly (jax and tensorflow backends; default: 1)")
    p.add_argument("--cpu-devices", type=int, metavar="N",
                   help="split the CPU into N virtual devices first, to try --devices without GPUs")
    p.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"),
                   help="Keras dtype policy of the networks: mixed_* computes layers in 16 bits with float32 "
                   "weights, keypoint, Jacobian and warping math (mixed_float16 with loss scaling; default: float32)")
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
            p.add_argument("--evaluators", help="'faces' for real faces (dlib's 68 landmarks and face descriptor, "
                           "the [faces] extra), or a .kmt-eval file; default: the shipped synthetic evaluators of "
                           "the dataset's family (from its metadata.json)")
        p.set_defaults(func=func)

    p = sub.add_parser("convert", help="convert an official .pth.tar checkpoint to a .kmt checkpoint")
    p.add_argument("checkpoint", help="official checkpoint, e.g. vox-cpk.pth.tar (needs PyTorch installed)")
    p.add_argument("--config", required=True, help="its official YAML config, e.g. vox-256.yaml")
    p.add_argument("--out", required=True, help="the .kmt file to write")
    p.add_argument("--pytorch13", action="store_true",
                   help="sample with align_corners=False (the official code on PyTorch >= 1.3) instead of True")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="export the keypoint detector and the generator to ONNX",
                       description="Write kp_detector.onnx, source_encoder.onnx, generator.onnx and kmt-export.json "
                       "(what a runtime needs) into --out. Needs PyTorch, onnx and onnxscript; runs on PyTorch.")
    p.add_argument("--checkpoint", help="a .kmt checkpoint (default: the model shipped with kmt)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="the format (onnx)")
    p.add_argument("--opset", type=int, default=18, help="the ONNX opset, 18 or later (default 18)")
    p.add_argument("--out", required=True, help="the folder to write")
    p.set_defaults(func=cmd_export)

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

    p = sub.add_parser("crop", help="crop a real video (or photo) to a steady square around the face",
                       description="Crop INPUT to one square box around its face (dlib's frontal-face detector, "
                       "offline: the [faces] extra) or, with --whole, around what moves, and resize it. One box "
                       "for the whole clip, so the crop does not jitter.")
    p.add_argument("input", metavar="INPUT", help="a video (.mp4/.mov/.gif or a folder of frames) or, with --image, "
                   "a photo")
    p.add_argument("--out", required=True, help="the cropped video (.mp4/.mov/.gif, or a path without extension for "
                   "a folder of png frames) or, with --image, a .png/.jpg")
    p.add_argument("--image", action="store_true", help="INPUT is a photo")
    p.add_argument("--whole", action="store_true", help="no face detector: crop around what moves (a photo: its "
                   "centre square)")
    p.add_argument("--size", type=int, help="output side in pixels (default 256, or --config's frame_shape)")
    p.add_argument("--config", help="take the size from this config's dataset_params.frame_shape (a shipped name "
                   "such as vox-256, or a YAML file)")
    p.add_argument("--increase", type=float, help="grow the box by this fraction of its size on each side "
                   "(default 0.1, as the official crop-video.py; dlib's face boxes are tight, and 0.5 frames a "
                   "photo's head about as VoxCeleb does)")
    p.add_argument("--allow-upscale", action="store_true", help="crop even when the box is smaller than the output")
    p.add_argument("--max-missing", type=float, help="fraction of frames allowed without a face (default 0.2)")
    p.add_argument("--upsample", type=int, help="times dlib doubles a frame before looking for faces (default: "
                   "until its shorter side reaches 256 px)")
    p.add_argument("--motion-threshold", type=float, help="with --whole: the change from the median frame that "
                   "counts as motion (default 0.1)")
    p.add_argument("--preview", metavar="PNG", help="also write a picture of a few frames with the faces found and "
                   "the crop box")
    p.set_defaults(func=cmd_crop)

    p = sub.add_parser("prepare", help="turn a folder of your videos into a dataset (train/ and test/)",
                       description="Read the videos under INPUT_DIR (mp4/mov/gif files and folders of frames, "
                       "flat or in sub-folders), optionally crop them, split them and write DATASET_DIR/train/ "
                       "and DATASET_DIR/test/ in the official layout, then print the kmt train command.")
    p.add_argument("input_dir", metavar="INPUT_DIR", help="a folder of videos; sub-folders name the person "
                   "(person/clip.mp4 becomes person#clip)")
    p.add_argument("--out", required=True, metavar="DATASET_DIR", help="the dataset folder to write")
    p.add_argument("--layout", choices=["frames", "mp4"], default="frames",
                   help="folders of png frames (default, the fastest to train on) or mp4 files")
    p.add_argument("--crop", choices=["face", "whole"], help="crop each video as kmt crop does (default: no crop)")
    p.add_argument("--size", type=int, help="output frames N x N (default: 256 with --crop; without, the videos' "
                   "own size, which they must then share)")
    p.add_argument("--config", help="take the size from this config's dataset_params.frame_shape, and train with it")
    p.add_argument("--increase", type=float, help="with --crop: grow the box by this fraction (default 0.1)")
    p.add_argument("--allow-upscale", action="store_true", help="with --crop: keep boxes smaller than the output")
    p.add_argument("--max-missing", type=float, help="with --crop face: fraction of frames allowed without a face "
                   "(default 0.2)")
    p.add_argument("--split-by", choices=["video", "identity", "folders"], default="video",
                   help="video (default): a random fraction of the videos is the test split; identity: of the "
                   "people (id#clip names), all clips of a person in one split; folders: keep the input's own "
                   "train/ and test/ folders")
    p.add_argument("--test-fraction", type=float, help="share of videos (or identities) for test "
                   "(default 0.2, at least one)")
    p.add_argument("--seed", type=int, help="seed of the random split (default 0)")
    p.add_argument("--min-frames", type=int, default=8, help="skip (and list) videos with fewer frames (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace the train/, test/ and prepare.json of DATASET_DIR")
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_backend_start()
    command = next(action for action in parser._actions if action.dest == "command").choices[args.command]
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: print(f"kmt {args.command}: warning: {message}",
                                                                  file=sys.stderr)
            args.func(args)
    except UsageError as error:
        print(f"kmt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"kmt {args.command}: error: {_flag_names(str(error), command)}", file=sys.stderr)
        return 2
    except ImportError as error:  # a missing optional package (e.g. PyTorch for `kmt convert`); kmt's own are bugs
        if (error.name or "").partition(".")[0] == "kmt":
            raise
        print(f"kmt {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kmt {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
