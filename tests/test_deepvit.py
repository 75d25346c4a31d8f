import json
import os

import keras
import numpy as np
import pytest

from keras_vit.applications import get_model, list_models
from keras_vit.applications.deepvit import DeepViT
from keras_vit.convert import load_checkpoint
from keras_vit.layers import ReAttention

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Max abs difference to the reference outputs in float32 on CPU (TensorFlow, oneDNN off and on): 1.2e-6.
TOL = 2e-5


def test_parity_with_vit_pytorch_deepvit():
    data = np.load(os.path.join(FIXTURES, "deepvit_vit_pytorch.npz"))
    config = json.loads(str(data["config"]))
    state = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    model = DeepViT(
        patch_size=config["patch_size"],
        hidden_dim=config["dim"],
        depth=config["depth"],
        num_heads=config["heads"],
        mlp_dim=config["mlp_dim"],
        head_dim=config["dim_head"],
        input_shape=(config["image_size"], config["image_size"], 3),
        classes=config["num_classes"],
        classifier_activation=None,
    )
    load_checkpoint(model, state)
    out = keras.ops.convert_to_numpy(model(data["input"].transpose(0, 2, 3, 1)))
    assert np.abs(data["output"]).max() > 0.1
    assert np.abs(out - data["output"]).max() <= TOL


# vit_pytorch.deepvit.DeepViT(image_size, patch_size, num_classes, dim, depth, heads,
# mlp_dim, dim_head=dim // heads): sum(p.numel() for p in model.parameters()), counted once.
VIT_PYTORCH_PARAMS = {
    "deepvit_16b_patch16_224": 24_410_344,
    "deepvit_24b_patch16_224": 36_235_816,
    "deepvit_cifar_patch4_depth8_32": 2_396_578,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VIT_PYTORCH_PARAMS))
def test_parameter_counts_equal_vit_pytorch(name):
    assert get_model(name).count_params() == VIT_PYTORCH_PARAMS[name]


def test_tiny_build_pooling_and_round_trip(tmp_path):
    assert {"deepvit_16b_patch16_224", "deepvit_24b_patch16_224", "deepvit_32b_patch16_224"} <= set(
        list_models("deepvit*")
    )
    model = get_model(
        "deepvit_cifar_patch4_depth8_32",
        depth=2,
        hidden_dim=16,
        num_heads=2,
        mlp_dim=16,
        input_shape=(16, 16, 3),
        classes=3,
    )
    assert model.output_shape == (None, 3)
    assert isinstance(model.get_layer("block_0").attention, ReAttention)
    x = np.random.rand(2, 16, 16, 3).astype("float32")
    path = str(tmp_path / "deepvit.keras")
    model.save(path)
    clone = keras.models.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)
    plain = DeepViT(
        patch_size=4,
        hidden_dim=16,
        depth=1,
        num_heads=2,
        mlp_dim=16,
        patch_norm=False,
        input_shape=(16, 16, 3),
        include_top=False,
        pooling="avg",
    )
    assert plain.output_shape == (None, 16)
    with pytest.raises(ValueError, match="Received: patch_size=5"):
        DeepViT(patch_size=5, input_shape=(16, 16, 3))
