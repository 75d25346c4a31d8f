"""`keras_vit.convert.vit` and `.hybrid`: parity with timm / Hugging Face / the ViT .npz, resampling, fine-tuning.

The fixtures in tests/fixtures were made by tests/fixtures/make_reference.py
from reference models with random weights; see that script.
"""

import json
import os

import keras
import numpy as np
import pytest

from keras_vit import convert
from keras_vit.applications import VisionTransformer, VisionTransformerHybrid

pytestmark = pytest.mark.backends

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Max abs differences measured in float32 on CPU (TensorFlow, oneDNN off and on): up to 6e-6 for the timm and .npz
# fixtures and 1.6e-6 for the Hugging Face ones, whose tolerance is tighter so that a wrong LayerNorm epsilon (1e-6
# instead of HF's 1e-12: 1.1e-5 to 1.7e-5) fails it; see test_hf_vit_with_the_wrong_layer_norm_epsilon_fails.
TOL = 2e-5
HF_TOL = 5e-6
TINY = dict(hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, classes=10, classifier_activation=None)
HYBRID = dict(stem_layers=(1, 1), stem_width=32, stage_channels=(128, 256))


def fixture(name):
    with np.load(os.path.join(FIXTURES, f"{name}.npz"), allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    weights = {k[len("weights/") :]: v for k, v in out.items() if k.startswith("weights/")}
    return weights, out


def write_safetensors(weights, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path))
    return str(path)


def write_pth(weights, path):
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}, str(path))
    return str(path)


def write_npz(weights, path):
    np.savez(str(path), **weights)
    return str(path)


def outputs_of(model, x, pooling):
    """(features, pre_logits, logits) of a model with a head, as the reference defines them."""
    feats_layer = "norm" if pooling == "token" else f"block_{TINY['depth'] - 1}"
    pre_layer = "pool" if pooling == "token" else "fc_norm"
    probe = keras.Model(
        model.inputs, [model.get_layer(feats_layer).output, model.get_layer(pre_layer).output, model.output]
    )
    return [keras.ops.convert_to_numpy(o) for o in probe(x, training=False)]


def assert_close(actual, expected, what, tol=TOL):
    diff = float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs reference {expected.shape}"
    assert diff <= tol, f"{what}: max abs difference {diff:.3g} > {tol}"
    return diff


TIMM_CASES = {
    "timm_vit_token": dict(pooling="token"),
    "timm_vit_avg": dict(pooling="avg"),
    "timm_vit_gap_no_class_token": dict(pooling="avg", class_token=False),
}


@pytest.mark.parametrize("name", sorted(TIMM_CASES))
def test_timm_vit_parity(name, tmp_path):
    weights, ref = fixture(name)
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    model = VisionTransformer(patch_size=8, input_shape=(32, 32, 3), weights=path, **TINY, **TIMM_CASES[name])
    feats, pre, logits = outputs_of(model, ref["inputs"], TIMM_CASES[name]["pooling"])
    assert_close(feats, ref["features"], "features")
    assert_close(pre, ref["pre_logits"], "pre-logits")
    assert_close(logits, ref["logits"], "logits")


def test_timm_deit_distilled_parity_from_pth(tmp_path):
    weights, ref = fixture("timm_deit_distilled")
    path = write_pth(weights, tmp_path / "deit.pth")
    model = VisionTransformer(patch_size=8, input_shape=(32, 32, 3), distillation=True, weights=path, **TINY)
    feats, _, logits = outputs_of(model, ref["inputs"], "token")
    assert_close(feats, ref["features"], "features")
    assert_close(logits, ref["logits"], "logits (mean of the two heads)")


