/* Animate in your browser: kmt's exported model (ONNX) run by ONNX Runtime Web, in this page.
 *
 * It reproduces kmt.animation.Animator.animate(source, driving, relative=True):
 *   1. the keypoints of the source (kp_detector.onnx) and its features, encoded once
 *      (source_encoder.onnx);
 *   2. the keypoints of every driving frame (kp_detector.onnx, all frames in one batch);
 *   3. relative motion (kmt.animation.normalize_kp): each driving keypoint's displacement since
 *      the first frame is added to the source keypoint, and the Jacobians are composed,
 *      J = J_d inv(J_d0) J_s; with "adapt movement scale" the displacement is first scaled by
 *      sqrt(hull area of the source keypoints / hull area of the first driving keypoints);
 *   4. one frame per driving frame (generator.onnx), clipped to [0, 1].
 * Images are NHWC float32 in [0, 1]; keypoints (x, y) in [-1, 1]; Jacobians row-major 2 x 2.
 *
 * Jupyter Book loads every script of _static on every page: this one does nothing on a page
 * without the element #kmt-animate. ONNX Runtime Web is served from the site itself
 * (_static/vendor/onnxruntime-web), so the page also works offline.
 *
 * Test hook: window.kmtAnimate({source: index, clip: index, backend: 'wasm' | 'webgpu',
 * adaptScale: false}) -> Promise<{frames: Float32Array (T*H*W*3), shape: [T, H, W, 3],
 * msPerFrame, backend}>.
 */
