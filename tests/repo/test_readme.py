"""The README's commands run as written, in order, in an empty folder, as a new user runs them.

Every fenced ``bash`` and ``python`` block of README.md is run: a bash block line by line
(``\\``-continued lines joined, comments dropped) with the environment's ``kmt`` on PATH, a python
block as one fresh ``python -c``, in document order, all in one temporary folder. What cannot run
here is listed below by its exact text (whitespace collapsed) with the reason; any other block or
command that fails, or a block in another language, fails the test.

Slow by design: ``kmt train`` trains for hours, so the test adds ``--epochs 1 --steps-per-epoch 1
--no-jit`` to the commands in ``SHORTENED``. Set ``KMT_README_AS_WRITTEN=1`` to run them unchanged.
"""

import os
import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

NOT_RUN = {
    # The set-up commands: this test runs inside the environment they make.
    "make book": "builds the whole book (about 20 minutes); the site checks of `make test` build it at the smoke size",
    "make test": "is the test suite this test belongs to",
    "make student": "builds the student edition from the chapters (minutes); tests/repo/test_student_edition.py "
                    "checks it",
    "python _build/student/autograder/autograde.py submissions/*/01_coordinates_and_warping.ipynb --csv grades.csv":
        "needs students' submissions; tests/repo/test_student_edition.py runs the autograder",
    "pip install -e .": "installs kmt: this test runs in the environment it made",
    'pip install -e ".[faces]"': "installs dlib: this test runs in the environment it made",
    "kmt convert vox-cpk.pth.tar --config vox-256.yaml --out vox-256.kmt":
        "needs vox-cpk.pth.tar, the official checkpoint (a download); tests/unit/test_convert.py converts official "
        "state dicts",
    # Chapter 9: the reader's own footage and photos, and the official weights.
    "kmt crop talk.mp4 --out talk-256.mp4 --size 256": "needs a real video of the reader's (talk.mp4)",
    "kmt crop --image photo.jpg --out face.png --size 256": "needs a photo of the reader's (photo.jpg)",
    "kmt prepare my_videos/ --out data/mine --crop face --size 256 --split-by identity":
        "needs a folder of the reader's videos (my_videos/)",
    "kmt train --config vox-256 --data data/mine --log-dir log/mine": "needs data/mine (the reader's videos) and "
                                                                      "days of training on a GPU",
    "KERAS_BACKEND=jax kmt train --config vox-256 --data data/mine --log-dir log/mine --devices all --precision "
    "mixed_bfloat16": "needs data/mine (the reader's videos) and GPUs; tests/multidevice and tests/unit/test_devices.py "
                      "train on several devices and in mixed precision",
    "kmt evaluate --data data/mine --checkpoint log/mine/last.kmt --evaluators faces":
        "needs data/mine and the model trained on it",
    "kmt animate --source face.png --driving talk-256.mp4 --checkpoint vox-256.kmt --relative --adapt-scale "
    "--find-best-frame --best-frame-landmarks dlib --out result.mp4":
        "needs talk-256.mp4 (the reader's video) and vox-256.kmt (converted from the official download)",
    'import kmt\n\nmodel = kmt.checkpoint.load("vox-256.kmt")                         # any kmt checkpoint\n'
    'model = kmt.checkpoint.load("vox-cpk.pth.tar", config="vox-256")   # an official file, read with PyTorch':
        "needs vox-256.kmt and vox-cpk.pth.tar, the official checkpoint (a download)",
}

SHORTENED = {
    "kmt train --config synthetic-faces-64 --log-dir log/faces": "--epochs 1 --steps-per-epoch 1 --no-jit",
    "KERAS_BACKEND=tensorflow kmt train --config synthetic-faces-64 --log-dir log/two --cpu-devices 2 --devices 2":
        "--epochs 1 --steps-per-epoch 1",
}

