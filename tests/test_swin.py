import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.applications import SwinTiny, SwinTransformer, get_model, list_models, model_config

# Small overrides (tests/test_registry.py builds every registered name with the same):
# a 4×4 map with 2×2 windows (shifted) in stage 0, one 2×2 window in stage 1.
TINY = dict(hidden_dim=8, depth=(2, 1), num_heads=(1, 2), window_size=2, input_shape=(16, 16, 3), classes=3)

# Parameter counts of timm 1.0.31 (`sum(p.numel() for p in timm.create_model(name).parameters())`).
TIMM_PARAMS = {
    "swin_tiny_patch4_window7_224": 28_288_354,
    "swin_small_patch4_window7_224": 49_606_258,
    "swin_base_patch4_window7_224": 87_768_224,
}

SWIN_MODELS = list_models("swin_*")


def test_registry_has_the_timm_names():
    assert set(TIMM_PARAMS) <= set(SWIN_MODELS)


def test_feature_maps_and_pooling_options():
    x = np.random.rand(1, 16, 16, 3).astype("float32")
    kw = {k: v for k, v in TINY.items() if k != "classes"}
    features = SwinTransformer(include_top=False, pooling=None, **kw)
    assert features(x).shape == (1, 2, 2, 16)
    assert SwinTransformer(include_top=False, pooling="max", **kw)(x).shape == (1, 16)
    logits = SwinTransformer(classifier_activation=None, classes=4, **kw)(x)
    assert logits.shape == (1, 4)
    tensor_input = keras.Input((16, 16, 3))
    model = SwinTransformer(input_tensor=tensor_input, include_top=False, **kw)
    assert model.inputs[0] is tensor_input and model.output.shape == (None, 16)


def test_weights_file_round_trip(tmp_path):
    model = SwinTiny(**TINY)
    path = os.path.join(tmp_path, "tiny.weights.h5")
    model.save_weights(path)
    loaded = SwinTiny(weights=path, **TINY)
    x = np.random.rand(1, 16, 16, 3).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), atol=1e-6)


def test_swin_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: pooling='token'"):
        SwinTransformer(pooling="token", **TINY)
    with pytest.raises(ValueError, match=r"Received: pooling=None"):
        SwinTransformer(pooling=None, **TINY)
    with pytest.raises(ValueError, match=r"Received: patch_size=3, input_shape=\(16, 16, 3\)"):
        SwinTransformer(patch_size=3, **TINY)
    with pytest.raises(ValueError, match=r"hidden_dim=8, num_heads=\(3, 2\)"):
        SwinTransformer(**{**TINY, "num_heads": (3, 2)})
    with pytest.raises(ValueError, match=r"Received: depth=\(2, 0\)"):
        SwinTransformer(**{**TINY, "depth": (2, 0)})
    with pytest.raises(ValueError, match=r"Received: window_size=0"):
        SwinTransformer(**{**TINY, "window_size": 0})
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        SwinTransformer(weights="missing.weights.h5", **TINY)


def _blocks(model, stage):
    return [layer for layer in model.layers if layer.name.startswith(f"stage_{stage}_block_")]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_parameter_counts_match_timm(name):
    """Builds the named width with two blocks per stage and adds the missing blocks' weights."""
    depths = model_config(name)["depth"]
    reduced = get_model(name, depth=(2,) * len(depths))
    count = reduced.count_params()
    for stage, depth in enumerate(depths):
        count += (depth - 2) * _blocks(reduced, stage)[1].count_params()
    assert count == TIMM_PARAMS[name]


@pytest.mark.slow
def test_full_size_swin_tiny_parameter_count():
    model = get_model("swin_tiny_patch4_window7_224")
    assert model.count_params() == TIMM_PARAMS["swin_tiny_patch4_window7_224"]
    assert model.output.shape == (None, 1000)
