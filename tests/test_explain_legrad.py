"""LeGrad's gradients through the attention hook, against a NumPy forward pass differentiated by finite differences."""

import keras
import numpy as np
import pytest
from scipy.special import erf

from keras_vit import explain
from keras_vit.applications import VisionTransformer
from keras_vit.explain.graph import Structure, explained_model
from keras_vit.explain.legrad import attention_gradients

pytestmark = pytest.mark.backends

SHAPE = (8, 8, 3)
CLASSES = 4


def tiny_vit(depth=2):
    keras.utils.set_random_seed(3)
    return VisionTransformer(
        patch_size=4, hidden_dim=8, depth=depth, num_heads=2, mlp_dim=16, input_shape=SHAPE, classes=CLASSES
    )


def weights(layer):
    return [np.asarray(w, "float64") for w in layer.get_weights()]


def np_layer_norm(x, layer):
    gamma, beta = weights(layer)
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + layer.epsilon) * gamma + beta


def np_block(block, x, delta):
    """The pre-norm ViT block (Dosovitskiy et al. Eq. 2-3) in float64, with `delta` added to its attention map."""
    h = np_layer_norm(x, block.norm1)
    kernel, bias = weights(block.attention.qkv)
    b, t, _ = x.shape
    qkv = (h @ kernel + bias).reshape(b, t, 3, block.num_heads, -1)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a = a / a.sum(-1, keepdims=True) + delta
    out = np.einsum("bhts,bshd->bthd", a, v).reshape(b, t, -1)
    kernel, bias = weights(block.attention.proj)
    x = x + out @ kernel + bias
    w1, b1, w2, b2 = weights(block.mlp)
    z = np_layer_norm(x, block.norm2) @ w1 + b1
    z = 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))  # exact GELU
    return x + z @ w2 + b2


def np_logits(model, tokens, deltas, blocks):
    """Class logits (before the softmax) from the embedded tokens through `blocks` only, then the head."""
    x = tokens
    for i in blocks:
        x = np_block(model.get_layer(f"block_{i}"), x, deltas.get(i, 0.0))
    x = np_layer_norm(x, model.get_layer("norm"))[:, 0]  # class token
    kernel, bias = weights(model.get_layer("head"))
    return x @ kernel + bias


def numeric_gradient(model, tokens, target, block, blocks, eps=1e-4):
    """∂ logit_target / ∂A_block of one image by central differences, every entry at once: (h, T, T)."""
    heads, t = model.get_layer(f"block_{block}").num_heads, tokens.shape[1]
    count = heads * t * t
    basis = np.eye(count).reshape(count, heads, t, t) * eps
    x = np.repeat(tokens, count, axis=0)
    plus = np_logits(model, x, {block: basis}, blocks)[:, target]
    minus = np_logits(model, x, {block: -basis}, blocks)[:, target]
    return ((plus - minus) / (2 * eps)).reshape(heads, t, t)


def embedded_tokens(model, x):
    tokens = keras.Model(model.inputs[0], model.get_layer("patch_embed").output)(x)
    return keras.ops.convert_to_numpy(keras.ops.stop_gradient(tokens)).astype("float64")


def test_numpy_oracle_reproduces_the_model():
    model = tiny_vit()
    x = np.random.default_rng(0).random((2,) + SHAPE).astype("float32")
    logits = explained_model(model, logits=True)(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.stop_gradient(logits)),
        np_logits(model, embedded_tokens(model, x), {}, [0, 1]),
        atol=1e-5,
    )


def test_gradient_through_the_hook_matches_finite_differences_of_numpy():
    model = tiny_vit()
    x = np.random.default_rng(1).random((1,) + SHAPE).astype("float32")
    structure = Structure(model, x, "legrad")
    one_hot = np.eye(CLASSES, dtype="float32")[[2]]
    grads = attention_gradients(explained_model(model, structure, logits=True), x, structure, one_hot, [0, 1])
    tokens = embedded_tokens(model, x)
    for block in (0, 1):
        expected = numeric_gradient(model, tokens, 2, block, [0, 1])
        assert np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(grads[block][0], expected, rtol=1e-3, atol=1e-5)


def legrad_oracle(model, x, target, blocks, layer_logits, relu=True):
    """LeGrad's patch map from the NumPy gradients: Σ_l mean_{heads, queries} ReLU(∂s/∂A_l), min-max scaled."""
    tokens = embedded_tokens(model, x)
    total = 0.0
    for block in blocks:
        through = list(range(block + 1)) if layer_logits else [0, 1, 2]
        grad = numeric_gradient(model, tokens, target, block, through)
        total = total + (np.maximum(grad, 0.0) if relu else grad).mean(axis=(0, 1))
    grid = total[1:].reshape(2, 2)
    return (grid - grid.min()) / (grid.max() - grid.min())


@pytest.mark.parametrize("layer_logits", [False, True])
def test_legrad_equals_the_numpy_oracle(layer_logits):
    model = tiny_vit(depth=3)
    x = np.random.default_rng(2).random((1,) + SHAPE).astype("float32")
    got = explain.legrad(model, x, class_index=1, layer_logits=layer_logits, upsample=False)[0]
    # Default: the last two blocks, both differentiated through the whole model;
    # layer_logits=True: block l read by the head directly (the later blocks skipped).
    np.testing.assert_allclose(got, legrad_oracle(model, x, 1, [1, 2], layer_logits), atol=1e-3)
    # The ReLU matters here: without it the map would differ.
    assert np.abs(got - legrad_oracle(model, x, 1, [1, 2], layer_logits, relu=False)).max() > 0.05
    if layer_logits:
        assert np.abs(got - legrad_oracle(model, x, 1, [1, 2], False)).max() > 0.05
