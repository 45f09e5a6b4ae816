"""kmt.export / kmt.onnx_runtime: the ONNX graphs equal the Keras models, in ONNX Runtime.

The graphs are always traced on PyTorch (from TensorFlow and JAX, in a subprocess), so the
shipped model is exported in every backend's run (the subprocess path included there) and
compared with the Keras models of that backend; the vox-256 architecture (random weights,
256 x 256) is exported and compared in the PyTorch run only, where the export is in-process.
"""

import json
import os

import keras
import numpy as np
import onnx
import pytest

import kmt
from kmt import checkpoint
from kmt.animation import Animator
from kmt.config import build_models, load_config
from kmt.onnx_export import GRAPH_FILES, read_export
from kmt.onnx_runtime import OnnxAnimator

# Largest differences measured between ONNX Runtime (CPU) and Keras (PyTorch backend): keypoints 9e-7,
# Jacobians 1.2e-5, encoder features 1.9e-6, one frame 2.4e-6, a 32-frame animation 4.2e-6 (shipped model);
# vox-256 at most 2.5e-6. The bounds leave a margin for other backends and CPUs.
GRAPH_TOLERANCE = 5e-5
ANIMATION_TOLERANCE = 5e-5
CASES = ["shipped"] + (["vox-256"] if keras.backend.backend() == "torch" else [])


def vox_256_checkpoint(folder):
    keras.utils.set_random_seed(3)
    config = load_config("vox-256")
    models = build_models(config, networks=("kp_detector", "generator"))
    path = os.path.join(folder, "vox-256-random.kmt")
    checkpoint.save(path, config, models, image_size=(256, 256))
    return path


@pytest.fixture(scope="module", params=CASES)
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    source = None if request.param == "shipped" else vox_256_checkpoint(str(folder))
    metadata = kmt.export(str(folder / "onnx"), checkpoint=source)
    loaded = checkpoint.load(source, networks=("kp_detector", "generator"))
    return {"folder": str(folder / "onnx"), "metadata": metadata, "loaded": loaded, "case": request.param}


