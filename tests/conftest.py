import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def fomm_tiny():
    """The official FOMM frozen as numbers (align_corners=False), see tests/fixtures/README.md."""
    return np.load(os.path.join(FIXTURES, "fomm_tiny.npz"))


@pytest.fixture(scope="session")
def fomm_tiny_align_corners():
    """The same model with align_corners=True grid sampling and its own BatchNorm statistics."""
    return np.load(os.path.join(FIXTURES, "fomm_tiny_align_corners.npz"))
