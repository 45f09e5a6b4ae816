"""The book's diagrams: every chapter's overview and diagram is a Figure with text; highlighting; bad input."""

import io

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from kmt.book import diagrams
from kmt.book.diagram_parts import FONT

CHAPTERS = list(range(1, 10))


def _texts(fig):
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
            if t.get_text()]


def _boxes(fig):
    """``gid -> patch`` of the overview's boxes."""
    return {p.get_gid(): p for p in fig.axes[0].patches if p.get_gid() in diagrams.OVERVIEW_CHAPTERS}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_overview_highlights_exactly_the_chapter_boxes(chapter):
    fig = diagrams.overview(chapter)
    assert isinstance(fig, Figure)
    assert 9.5 <= fig.get_figwidth() <= 10.5
    boxes = _boxes(fig)
    assert set(boxes) == set(diagrams.OVERVIEW_CHAPTERS)
    on = {name for name, chapters in diagrams.OVERVIEW_CHAPTERS.items() if chapter in chapters}
    assert on, "every chapter owns at least one box"
    faces_on = {to_hex(boxes[name].get_facecolor()) for name in on}
    faces_off = {to_hex(boxes[name].get_facecolor()) for name in set(boxes) - on}
    assert faces_on == {to_hex(diagrams.HIGHLIGHT_FACE)}
    assert faces_on.isdisjoint(faces_off)
    widths_on = {boxes[name].get_linewidth() for name in on}
    assert min(widths_on) > max(boxes[name].get_linewidth() for name in set(boxes) - on)
    assert f"chapter {chapter}" in _texts(fig)


def test_every_chapter_is_highlighted_somewhere_and_warping_twice():
    owners = [c for chapters in diagrams.OVERVIEW_CHAPTERS.values() for c in chapters]
    assert set(owners) == set(CHAPTERS)
    assert diagrams.OVERVIEW_CHAPTERS["dense_warp"] == (1, 4)
    assert diagrams.OVERVIEW_CHAPTERS["generator_warp"] == (1, 5)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_diagram_is_a_legible_figure(chapter):
    fig = diagrams.chapter_diagram(chapter)
    assert isinstance(fig, Figure)
    assert 9.5 <= fig.get_figwidth() <= 10.5
    texts = fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize") and a.get_text())
    assert len(texts) >= 5
    assert min(t.get_fontsize() for t in texts) >= 9
    # The background is an opaque white rounded patch; the figure itself is transparent outside it.
    background = [p for p in fig.axes[0].patches if p.get_gid() == "background"]
    assert len(background) == 1 and to_hex(background[0].get_facecolor()) == "#ffffff"
    assert fig.patch.get_alpha() == 0.0


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_figures_render_with_all_text_inside(chapter):
    for fig in (diagrams.overview(chapter), diagrams.chapter_diagram(chapter)):
        canvas = FigureCanvasAgg(fig)
        if chapter == 1:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=40)
            assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
        renderer = canvas.get_renderer()
        width, height = fig.bbox.width, fig.bbox.height
        for text in fig.axes[0].texts:
            box = text.get_window_extent(renderer)
            assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, text.get_text()


def test_chapter_labels_use_the_book_notation():
    texts = " ".join(_texts(diagrams.chapter_diagram(3)))
    assert "p^S_k + J_k" in texts and "J^S_k" in texts
    texts = " ".join(_texts(diagrams.chapter_diagram(8)))
    assert "p^{D_t}_k - p^{D_1}_k" in texts
    assert FONT >= 9


@pytest.mark.parametrize("bad", [0, 10, -1, 2.0, "3", None, True])
def test_bad_chapter_names_the_argument(bad):
    for function in (diagrams.overview, diagrams.chapter_diagram):
        with pytest.raises(ValueError, match=r"`chapter` must be an int from 1 to 9.*got") as info:
            function(bad)
        assert repr(bad) in str(info.value)


def test_numpy_integer_chapter_is_accepted():
    assert isinstance(diagrams.chapter_diagram(np.int64(2)), Figure)
