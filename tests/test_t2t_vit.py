import json
import os

import keras
import numpy as np
import pytest

from keras_vit.applications import get_model, list_models
from keras_vit.applications.t2t_vit import T2TViT
from keras_vit.convert import CheckpointError, load_checkpoint

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Max abs difference to the reference outputs in float32 on CPU (TensorFlow, oneDNN off and on): 3.5e-6 (Performer).
TOL = 2e-5


def load_fixture(name):
    data = np.load(os.path.join(FIXTURES, f"{name}.npz"))
    state = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    return state, json.loads(str(data["config"])), data["input"].transpose(0, 2, 3, 1), data["output"]


def test_parity_with_vit_pytorch_t2t():
    state, config, x, expected = load_fixture("t2t_vit_pytorch")
    model = T2TViT(
        hidden_dim=config["dim"],
        depth=config["depth"],
        num_heads=config["heads"],
        mlp_dim=config["mlp_dim"],
        tokens_type="transformer",
        token_dim=None,
        soft_splits=config["t2t_layers"],
        input_shape=(config["image_size"], config["image_size"], 3),
        classes=config["num_classes"],
        classifier_activation=None,
    )
    assert config["dim_head"] * config["heads"] == config["dim"]
    load_checkpoint(model, state, layout="vit_pytorch")
    out = keras.ops.convert_to_numpy(model(x))
    assert np.abs(expected).max() > 0.1
    assert np.abs(out - expected).max() <= TOL


@pytest.mark.parametrize("tokens_type", ["performer", "transformer"])
def test_parity_with_official_t2t(tokens_type):
    state, config, x, expected = load_fixture(f"t2t_official_{tokens_type}")
    model = T2TViT(
        hidden_dim=config["embed_dim"],
        depth=config["depth"],
        num_heads=config["num_heads"],
        mlp_dim=int(config["embed_dim"] * config["mlp_ratio"]),
        tokens_type=tokens_type,
        token_dim=config["token_dim"],
        input_shape=(config["img_size"], config["img_size"], 3),
        classes=config["num_classes"],
        classifier_activation=None,
    )
    load_checkpoint(model, state, layout="official")
    out = keras.ops.convert_to_numpy(model(x))
    assert np.abs(expected).max() > 0.1
    assert np.abs(out - expected).max() <= TOL


def test_converter_rejects_a_mismatched_state_dict():
    state, *_ = load_fixture("t2t_official_transformer")
    model = T2TViT(
        hidden_dim=32,
        depth=1,
        num_heads=2,
        mlp_dim=64,
        tokens_type="transformer",
        token_dim=8,
        input_shape=(32, 32, 3),
        classes=5,
    )
    with pytest.raises(CheckpointError, match=r"unexpected in the checkpoint: 'blocks\.1\."):
        load_checkpoint(model, state)


# Parameter counts of the official T2T-ViT code (models/t2t_vit.py), counted once with
# sum(p.numel() for p in model.parameters()) for 1000 classes at 224×224 (this includes
# the frozen sinusoid table and the performer's fixed random features).
OFFICIAL_PARAMS = {
    "t2t_vit_7": 4_310_222,
    "t2t_vit_14": 21_545_550,
    "t2t_vit_t_14": 21_541_070,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_counts_equal_the_official_code(name):
    assert get_model(name).count_params() == OFFICIAL_PARAMS[name]


def test_registered_names_and_tiny_build():
    names = list_models("t2t_vit*")
    for name in (
        "t2t_vit_7",
        "t2t_vit_10",
        "t2t_vit_12",
        "t2t_vit_14",
        "t2t_vit_19",
        "t2t_vit_24",
        "t2t_vit_t_14",
        "t2t_vit_t_19",
        "t2t_vit_t_24",
        "t2t_vit_7_cifar_32",
    ):
        assert name in names
    model = get_model(
        "t2t_vit_7_cifar_32",
        depth=1,
        hidden_dim=16,
        num_heads=2,
        mlp_dim=16,
        token_dim=8,
        input_shape=(16, 16, 3),
        classes=3,
    )
    assert model.output_shape == (None, 3)
    assert model.get_layer("patch_embed").grid_size == (4, 4)
    features = get_model(
        "t2t_vit_7_cifar_32",
        depth=1,
        hidden_dim=16,
        num_heads=2,
        mlp_dim=16,
        token_dim=8,
        input_shape=(16, 16, 3),
        include_top=False,
        pooling=None,
    )
    assert features.output_shape == (None, 17, 16)


def test_keras_round_trip(tmp_path):
    model = T2TViT(
        hidden_dim=16,
        depth=1,
        num_heads=2,
        mlp_dim=16,
        token_dim=8,
        soft_splits=((3, 2), (3, 2)),
        input_shape=(16, 16, 3),
        classes=3,
    )
    x = np.random.rand(2, 16, 16, 3).astype("float32")
    path = str(tmp_path / "t2t.keras")
    model.save(path)
    clone = keras.models.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)


def test_argument_errors():
    with pytest.raises(ValueError, match="Received: tokens_type='conv'"):
        T2TViT(tokens_type="conv")
    with pytest.raises(ValueError, match="Received: token_dim=None"):
        T2TViT(tokens_type="performer", token_dim=None)
    with pytest.raises(ValueError, match="soft_splits"):
        T2TViT(soft_splits=((3,),))
