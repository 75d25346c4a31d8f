"""Argument and call-time checks of `PatchEncoder` (its maths is tested in test_layers.py)."""

import re

import keras
import numpy as np
import pytest

from keras_vit.layers import PatchEncoder

pytestmark = pytest.mark.backends


@pytest.mark.parametrize("patch_size", [0, -4, 8.0, "8", True, (4, 0), (4, 4, 4), None])
def test_bad_patch_size(patch_size):
    with pytest.raises(
        ValueError, match=r"`patch_size` must be a positive int .*Received: patch_size=" + re.escape(repr(patch_size))
    ):
        PatchEncoder(patch_size, 8)


def test_numpy_and_pair_patch_sizes():
    tokens = PatchEncoder(np.int64(2), 8, class_token=False)(np.zeros((1, 4, 6, 3), "float32"))
    assert tuple(tokens.shape) == (1, 2 * 3, 8)
    tokens = PatchEncoder([2, 3], 8, class_token=False)(np.zeros((1, 4, 6, 3), "float32"))
    assert tuple(tokens.shape) == (1, 2 * 2, 8)


def test_a_size_the_patch_does_not_divide_is_refused_at_call_time():
    # Built for 8×8 images, the encoder serves other sizes by interpolating E_pos (12×12: a
    # 3×3 grid), but a 10×10 image would lose its last 2 rows and columns to the strided
    # projection; timm's PatchEmbed raises for it as well.
    layer = PatchEncoder(4, 8, image_size=(8, 8))
    assert tuple(layer(np.zeros((1, 12, 12, 3), "float32")).shape) == (1, 1 + 9, 8)
    with pytest.raises(ValueError, match=r"must divide the image height. Received: patch_size=4 .*\(1, 10, 12, 3\)"):
        layer(np.zeros((1, 10, 12, 3), "float32"))
    with pytest.raises(ValueError, match=r"must divide the image width. Received: patch_size=4 .*\(1, 12, 10, 3\)"):
        layer(np.zeros((1, 12, 10, 3), "float32"))


def _numpy_z0(layer, images):
    """z_0 built in NumPy from the layer's weights: [cls, (dist), registers, patches], where E_pos is added to
    the class, distillation and patch tokens only (Darcet et al. 2024, as DINOv2-with-registers does)."""
    kernel, bias = layer.projection.get_weights()
    p_h, p_w, c, d = kernel.shape
    b, h, w, _ = images.shape
    patches = images.reshape(b, h // p_h, p_h, w // p_w, p_w, c).transpose(0, 1, 3, 2, 4, 5)
    tokens = patches.reshape(b, -1, p_h * p_w * c) @ kernel.reshape(-1, d) + bias  # x_p^n E
    prefix = [keras.ops.convert_to_numpy(layer.cls_token)] + (
        [keras.ops.convert_to_numpy(layer.dist_token)] if layer.distillation_token else []
    )
    embedded = np.concatenate([np.repeat(t, b, axis=0) for t in prefix] + [tokens], axis=1)
    embedded = embedded + keras.ops.convert_to_numpy(layer.pos_embed)
    registers = np.repeat(keras.ops.convert_to_numpy(layer.register_tokens), b, axis=0)
    n = len(prefix)
    return np.concatenate([embedded[:, :n], registers, embedded[:, n:]], axis=1)


@pytest.mark.parametrize("distillation_token", [False, True])
def test_register_tokens_follow_the_prefix_and_carry_no_position_embedding(distillation_token):
    rng = np.random.default_rng(0)
    layer = PatchEncoder(2, 8, distillation_token=distillation_token, num_register_tokens=3)
    images = rng.standard_normal((2, 4, 6, 3)).astype("float32")
    layer.build(images.shape)
    # Distinct random values everywhere, so that any token moved or any E_pos row shifted shows.
    for weight in layer.weights:
        weight.assign(rng.standard_normal(weight.shape).astype("float32"))
    n_prefix = 1 + int(distillation_token)
    assert layer.num_prefix_tokens == n_prefix + 3
    assert tuple(layer.pos_embed.shape) == (1, n_prefix + 2 * 3, 8)  # no rows for the registers
    tokens = keras.ops.convert_to_numpy(layer(images))
    assert tokens.shape == (2, n_prefix + 3 + 6, 8)
    np.testing.assert_allclose(tokens, _numpy_z0(layer, images), rtol=1e-5, atol=1e-5)
    # The registers are the raw learned vectors, the same for every image.
    np.testing.assert_array_equal(
        tokens[:, n_prefix : n_prefix + 3], np.repeat(keras.ops.convert_to_numpy(layer.register_tokens), 2, 0)
    )
