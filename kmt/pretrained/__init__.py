"""Models that ship with kmt, so the book and ``kmt animate`` work without downloading anything.

See ``MODEL_CARD.md`` in this folder for what each model is, how it was trained
(the exact command) and how well it does, and ``EVALUATORS.md`` for the landmark
detectors and identity embeddings behind the AKD, MKR and AED metrics.
"""

import os

__all__ = ["PRETRAINED_DIR", "DEFAULT_MODEL", "default_checkpoint", "path"]

PRETRAINED_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = "synthetic-faces-64.kmt"


def path(name):
    """The path of a shipped file, with an error that says how to get it when it is missing."""
    location = os.path.join(PRETRAINED_DIR, name)
    if not os.path.exists(location):
        shipped = sorted(f for f in os.listdir(PRETRAINED_DIR) if not f.startswith(("_", ".")))
        raise FileNotFoundError(
            f"kmt ships no file {name!r} (in {PRETRAINED_DIR}: {shipped}). Reinstall kmt from a full clone "
            "of its repository, or train the model yourself as MODEL_CARD.md in that folder describes."
        )
    return location


def default_checkpoint():
    """The checkpoint ``kmt animate`` uses when none is given: the shipped synthetic-faces model."""
    return path(DEFAULT_MODEL)
