"""ViT factory: published sizes, parameter counts, pooling modes, resolution changes, bad input."""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.applications import VisionTransformer, ViTTiny16, get_model, list_models, model_config

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


def test_other_resolution_with_the_same_weights():
    """A model built for 32×32 serves 64×64 inputs through interpolated E_pos."""
    small = VisionTransformer(**TINY, classes=3)
    big = VisionTransformer(**{**TINY, "input_shape": (64, 64, 3)}, classes=3)
    encoder = small.get_layer("patch_embed")
    resampled = ops.convert_to_numpy(encoder.position_table((8, 8)))
    for layer_small, layer_big in zip(small.layers, big.layers):
        if layer_small.name == "patch_embed":
            weights = layer_small.get_weights()
            weights = [resampled if w.shape == encoder.pos_embed.shape else w for w in weights]
            layer_big.set_weights(weights)
        else:
            layer_big.set_weights(layer_small.get_weights())
    x = images(2, 64)
    direct = encoder(x)  # the built-for-32 layer on 64×64 input interpolates on the fly
    assert tuple(direct.shape) == (2, 65, 32)
    np.testing.assert_allclose(
        ops.convert_to_numpy(direct), ops.convert_to_numpy(big.get_layer("patch_embed")(x)), atol=1e-5
    )


def test_fit_reduces_loss():
    keras.utils.set_random_seed(1)
    x = images(64, 16, 1)
    y = np.arange(64) % 2
    x[y == 1] += 1.0  # class 1 is brighter
    model = VisionTransformer(patch_size=4, hidden_dim=32, depth=2, num_heads=2, mlp_dim=64,
                              input_shape=(16, 16, 1), classes=2)
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