def inputs(size, count, seed):
    rng = np.random.default_rng(seed)
    smooth = rng.uniform(0, 1, (count, size // 8, size // 8, 3))
    return np.clip(np.repeat(np.repeat(smooth, 8, 1), 8, 2) + rng.normal(0, 0.05, (count, size, size, 3)), 0, 1) \
        .astype("float32")


def test_the_metadata_says_what_a_runtime_needs(exported):
    metadata, loaded = exported["metadata"], exported["loaded"]
    size = [64, 64] if exported["case"] == "shipped" else [256, 256]
    assert metadata["image_size"] == size and metadata["num_kp"] == 10 and metadata["align_corners"] is True
    assert metadata["opset"] == 18 and metadata["kmt_version"] == kmt.__version__
    assert metadata["model_params"] == loaded.config["model_params"]
    assert read_export(exported["folder"]) == metadata
    for name, graph in metadata["graphs"].items():
        model = onnx.load(os.path.join(exported["folder"], GRAPH_FILES[name]))
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == [i["name"] for i in graph["inputs"]]
        assert [o.name for o in model.graph.output] == [o["name"] for o in graph["outputs"]]
        assert {op.domain: op.version for op in model.opset_import}[""] == 18
    generator = metadata["graphs"]["generator"]
    assert "GridSample" in generator["operators"]
    grid_samples = [n for n in onnx.load(os.path.join(exported["folder"], "generator.onnx")).graph.node
                    if n.op_type == "GridSample"]
    assert {a.name: a.i for n in grid_samples for a in n.attribute if a.name == "align_corners"} == {"align_corners": 1}
    assert [i["name"] for i in generator["inputs"]] == [
        "source", "source_features", "kp_source_value", "kp_source_jacobian", "kp_driving_value",
        "kp_driving_jacobian"]
    assert metadata["graphs"]["kp_detector"]["inputs"][0]["shape"] == ["batch", *size, 3]


def test_every_graph_output_equals_the_keras_model(exported):
    import onnxruntime

    loaded, folder = exported["loaded"], exported["folder"]
    size = exported["metadata"]["image_size"][0]
    sessions = {name: onnxruntime.InferenceSession(os.path.join(folder, file), providers=["CPUExecutionProvider"])
                for name, file in GRAPH_FILES.items()}
    frames = inputs(size, 3, seed=1)
    kp = loaded.kp_detector(frames, training=False)
    value, jacobian = sessions["kp_detector"].run(None, {"image": frames})
    assert value.shape == (3, 10, 2) and jacobian.shape == (3, 10, 2, 2)
    np.testing.assert_allclose(value, keras.ops.convert_to_numpy(kp["value"]), atol=GRAPH_TOLERANCE)
    np.testing.assert_allclose(jacobian, keras.ops.convert_to_numpy(kp["jacobian"]), atol=GRAPH_TOLERANCE)
    source = frames[:1]
    features = sessions["source_encoder"].run(None, {"source": source})[0]
    np.testing.assert_allclose(features, keras.ops.convert_to_numpy(loaded.generator.encode_source(source)),
                               atol=GRAPH_TOLERANCE)
    driving = {"value": value[2:], "jacobian": jacobian[2:]}
    prediction = sessions["generator"].run(None, {
        "source": source, "source_features": features, "kp_source_value": value[:1], "kp_source_jacobian": jacobian[:1],
        "kp_driving_value": driving["value"], "kp_driving_jacobian": driving["jacobian"]})[0]
    expected = loaded.generator(source, kp_driving=driving, kp_source={"value": value[:1], "jacobian": jacobian[:1]},
                                training=False)["prediction"]
    assert prediction.shape == (1, size, size, 3)
    np.testing.assert_allclose(prediction, keras.ops.convert_to_numpy(expected), atol=GRAPH_TOLERANCE)


def test_an_onnxruntime_animation_equals_the_keras_one(exported):
    if exported["case"] != "shipped":  # one whole animation is enough; vox-256 is checked graph by graph above
        assert exported["metadata"]["image_size"] == [256, 256]
        return
    from kmt.data.synthetic import render_video

    video = np.asarray(render_video("faces", identity=200, motion=201, num_frames=10).frames, dtype="float32")
    source = np.asarray(render_video("faces", identity=202, num_frames=1).frames[0], dtype="float32")
    loaded = exported["loaded"]
    keras_frames = Animator(loaded.kp_detector, loaded.generator, batch_size=4, jit=False).animate(source, video)
    onnx_frames = OnnxAnimator(exported["folder"], batch_size=4).animate(source, video)
    assert onnx_frames.shape == keras_frames.shape == (10, 64, 64, 3)
    np.testing.assert_allclose(onnx_frames, keras_frames, atol=ANIMATION_TOLERANCE)
    same = kmt.animation.animate(source, video, checkpoint=exported["folder"], runtime="onnxruntime", batch_size=3)
    np.testing.assert_allclose(same, onnx_frames, atol=1e-6)


def test_bad_arguments_are_refused_with_their_names(tmp_path):
    with pytest.raises(ValueError, match=r"`format` must be one of \('onnx',\); got 'tflite'"):
        kmt.export(str(tmp_path), format="tflite")
    with pytest.raises(ValueError, match="`opset` must be a whole number of at least 18.*got 16"):
        kmt.export(str(tmp_path), opset=16)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="`out` must be a folder; .*file.txt' is a file"):
        kmt.export(str(a_file))
    with pytest.raises(ValueError, match="is not a folder written by `kmt export`: it has no kmt-export.json"):
        OnnxAnimator(str(tmp_path))
    with pytest.raises(ValueError, match="`runtime` must be one of \\('keras', 'onnxruntime'\\); got 'tvm'"):
        kmt.animation.animate(np.zeros((64, 64, 3)), np.zeros((2, 64, 64, 3)), runtime="tvm")
    with pytest.raises(ValueError, match="`checkpoint` must be the folder `kmt export --out` wrote .*got None"):
        kmt.animation.animate(np.zeros((64, 64, 3)), np.zeros((2, 64, 64, 3)), runtime="onnxruntime")
    (tmp_path / "kmt-export.json").write_text(json.dumps({"format": "onnx", "graphs": {name: {"file": f}
                                                                                       for name, f in GRAPH_FILES.items()}}))
    with pytest.raises(ValueError, match="names kp_detector.onnx \\(kp_detector\\), which is missing"):
        read_export(str(tmp_path))


def test_the_command_line_exports_and_animates(exported, tmp_path, capsys):
    from kmt import cli

    if exported["case"] != "shipped":
        assert cli.main(["animate", "--source", "x.png", "--driving", "y.mp4", "--out", "z.mp4"]) == 2
        assert "--source: no file at 'x.png'" in capsys.readouterr().err
        return
    import imageio.v3 as iio

    from kmt.data.synthetic import render_video
    from kmt.media import save_animation

    video = np.asarray(render_video("faces", identity=203, num_frames=4).frames, dtype="float32")
    save_animation(str(tmp_path / "driving.gif"), video, fps=10)
    iio.imwrite(tmp_path / "source.png", (video[0] * 255).round().astype("uint8"))
    base = ["animate", "--source", str(tmp_path / "source.png"), "--driving", str(tmp_path / "driving.gif"),
            "--relative", "--runtime", "onnxruntime"]
    assert cli.main(base + ["--checkpoint", exported["folder"], "--out", str(tmp_path / "out.gif")]) == 0
    assert os.path.getsize(tmp_path / "out.gif") > 0
    assert cli.main(base + ["--out", str(tmp_path / "out2.gif")]) == 2
    assert "--checkpoint must be the folder `kmt export --out` wrote" in capsys.readouterr().err
    assert cli.main(base + ["--checkpoint", exported["folder"], "--convolutions", "bfloat16",
                            "--out", str(tmp_path / "out3.gif")]) == 2
    assert "--convolutions 'bfloat16' is for the Keras runtime" in capsys.readouterr().err
    assert cli.main(["export", "--out", str(tmp_path / "x"), "--opset", "17"]) == 2
    assert "--opset must be a whole number of at least 18" in capsys.readouterr().err