def test_timm_hybrid_parity(tmp_path):
    weights, ref = fixture("timm_hybrid")
    path = write_safetensors(weights, tmp_path / "hybrid.safetensors")
    model = VisionTransformerHybrid(**HYBRID, input_shape=(32, 32, 3), weights=path, **TINY)
    feats, pre, logits = outputs_of(model, ref["inputs"], "token")
    assert_close(feats, ref["features"], "features")
    assert_close(pre, ref["pre_logits"], "pre-logits")
    assert_close(logits, ref["logits"], "logits")


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("npz_vit", dict(patch_size=8)),
        ("npz_hybrid", dict(patch_size=1, **HYBRID)),
    ],
)
def test_google_npz_parity(name, kwargs, tmp_path):
    weights, ref = fixture(name)
    assert "pre_logits/kernel" in weights  # dropped by the conversion, as timm drops it
    path = write_npz(weights, tmp_path / "ViT.npz")
    builder = VisionTransformerHybrid if "hybrid" in name else VisionTransformer
    model = builder(input_shape=(32, 32, 3), weights=path, **TINY, **kwargs)
    feats, pre, logits = outputs_of(model, ref["inputs"], "token")
    assert_close(feats, ref["features"], "features")
    assert_close(logits, ref["logits"], "logits")


def test_hf_vit_classification_parity(tmp_path):
    weights, ref = fixture("hf_vit_classification")
    assert "vit.encoder.layer.0.attention.attention.query.weight" in weights
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    model = VisionTransformer(patch_size=8, input_shape=(32, 32, 3), layer_norm_epsilon=1e-12, weights=path, **TINY)
    feats, pre, logits = outputs_of(model, ref["inputs"], "token")
    assert_close(feats, ref["features"], "features", HF_TOL)
    assert_close(logits, ref["logits"], "logits", HF_TOL)


def test_hf_vit_model_parity_without_head(tmp_path):
    weights, ref = fixture("hf_vit_model")
    assert "pooler.dense.weight" in weights  # ViTModel's pooler is not part of our model
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    tiny = {k: v for k, v in TINY.items() if k not in ("classes", "classifier_activation")}
    model = VisionTransformer(
        patch_size=8,
        input_shape=(32, 32, 3),
        layer_norm_epsilon=1e-12,
        include_top=False,
        pooling=None,
        weights=path,
        **tiny,
    )
    assert_close(keras.ops.convert_to_numpy(model(ref["inputs"], training=False)), ref["features"], "features", HF_TOL)


def test_hf_deit_with_teacher_parity(tmp_path):
    weights, ref = fixture("hf_deit_distilled")
    path = write_pth(weights, tmp_path / "pytorch_model.bin")
    model = VisionTransformer(
        patch_size=8, input_shape=(32, 32, 3), layer_norm_epsilon=1e-12, distillation=True, weights=path, **TINY
    )
    feats, _, logits = outputs_of(model, ref["inputs"], "token")
    assert_close(feats, ref["features"], "features", HF_TOL)
    assert_close(logits, ref["logits"], "logits", HF_TOL)


@pytest.mark.parametrize("name", ["hf_vit_classification", "hf_vit_model"])
def test_hf_vit_with_the_wrong_layer_norm_epsilon_fails(name, tmp_path):
    # The parity tolerance must be tight enough to see a wrong epsilon: timm's 1e-6 where HF uses 1e-12.
    weights, ref = fixture(name)
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    if name == "hf_vit_classification":
        config = TINY
    else:
        config = {k: v for k, v in TINY.items() if k not in ("classes", "classifier_activation")}
        config.update(include_top=False, pooling=None)
    model = VisionTransformer(patch_size=8, input_shape=(32, 32, 3), layer_norm_epsilon=1e-6, weights=path, **config)
    feats = model.get_layer("norm").output
    out = keras.Model(model.inputs, feats)(ref["inputs"], training=False)
    diff = np.abs(keras.ops.convert_to_numpy(out) - ref["features"]).max()
    assert diff > HF_TOL, f"a wrong LayerNorm epsilon changes the features by only {diff:.3g} <= {HF_TOL}"


# ------------------------------------------------------------------ resampling


