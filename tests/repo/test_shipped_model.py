"""The shipped model's metric table, as its model card reports it, reproduced by the card's own commands.

Runs once (TensorFlow backend): ``kmt synth`` writes the 32 held-out test videos of 64 frames and
``kmt evaluate`` scores the shipped model on them (about a minute on 2 cores). Every number of the
card's table must come out again, to the digits it prints.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL_CARD = ROOT / "kmt" / "pretrained" / "MODEL_CARD.md"
COLUMNS = ("l1", "akd", "mkr", "aed")
# Model-card row label -> the start of `kmt evaluate`'s row label.
ROWS = {
    "this model": "model (",
    "copy the source frame": "copy the source frame",
    "landmark evaluator on the true frames": "landmark detector vs true landmarks",
    "two different identities": "different identities",
}


def card_table():
    """{card row label: {column: printed text or None}} from the card's metric table."""
    table = {}
    for line in MODEL_CARD.read_text().splitlines():
        cells = [cell.strip().replace("*", "") for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5:
            continue
        for label in ROWS:
            if cells[0].startswith(label):
                table[label] = {key: (None if text == "-" else text) for key, text in zip(COLUMNS, cells[1:])}
    assert set(table) == set(ROWS), f"the model card's table should have the rows {sorted(ROWS)}; found {sorted(table)}"
    return table


def kmt(*args):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-m", "kmt.cli", *args], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=900)
    assert result.returncode == 0, f"kmt {' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def printed_table(text):
    """{evaluate row label prefix: [four floats or None]} from ``kmt evaluate``'s output."""
    rows = {}
    for line in text.splitlines():
        for label, prefix in ROWS.items():
            if line.startswith(prefix):
                values = line[len(prefix):].split()[-4:]
                rows[label] = [None if value == "-" else float(value) for value in values]
    return rows


def test_the_model_card_commands_reproduce_its_metric_table(tmp_path):
    card = card_table()
    data = tmp_path / "faces-64"
    kmt("synth", "--out", str(data), "--num-train", "0", "--num-test", "32", "--num-frames", "64", "--size", "64")
    output = kmt("evaluate", "--data", str(data))
    measured = printed_table(output)
    assert set(measured) == set(ROWS), f"kmt evaluate printed:\n{output}"
    assert "32 videos, 2048 frames of 64x64 pixels" in output
    for label, expected in card.items():
        for column, text, value in zip(COLUMNS, (expected[c] for c in COLUMNS), measured[label]):
            if text is None:
                assert value is None, f"{label} / {column}: the card prints '-', kmt evaluate {value}"
                continue
            decimals = len(text.split(".")[1]) if "." in text else 0
            tolerance = 10.0 ** -decimals  # one unit in the last printed digit
            assert value == pytest.approx(float(text), abs=tolerance), (
                f"{label} / {column}: the model card says {text}, kmt evaluate measures {value}\n{output}")


def test_the_card_table_is_the_one_read():
    """The parser above would pass vacuously on an empty table: check it reads this card's numbers."""
    card = card_table()
    assert re.fullmatch(r"0\.\d{4}", card["this model"]["l1"])
    assert card["two different identities"]["l1"] is None and card["two different identities"]["aed"] is not None
