"""Layer tests: values against plain NumPy versions of the paper equations, round trips, errors."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.layers import (
    MLP,
    DropPath,
    LayerScale,
    MultiHeadSelfAttention,
    PatchEncoder,
    PositionalEncoding,
    TokenPooling,
    TransformerBlock,
    resample_position_embedding,
    sinusoidal_encoding,
    sinusoidal_encoding_2d,
    sinusoidal_encoding_at,
)

pytestmark = pytest.mark.backends

ATOL = 1e-5


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_layer_norm(x, gamma, beta, eps):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def np_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def np_attention(x, layer, context=None, mask=None, causal=False):
    """softmax(QKᵀ/√d)V per head, then W^O, from the layer's own weights."""
    h, d = layer.num_heads, layer._head_dim
    b, t, _ = x.shape
    if layer.cross_attention:
        wq, bq = [np.asarray(w) for w in layer.query.weights]
        wkv, bkv = [np.asarray(w) for w in layer.key_value.weights]
        q = (x @ wq + bq).reshape(b, t, h, d)
        kv = (context @ wkv + bkv).reshape(b, context.shape[1], 2, h, d)
        k, v = kv[:, :, 0], kv[:, :, 1]
    else:
        w, bias = [np.asarray(w) for w in layer.qkv.weights]
        qkv = (x @ w + bias).reshape(b, t, 3, h, d)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = np.einsum("bthd,bshd->bhts", q, k) / math.sqrt(d)
    s = k.shape[1]
    allowed = np.ones((b, 1, t, s), bool)
    if mask is not None:
        allowed &= mask[:, None, None, :]
    if causal:
        allowed &= np.tril(np.ones((t, s), bool))[None, None]
    logits = np.where(allowed, logits, -1e9)
    scores = np_softmax(logits)
    out = np.einsum("bhts,bshd->bthd", scores, v).reshape(b, t, h * d)
    wo, bo = [np.asarray(w) for w in layer.proj.weights]
    return out @ wo + bo, scores


def roundtrip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    return clone