def test_interpolation_matches_timm_resample_fixture():
    _, ref = fixture("timm_resample")
    pos = ref["pos"]
    for new in (12, 3, 7):
        got = convert.resample_abs_pos_embed(pos, (new, new), num_prefix_tokens=1)
        assert_close(got, ref[f"pos_{new}"], f"pos {new}x{new}")
        np.testing.assert_array_equal(got[:, :1], pos[:, :1])  # the class row is kept apart
    got = convert.resample_abs_pos_embed(pos, (5, 9), interpolation="bilinear", antialias=False)
    assert_close(got, ref["pos_5x9_bilinear_noaa"], "bilinear, no antialias")
    got = convert.resample_abs_pos_embed(pos, (10, 4), interpolation="bicubic", antialias=False)
    assert_close(got, ref["pos_10x4_bicubic_noaa"], "bicubic, no antialias")
    kernel = ref["kernel"].transpose(2, 3, 1, 0)  # torch (O, I, kh, kw) -> Keras (kh, kw, I, O)
    for new in (4, 16, 5):
        got = convert.resample_patch_embed(kernel, (new, new)).transpose(3, 2, 0, 1)
        assert_close(got, ref[f"kernel_{new}"], f"patch kernel {new}x{new}")


def test_on_the_fly_resampling_matches_timm_on_every_backend():
    """`PatchEncoder`'s on-the-fly resize of E_pos is timm's `resample_abs_pos_embed`, shrinking included."""
    from keras import ops

    from keras_vit.layers import resample_position_embedding

    _, ref = fixture("timm_resample")
    pos = ref["pos"]
    for new in (12, 3, 7):
        got = ops.convert_to_numpy(resample_position_embedding(pos, (new, new), num_prefix_tokens=1))
        assert_close(got, ref[f"pos_{new}"], f"on-the-fly pos {new}x{new}")


def test_resample_returns_input_when_grid_matches():
    pos = np.random.rand(1, 17, 4).astype(np.float32)
    assert convert.resample_abs_pos_embed(pos, (4, 4)) is pos


@pytest.mark.parametrize("tag", ["up", "down"])
def test_checkpoint_at_another_resolution_and_patch_size(tag, tmp_path):
    weights, ref = fixture("timm_vit_resampled")
    img, patch = json.loads(str(ref["config"]))[tag]
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    model = VisionTransformer(patch_size=patch, input_shape=(img, img, 3), weights=path, **TINY)
    feats, pre, logits = outputs_of(model, ref[f"{tag}_inputs"], "token")
    assert_close(feats, ref[f"{tag}_features"], "features")
    assert_close(logits, ref[f"{tag}_logits"], "logits")


# ------------------------------------------------------------------ fine-tuning


def test_fine_tune_new_head_at_new_resolution(tmp_path):
    weights, ref = fixture("timm_vit_token")
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    tiny = {k: v for k, v in TINY.items() if k not in ("classes", "classifier_activation")}
    model = VisionTransformer(patch_size=8, input_shape=(48, 48, 3), classes=3, weights=path, **tiny)
    pos = keras.ops.convert_to_numpy(model.get_layer("patch_embed").pos_embed)
    expected = convert.resample_abs_pos_embed(weights["pos_embed"], (6, 6))
    np.testing.assert_allclose(pos, expected, atol=1e-6)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("block_0").norm1.gamma), weights["blocks.0.norm1.weight"]
    )
    assert model.get_layer("head").kernel.shape == (32, 3)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", run_eagerly=True
    )  # a tiny fit: tracing would cost more than it saves
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 48, 48, 3)).astype("float32"), rng.integers(0, 3, 16)
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]

    features = VisionTransformer(patch_size=8, input_shape=(32, 32, 3), include_top=False, weights=path, **tiny)
    assert_close(
        keras.ops.convert_to_numpy(features(ref["inputs"], training=False)),
        ref["pre_logits"],
        "include_top=False features",
    )


# ------------------------------------------------------------------ bad input


