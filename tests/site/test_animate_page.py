"""The page *Animate in your browser*: the exported model run by ONNX Runtime Web in Chromium.

The browser animates source 0 with clip 0 of the page's inputs (the files the site serves), through
the page's test hook and through its button; the frames must equal Python's
``kmt.animation.Animator`` on the same files and checkpoint. The time per frame is printed and
written to ``browser-animation.json`` beside the site's ``html`` folder.
"""

import json
import time

import numpy as np
from bs4 import BeautifulSoup

PAGE = "animate_in_browser.html"
# Largest |browser - Python| over every pixel and channel of the 24 frames. Measured (WebAssembly,
# Chromium 156, 2 CPU cores), with Python on TensorFlow 3.8e-6, PyTorch 5.6e-6, JAX 5.5e-6: float32
# rounding in another order of operations. The bound leaves room for other backends and CPUs, and is
# far below one 8-bit step (1/255).
TOLERANCE = 1e-4


def read_inputs(site):
    """The page's sources ``(S, H, W, 3)`` and clips ``(C, T, H, W, 3)`` as float32 in [0, 1]."""
    folder = site / "_static" / "animate" / "inputs"
    manifest = json.loads((folder / "inputs.json").read_text())
    arrays = {}
    for part in ("sources", "clips"):
        raw = np.fromfile(folder / manifest[part]["file"], dtype="uint8")
        arrays[part] = raw.reshape(manifest[part]["shape"]).astype("float32") / 255.0
    return arrays["sources"], arrays["clips"]


def open_page(visit):
    session = visit(PAGE)
    session.page.wait_for_function(
        "() => /Pick a source/.test(document.querySelector('#kmt-animate .kmt-status').textContent)",
        timeout=60000)
    return session


def test_the_site_serves_the_model_the_runtime_and_the_inputs(site):
    model = site / "_static" / "animate" / "model"
    meta = json.loads((model / "kmt-export.json").read_text())
    assert meta["format"] == "onnx" and meta["image_size"] == [64, 64], meta
    for graph in meta["graphs"].values():
        assert (model / graph["file"]).stat().st_size > 10_000, graph["file"]
    runtime = site / "_static" / "vendor" / "onnxruntime-web" / "dist"
    for name in ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs",
                 "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.wasm"):
        assert (runtime / name).is_file(), f"ONNX Runtime Web's {name} is not in the site"
    sources, clips = read_inputs(site)
    assert sources.shape[1:] == (64, 64, 3) and clips.shape[2:] == (64, 64, 3) and clips.shape[1] >= 16
    assert sources.std() > 0.05 and clips.std() > 0.05, "blank inputs"


def test_the_landing_page_links_the_page(site):
    soup = BeautifulSoup((site / "index.html").read_text(), "html.parser")
    links = [a.get("href", "") for a in soup.select("main a")]
    assert any(href.split("#")[0] == PAGE for href in links), f"index.html does not link {PAGE}"