class TestMultiHeadSelfAttention:
    def test_matches_numpy_fused_and_explicit(self):
        x = np.random.randn(2, 5, 16).astype("float32")
        layer = MultiHeadSelfAttention(num_heads=4)
        fused = ops.convert_to_numpy(layer(x))
        out, scores = layer(x, return_attention_scores=True)
        ref_out, ref_scores = np_attention(x, layer)
        np.testing.assert_allclose(fused, ref_out, atol=ATOL)
        np.testing.assert_allclose(ops.convert_to_numpy(out), ref_out, atol=ATOL)
        np.testing.assert_allclose(ops.convert_to_numpy(scores), ref_scores, atol=ATOL)
        np.testing.assert_allclose(ops.convert_to_numpy(scores).sum(-1), 1.0, atol=1e-5)

    def test_padding_and_causal_masks(self):
        x = np.random.randn(2, 6, 8).astype("float32")
        mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
        layer = MultiHeadSelfAttention(num_heads=2)
        for causal in (False, True):
            out = layer(x, attention_mask=mask, use_causal_mask=causal)
            ref, _ = np_attention(x, layer, mask=mask, causal=causal)
            np.testing.assert_allclose(ops.convert_to_numpy(out), ref, atol=ATOL)
        # Causality: changing token 4 leaves outputs 0..3 unchanged.
        y = x.copy()
        y[:, 4] += 1.0
        a = ops.convert_to_numpy(layer(x, use_causal_mask=True))
        b = ops.convert_to_numpy(layer(y, use_causal_mask=True))
        np.testing.assert_allclose(a[:, :4], b[:, :4], atol=ATOL)
        assert np.abs(a[:, 4] - b[:, 4]).max() > 1e-4

    def test_cross_attention(self):
        x = np.random.randn(2, 3, 8).astype("float32")
        context = np.random.randn(2, 7, 12).astype("float32")
        layer = MultiHeadSelfAttention(num_heads=2, cross_attention=True)
        out, scores = layer(x, context=context, return_attention_scores=True)
        assert tuple(out.shape) == (2, 3, 8) and tuple(scores.shape) == (2, 2, 3, 7)
        ref, _ = np_attention(x, layer, context=context)
        np.testing.assert_allclose(ops.convert_to_numpy(out), ref, atol=ATOL)

    def test_attention_bias_is_added_to_logits(self):
        x = np.random.randn(1, 4, 8).astype("float32")
        layer = MultiHeadSelfAttention(num_heads=2)
        bias = np.zeros((1, 2, 4, 4), "float32")
        bias[..., 0] = 50.0  # every query attends to token 0 only
        _, scores = layer(x, attention_bias=bias, return_attention_scores=True)
        np.testing.assert_allclose(ops.convert_to_numpy(scores)[..., 0], 1.0, atol=1e-5)
        fused = ops.convert_to_numpy(layer(x, attention_bias=bias))
        explicit = ops.convert_to_numpy(layer(x, attention_bias=bias, return_attention_scores=True)[0])
        np.testing.assert_allclose(fused, explicit, atol=ATOL)

    def test_bias_and_mask_together(self):
        x = np.random.randn(2, 4, 8).astype("float32")
        layer = MultiHeadSelfAttention(num_heads=2)
        bias = np.random.randn(1, 2, 4, 4).astype("float32")
        mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
        fused = ops.convert_to_numpy(layer(x, attention_bias=bias, attention_mask=mask))
        explicit, scores = layer(x, attention_bias=bias, attention_mask=mask, return_attention_scores=True)
        np.testing.assert_allclose(fused, ops.convert_to_numpy(explicit), atol=ATOL)
        np.testing.assert_allclose(ops.convert_to_numpy(scores)[0, :, :, 3], 0.0, atol=1e-6)

    def test_fused_kernel_choice_skips_cudnn_for_odd_lengths_on_jax(self):
        odd, even = ops.zeros((1, 17, 2, 8)), ops.zeros((1, 16, 2, 8))
        from keras_vit.layers.multi_head_self_attention import _flash_attention as choose

        if keras.backend.backend() == "jax":
            assert choose(odd, odd) is False and choose(even, odd) is False
            assert choose(even, even) is None
        else:
            assert choose(odd, odd) is None and choose(even, even) is None

    def test_probs_hook_reads_and_feeds_the_maps(self, monkeypatch):
        x = np.random.randn(2, 5, 8).astype("float32")
        layer = MultiHeadSelfAttention(num_heads=2)
        layer.build(x.shape)
        ref_out, ref_scores = np_attention(x, layer)
        fused_calls = []
        fused = ops.dot_product_attention
        monkeypatch.setattr(ops, "dot_product_attention", lambda *a, **k: fused_calls.append(1) or fused(*a, **k))
        out = ops.convert_to_numpy(layer(x))
        assert fused_calls == [1]  # no hook: the fused kernel, nothing else
        np.testing.assert_allclose(out, ref_out, atol=ATOL)
        seen = []
        layer.attention_probs_hook = lambda maps, masked: (
            seen.append((ops.convert_to_numpy(ops.stop_gradient(maps)), masked)) or maps
        )
        hooked = ops.convert_to_numpy(layer(x))
        assert fused_calls == [1]  # the hook takes the explicit path
        np.testing.assert_allclose(hooked, out, atol=ATOL)  # same outputs as the fused path
        ((maps, masked),) = seen
        np.testing.assert_allclose(maps, ref_scores, atol=ATOL)
        assert masked is False
        layer(x, use_causal_mask=True)
        assert seen[-1][1] is True
        # What the hook returns weights V: A' = A + Δ changes the output by (Δ V) W^O.
        delta = np.zeros((2, 2, 5, 5), "float32")
        delta[0, 1, 2, 3] = 0.5
        layer.attention_probs_hook = lambda maps, masked: maps + ops.convert_to_tensor(delta, dtype=maps.dtype)
        shifted = ops.convert_to_numpy(layer(x))
        w, bias = [np.asarray(v) for v in layer.qkv.weights]
        v = (x @ w + bias).reshape(2, 5, 3, 2, 4)[:, :, 2]
        change = np.zeros((2, 5, 2, 4), "float32")
        change[0, 2, 1] = 0.5 * v[0, 3, 1]
        np.testing.assert_allclose(shifted - out, change.reshape(2, 5, 8) @ np.asarray(layer.proj.kernel), atol=ATOL)
        layer.attention_probs_hook = None
        assert "attention_probs_hook" not in layer.get_config()

    def test_config_roundtrip(self):
        layer = MultiHeadSelfAttention(num_heads=3, head_dim=5, qkv_bias=False, attention_dropout=0.1)
        clone = roundtrip(layer)
        assert clone(np.zeros((1, 2, 6), "float32")).shape == (1, 2, 6)
        assert clone.qkv.kernel.shape == (6, 45)

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"num_heads": 0}, "Received: num_heads=0"),
            ({"num_heads": 2, "head_dim": -1}, "Received: head_dim=-1"),
            ({"num_heads": 2, "attention_dropout": 1.5}, "Received: attention_dropout=1.5"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            MultiHeadSelfAttention(**kwargs)

    def test_hidden_not_divisible_by_heads(self):
        with pytest.raises(ValueError, match="hidden_dim=10, num_heads=4"):
            MultiHeadSelfAttention(num_heads=4)(np.zeros((1, 2, 10), "float32"))


class TestPositionalEncoding:
    def test_sinusoidal_equals_paper_formula(self):
        length, dim = 50, 16
        pe = ops.convert_to_numpy(sinusoidal_encoding(length, dim))
        ref = np.zeros((length, dim))
        for pos in range(length):
            for i in range(dim // 2):
                ref[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / dim))
                ref[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / dim))
        np.testing.assert_allclose(pe, ref, atol=1e-5)

    def test_layer_adds_encoding(self):
        x = np.random.randn(2, 7, 8).astype("float32")
        out = ops.convert_to_numpy(PositionalEncoding()(x))
        np.testing.assert_allclose(
            out - x, np.broadcast_to(ops.convert_to_numpy(sinusoidal_encoding(7, 8)), x.shape), atol=1e-6
        )

    def test_2d_encoding(self):
        pe = ops.convert_to_numpy(sinusoidal_encoding_2d(3, 4, 8))
        omega = 1.0 / 10000 ** (np.arange(2) / 1.0)
        row, col = 2, 3  # grid cell (y=2, x=3) is row-major index 11
        ref = np.concatenate([np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)])
        np.testing.assert_allclose(pe[row * 4 + col], ref, atol=1e-6)
        x = np.zeros((1, 3, 4, 8), "float32")
        out = ops.convert_to_numpy(PositionalEncoding("sinusoidal_2d")(x))
        np.testing.assert_allclose(out.reshape(12, 8), pe, atol=1e-6)

    def test_learned_is_a_trainable_weight(self):
        layer = PositionalEncoding("learned", max_length=10)
        x = np.zeros((2, 6, 4), "float32")
        out = ops.convert_to_numpy(layer(x))
        np.testing.assert_allclose(out[0], ops.convert_to_numpy(layer.embeddings)[:6], atol=1e-7)
        assert len(layer.trainable_weights) == 1
        roundtrip(layer)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="Received: kind='rotary'"):
            PositionalEncoding("rotary")
        with pytest.raises(ValueError, match="Received: max_length=None"):
            PositionalEncoding("learned")
        with pytest.raises(ValueError, match="Received: dim=7"):
            sinusoidal_encoding(4, 7)