# What the runnable commands must print (a substring of stdout), besides exiting with 0.
EXPECTED = {
    "kmt animate --source face.png --driving \"data/faces/test/id1000000#1000000\" --out result.mp4 --relative":
        "result.mp4",
    "kmt train --config synthetic-faces-64 --log-dir log/faces": "log/faces/last.kmt",
    "kmt export --out faces-onnx": "faces-onnx",
    "kmt animate --source face.png --driving \"data/faces/test/id1000000#1000000\" --relative --runtime onnxruntime "
    "--checkpoint faces-onnx --out result-onnx.mp4": "result-onnx.mp4",
}

# Lines a backend prints at start-up; `kmt` keeps them off the terminal.
BACKEND_NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cudart_stub", "cpu_feature_guard",
                 "failed call to cuInit", "os.fork()", "Traceback")


def blocks():
    """``[(language, text)]`` of README.md's fenced code blocks, in order."""
    return [(match[1], match[2].rstrip("\n"))
            for match in re.finditer(r"^```([\w+-]*)\n(.*?)^```", README.read_text(), flags=re.S | re.M)]


def commands(text):
    """The commands of a bash block: continued lines joined, comments dropped, whitespace collapsed."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        code = re.split(r"(?:^|\s)#(?=\s|$)", line, maxsplit=1)[0]
        if code.strip():
            found.append(" ".join(code.split()))
    return found


def readme_steps():
    """``[(kind, text)]``: ``("bash", command)`` or ``("python", block)``, in document order."""
    steps = []
    for language, text in blocks():
        if language in ("bash", "sh", "shell"):
            steps += [("bash", command) for command in commands(text)]
        else:
            steps.append((language or "(no language)", text))
    return steps


def environment():
    bin_dir = os.path.dirname(sys.executable)
    assert os.path.exists(os.path.join(bin_dir, "kmt")), f"no kmt entry point in {bin_dir}: pip install -e ."
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def test_every_block_is_bash_or_python_and_every_listed_command_is_in_the_readme():
    steps = readme_steps()
    assert steps, "README.md holds no code blocks"
    others = [text for kind, text in steps if kind not in ("bash", "python")]
    assert not others, f"README blocks in another language than bash or python: {others}"
    texts = {text for _, text in steps}
    stale = [text for text in list(NOT_RUN) + list(SHORTENED) + list(EXPECTED) if text not in texts]
    assert not stale, f"listed in tests/repo/test_readme.py but no longer in README.md: {stale}"


def test_the_readme_runs_as_written(tmp_path):
    env, as_written = environment(), os.environ.get("KMT_README_AS_WRITTEN") == "1"
    ran = []
    for kind, text in readme_steps():
        if text in NOT_RUN:
            continue
        if kind == "bash":
            command = text if as_written or text not in SHORTENED else f"{text} {SHORTENED[text]}"
            result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=1800)
        else:
            result = subprocess.run([sys.executable, "-c", text], cwd=tmp_path, env=env, capture_output=True,
                                    text=True, timeout=1800)
        assert result.returncode == 0, f"README {kind} step failed:\n{text}\n--- stderr:\n{result.stderr[-3000:]}"
        if kind == "bash":
            noise = [line for line in result.stderr.splitlines() if any(mark in line for mark in BACKEND_NOISE)]
            assert not noise, f"{text}: the terminal shows backend start-up lines: {noise}"
            assert EXPECTED.get(text, "") in result.stdout, f"{text}: {result.stdout[-2000:]}"
        ran.append((text, result.stdout))
    outputs = dict(ran)
    assert (tmp_path / "result.mp4").is_file() and (tmp_path / "face.png").is_file()
    table = outputs["kmt evaluate --data data/faces"].splitlines()
    identities = next(line for line in table if line.startswith("different identities"))
    assert float(identities.split()[-1]) > 0, "the README's test set should hold two identities"
    assert len(ran) >= 7, [text for text, _ in ran]
