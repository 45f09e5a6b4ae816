"""Helpers the chapters share: one setting for the size of every expensive cell.

Every chapter runs at one of three sizes, picked by the environment variable
``KMT_SIZE``:

* ``smoke``: the smallest sizes that still exercise every code path; what CI runs
  (the whole book in minutes on 2 CPU cores);
* ``laptop`` (the default): what the published site shows and what a reader's
  laptop finishes (the whole book in about 20 minutes on 2 cores);
* ``full``: the sizes of the paper, for a GPU.

Only sizes and step counts change between them, never the code path.
"""

import os

SIZES = ("smoke", "laptop", "full")
DEFAULT_SIZE = "laptop"
ENV_VAR = "KMT_SIZE"


def size():
    """The notebook size in effect: ``KMT_SIZE`` or ``"laptop"`` when unset."""
    value = os.environ.get(ENV_VAR, DEFAULT_SIZE).strip().lower() or DEFAULT_SIZE
    if value not in SIZES:
        raise ValueError(
            f"The environment variable {ENV_VAR} must be one of {SIZES}; got {value!r}."
        )
    return value


def pick(smoke, laptop, full):
    """The argument that belongs to the current size, e.g. ``steps = pick(5, 200, 2000)``."""
    return {"smoke": smoke, "laptop": laptop, "full": full}[size()]