class TestPatchEncoder:
    def test_equals_flattened_patches_times_E(self):
        images = np.random.rand(2, 8, 12, 3).astype("float32")
        layer = PatchEncoder(patch_size=4, hidden_dim=6)
        tokens = ops.convert_to_numpy(layer(images))
        assert tokens.shape == (2, 1 + 2 * 3, 6)
        kernel, bias = [np.asarray(w) for w in layer.projection.weights]  # (4, 4, 3, 6)
        E = kernel.reshape(4 * 4 * 3, 6)
        pos = np.asarray(layer.pos_embed)[0]
        cls = np.asarray(layer.cls_token)[0, 0]
        for b in range(2):
            np.testing.assert_allclose(tokens[b, 0], cls + pos[0], atol=1e-5)
            n = 1
            for gy in range(2):
                for gx in range(3):
                    patch = images[b, gy * 4 : gy * 4 + 4, gx * 4 : gx * 4 + 4, :].reshape(-1)
                    np.testing.assert_allclose(tokens[b, n], patch @ E + bias + pos[n], atol=1e-5)
                    n += 1

    def test_extra_tokens(self):
        layer = PatchEncoder(4, 8, distillation_token=True, num_register_tokens=2)
        out = layer(np.zeros((1, 8, 8, 3), "float32"))
        assert out.shape == (1, 2 + 2 + 4, 8)
        assert layer.num_prefix_tokens == 4 and layer.pos_embed.shape == (1, 2 + 4, 8)
        roundtrip(layer)

    def test_interpolates_position_embedding_at_another_resolution(self):
        layer = PatchEncoder(4, 8)
        layer(np.zeros((1, 16, 16, 3), "float32"))  # built for a 4x4 grid
        out = layer(np.random.rand(2, 32, 24, 3).astype("float32"))
        assert out.shape == (2, 1 + 8 * 6, 8)
        table = ops.convert_to_numpy(layer.position_table((8, 6)))
        assert table.shape == (1, 1 + 48, 8)
        np.testing.assert_allclose(table[0, 0], np.asarray(layer.pos_embed)[0, 0])  # prefix kept apart

    def test_resample_returns_input_when_grid_matches(self):
        pos = np.random.randn(1, 1 + 9, 4).astype("float32")
        np.testing.assert_array_equal(ops.convert_to_numpy(resample_position_embedding(pos, (3, 3))), pos)
        constant = np.ones((1, 1 + 9, 4), "float32")
        out = ops.convert_to_numpy(resample_position_embedding(constant, (5, 5), interpolation="bilinear"))
        np.testing.assert_allclose(out, 1.0, atol=1e-5)

    def test_sincos_position_embedding_has_no_weights(self):
        layer = PatchEncoder(2, 8, position_embedding="sincos", class_token=False)
        out = ops.convert_to_numpy(layer(np.zeros((1, 4, 4, 1), "float32")))
        bias = np.asarray(layer.projection.bias)
        np.testing.assert_allclose(out[0] - bias, ops.convert_to_numpy(sinusoidal_encoding_2d(2, 2, 8)), atol=1e-6)
        assert all("position" not in w.path for w in layer.weights)

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match=r"patch_size=5 for an image of size \(16, 16\)"):
            PatchEncoder(5, 8)(np.zeros((1, 16, 16, 3), "float32"))
        layer = PatchEncoder(4, 8)
        layer(np.zeros((1, 8, 8, 3), "float32"))
        with pytest.raises(ValueError, match="built for 3 channels"):
            layer(np.zeros((1, 8, 8, 1), "float32"))
        with pytest.raises(ValueError, match="Received an input of shape"):
            layer(np.zeros((8, 8, 3), "float32"))
        with pytest.raises(ValueError, match="Received: position_embedding='rope'"):
            PatchEncoder(4, 8, position_embedding="rope")
        with pytest.raises(ValueError, match="Received: patch_size=0"):
            PatchEncoder(0, 8)


