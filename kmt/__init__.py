"""kmt: the First Order Motion Model (Siarohin et al., NeurIPS 2019) in Keras 3.

Every module is built, and explained, by one chapter of the book:

==================  =========================================
module              chapter
==================  =========================================
``kmt.warping``     1. Coordinates and warping
==================  =========================================

``kmt.book`` holds the small helpers the chapters share (notebook sizes, the sample
photograph); ``kmt.check`` the checkers of the exercises.
"""

__version__ = "0.1.0"

from kmt import book, check, warping  # noqa: E402,F401
from kmt.warping import grid_sample, make_coordinate_grid  # noqa: E402,F401