(function () {
  'use strict';
  const script = document.currentScript;
  if (!script || !script.src) return;
  const BASE = new URL('.', script.src);                     // .../_static/animate/
  const MODEL = new URL('model/', BASE);
  const INPUTS = new URL('inputs/', BASE);
  const ORT = new URL('../vendor/onnxruntime-web/dist/', BASE);
  const BUNDLES = {wasm: 'ort.wasm.min.mjs', webgpu: 'ort.webgpu.min.mjs'};

  // ------------------------------------------------------------------ the model

  const runtimes = {};   // backend -> Promise<{ort, sessions, meta}>

  async function fetchOk(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`could not load ${url} (HTTP ${response.status})`);
    return response;
  }

  /** ONNX Runtime Web and the three sessions for one backend ('wasm' or 'webgpu'). */
  function runtime(backend) {
    if (!runtimes[backend]) {
      runtimes[backend] = (async () => {
        const ort = await import(new URL(BUNDLES[backend], ORT).href);
        ort.env.wasm.wasmPaths = ORT.href;
        // Several threads need a cross-origin-isolated page, which a static site is not.
        ort.env.wasm.numThreads = 1;
        const meta = await (await fetchOk(new URL('kmt-export.json', MODEL))).json();
        const options = {executionProviders: [backend], graphOptimizationLevel: 'all'};
        const sessions = {};
        for (const name of ['kp_detector', 'source_encoder', 'generator']) {
          const bytes = await (await fetchOk(new URL(meta.graphs[name].file, MODEL))).arrayBuffer();
          sessions[name] = await ort.InferenceSession.create(bytes, options);
        }
        return {ort, sessions, meta};
      })();
      runtimes[backend].catch(() => { delete runtimes[backend]; });
    }
    return runtimes[backend];
  }

  // ------------------------------------------------------------------ the inputs

  let inputsPromise = null;

  /** The page's sources (S, H, W, 3) and clips (C, T, H, W, 3), uint8, and their manifest. */
  function inputs() {
    if (!inputsPromise) {
      inputsPromise = (async () => {
        const manifest = await (await fetchOk(new URL('inputs.json', INPUTS))).json();
        const read = async (part) => new Uint8Array(
          await (await fetchOk(new URL(manifest[part].file, INPUTS))).arrayBuffer());
        return {manifest, sources: await read('sources'), clips: await read('clips')};
      })();
    }
    return inputsPromise;
  }

  function toFloat(bytes) {
    const out = new Float32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] / 255;
    return out;
  }

  // ------------------------------------------------------------------ relative motion

  function matmul2(a, b) {      // 2 x 2 row-major products
    return [a[0] * b[0] + a[1] * b[2], a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2], a[2] * b[1] + a[3] * b[3]];
  }

  function inverse2(m) {         // closed form, like kmt.coordinates.inverse_2x2
    const det = m[0] * m[3] - m[1] * m[2];
    return [m[3] / det, -m[1] / det, -m[2] / det, m[0] / det];
  }

  /** Area of the convex hull of K points given as a flat (x, y, x, y, ...) array. */
  function hullArea(flat) {
    const points = [];
    for (let i = 0; i < flat.length; i += 2) points.push([flat[i], flat[i + 1]]);
    points.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
    const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    const half = (list) => {
      const hull = [];
      for (const p of list) {
        while (hull.length >= 2 && cross(hull[hull.length - 2], hull[hull.length - 1], p) <= 0) hull.pop();
        hull.push(p);
      }
      return hull.slice(0, -1);
    };
    const hull = half(points).concat(half(points.slice().reverse()));
    let twice = 0;
    for (let i = 0; i < hull.length; i++) {
      const [a, b] = [hull[i], hull[(i + 1) % hull.length]];
      twice += a[0] * b[1] - a[1] * b[0];
    }
    return Math.abs(twice) / 2;
  }

  /** normalize_kp with relative movement and Jacobians, for T frames of K keypoints. */
  function relativeKeypoints(source, driving, T, K, adaptScale) {
    const value = new Float32Array(T * K * 2), jacobian = new Float32Array(T * K * 4);
    const scale = adaptScale
      ? Math.sqrt(hullArea(source.value)) / Math.sqrt(hullArea(driving.value.subarray(0, K * 2))) : 1;
    for (let k = 0; k < K; k++) {
      const js = Array.from(source.jacobian.subarray(k * 4, k * 4 + 4));
      const j0inv = inverse2(Array.from(driving.jacobian.subarray(k * 4, k * 4 + 4)));
      for (let t = 0; t < T; t++) {
        const v = (t * K + k) * 2;
        for (let c = 0; c < 2; c++) {
          value[v + c] = (driving.value[v + c] - driving.value[k * 2 + c]) * scale + source.value[k * 2 + c];
        }
        const jd = Array.from(driving.jacobian.subarray((t * K + k) * 4, (t * K + k) * 4 + 4));
        jacobian.set(matmul2(matmul2(jd, j0inv), js), (t * K + k) * 4);
      }
    }
    return {value, jacobian};
  }

  // ------------------------------------------------------------------ the animation

  /**
   * Animate `source` (Float32Array H*W*3) by `driving` (Float32Array T*H*W*3).
   * onFrame(t, frame) is called as each frame is made. Returns {frames, msPerFrame, ...}.
   */
  async function animateArrays(source, driving, T, options, onFrame) {
    const backend = options.backend || 'wasm';
    const {ort, sessions, meta} = await runtime(backend);
    const [H, W] = meta.image_size, K = meta.num_kp, C = meta.num_channels;
    const tensor = (data, dims) => new ort.Tensor('float32', data, dims);
    const started = performance.now();
    const sourceTensor = tensor(source, [1, H, W, C]);
    const kpSource = await sessions.kp_detector.run({image: sourceTensor});
    const encoded = await sessions.source_encoder.run({source: sourceTensor});   // once, for every frame
    const kpDriving = await sessions.kp_detector.run({image: tensor(driving, [T, H, W, C])});
    const src = {value: kpSource.value.data, jacobian: kpSource.jacobian.data};
    const kp = relativeKeypoints(src, {value: kpDriving.value.data, jacobian: kpDriving.jacobian.data},
                                 T, K, !!options.adaptScale);
    const frameSize = H * W * C, frames = new Float32Array(T * frameSize);
    const generateStarted = performance.now();
    for (let t = 0; t < T; t++) {
      const out = await sessions.generator.run({
        source: sourceTensor, source_features: encoded.source_features,
        kp_source_value: kpSource.value, kp_source_jacobian: kpSource.jacobian,
        kp_driving_value: tensor(kp.value.slice(t * K * 2, (t + 1) * K * 2), [1, K, 2]),
        kp_driving_jacobian: tensor(kp.jacobian.slice(t * K * 4, (t + 1) * K * 4), [1, K, 2, 2]),
      });
      const frame = frames.subarray(t * frameSize, (t + 1) * frameSize);
      const prediction = out.prediction.data;
      for (let i = 0; i < frameSize; i++) frame[i] = Math.min(1, Math.max(0, prediction[i]));
      if (onFrame) onFrame(t, frame);
      // Let the page repaint between frames.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    const ended = performance.now();
    return {frames, shape: [T, H, W, C], backend,
            msPerFrame: (ended - started) / T, generatorMsPerFrame: (ended - generateStarted) / T};
  }

  async function animateIndices({source = 0, clip = 0, backend = 'wasm', adaptScale = false} = {}, onFrame) {
    const data = await inputs();
    const [, H, W, C] = data.manifest.sources.shape;
    const [numClips, T] = data.manifest.clips.shape;
    if (!(source >= 0 && source < data.manifest.sources.shape[0])) throw new Error(`source: no source ${source}`);
    if (!(clip >= 0 && clip < numClips)) throw new Error(`clip: no clip ${clip}`);
    const size = H * W * C;
    return animateArrays(toFloat(data.sources.subarray(source * size, (source + 1) * size)),
                         toFloat(data.clips.subarray(clip * T * size, (clip + 1) * T * size)),
                         T, {backend, adaptScale}, onFrame);
  }

  window.kmtAnimate = (options) => animateIndices(options || {});

  // ------------------------------------------------------------------ drawing

  function draw(canvas, floats) {          // H*W*3 floats in [0, 1] onto a canvas of H x W
    const context = canvas.getContext('2d');
    const image = context.createImageData(canvas.width, canvas.height);
    for (let i = 0, j = 0; i < floats.length; i += 3, j += 4) {
      image.data[j] = Math.round(floats[i] * 255);
      image.data[j + 1] = Math.round(floats[i + 1] * 255);
      image.data[j + 2] = Math.round(floats[i + 2] * 255);
      image.data[j + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  }

  /** The reader's image, centre-cropped to a square and resized to H x W: Float32Array H*W*3. */
  async function readUpload(file, H, W) {
    const bitmap = await createImageBitmap(file);
    const side = Math.min(bitmap.width, bitmap.height);
    const canvas = document.createElement('canvas');
    canvas.width = W; canvas.height = H;
    const context = canvas.getContext('2d');
    context.imageSmoothingQuality = 'high';
    context.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, W, H);
    const rgba = context.getImageData(0, 0, W, H).data, out = new Float32Array(H * W * 3);
    for (let i = 0, j = 0; i < out.length; i += 3, j += 4) {
      out[i] = rgba[j] / 255; out[i + 1] = rgba[j + 1] / 255; out[i + 2] = rgba[j + 2] / 255;
    }
    return out;
  }

  // ------------------------------------------------------------------ the page

  async function setup(root) {
    const $ = (selector) => root.querySelector(selector);
    const status = $('.kmt-status'), button = $('.kmt-run'), gpu = $('.kmt-webgpu');
    const say = (text) => { status.textContent = text; };
    let data;
    try {
      data = await inputs();
    } catch (error) {
      say(`The page's inputs did not load: ${error.message}`);
      return;
    }
    const [numSources, H, W, C] = data.manifest.sources.shape, [numClips, T] = data.manifest.clips.shape;
    const size = H * W * C;
    const canvases = {source: $('.kmt-source'), driving: $('.kmt-driving'), result: $('.kmt-result')};
    Object.values(canvases).forEach((canvas) => { canvas.width = W; canvas.height = H; });
    let chosen = {kind: 'index', index: 0, pixels: null};
    let player = null;

    // Choices: the synthetic faces and the clips, as thumbnail buttons (added to the page once
    // their images have loaded, so that the page never shows a broken image).
    async function choices(holder, count, prefix, kind, onPick) {
      const items = [];
      for (let i = 0; i < count; i++) {
        const item = document.createElement('button');
        item.type = 'button';
        item.className = 'kmt-choice';
        item.dataset.index = String(i);
        item.title = `${kind} ${i + 1}`;
        item.setAttribute('aria-label', `${kind} ${i + 1}`);
        const image = document.createElement('img');
        image.src = new URL(`${prefix}-${i}.png`, INPUTS).href;
        image.alt = `${kind} ${i + 1}`;
        item.appendChild(image);
        item.addEventListener('click', () => {
          holder.querySelectorAll('.kmt-choice').forEach((b) => b.classList.remove('kmt-selected'));
          item.classList.add('kmt-selected');
          onPick(i);
        });
        items.push(item);
      }
      await Promise.all(items.map((item) => item.firstChild.decode()));
      items.forEach((item) => holder.appendChild(item));
      items[0].classList.add('kmt-selected');
    }
    const sourceOf = (i) => toFloat(data.sources.subarray(i * size, (i + 1) * size));
    const clipOf = (i) => toFloat(data.clips.subarray(i * T * size, (i + 1) * T * size));
    let clip = 0;
    const picked = [];
    picked.push(choices($('.kmt-sources'), numSources, 'source', 'source face', (i) => {
      chosen = {kind: 'index', index: i, pixels: sourceOf(i)};
      draw(canvases.source, chosen.pixels);
    }));
    picked.push(choices($('.kmt-clips'), numClips, 'clip', 'driving clip', (i) => {
      clip = i;
      play(clipOf(i), null);
    }));
    chosen.pixels = sourceOf(0);
    draw(canvases.source, chosen.pixels);

    $('.kmt-upload').addEventListener('change', async (event) => {
      const file = event.target.files[0];
      if (!file) return;
      try {
        chosen = {kind: 'upload', index: -1, pixels: await readUpload(file, H, W)};
        $('.kmt-sources').querySelectorAll('.kmt-choice').forEach((b) => b.classList.remove('kmt-selected'));
        draw(canvases.source, chosen.pixels);
        say(`Your image, cropped to its centre square and resized to ${W} x ${H}.`);
      } catch (error) {
        say(`That file could not be read as an image (${error.message}).`);
      }
    });

    gpu.disabled = !navigator.gpu;
    if (!navigator.gpu) $('.kmt-webgpu-label').title = 'This browser does not offer WebGPU (navigator.gpu).';

    // Plays the driving clip, and the result once there is one, in a loop at 12 frames per second.
    function play(driving, result) {
      if (player) clearInterval(player);
      let t = 0;
      const show = () => {
        draw(canvases.driving, driving.subarray(t * size, (t + 1) * size));
        if (result) draw(canvases.result, result.subarray(t * size, (t + 1) * size));
        t = (t + 1) % T;
      };
      show();
      player = setInterval(show, 1000 / 12);
    }
    play(clipOf(0), null);

    button.addEventListener('click', async () => {
      button.disabled = true;
      const backend = gpu.checked && navigator.gpu ? 'webgpu' : 'wasm';
      const name = backend === 'webgpu' ? 'WebGPU' : 'WebAssembly';
      try {
        if (!runtimes[backend]) say(`Loading ONNX Runtime Web (${name}) and the model...`);
        await runtime(backend);
        const driving = clipOf(clip);
        if (player) clearInterval(player);
        const result = await animateArrays(chosen.pixels, driving, T,
          {backend, adaptScale: $('.kmt-adapt').checked}, (t, frame) => {
            draw(canvases.driving, driving.subarray(t * size, (t + 1) * size));
            draw(canvases.result, frame);
            say(`Frame ${t + 1} of ${T}...`);
          });
        root.dataset.msPerFrame = result.msPerFrame.toFixed(1);
        root.dataset.backend = backend;
        say(`${T} frames in ${(result.msPerFrame * T / 1000).toFixed(2)} s: ` +
            `${result.msPerFrame.toFixed(1)} ms per frame on ${name} ` +
            `(the generator alone: ${result.generatorMsPerFrame.toFixed(1)} ms).`);
        play(driving, result.frames);
      } catch (error) {
        say(`The animation failed on ${name}: ${error.message || error}`);
      } finally {
        button.disabled = false;
      }
    });
    try {
      await Promise.all(picked);
    } catch (error) {
      say(`The page's images did not load: ${error.message || error}`);
      return;
    }
    button.disabled = false;
    say('Pick a source and a driving clip, then press Animate.');
  }

  function start() {
    const root = document.getElementById('kmt-animate');
    if (root) setup(root);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