class TestTransformerBlock:
    @pytest.mark.parametrize("norm_first", [True, False])
    def test_matches_numpy(self, norm_first):
        x = np.random.randn(2, 5, 8).astype("float32")
        block = TransformerBlock(num_heads=2, mlp_dim=16, norm_first=norm_first, layer_norm_epsilon=1e-6)
        out = ops.convert_to_numpy(block(x))
        ln1 = [np.asarray(w) for w in block.norm1.weights]
        ln2 = [np.asarray(w) for w in block.norm2.weights]
        w1, b1, w2, b2 = [np.asarray(w) for w in block.mlp.weights]

        def mlp(z):
            return np_gelu(z @ w1 + b1) @ w2 + b2

        if norm_first:  # ViT Eq. (2)-(3)
            z = x + np_attention(np_layer_norm(x, *ln1, 1e-6), block.attention)[0]
            ref = z + mlp(np_layer_norm(z, *ln2, 1e-6))
        else:  # Vaswani et al.: LayerNorm(x + Sublayer(x))
            z = np_layer_norm(x + np_attention(x, block.attention)[0], *ln1, 1e-6)
            ref = np_layer_norm(z + mlp(z), *ln2, 1e-6)
        np.testing.assert_allclose(out, ref, atol=1e-4)

    def test_scores_layer_scale_and_roundtrip(self):
        block = TransformerBlock(2, 16, layer_scale_init=0.1, drop_path=0.1, dropout=0.1)
        x = np.random.randn(1, 4, 8).astype("float32")
        out, scores = block(x, return_attention_scores=True)
        assert scores.shape == (1, 2, 4, 4)
        np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(block(x)), atol=1e-5)
        clone = roundtrip(block)
        clone(x)
        clone.set_weights(block.get_weights())
        np.testing.assert_allclose(ops.convert_to_numpy(clone(x)), ops.convert_to_numpy(out), atol=1e-6)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="Received: mlp_dim=0"):
            TransformerBlock(2, 0)
        with pytest.raises(ValueError, match="Received: num_heads=-2"):
            TransformerBlock(-2, 8)
        with pytest.raises(ValueError, match="Received: drop_path=1.0"):
            TransformerBlock(2, 8, drop_path=1.0)


