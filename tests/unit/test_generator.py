"""kmt.generator: outputs, warping of features, the align_corners setting, compiled animation."""

import keras
import numpy as np
import pytest

from fomm_reference import call, fixture_models, nhwc
from helpers import compiled, run, to_numpy
from kmt.generator import OcclusionAwareGenerator, deform_input
from kmt.keypoints import KPDetector


def generator(**kwargs):
    args = dict(
        num_channels=3,
        num_kp=3,
        block_expansion=4,
        max_features=16,
        num_down_blocks=2,
        num_bottleneck_blocks=1,
        estimate_occlusion_map=True,
        dense_motion_params=dict(block_expansion=4, max_features=16, num_blocks=2, scale_factor=0.5),
    )
    args.update(kwargs)
    return OcclusionAwareGenerator(**args)


def random_kp(rng, batch=1, num_kp=3):
    return {
        "value": rng.uniform(-0.7, 0.7, size=(batch, num_kp, 2)).astype("float32"),
        "jacobian": (np.eye(2) + 0.2 * rng.normal(size=(batch, num_kp, 2, 2))).astype("float32"),
    }


def test_outputs(rng):
    out = call(generator(), rng.random((2, 16, 16, 3), dtype="float32"), random_kp(rng, 2), random_kp(rng, 2))
    shapes = {key: value.shape for key, value in out.items()}
    assert shapes == {
        "prediction": (2, 16, 16, 3),
        "deformed": (2, 16, 16, 3),
        "mask": (2, 8, 8, 4),
        "sparse_deformed": (2, 4, 8, 8, 3),
        "occlusion_map": (2, 8, 8, 1),
        "deformation": (2, 8, 8, 2),
    }
    assert np.all((out["prediction"] > 0) & (out["prediction"] < 1))


def test_reusing_the_source_features_gives_the_same_frame(rng):
    model = generator()
    source = rng.random((1, 16, 16, 3), dtype="float32")
    kp_s, kp_d = random_kp(rng), random_kp(rng)
    features = to_numpy(model.encode_source(source))
    assert features.shape == (1, 4, 4, 16)
    full = call(model, source, kp_d, kp_s)
    reused = call(model, source, kp_d, kp_s, source_features=features)
    np.testing.assert_allclose(reused["prediction"], full["prediction"], atol=1e-6)
    with pytest.raises(ValueError, match=r"source_features.*\(batch, 4, 4, 16\)"):
        model(source, kp_d, kp_s, source_features=features[:, :2])


def test_without_dense_motion_it_is_an_autoencoder(rng):
    out = call(generator(dense_motion_params=None), rng.random((1, 16, 16, 3), dtype="float32"))
    assert list(out) == ["prediction"]


def test_keypoints_are_required_with_a_dense_motion_network(rng):
    with pytest.raises(ValueError, match="kp_driving"):
        generator()(rng.random((1, 16, 16, 3), dtype="float32"))
    with pytest.raises(ValueError, match=r"\(batch, height, width, 3\)"):
        generator()(rng.random((1, 3, 16, 16), dtype="float32"), random_kp(rng), random_kp(rng))


@pytest.mark.parametrize("align_corners", [True, False])
def test_deform_input_resizes_then_samples_like_torch(rng, align_corners):
    import torch
    F = torch.nn.functional
    features = rng.random((2, 12, 10, 3), dtype="float32")
    deformation = rng.uniform(-1.1, 1.1, size=(2, 6, 5, 2)).astype("float32")
    ours = run(lambda f, d: deform_input(f, d, align_corners), features, deformation)
    resized = F.interpolate(torch.tensor(deformation).permute(0, 3, 1, 2), size=(12, 10), mode="bilinear")
    expected = F.grid_sample(
        torch.tensor(features).permute(0, 3, 1, 2), resized.permute(0, 2, 3, 1), align_corners=align_corners
    )
    np.testing.assert_allclose(ours, expected.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_align_corners_reaches_every_warp_and_the_config(rng):
    source = rng.random((1, 16, 16, 3), dtype="float32")
    kp_s, kp_d = random_kp(rng), random_kp(rng)
    model_true = generator(align_corners=True)
    model_true.build((None, 16, 16, 3))
    model_false = generator(align_corners=False)
    model_false.build((None, 16, 16, 3))
    model_false.set_weights(model_true.get_weights())
    assert model_false.get_config()["align_corners"] is False
    assert model_false.dense_motion_network.align_corners is False
    a, b = call(model_true, source, kp_d, kp_s), call(model_false, source, kp_d, kp_s)
    assert np.abs(a["sparse_deformed"] - b["sparse_deformed"]).max() > 1e-3
    assert np.abs(a["deformed"] - b["deformed"]).max() > 1e-3


def test_get_config_round_trip():
    model = generator(align_corners=False)
    config = model.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(restored, OcclusionAwareGenerator) and restored.get_config() == config


def test_compiled_animation_matches_eager(fomm_tiny):
    """Keypoints of the driving frame plus the generator, compiled (XLA on TensorFlow and JAX)."""
    models = fixture_models(fomm_tiny, ["kp_detector", "generator"])
    detector, model = models["kp_detector"], models["generator"]
    assert isinstance(detector, KPDetector)
    source = nhwc(fomm_tiny["inputs/source"])[:1]
    driving = nhwc(fomm_tiny["inputs/driving"])[:1]
    kp_source = {k: fomm_tiny[f"eval/kp_source/{k}"][:1] for k in ("value", "jacobian")}

    def animate(source, driving, value, jacobian):
        kp_driving = detector(driving)
        return model(source, kp_driving=kp_driving, kp_source={"value": value, "jacobian": jacobian})["prediction"]

    fast = to_numpy(compiled(animate)(source, driving, kp_source["value"], kp_source["jacobian"]))
    eager = call(model, source, kp_driving=call(detector, driving), kp_source=kp_source)["prediction"]
    # Two float32 evaluations in different orders; the official float32 floor of the prediction is 7.5e-5.
    np.testing.assert_allclose(fast, eager, atol=1e-4)
    reference = nhwc(fomm_tiny["eval/generator/prediction"])[:1]
    assert np.abs(fast - reference).max() < 7.5e-4  # 10x the README floor of the prediction
