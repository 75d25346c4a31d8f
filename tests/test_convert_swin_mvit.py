"""`keras_vit.convert.swin` and `.mvitv2`: parity with timm (fixtures: tests/fixtures/make_swin_mvit_reference.py)."""

import json
import os

import numpy as np
import pytest
from keras import ops

from keras_vit.applications import MViTv2, SwinTransformer
from keras_vit.convert import CheckpointError, load_checkpoint

pytestmark = pytest.mark.backends

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Max abs difference to the reference outputs in float32 on CPU (TensorFlow, oneDNN off and on): 1.3e-6.
TOL = 2e-5
CASES = ["swin_tiny_config", "swin_padded_config", "mvitv2_tiny_config", "mvitv2_four_stage_config"]
FAMILIES = {"swin": SwinTransformer, "mvitv2": MViTv2}


def _load(name):
    data = np.load(os.path.join(FIXTURES, f"{name}.npz"))
    config = json.loads(str(data["config"]))
    family = config.pop("family")
    state = {k[2:]: data[k] for k in data.files if k.startswith("w/")}
    return family, config, state, data


@pytest.mark.parametrize("name", CASES)
def test_logits_and_features_match_timm(name):
    family, config, state, data = _load(name)
    build = FAMILIES[family]
    model = load_checkpoint(build(**config, classifier_activation=None), state)
    np.testing.assert_allclose(ops.convert_to_numpy(model(data["input"])), data["logits"], atol=TOL, rtol=0)
    config.pop("classes")
    features = load_checkpoint(build(**config, include_top=False), state)  # the checkpoint's head is dropped
    np.testing.assert_allclose(ops.convert_to_numpy(features(data["input"])), data["features"], atol=TOL, rtol=0)


def test_buffers_recomputed_by_the_layers_are_accepted():
    _, config, state, data = _load("swin_tiny_config")
    with_buffers = dict(state)
    with_buffers["layers.0.blocks.0.attn.relative_position_index"] = np.zeros((16, 16), "int64")
    with_buffers["layers.0.blocks.1.attn_mask"] = np.zeros((4, 16, 16), "float32")
    model = load_checkpoint(SwinTransformer(**config, classifier_activation=None), with_buffers)
    np.testing.assert_allclose(ops.convert_to_numpy(model(data["input"])), data["logits"], atol=TOL, rtol=0)


def test_headless_state_dict_needs_headless_model():
    _, config, state, _ = _load("mvitv2_tiny_config")
    headless = {k: v for k, v in state.items() if not k.startswith("head.")}
    with pytest.raises(
        CheckpointError,
        match=r"2 missing from the checkpoint: 'head/kernel' \(shape \(32, 7\)\); "
        r"'head/bias' \(shape \(7,\)\)",
    ):
        load_checkpoint(MViTv2(**config), headless)


def test_head_of_another_size_starts_fresh():
    _, config, state, data = _load("mvitv2_tiny_config")
    model = load_checkpoint(MViTv2(**{**config, "classes": 3}), state)
    assert tuple(model.get_layer("head").kernel.shape) == (32, 3)
    with pytest.raises(
        CheckpointError,
        match=r"2 mis-shaped: 'head.fc.weight': checkpoint shape \(7, 32\) "
        r"\(as Keras layout \(32, 7\)\) vs model weight 'head/kernel' shape \(32, 3\)",
    ):
        load_checkpoint(MViTv2(**{**config, "classes": 3}), state, skip_mismatched_head=False)


if __name__ == "__main__":
    # Prints the largest absolute differences: python tests/test_convert_swin_mvit.py
    for case in CASES:
        family, config, state, data = _load(case)
        build = FAMILIES[family]
        logits = load_checkpoint(build(**config, classifier_activation=None), state)(data["input"])
        config.pop("classes")
        features = load_checkpoint(build(**config, include_top=False), state)(data["input"])
        print(
            f"{case}: logits {np.abs(ops.convert_to_numpy(logits) - data['logits']).max():.2g}, "
            f"features {np.abs(ops.convert_to_numpy(features) - data['features']).max():.2g}"
        )
