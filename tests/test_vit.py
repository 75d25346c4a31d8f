"""ViT factory: published sizes, parameter counts, pooling modes, resolution changes, bad input."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.applications import VisionTransformer, ViTTiny16, get_model, list_models, model_config
from keras_vit.applications.vit import build_vit, patch_embedding

pytestmark = pytest.mark.backends

TINY = dict(hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), patch_size=8)


def images(n=2, size=32, channels=3):
    return np.random.RandomState(0).rand(n, size, size, channels).astype("float32")


# Parameter counts of timm 1.0's models with the same configuration (1000-class head).
TIMM_PARAMS = {
    "vit_tiny_patch16_224": 5_717_416,
    "vit_small_patch16_224": 22_050_664,
    "vit_base_patch16_224": 86_567_656,
    "vit_base_patch32_224": 88_224_232,
    "deit_tiny_distilled_patch16_224": 5_910_800,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_parameter_count_equals_timm(name):
    model = get_model(name)
    assert model.count_params() == TIMM_PARAMS[name]


def test_published_table():
    expected = {  # ViT paper Table 1 (and DeiT for Ti/S): D, L, heads, MLP
        "vit_tiny_patch16_224": (192, 12, 3, 768),
        "vit_small_patch16_224": (384, 12, 6, 1536),
        "vit_base_patch16_224": (768, 12, 12, 3072),
        "vit_large_patch16_224": (1024, 24, 16, 4096),
        "vit_huge_patch14_224": (1280, 32, 16, 5120),
    }
    for name, (d, depth, heads, mlp) in expected.items():
        c = model_config(name)
        assert (c["hidden_dim"], c["depth"], c["num_heads"], c["mlp_dim"]) == (d, depth, heads, mlp)
    for patch in (4, 8):
        for depth in (8, 12):
            c = model_config(f"vit_cifar_patch{patch}_depth{depth}_32")
            assert (c["patch_size"], c["depth"], c["input_shape"]) == (patch, depth, (32, 32, 3))


@pytest.mark.parametrize("pooling", ["token", "avg", "max"])
def test_pooling_modes(pooling):
    model = VisionTransformer(**TINY, pooling=pooling, classes=5)
    out = ops.convert_to_numpy(model(images()))
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    names = [layer.name for layer in model.layers]
    assert ("fc_norm" in names) == (pooling != "token")


def test_feature_extractor_outputs():
    tokens = VisionTransformer(**TINY, include_top=False, pooling=None)
    assert tuple(tokens.output.shape) == (None, 1 + 16, 32)
    pooled = VisionTransformer(**TINY, include_top=False, pooling="avg")
    assert tuple(pooled(images()).shape) == (2, 32)
    logits = VisionTransformer(**TINY, classes=3, classifier_activation=None)
    assert not np.allclose(ops.convert_to_numpy(logits(images())).sum(-1), 1.0)


def test_distilled_model_averages_two_heads():
    model = VisionTransformer(**TINY, distillation=True, classes=4, classifier_activation=None)
    x = images()
    head = keras.Model(model.input, [model.get_layer("head").output, model.get_layer("head_dist").output])
    a, b = [ops.convert_to_numpy(t) for t in head(x)]
    np.testing.assert_allclose(ops.convert_to_numpy(model(x)), (a + b) / 2, atol=1e-5)


def test_input_tensor_and_named_variant():
    inputs = keras.Input((32, 32, 3))
    model = ViTTiny16(input_tensor=inputs, patch_size=8, depth=1, classes=2)
    assert model.input is inputs
    assert model.count_params() > 0 and model.name == "vittiny16"


def keys_cubic_matrix(out_size, in_size, a=-0.5):
    """`(out, in)` matrix of bicubic resizing: Keys' kernel, half-pixel centres, taps outside the
    input dropped and the rest renormalised (what TensorFlow's and JAX's bicubic resize compute)."""

    def kernel(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        centre = (i + 0.5) * in_size / out_size - 0.5
        for j in range(int(np.floor(centre)) - 1, int(np.floor(centre)) + 3):
            if 0 <= j < in_size:
                m[i, j] = kernel(centre - j)
        m[i] /= m[i].sum()
    return m


def test_other_resolution_interpolates_the_position_table():
    """A model built for 32×32 (a 4×4 grid) embeds a 48×64 image (a 6×8 grid): the patch rows of
    E_pos are resized bicubically on the fly (ViT paper, Sec. 3.2), checked against NumPy."""
    model = VisionTransformer(**TINY, classes=3)
    encoder = model.get_layer("patch_embed")
    kernel, bias = [ops.convert_to_numpy(w) for w in encoder.projection.weights]  # (8, 8, 3, D), (D,)
    cls_token = ops.convert_to_numpy(encoder.cls_token)[0, 0]
    pos = ops.convert_to_numpy(encoder.pos_embed)[0]  # (1 + 4·4, D), row-major over the grid
    x = np.random.RandomState(1).rand(2, 48, 64, 3).astype("float32")

    # Eq. (1) by hand: 8×8 patches in row-major order, projected by E.
    patches = x.reshape(2, 6, 8, 8, 8, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 48, 8 * 8 * 3)
    tokens = patches @ kernel.reshape(-1, kernel.shape[-1]) + bias
    grid = pos[1:].reshape(4, 4, -1)
    resized = np.einsum("hi,wj,ijd->hwd", keys_cubic_matrix(6, 4), keys_cubic_matrix(8, 4), grid)
    prefix = np.broadcast_to(cls_token + pos[0], (2, 1, pos.shape[-1]))
    expected = np.concatenate([prefix, tokens + resized.reshape(48, -1)], axis=1)

    out = ops.convert_to_numpy(encoder(x))
    assert out.shape == (2, 1 + 6 * 8, 32)
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_build_vit_hooks_compose_the_model():
    """`build_vit` calls the block hook once per block, with linearly rising drop-path rates, between
    the embedding hook and the norm/pool/head tail it owns."""
    calls = []

    def block(name, drop_path):
        calls.append((name, drop_path))
        return keras.layers.Dense(32, name=name)

    inputs = keras.Input((32, 32, 3))
    model = build_vit(
        inputs,
        embedding=patch_embedding(8, 32),
        block=block,
        depth=3,
        drop_path_rate=0.2,
        classes=4,
        classifier_activation=None,
    )
    assert [name for name, _ in calls] == ["block_0", "block_1", "block_2"]
    np.testing.assert_allclose([rate for _, rate in calls], [0.0, 0.1, 0.2])
    assert isinstance(model.get_layer("block_2"), keras.layers.Dense)
    x = images()
    # Oracle: the tail by hand, class token → LayerNorm → head, on the blocks' output.
    tokens = keras.Model(inputs, model.get_layer("block_2").output)(x)
    norm, head = model.get_layer("norm"), model.get_layer("head")
    expected = ops.convert_to_numpy(head(norm(tokens)[:, 0]))
    np.testing.assert_allclose(ops.convert_to_numpy(model(x)), expected, atol=1e-5)


def test_fit_reduces_loss():
    keras.utils.set_random_seed(1)
    x = images(64, 16, 1)
    y = np.arange(64) % 2
    x[y == 1] += 1.0  # class 1 is brighter
    model = VisionTransformer(
        patch_size=4, hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, input_shape=(16, 16, 1), classes=2
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9


class TestBadInput:
    def test_patch_size_does_not_divide(self):
        with pytest.raises(ValueError, match=r"patch_size=5, input_shape=\(32, 32, 3\)"):
            VisionTransformer(**{**TINY, "patch_size": 5})

    def test_hidden_not_divisible_by_heads(self):
        with pytest.raises(ValueError, match="hidden_dim=32, num_heads=3"):
            VisionTransformer(**{**TINY, "num_heads": 3})

    def test_unknown_pooling(self):
        with pytest.raises(ValueError, match="Received: pooling='mean'"):
            VisionTransformer(**TINY, pooling="mean")

    def test_top_without_pooling(self):
        with pytest.raises(ValueError, match="Received: pooling=None"):
            VisionTransformer(**TINY, pooling=None)

    def test_unknown_model_name_lists_close_names(self):
        with pytest.raises(ValueError, match="name='vit_base_patch16_244'.*vit_base_patch16_224"):
            get_model("vit_base_patch16_244")
        assert "vit_base_patch16_224" in list_models("vit_base_*")

    def test_wrong_channels_at_call_time(self):
        model = VisionTransformer(**TINY)
        with pytest.raises(ValueError, match="3 channels"):
            model(images(1, 32, 1))

    def test_wrong_rank_at_call_time(self):
        model = VisionTransformer(**TINY)
        with pytest.raises(ValueError, match="shape"):
            model(np.zeros((32, 32, 3), "float32"))

    def test_missing_weights_file(self, tmp_path):
        missing = os.path.join(tmp_path, "nope.weights.h5")
        with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
            VisionTransformer(**TINY, weights=missing)

    def test_weights_file_round_trip(self, tmp_path):
        model = VisionTransformer(**TINY, classes=3)
        path = str(tmp_path / "m.weights.h5")
        model.save_weights(path)
        again = VisionTransformer(**TINY, classes=3, weights=path)
        x = images()
        np.testing.assert_allclose(ops.convert_to_numpy(again(x)), ops.convert_to_numpy(model(x)), atol=1e-6)


def test_mixed_precision_computes_in_float16_and_returns_float32_probabilities():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = VisionTransformer(
            input_shape=(16, 16, 3), patch_size=4, hidden_dim=32, depth=1, num_heads=2, mlp_dim=32, classes=5
        )
    finally:
        keras.config.set_dtype_policy(policy)
    assert model.get_layer("block_0").compute_dtype == "float16"
    assert model.get_layer("head").compute_dtype == "float16"
    probs = keras.ops.convert_to_numpy(model(np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("patch_size", [0, 8.0, "8", True])
def test_factory_rejects_bad_patch_sizes_by_name(patch_size):
    with pytest.raises(ValueError, match=f"Received: patch_size={patch_size!r}"):
        VisionTransformer(
            input_shape=(32, 32, 3), patch_size=patch_size, hidden_dim=32, depth=1, num_heads=2, mlp_dim=32
        )