class TestSmallLayers:
    def test_drop_path(self):
        x = np.ones((2000, 3), "float32")
        layer = DropPath(0.25, seed=1)
        np.testing.assert_array_equal(ops.convert_to_numpy(layer(x)), x)
        y = ops.convert_to_numpy(layer(x, training=True))
        kept = y[:, 0] > 0
        assert np.all((y[kept] == 1 / 0.75)) and np.all(y[~kept] == 0)
        assert abs(kept.mean() - 0.75) < 0.05
        with pytest.raises(ValueError, match="Received: rate=1.0"):
            DropPath(1.0)

    def test_layer_scale(self):
        layer = LayerScale(0.5)
        np.testing.assert_allclose(ops.convert_to_numpy(layer(np.ones((1, 3), "float32"))), 0.5)
        roundtrip(layer)

    def test_mlp(self):
        x = np.random.randn(2, 3, 4).astype("float32")
        layer = MLP(8, activation="relu")
        w1, b1, w2, b2 = [np.asarray(w) for w in (layer(x), layer.weights)[1]]
        np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), np.maximum(x @ w1 + b1, 0) @ w2 + b2, atol=1e-5)
        roundtrip(layer)

    def test_token_pooling(self):
        x = np.random.randn(2, 5, 3).astype("float32")
        np.testing.assert_allclose(ops.convert_to_numpy(TokenPooling("token")(x)), x[:, 0])
        np.testing.assert_allclose(ops.convert_to_numpy(TokenPooling("avg", 1)(x)), x[:, 1:].mean(1), atol=1e-6)
        np.testing.assert_allclose(ops.convert_to_numpy(TokenPooling("max", 2)(x)), x[:, 2:].max(1))
        with pytest.raises(ValueError, match="Received: mode='sum'"):
            TokenPooling("sum")


def test_layers_save_and_load_in_a_model(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = PatchEncoder(4, 8, name="pe")(inputs)
    x = TransformerBlock(2, 16, name="tb")(x)
    x = PositionalEncoding("learned", max_length=5)(x)
    x = TokenPooling("avg")(x)
    model = keras.Model(inputs, x)
    data = np.random.rand(2, 8, 8, 3).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(data)), ops.convert_to_numpy(model(data)), atol=1e-6)


def test_sinusoidal_encoding_at_offset_positions_equals_the_table_rows():
    table = ops.convert_to_numpy(sinusoidal_encoding(12, 8))
    rows = ops.convert_to_numpy(sinusoidal_encoding_at(ops.arange(4) + 7, 8))
    np.testing.assert_allclose(rows, table[7:11], atol=1e-6)