def test_the_page_lists_the_operators_of_the_exported_graphs(site):
    import onnx

    model = site / "_static" / "animate" / "model"
    operators = set()
    for path in sorted(model.glob("*.onnx")):
        operators |= {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    assert "GridSample" in operators, sorted(operators)
    soup = BeautifulSoup((site / PAGE).read_text(), "html.parser")
    listed = {code.get_text() for code in soup.select("main #exported-operators code")}
    assert listed == operators, (f"the page lists {sorted(listed)}; the exported graphs hold {sorted(operators)}: "
                                 "update the list in book/animate_in_browser.md")


def test_the_browser_animation_equals_python(visit, site, browser):
    import kmt.checkpoint
    from kmt.animation import Animator

    session = open_page(visit)
    # The first call loads ONNX Runtime and the model and warms them up; the second is timed.
    started = time.perf_counter()
    first = session.page.evaluate(
        "async () => { const r = await window.kmtAnimate({source: 0, clip: 0}); return r.msPerFrame; }")
    wall = time.perf_counter() - started
    result = session.page.evaluate(
        """async () => {
             const r = await window.kmtAnimate({source: 0, clip: 0});
             return {frames: Array.from(r.frames), shape: r.shape, msPerFrame: r.msPerFrame,
                     generatorMsPerFrame: r.generatorMsPerFrame, backend: r.backend};
           }""")
    browser_frames = np.asarray(result["frames"], dtype="float32").reshape(result["shape"])

    sources, clips = read_inputs(site)
    checkpoint = kmt.checkpoint.load(None)
    expected = Animator(checkpoint.kp_detector, checkpoint.generator, batch_size=8).animate(sources[0], clips[0])
    assert browser_frames.shape == expected.shape, (browser_frames.shape, expected.shape)
    assert browser_frames.std() > 0.05, "the browser made blank frames"
    difference = float(np.abs(browser_frames - expected).max())
    record = {"page": PAGE, "source": 0, "clip": 0, "frames": int(len(expected)), "backend": result["backend"],
              "ms_per_frame": round(result["msPerFrame"], 2),
              "generator_ms_per_frame": round(result["generatorMsPerFrame"], 2),
              "first_call_ms_per_frame": round(first, 2),
              "first_call_seconds_with_model_loading": round(wall, 2),
              "max_abs_difference_to_python": difference, "tolerance": TOLERANCE,
              "chromium": browser.version}
    (site.parent / "browser-animation.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nbrowser animation: {record}")
    assert result["backend"] == "wasm"
    assert difference <= TOLERANCE, f"browser and Python frames differ by up to {difference:.3g} (> {TOLERANCE})"
    assert not session.blocked, f"requests that left the local server: {session.blocked}"
    assert not session.errors, "console errors:\n" + "\n".join(session.errors)


CANVAS_STATS = """(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, squares = 0, n = 0;
  for (let i = 0; i < data.length; i += 4) {
    for (let c = 0; c < 3; c++) { sum += data[i + c]; squares += data[i + c] ** 2; n++; }
  }
  const mean = sum / n;
  return {width: canvas.width, mean, std: Math.sqrt(squares / n - mean * mean)};
}"""


def test_the_button_animates_and_reports_the_time_per_frame(visit, screenshots):
    session = open_page(visit)
    page = session.page
    assert page.locator("#kmt-animate .kmt-sources .kmt-choice").count() >= 3
    assert page.locator("#kmt-animate .kmt-clips .kmt-choice").count() >= 3
    blank = page.evaluate(CANVAS_STATS, "#kmt-animate .kmt-result")
    assert blank["std"] == 0, "the result canvas shows something before any animation"
    page.locator("#kmt-animate .kmt-clips .kmt-choice").nth(1).click()
    page.locator("#kmt-animate .kmt-run").click()
    page.wait_for_function(
        "() => /ms per frame/.test(document.querySelector('#kmt-animate .kmt-status').textContent)"
        " || /failed/.test(document.querySelector('#kmt-animate .kmt-status').textContent)",
        timeout=120000)
    status = page.locator("#kmt-animate .kmt-status").inner_text()
    assert "ms per frame on WebAssembly" in status, status
    result = page.evaluate(CANVAS_STATS, "#kmt-animate .kmt-result")
    assert result["width"] == 64 and result["std"] > 10, f"the result canvas is blank: {result}"
    page.locator("#kmt-animate").screenshot(path=str(screenshots / "animate_in_browser-result.png"))
    assert not session.blocked, f"requests that left the local server: {session.blocked}"
    assert not session.errors, "console errors:\n" + "\n".join(session.errors)


def test_the_readers_own_image_becomes_the_source(visit, tmp_path):
    """A wide picture is cropped to its centre square and resized to 64 x 64 on the source canvas."""
    from PIL import Image

    picture = np.zeros((60, 120, 3), dtype="uint8")
    picture[:, 30:90] = (250, 40, 40)  # the centre square is red; the sides, cropped away, black
    Image.fromarray(picture).save(tmp_path / "wide.png")
    session = open_page(visit)
    page = session.page
    page.locator("#kmt-animate .kmt-upload").set_input_files(str(tmp_path / "wide.png"))
    page.wait_for_function(
        "() => /Your image/.test(document.querySelector('#kmt-animate .kmt-status').textContent)", timeout=30000)
    red, green, width = page.evaluate("""() => {
      const canvas = document.querySelector('#kmt-animate .kmt-source');
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let red = 0, green = 0;
      for (let i = 0; i < data.length; i += 4) { red += data[i]; green += data[i + 1]; }
      return [red / (data.length / 4), green / (data.length / 4), canvas.width];
    }""")
    assert width == 64 and red > 240 and green < 50, f"not the centre square: mean red {red}, green {green}"
    assert page.locator("#kmt-animate .kmt-sources .kmt-selected").count() == 0
    assert not session.errors, "console errors:\n" + "\n".join(session.errors)
