"""Serve MathJax and the ipywidgets JavaScript from the site itself, so that pages work offline.

Sphinx loads MathJax from a CDN, and myst-nb loads ``require.js`` and
``@jupyter-widgets/html-manager`` (which draws saved widget state) from CDNs: a site read
offline, or from a local build, would show raw TeX and empty widget areas. This extension
keeps pinned releases of those npm packages in a cache (``_build/vendor/`` beside the book,
or ``$KMT_VENDOR_CACHE``), fetched once with ``npm pack`` (npm's own client, from the npm
registry), points ``mathjax_path`` and ``nb_ipywidgets_js`` at copies under
``_static/vendor/`` and writes those copies when the build finishes. ONNX Runtime Web, which
the page *Animate in your browser* runs the exported model with, is vendored the same way.
Where npm is missing, or the registry cannot be reached on a first build, it says so and the
pages keep the CDN addresses (and that page says it cannot run). Nothing is committed: the
files (about 9 MB, and 44 MB of ONNX Runtime Web) are copied into each built site.
"""

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

# name: (npm spec, files or folders kept from the package, relative to its root)
PACKAGES = {
    "mathjax": ("mathjax@3.2.2", ["es5/tex-mml-chtml.js", "es5/output/chtml", "es5/input/tex/extensions",
                                  "es5/ui", "es5/a11y", "LICENSE"]),
    "html-manager": ("@jupyter-widgets/html-manager@1.0.15", ["dist", "LICENSE"]),
    "requirejs": ("requirejs@2.3.8", ["require.js", "README.md"]),
    # The page "Animate in your browser": ONNX Runtime Web, the WebAssembly build (the default) and
    # the build with WebGPU (loaded only when the reader asks for it), each with its runtime.
    "onnxruntime-web": ("onnxruntime-web@1.31.1", [
        "dist/ort.wasm.min.mjs", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm",
        "dist/ort.webgpu.min.mjs", "dist/ort-wasm-simd-threaded.asyncify.mjs",
        "dist/ort-wasm-simd-threaded.asyncify.wasm", "LICENSE"]),
}
SKIP_SUFFIXES = (".map", ".LICENSE.txt")
SKIP_NAMES = {"embed.js", "libembed-amd.js"}
WIDGETS_CDN = "https://cdn.jsdelivr.net/npm/"  # for third-party widget modules, as myst-nb does


def cache_dir(app):
    configured = os.environ.get("KMT_VENDOR_CACHE")
    return Path(configured) if configured else Path(app.srcdir).parent / "_build" / "vendor"


def _fetch(spec, keep, target):
    """Unpack the kept files of the npm package ``spec`` into ``target``; ``None`` or why it failed."""
    npm = shutil.which("npm")
    if not npm:
        return "npm is not installed"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            done = subprocess.run([npm, "pack", spec, "--pack-destination", scratch, "--silent"], capture_output=True,
                                  text=True, timeout=300, cwd=scratch)
        except subprocess.TimeoutExpired:
            return f"`npm pack {spec}` timed out"
        tarballs = list(Path(scratch).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            return f"`npm pack {spec}` failed: {(done.stderr or done.stdout).strip()[-300:]}"
        staging = Path(scratch) / "unpacked"
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(staging, filter="data")
        package = staging / "package"
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for item in keep:
            source = package / item
            if source.is_dir():
                shutil.copytree(source, partial / item)
            elif source.exists():
                (partial / item).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, partial / item)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return None


def _prepare(app, config):
    app.kmt_vendor = {}
    root = cache_dir(app)
    for name, (spec, keep) in PACKAGES.items():
        target = root / spec.replace("/", "+")
        if not target.is_dir():
            root.mkdir(parents=True, exist_ok=True)
            problem = _fetch(spec, keep, target)
            if problem:
                logger.info(f"kmt_assets: {problem}; pages load {name} from its CDN.")
                continue
        app.kmt_vendor[name] = target
    if "mathjax" in app.kmt_vendor and not config.mathjax_path.startswith("vendor/"):
        config.mathjax_path = "vendor/mathjax/es5/tex-mml-chtml.js"
    if {"html-manager", "requirejs"} <= set(app.kmt_vendor):
        config.nb_ipywidgets_js = {
            "vendor/requirejs/require.js": {},
            "vendor/html-manager/dist/embed-amd.js": {"data-jupyter-widgets-cdn": WIDGETS_CDN},
        }



def _ignore(folder, names):
    return [n for n in names if n.endswith(SKIP_SUFFIXES) or n in SKIP_NAMES]


def _copy(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    for name, folder in getattr(app, "kmt_vendor", {}).items():
        shutil.copytree(folder, Path(app.outdir) / "_static" / "vendor" / name, ignore=_ignore, dirs_exist_ok=True)


# The widget manager's modules compute where their fonts are from their RequireJS addresses
# (and from this global): point both at the local copy. Set before require.js loads, ``require``
# is RequireJS's configuration.
WIDGETS_CONFIG = """(function () {
  var dist = new URL((document.documentElement.dataset.content_root || './')
                     + '_static/vendor/html-manager/dist', document.baseURI).href;
  window.__jupyter_widgets_assets_path__ = dist + '/';
  window.require = {paths: {'@jupyter-widgets/html-manager/dist': dist, '@jupyter-widgets': dist}};
})();
// The widgets typeset their descriptions with MathJax 2's ``MathJax.Hub.Queue``; the site runs
// MathJax 3. Give every MathJax object (the configuration, then the loaded library) a ``Hub``
// whose ``Queue`` typesets the element with MathJax 3's ``typesetPromise``.
(function () {
  function withHub(mathjax) {
    if (mathjax && typeof mathjax === 'object' && !mathjax.Hub) {
      mathjax.Hub = {Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          var element = Array.isArray(job) ? job[2] : null;
          if (element && current && current.typesetPromise) {
            current.typesetPromise([element]).catch(function () {});
          }
        });
      }};
    }
    return mathjax;
  }
  var current = withHub(window.MathJax);
  Object.defineProperty(window, 'MathJax', {configurable: true,
    get: function () { return current; }, set: function (value) { current = withHub(value); }});
})();"""


def _page_scripts(app, pagename, templatename, context, doctree):
    """Drop repeated ``<script>`` entries, and configure the local widget manager where a page uses it.

    sphinx-thebe and sphinx-togglebutton register their inline scripts during the read phase,
    after the builder has started, so Sphinx lists them twice, and the second
    ``const THEBE_JS_URL`` is a JavaScript error on every page.
    """
    scripts = context.get("script_files", [])
    if any(str(getattr(s, "filename", "") or "").endswith("vendor/html-manager/dist/embed-amd.js") for s in scripts):
        app.add_js_file(None, priority=499, body=WIDGETS_CONFIG)
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", script) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    if "script_files" in context:
        context["script_files"][:] = kept


def setup(app):
    app.connect("config-inited", _prepare)
    app.connect("html-page-context", _page_scripts, priority=900)
    app.connect("build-finished", _copy)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
