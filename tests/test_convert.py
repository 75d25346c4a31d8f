"""`keras_vit.convert`: family dispatch, `weights=<checkpoint>` in every factory with a converter,
`CheckpointError` messages, and `keras-vit convert` for every family.

Parity fixtures: tests/fixtures/make_reference.py (ViT), make_swin_mvit_reference.py (Swin,
MViTv2, timm) and make_t2t_deepvit_reference.py (T2T-ViT, DeepViT).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_vit import cli, convert
from keras_vit.applications import DeepViT, MViTv2, SwinTransformer, T2TViT, VisionTransformer

pytestmark = pytest.mark.backends

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TOL = 2e-5  # measured max abs difference 3.5e-6 (float32 CPU, oneDNN on; 2.2e-6 off)
TINY_VIT = dict(patch_size=8, input_shape=(32, 32, 3), hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, classes=10)


def write_safetensors(weights, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path))
    return str(path)


def timm_map_fixture(name):
    """Swin / MViTv2 fixture: (builder, config, state dict, input, logits)."""
    data = np.load(os.path.join(FIXTURES, f"{name}.npz"))
    config = json.loads(str(data["config"]))
    builder = {"swin": SwinTransformer, "mvitv2": MViTv2}[config.pop("family")]
    state = {k[2:]: data[k] for k in data.files if k.startswith("w/")}
    return builder, config, state, data["input"], data["logits"]


def vit_pytorch_fixture(name):
    """T2T-ViT / DeepViT fixture: (builder kwargs, state dict, input NHWC, logits)."""
    data = np.load(os.path.join(FIXTURES, f"{name}.npz"))
    c = json.loads(str(data["config"]))
    state = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    if name == "deepvit_vit_pytorch":
        kwargs = dict(
            patch_size=c["patch_size"],
            hidden_dim=c["dim"],
            depth=c["depth"],
            num_heads=c["heads"],
            mlp_dim=c["mlp_dim"],
            head_dim=c["dim_head"],
            input_shape=(c["image_size"],) * 2 + (3,),
            classes=c["num_classes"],
        )
    elif name == "t2t_vit_pytorch":
        kwargs = dict(
            hidden_dim=c["dim"],
            depth=c["depth"],
            num_heads=c["heads"],
            mlp_dim=c["mlp_dim"],
            tokens_type="transformer",
            token_dim=None,
            soft_splits=c["t2t_layers"],
            input_shape=(c["image_size"],) * 2 + (3,),
            classes=c["num_classes"],
        )
    else:
        kwargs = dict(
            hidden_dim=c["embed_dim"],
            depth=c["depth"],
            num_heads=c["num_heads"],
            mlp_dim=int(c["embed_dim"] * c["mlp_ratio"]),
            tokens_type=c["tokens_type"],
            token_dim=c["token_dim"],
            input_shape=(c["img_size"],) * 2 + (3,),
            classes=c["num_classes"],
        )
    return kwargs, state, data["input"].transpose(0, 2, 3, 1), data["output"]


def max_diff(model, x, expected):
    out = keras.ops.convert_to_numpy(model(x, training=False))
    assert out.shape == expected.shape
    assert np.abs(expected).max() > 0.1  # a fixture that could not pass by accident
    return float(np.abs(out - expected).max())


# ------------------------------------------------------------------ weights=<checkpoint file>


@pytest.mark.parametrize("name", ["swin_tiny_config", "mvitv2_tiny_config"])
def test_weights_file_in_swin_and_mvitv2_factories(name, tmp_path):
    builder, config, state, x, logits = timm_map_fixture(name)
    path = write_safetensors(state, tmp_path / "model.safetensors")
    model = builder(**config, classifier_activation=None, weights=path)
    assert max_diff(model, x, logits) <= TOL


@pytest.mark.parametrize(
    "name, builder",
    [
        ("t2t_official_performer", T2TViT),
        ("t2t_vit_pytorch", T2TViT),
        ("deepvit_vit_pytorch", DeepViT),
    ],
)
def test_weights_file_in_t2t_and_deepvit_factories(name, builder, tmp_path):
    kwargs, state, x, logits = vit_pytorch_fixture(name)
    path = write_safetensors(state, tmp_path / "model.safetensors")
    model = builder(**kwargs, classifier_activation=None, weights=path)
    assert max_diff(model, x, logits) <= TOL


def test_weights_file_needs_a_known_extension(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_text("x")
    with pytest.raises(
        ValueError,
        match=r"`weights` must be a Keras `.weights.h5` or `.keras` file, or a "
        r"checkpoint .*Received: weights=.*model.ckpt",
    ):
        SwinTransformer(hidden_dim=8, depth=(1,), num_heads=1, input_shape=(16, 16, 3), weights=str(path))


# ------------------------------------------------------------------ dispatch


def test_family_is_detected_from_the_layers_also_after_keras_save_and_load(tmp_path):
    builder, config, state, x, logits = timm_map_fixture("swin_tiny_config")
    model = builder(**config, classifier_activation=None)
    assert convert.detect_family(model) == "swin"
    model.save(tmp_path / "swin.keras")
    reloaded = keras.saving.load_model(tmp_path / "swin.keras")
    assert convert.detect_family(reloaded) == "swin"
    convert.load_checkpoint(reloaded, state)
    assert max_diff(reloaded, x, logits) <= TOL

    expected = {
        "vit": VisionTransformer(**TINY_VIT),
        "mvitv2": MViTv2(hidden_dim=8, depth=(1, 1), num_heads=1, input_shape=(32, 32, 3)),
        "t2t": T2TViT(hidden_dim=16, depth=1, num_heads=2, mlp_dim=16, token_dim=8, input_shape=(32, 32, 3)),
        "deepvit": DeepViT(patch_size=8, hidden_dim=16, depth=1, num_heads=2, mlp_dim=16, input_shape=(16, 16, 3)),
    }
    assert {family: convert.detect_family(m) for family, m in expected.items()} == {f: f for f in expected}
    with pytest.raises(ValueError, match=r"No checkpoint converter for model 'sequential"):
        convert.detect_family(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="sequential"))


def test_layout_is_detected_and_can_be_forced():
    kwargs, state, x, logits = vit_pytorch_fixture("t2t_official_transformer")
    model = T2TViT(**kwargs, classifier_activation=None)
    convert.load_checkpoint(model, state, layout="official")
    assert max_diff(model, x, logits) <= TOL
    with pytest.raises(
        ValueError,
        match=r"`layout` must be 'auto' or one of \('official', 'vit_pytorch'\) for "
        r"t2t models. Received: layout='timm'",
    ):
        convert.load_checkpoint(model, state, layout="timm")
    with pytest.raises(
        convert.CheckpointError, match=r"unexpected in the checkpoint: 'pos_embed' \(shape \(1, 5, 32\)\)"
    ):
        convert.load_checkpoint(model, state, layout="vit_pytorch")


def test_checkpoint_of_another_family_is_refused_with_its_keys():
    _, _, state, _, _ = timm_map_fixture("swin_tiny_config")
    model = VisionTransformer(**TINY_VIT)
    with pytest.raises(
        convert.CheckpointError,
        match=r"The timm checkpoint does not fit the vit model.*"
        r"unexpected in the checkpoint: 'patch_embed.norm.weight'",
    ):
        convert.load_checkpoint(model, state)
    blocks_only = {k: v for k, v in state.items() if k.startswith("layers.")}
    with pytest.raises(
        convert.CheckpointError,
        match=r"Unrecognised checkpoint layout for a vit model.*"
        r"First keys: 'layers.0.blocks.0.norm1.weight'",
    ):
        convert.load_checkpoint(model, blocks_only)


# ------------------------------------------------------------------ CheckpointError


def test_checkpoint_error_names_missing_unexpected_and_mis_shaped_keys():
    builder, config, state, _, _ = timm_map_fixture("swin_tiny_config")
    model = builder(**config)
    broken = dict(state)
    broken["layers.0.blocks.0.extra.weight"] = np.zeros(3, "float32")
    del broken["norm.weight"]
    broken["norm.bias"] = np.zeros(5, "float32")
    with pytest.raises(convert.CheckpointError) as info:
        convert.load_checkpoint(model, broken)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "The timm checkpoint does not fit the swin model" in message
    assert (
        "1 mis-shaped: 'norm.bias': checkpoint shape (5,) (as Keras layout (5,)) vs model weight "
        "'norm/beta' shape (32,)"
    ) in message
    assert "1 missing from the checkpoint: 'norm/gamma' (shape (32,))" in message
    assert "1 unexpected in the checkpoint: 'layers.0.blocks.0.extra.weight' (shape (3,))" in message


def test_checkpoint_error_for_a_deeper_deepvit_checkpoint():
    kwargs, state, _, _ = vit_pytorch_fixture("deepvit_vit_pytorch")
    model = DeepViT(**{**kwargs, "depth": 1})
    with pytest.raises(
        convert.CheckpointError,
        match=r"14 unexpected in the checkpoint: 'transformer.layers.1.0.reattn_weights' "
        r"\(shape \(4, 4\), as Keras weight 'block_1/attention/mixing'\)",
    ):
        convert.load_checkpoint(model, state)


def test_missing_part_of_a_fused_weight_is_named():
    with np.load(os.path.join(FIXTURES, "hf_vit_classification.npz")) as data:
        state = {k[len("weights/") :]: data[k] for k in data.files if k.startswith("weights/")}
    del state["vit.encoder.layer.0.attention.attention.key.bias"]
    model = VisionTransformer(**{**TINY_VIT, "classes": 10}, include_top=False, pooling=None)
    with pytest.raises(convert.CheckpointError, match=r"no `key\|k_proj` part of 'block_0/attention/qkv/bias'"):
        convert.load_checkpoint(model, state)


# ------------------------------------------------------------------ keras-vit convert


def test_cli_convert_vit_in_process(tmp_path, capsys):
    with np.load(os.path.join(FIXTURES, "timm_vit_token.npz")) as data:
        weights = {k[len("weights/") :]: data[k] for k in data.files if k.startswith("weights/")}
        inputs, logits = data["inputs"], data["logits"]
    src = write_safetensors(weights, tmp_path / "model.safetensors")
    out = tmp_path / "vit.weights.h5"
    config = {"hidden_dim": 32, "depth": 2, "num_heads": 2, "mlp_dim": 64, "patch_size": 8, "input_shape": [32, 32, 3]}
    code = cli.main(
        ["convert", src, "--model", "vit_small_patch16_224", "--config", json.dumps(config), "--out", str(out)]
    )
    assert code == 0
    assert "classes=10" in capsys.readouterr().out
    model = VisionTransformer(**TINY_VIT, classifier_activation=None)
    model.load_weights(str(out))
    assert max_diff(model, inputs, logits) <= TOL

    code = cli.main(["convert", src, "--model", "vit_small_patch16_224", "--out", str(tmp_path / "x.weights.h5")])
    assert code == 2
    err = capsys.readouterr().err
    assert "keras-vit convert: error:" in err and "mis-shaped: 'blocks.0.attn.proj.bias'" in err


def test_cli_convert_swin_checkpoint_as_a_subprocess(tmp_path):
    builder, config, state, x, logits = timm_map_fixture("swin_tiny_config")
    src = write_safetensors(state, tmp_path / "swin.safetensors")
    out = tmp_path / "swin.weights.h5"
    overrides = {k: v for k, v in config.items() if k != "classes"}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_vit.cli",
            "convert",
            src,
            "--model",
            "swin_tiny_patch4_window7_224",
            "--config",
            json.dumps(overrides),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert f"classes={config['classes']}" in result.stdout and "(swin)" in result.stdout
    model = builder(**config, classifier_activation=None)
    model.load_weights(str(out))
    assert max_diff(model, x, logits) <= TOL
