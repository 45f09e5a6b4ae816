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


def _seed_keras():
    # Only where the tests use Keras (it is imported when their modules are collected).
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(0)


@pytest.fixture(autouse=True, scope="module")
def seed_module_fixtures():
    """Models built with random weights by module-level fixtures are the same on every run."""
    _seed_keras()


@pytest.fixture(autouse=True)
def seed_each_test():
    """Every test starts from the same Keras seed: none passes or fails by the luck of an initialisation."""
    _seed_keras()
