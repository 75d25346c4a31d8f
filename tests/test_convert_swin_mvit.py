"""Parity with timm: fixtures made by tests/fixtures/make_swin_mvit_reference.py."""

import json
import os

import numpy as np
import pytest
from keras import ops

from keras_vit.applications import MViTv2, SwinTransformer
from keras_vit.convert_swin_mvit import convert_timm_mvitv2, convert_timm_swin

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CASES = ["swin_tiny_config", "swin_padded_config", "mvitv2_tiny_config", "mvitv2_four_stage_config"]
FAMILIES = {"swin": (SwinTransformer, convert_timm_swin), "mvitv2": (MViTv2, convert_timm_mvitv2)}


def _load(name):
    data = np.load(os.path.join(FIXTURES, f"{name}.npz"))
    config = json.loads(str(data["config"]))
    family = config.pop("family")
    state = {k[2:]: data[k] for k in data.files if k.startswith("w/")}
    return family, config, state, data


@pytest.mark.parametrize("name", CASES)
def test_logits_and_features_match_timm(name):
    family, config, state, data = _load(name)
    build, convert = FAMILIES[family]
    model = convert(state, build(**config, classifier_activation=None))
    np.testing.assert_allclose(ops.convert_to_numpy(model(data["input"])), data["logits"], atol=1e-4, rtol=0)
    config.pop("classes")
    features = convert(state, build(**config, include_top=False))
    np.testing.assert_allclose(ops.convert_to_numpy(features(data["input"])), data["features"], atol=1e-4, rtol=0)


def test_mismatched_state_dict_is_reported():
    _, config, state, _ = _load("swin_tiny_config")
    model = SwinTransformer(**config)
    broken = dict(state)
    broken["layers.0.blocks.0.extra.weight"] = np.zeros(3, "float32")
    del broken["norm.weight"]
    with pytest.raises(ValueError, match=r"layers\.0\.blocks\.0\.extra\.weight.*without a value: \['norm/gamma'\]"):
        convert_timm_swin(broken, model)
    wrong = dict(state)
    wrong["norm.bias"] = np.zeros(5, "float32")
    with pytest.raises(ValueError, match=r"Shape mismatch for norm\.bias → norm/beta"):
        convert_timm_swin(wrong, model)


def test_headless_state_dict_needs_headless_model():
    _, config, state, _ = _load("mvitv2_tiny_config")
    headless = {k: v for k, v in state.items() if not k.startswith("head.")}
    with pytest.raises(ValueError, match=r"without a value: \['head/kernel', 'head/bias'\]"):
        convert_timm_mvitv2(headless, MViTv2(**config))


if __name__ == "__main__":
    # Prints the largest absolute differences: python tests/test_convert_swin_mvit.py
    for case in CASES:
        family, config, state, data = _load(case)
        build, convert = FAMILIES[family]
        logits = convert(state, build(**config, classifier_activation=None))(data["input"])
        config.pop("classes")
        features = convert(state, build(**config, include_top=False))(data["input"])
        print(
            f"{case}: logits {np.abs(ops.convert_to_numpy(logits) - data['logits']).max():.2g}, "
            f"features {np.abs(ops.convert_to_numpy(features) - data['features']).max():.2g}"
        )
