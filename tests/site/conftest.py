"""The built site in a real browser: Debian's Chromium, driven by Playwright, on a local server.

    python -m pytest tests/site --site _build/smoke/_build/html

Chromium is the system's (``/usr/bin/chromium``, or ``$KMT_CHROMIUM``); nothing downloads a
browser. Every request that leaves the local server is blocked, so the pages are tested as
they work offline. Screenshots of every page go to ``screenshots/`` beside the ``html`` folder.
"""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_addoption(parser):
    parser.addoption("--site", default=None,
                     help="the built html folder (default: _build/$KMT_SIZE/_build/html, KMT_SIZE=smoke)")


def site_path(config):
    given = config.getoption("--site")
    default = ROOT / "_build" / os.environ.get("KMT_SIZE", "smoke") / "_build" / "html"
    return Path(given).resolve() if given else default, given is not None


def pages_of(site):
    """The site's pages: every html file at the top of the site, but Sphinx's index and search."""
    return sorted(p.name for p in site.glob("*.html") if p.name not in {"genindex.html", "search.html"})


def pytest_generate_tests(metafunc):
    if "page_name" in metafunc.fixturenames:
        site, _ = site_path(metafunc.config)
        names = pages_of(site) if site.is_dir() else []
        metafunc.parametrize("page_name", names or ["index.html"])


@pytest.fixture(scope="session")
def site(request):
    path, _ = site_path(request.config)
    if not (path / "index.html").is_file():
        pytest.fail(f"no built site at {path}: build it first (make book, or tools/run_tests.sh site)")
    return path


@pytest.fixture(scope="session")
def screenshots(site):
    folder = site.parent / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def base_url(site):
    """A local server for the site on a free port of the loopback interface."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def chromium_path():
    for candidate in (os.environ.get("KMT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.fail("Chromium is not installed: `apt-get install chromium` (tools/run_tests.sh does it), "
                    "or point $KMT_CHROMIUM at a Chromium binary.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"],
        )
        yield browser
        browser.close()


class Visit:
    """One page open in the browser, with what its console reported."""

    def __init__(self, browser, base_url):
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": 1300, "height": 900})
        self.context.route("**/*", self._route)
        self.blocked = []
        self.errors = []
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.base_url) or url.startswith("data:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _console(self, message):
        if message.type != "error":
            return
        where = (message.location or {}).get("url", "")
        external = where and not where.startswith(self.base_url)
        if external and "Failed to load resource" in message.text:
            return  # an external request we blocked
        self.errors.append(f"{message.text} ({where})")

    def open(self, name):
        self.page.goto(f"{self.base_url}/{name}", wait_until="load")
        self.settle()
        return self.page

    def settle(self):
        """Wait for MathJax to finish typesetting, when the page loads it."""
        self.page.wait_for_load_state("load")
        self.page.evaluate(
            "() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise : null"
        )

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser, base_url):
    opened = []

    def open_page(name=None):
        session = Visit(browser, base_url)
        opened.append(session)
        if name:
            session.open(name)
        return session

    yield open_page
    for session in opened:
        session.close()