def test_checkpoint_of_another_depth_names_missing_keys(tmp_path):
    weights, _ = fixture("timm_vit_token")
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    with pytest.raises(
        convert.CheckpointError,
        match=r"12 missing from the checkpoint: "
        r"'block_2/attention/qkv/kernel' \(shape \(32, 96\)\)",
    ):
        VisionTransformer(patch_size=8, input_shape=(32, 32, 3), weights=path, **{**TINY, "depth": 3})
    with pytest.raises(
        convert.CheckpointError,
        match=r"12 unexpected in the checkpoint: 'blocks.1.attn.proj.bias' "
        r"\(shape \(32,\), as Keras weight 'block_1/attention/proj/bias'\)",
    ):
        VisionTransformer(patch_size=8, input_shape=(32, 32, 3), weights=path, **{**TINY, "depth": 1})


def test_checkpoint_of_another_size_names_both_shapes(tmp_path):
    weights, _ = fixture("timm_vit_token")
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    with pytest.raises(convert.CheckpointError) as info:
        VisionTransformer(patch_size=8, input_shape=(32, 32, 3), weights=path, **{**TINY, "mlp_dim": 128})
    message = str(info.value)
    assert (
        "6 mis-shaped: 'blocks.0.mlp.fc1.bias': checkpoint shape (64,) (as Keras layout (64,)) vs model "
        "weight 'block_0/mlp/fc1/bias' shape (128,); 'blocks.0.mlp.fc1.weight': checkpoint shape (64, 32) "
        "(as Keras layout (32, 64)) vs model weight 'block_0/mlp/fc1/kernel' shape (32, 128)" in message
    )
    assert "missing" not in message and "unexpected" not in message
    with pytest.raises(
        convert.CheckpointError,
        match=r"mis-shaped: 'blocks.0.attn.proj.bias': checkpoint shape "
        r"\(32,\) \(as Keras layout \(32,\)\) vs model weight "
        r"'block_0/attention/proj/bias' shape \(48,\)",
    ):
        VisionTransformer(
            patch_size=8, input_shape=(32, 32, 3), weights=path, **{**TINY, "hidden_dim": 48, "num_heads": 3}
        )


def test_distilled_checkpoint_into_plain_vit_names_unexpected_keys(tmp_path):
    weights, _ = fixture("timm_deit_distilled")
    path = write_safetensors(weights, tmp_path / "deit.safetensors")
    with pytest.raises(convert.CheckpointError, match=r"unexpected in the checkpoint: 'dist_token'"):
        VisionTransformer(patch_size=8, input_shape=(32, 32, 3), weights=path, **TINY)


# ------------------------------------------------------------------ pooling


def test_avg_pooling_with_a_class_token_checkpoint_loads_as_timm_does(tmp_path):
    # timm's global_pool="avg" model has fc_norm and no norm; loading a class-token
    # checkpoint (norm, no fc_norm) non-strictly leaves fc_norm at γ=1, β=0 and
    # drops norm. The fixture holds that timm model's outputs.
    weights, ref = fixture("timm_vit_token_checkpoint_avg_pool")
    assert "norm.weight" in weights and "fc_norm.weight" not in weights
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    model = VisionTransformer(patch_size=8, input_shape=(32, 32, 3), pooling="avg", weights=path, **TINY)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.get_layer("fc_norm").gamma), np.ones(32))
    feats, pre, logits = outputs_of(model, ref["inputs"], "avg")
    assert_close(feats, ref["features"], "features (last block, no final norm)")
    assert_close(pre, ref["pre_logits"], "pre-logits")
    assert_close(logits, ref["logits"], "logits")
    # The same pooled vector in NumPy: mean of the patch tokens, LayerNorm(γ=1, β=0), head.
    tokens = feats[:, 1:].astype(np.float64).mean(axis=1)
    normed = (tokens - tokens.mean(-1, keepdims=True)) / np.sqrt(tokens.var(-1, keepdims=True) + 1e-6)
    assert_close(pre, normed, "pre-logits against NumPy")
    assert_close(logits, normed @ weights["head.weight"].T + weights["head.bias"], "logits against NumPy")
