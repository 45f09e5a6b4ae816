"""Every page of the built site in Chromium: title, figures, animations, math, widgets, console,
navigation, search, launch and download buttons; and every internal link of the site resolves."""

import hashlib
import json
import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[2]


def toc_pages():
    """The pages in the order of the table of contents (the order of next/previous)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files += [section["file"] for section in chapter.get("sections", [])]
    return [f"{name}.html" for name in files]


def repository_url():
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def is_notebook(name):
    return (ROOT / "book" / name).with_suffix(".ipynb").exists()


# ------------------------------------------------------------------------------- every page

def test_every_page_of_the_table_of_contents_was_built(site):
    missing = [name for name in toc_pages() if not (site / name).is_file()]
    assert not missing, f"pages in _toc.yml but not in the site: {missing}"


def test_page(visit, page_name, screenshots):
    """Opens one page: title, figures, animations, math and widgets, no console errors; saves a screenshot."""
    session = visit(page_name)
    page = session.page
    try:
        heading = page.locator("main h1").first.inner_text().strip().rstrip("#").strip()
        title = page.title()
        assert heading, f"{page_name}: no heading"
        assert heading in title, f"{page_name}: the title {title!r} does not name the heading {heading!r}"

        images = page.evaluate(
            """() => Array.from(document.querySelectorAll('main img')).map(img => ({
                   src: img.getAttribute('src').slice(0, 80), loaded: img.complete && img.naturalWidth > 0}))"""
        )
        broken = [image["src"] for image in images if not image["loaded"]]
        assert not broken, f"{page_name}: images that did not load: {broken}"
        if is_notebook(page_name):
            figures = page.locator("main .cell_output img").count()
            assert figures > 0, f"{page_name}: a chapter without a single figure"

        for index in range(page.locator("main div.animation").count()):
            animation = page.locator("main div.animation").nth(index)
            frames = int(animation.locator("input[type=range]").get_attribute("max")) + 1
            assert frames >= 2, f"{page_name}: animation {index} has {frames} frame"
            image = animation.locator("img").first
            first = image.get_attribute("src")
            assert first.startswith("data:image/"), f"{page_name}: animation {index} shows no frame"
            animation.locator("button[title='Pause']").click()
            animation.locator("button[title='First frame']").click()
            first = image.get_attribute("src")
            animation.locator("button[title='Next frame']").click()
            assert image.get_attribute("src") != first, f"{page_name}: animation {index} does not advance"

        local_mathjax = page.locator("script[src*='vendor/mathjax']").count() > 0
        if local_mathjax and page.locator("main .math").count():
            assert page.locator("main mjx-container").count() > 0, f"{page_name}: MathJax rendered no formula"

        views = page.locator("script[type='application/vnd.jupyter.widget-view+json']").count()
        if views:
            static = page.locator("main div.animation").count() + page.locator("main .cell_output img").count()
            assert static, f"{page_name}: widgets without a static alternative (an animation or a figure)"
            if page.locator("script[src*='vendor/html-manager']").count():
                page.wait_for_selector("main .jupyter-widgets", timeout=15000)

        problems = page.evaluate(PAGE_PROBLEMS)
        assert not problems["raw_tables"], f"{page_name}: Markdown tables shown as text: {problems['raw_tables']}"
        assert not problems["errors"], f"{page_name}: error text in cell outputs: {problems['errors']}"
        assert not problems["overflow"], (f"{page_name}: text wider than the page, behind a horizontal scrollbar "
                                          f"(break the line): {problems['overflow']}")
        if is_notebook(page_name) and not page_name.startswith("00_"):
            number = int(page_name[:2])
            for name in (f"overview-ch{number}", f"diagram-ch{number}"):
                figure = page.locator(f"main figure#{name} img")
                assert figure.count() == 1, f"{page_name}: no figure #{name}"
                assert page.evaluate(OPAQUE_LIGHT_BACKGROUND, figure.first.element_handle()), \
                    f"{page_name}: #{name} is not drawn on an opaque light background (unreadable in the dark mode)"

        assert not session.errors, f"{page_name}: console errors:\n" + "\n".join(session.errors)
    finally:
        page.screenshot(path=str(screenshots / f"{Path(page_name).stem}.png"), full_page=True)


# What a reader must not see. Cell inputs are exempt from the overflow check: Python keeps its
# lines and a long one scrolls; prose code blocks (commands) and text outputs must fit the column.
PAGE_PROBLEMS = """() => {
  const main = document.querySelector('main');
  const text = (el) => el.textContent.replace(/\\s+/g, ' ').trim().slice(0, 120);
  const raw_tables = Array.from(main.querySelectorAll('p, li, div.cell_output pre'))
    .filter((el) => /\\|\\s*:?-{3,}:?\\s*\\|/.test(el.textContent)).map(text);
  const errors = Array.from(main.querySelectorAll('div.cell_output'))
    .filter((el) => el.querySelector('.traceback, .output.stderr, .output.error')
                    || /Traceback \\(most recent call last\\)|\\b[A-Z]\\w*(Error|Exception)\\b/.test(el.textContent))
    .map(text);
  const overflow = Array.from(main.querySelectorAll('pre'))
    .filter((pre) => !pre.closest('.cell_input') && pre.scrollWidth > pre.clientWidth + 2)
    .map((pre) => pre.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 100));
  return {raw_tables, errors, overflow};
}"""

# The figure drawn on a canvas, sampled along a rectangle 5% of its size in from its edges (just
# inside its rounded card; outside the card the figure may be transparent): every sample opaque,
# and most of them light (the rest are lines and letters).
OPAQUE_LIGHT_BACKGROUND = """(img) => {
  const canvas = document.createElement('canvas');
  const [w, h] = [img.naturalWidth, img.naturalHeight];
  canvas.width = w; canvas.height = h;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const [x0, y0, x1, y1] = [0.05 * w, 0.05 * h, 0.95 * w, 0.95 * h].map(Math.round);
  const samples = [];
  for (let i = 0; i <= 20; i++) {
    const x = Math.round(x0 + (x1 - x0) * i / 20), y = Math.round(y0 + (y1 - y0) * i / 20);
    samples.push([x, y0], [x, y1], [x0, y], [x1, y]);
  }
  const pixels = samples.map(([x, y]) => context.getImageData(x, y, 1, 1).data);
  const light = pixels.filter(([r, g, b]) => r + g + b > 600).length;
  return pixels.every((p) => p[3] === 255) && light >= 0.8 * pixels.length;
}"""


# ------------------------------------------------------------------------------- navigation

def test_next_links_walk_the_book_in_order_and_previous_links_walk_back(visit):
    order = toc_pages()
    session = visit(order[0])
    page = session.page
    walked = [order[0]]
    while page.locator("a.right-next").count():
        page.locator("a.right-next").first.click()
        page.wait_for_load_state("load")
        walked.append(page.url.rsplit("/", 1)[-1].split("#")[0])
        assert len(walked) <= len(order) + 1, walked
    assert walked == order, f"next links visit {walked}, the table of contents says {order}"
    back = [walked[-1]]
    while page.locator("a.left-prev").count():
        page.locator("a.left-prev").first.click()
        page.wait_for_load_state("load")
        back.append(page.url.rsplit("/", 1)[-1].split("#")[0])
        assert len(back) <= len(order) + 1, back
    assert back == order[::-1]
    assert not session.errors, session.errors


def test_the_sidebar_lists_every_page_and_its_links_work(visit):
    session = visit("index.html")
    page = session.page
    links = page.eval_on_selector_all("nav.bd-docs-nav a.reference.internal", "els => els.map(e => e.getAttribute('href'))")
    listed = [href.split("#")[0] or "index.html" for href in links]  # the page itself is "#"
    assert listed == toc_pages(), listed
    target = [href for href in links if href.startswith("01_")][0]
    page.locator(f"nav.bd-docs-nav a[href='{target}']").click()
    page.wait_for_load_state("load")
    assert page.url.endswith(target)
    assert page.locator("main h1").first.inner_text().startswith("1.")


def test_search_finds_a_chapter(visit):
    session = visit("index.html")
    page = session.page
    page.locator("button.search-button__button, .search-button-field").first.click()
    field = page.locator("form.bd-search input[name='q']:visible").first
    field.fill("grid_sample")
    field.press("Enter")
    page.wait_for_load_state("load")
    assert "search.html" in page.url
    page.wait_for_selector("#search-results ul.search li", timeout=30000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(e => e.getAttribute('href'))")
    assert any(href.startswith("01_coordinates_and_warping.html") for href in hits), hits
    assert not session.errors, session.errors


# ------------------------------------------------------------------------------- buttons

@pytest.mark.parametrize("name", [name for name in toc_pages() if is_notebook(name)])
def test_launch_and_download_buttons_of_a_chapter(visit, base_url, name):
    session = visit(name)
    page = session.page
    notebook = Path(name).with_suffix(".ipynb").name
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    github = repository_url().split("github.com/", 1)[1]
    colab = [h for h in hrefs if h.startswith("https://colab.research.google.com/github/")]
    assert colab and colab[0].endswith(f"/{github}/blob/main/book/{notebook}"), colab
    binder = [h for h in hrefs if h.startswith("https://mybinder.org/v2/gh/")]
    assert binder and f"/{github}/main?" in binder[0] and f"book/{notebook}" in urllib.parse.unquote(binder[0]), binder
    download = [h for h in hrefs if h.endswith(".ipynb") and h.startswith("_sources/")]
    assert download, "no link to download the page as a notebook"
    with urllib.request.urlopen(f"{base_url}/{download[0]}") as response:
        downloaded = json.loads(response.read())
    assert downloaded["nbformat"] == 4 and downloaded["cells"], "the downloaded notebook is empty"


# ------------------------------------------------------------------------------- links

def _targets(page, soup):
    for tag, attribute in (("a", "href"), ("img", "src"), ("script", "src"), ("link", "href"), ("source", "src")):
        for element in soup.find_all(tag):
            value = element.get(attribute)
            if value:
                yield value


def test_every_internal_link_resolves(site):
    """The equivalent of Sphinx's linkcheck for internal links: every relative href and src of every
    page names a file of the site, and every #fragment an id of its page."""
    ids, broken = {}, []

    def ids_of(path):
        if path not in ids:
            soup = BeautifulSoup(path.read_text(errors="ignore"), "html.parser")
            ids[path] = {e.get("id") for e in soup.find_all(id=True)} | {e.get("name") for e in soup.find_all("a", attrs={"name": True})}
        return ids[path]

    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html") in pages
    for page in pages:
        if "_static" in page.relative_to(site).parts or "_sources" in page.relative_to(site).parts:
            continue
        soup = BeautifulSoup(page.read_text(errors="ignore"), "html.parser")
        for target in _targets(page, soup):
            parsed = urllib.parse.urlparse(target)
            if parsed.scheme or target.startswith("//"):
                continue
            path = (page.parent / urllib.parse.unquote(parsed.path)).resolve() if parsed.path else page
            if path.is_dir():
                path = path / "index.html"
            if not path.exists():
                broken.append(f"{page.relative_to(site)}: {target} (no such file)")
            elif parsed.fragment and path.suffix == ".html" and urllib.parse.unquote(parsed.fragment) not in ids_of(path):
                broken.append(f"{page.relative_to(site)}: {target} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(set(broken)))


# ------------------------------------------------------------------------------- landing page

def test_the_landing_animation_comes_from_the_shipped_model():
    """tools/landing_animation.py records the checkpoint it animated; the page must follow the model."""
    header = (ROOT / "book" / "images" / "landing-animation.html").read_text().splitlines()[0]
    recorded = re.search(r"sha256=([0-9a-f]{64})", header)
    assert recorded, "book/images/landing-animation.html lacks its header: write it with tools/landing_animation.py"
    shipped = ROOT / "kmt" / "pretrained" / "synthetic-faces-64.kmt"
    assert shipped.exists(), f"{shipped} is missing: kmt ships its trained model there"
    assert recorded.group(1) == hashlib.sha256(shipped.read_bytes()).hexdigest(), (
        "the landing animation was made with another checkpoint: run python tools/landing_animation.py"
    )
