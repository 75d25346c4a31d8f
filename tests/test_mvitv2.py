import os

import numpy as np
import pytest
from keras import ops

from keras_vit.applications import MViTv2, MViTv2Tiny, get_model, list_models, model_config

# Small overrides (as in tests/test_registry.py): a 4×4 map in stage 0 (kv pooled to 1×1), 2×2 in stage 1.
TINY = dict(hidden_dim=8, depth=(1, 1), num_heads=1, input_shape=(16, 16, 3), classes=3)

# Parameter counts of timm 1.0.31 (`sum(p.numel() for p in timm.create_model(name).parameters())`).
TIMM_PARAMS = {
    "mvitv2_tiny": 24_173_320,
    "mvitv2_small": 34_870_216,
    "mvitv2_base": 51_472_744,
}

MVIT_MODELS = list_models("mvitv2_*")


def test_registry_has_the_timm_names():
    assert set(TIMM_PARAMS) <= set(MVIT_MODELS)


def test_feature_maps_pooling_and_weights_file(tmp_path):
    x = np.random.rand(1, 16, 16, 3).astype("float32")
    kw = {k: v for k, v in TINY.items() if k != "classes"}
    assert MViTv2(include_top=False, pooling=None, **kw)(x).shape == (1, 2, 2, 16)
    assert MViTv2(include_top=False, pooling="max", **kw)(x).shape == (1, 16)
    model = MViTv2Tiny(classifier_activation=None, **TINY)
    path = os.path.join(tmp_path, "m.weights.h5")
    model.save_weights(path)
    loaded = MViTv2Tiny(weights=path, classifier_activation=None, **TINY)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), atol=1e-6)


def test_mvitv2_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: input_shape=\(20, 20, 3\)"):
        MViTv2(**{**TINY, "input_shape": (20, 20, 3)})
    with pytest.raises(ValueError, match=r"Received: input_shape=\(16, 32, 3\)"):
        MViTv2(**{**TINY, "input_shape": (16, 32, 3)})
    with pytest.raises(ValueError, match=r"Received: pooling='token'"):
        MViTv2(pooling="token", **TINY)
    with pytest.raises(ValueError, match=r"hidden_dim=8, num_heads=3"):
        MViTv2(**{**TINY, "num_heads": 3})
    with pytest.raises(ValueError, match=r"Received: classes=0"):
        MViTv2(**{**TINY, "classes": 0})


def _blocks(model, stage):
    return [layer for layer in model.layers if layer.name.startswith(f"stage_{stage}_block_")]


@pytest.mark.slow
def test_parameter_counts_match_timm():
    """T, S and B share widths: build two blocks per stage and add the missing blocks' weights."""
    reduced = get_model("mvitv2_tiny", depth=(2, 2, 2, 2))
    for name, expected in TIMM_PARAMS.items():
        count = reduced.count_params()
        for stage, depth in enumerate(model_config(name)["depth"]):
            count += (depth - 2) * _blocks(reduced, stage)[1].count_params()
        assert count == expected, name


@pytest.mark.slow
def test_full_size_mvitv2_tiny_parameter_count():
    model = get_model("mvitv2_tiny")
    assert model.count_params() == TIMM_PARAMS["mvitv2_tiny"]
    assert model.output.shape == (None, 1000)
