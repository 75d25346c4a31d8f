import keras
import numpy as np
import pytest

from keras_vit.layers import MultiHeadSelfAttention, ReAttention, ReAttentionBlock


def _copy_projections(source, target):
    target.qkv.set_weights(source.qkv.get_weights())
    target.proj.set_weights(source.proj.get_weights())


def test_identity_mixing_without_norm_equals_plain_attention():
    x = np.random.rand(2, 7, 16).astype("float32")
    plain = MultiHeadSelfAttention(4)
    plain.build(x.shape)
    re = ReAttention(4, normalization="none", mixing_initializer="identity")
    re.build(x.shape)
    _copy_projections(plain, re)
    out_plain, scores_plain = plain(x, return_attention_scores=True)
    out_re, scores_re = re(x, return_attention_scores=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out_re), keras.ops.convert_to_numpy(out_plain), atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(scores_re), keras.ops.convert_to_numpy(scores_plain), atol=1e-6
    )


def test_re_attention_matches_numpy():
    x = np.random.rand(2, 5, 12).astype("float32")
    layer = ReAttention(3)
    layer.build(x.shape)
    out, scores = layer(x, return_attention_scores=True)
    qkv = keras.ops.convert_to_numpy(layer.qkv(x)).reshape(2, 5, 3, 3, 4)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = np.einsum("bthd,bshd->bhts", q, k) / 2.0
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    theta = keras.ops.convert_to_numpy(layer.mixing)
    mixed = np.einsum("bhts,hg->btsg", attn, theta)
    mixed = (mixed - mixed.mean(-1, keepdims=True)) / np.sqrt(mixed.var(-1, keepdims=True) + 1e-5)
    mixed = mixed.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores), mixed, atol=1e-4)
    expected = np.einsum("bhts,bshd->bthd", mixed, v).reshape(2, 5, 12)
    expected = expected @ keras.ops.convert_to_numpy(layer.proj.kernel) + keras.ops.convert_to_numpy(layer.proj.bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, atol=1e-4)


def test_re_attention_config_round_trip_and_errors():
    layer = ReAttention(2, normalization="none", head_dim=8)
    clone = ReAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    block = ReAttentionBlock(2, 16, normalization="none")
    x = np.random.rand(1, 3, 8).astype("float32")
    assert block(x).shape == (1, 3, 8)
    clone = ReAttentionBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    assert isinstance(clone.attention, ReAttention)
    with pytest.raises(ValueError, match="Received: normalization='batch'"):
        ReAttention(2, normalization="batch")
    with pytest.raises(ValueError, match="cross_attention=True"):
        ReAttention(2, cross_attention=True)


def test_re_attention_overrides_only_the_head_mixing_and_the_hook_sees_mixed_maps():
    assert "attend" not in ReAttention.__dict__ and "call" not in ReAttention.__dict__
    x = np.random.rand(2, 5, 8).astype("float32")
    layer = ReAttention(2)
    out, scores = layer(x, return_attention_scores=True)
    fused_path = layer(x)  # mixing forces the explicit path: same numbers without scores
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused_path), keras.ops.convert_to_numpy(out), atol=1e-6)
    seen = []
    layer.attention_probs_hook = lambda maps, masked: seen.append(keras.ops.convert_to_numpy(maps)) or maps
    hooked = layer(x)
    layer.attention_probs_hook = None
    np.testing.assert_allclose(seen[0], keras.ops.convert_to_numpy(scores), atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(hooked), keras.ops.convert_to_numpy(out), atol=1e-6)
