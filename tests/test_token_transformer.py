import keras
import numpy as np
import pytest

from keras_vit.layers import TokenPerformer, TokenTransformer


def test_token_transformer_narrows_tokens_with_value_residual():
    x = np.random.rand(2, 9, 27).astype("float32")
    layer = TokenTransformer(8)
    out, scores = layer(x, return_attention_scores=True)
    assert out.shape == (2, 9, 8) and scores.shape == (2, 1, 9, 9)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.sum(scores, -1)), 1.0, atol=1e-5)
    # With W^O = 0 and a zero MLP, the output is V itself: the value residual.
    layer.proj.kernel.assign(np.zeros(layer.proj.kernel.shape))
    layer.mlp.fc2.kernel.assign(np.zeros(layer.mlp.fc2.kernel.shape))
    q_k_v = keras.ops.convert_to_numpy(layer.qkv(layer.norm1(x)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), q_k_v[..., 16:], atol=1e-5)


def test_token_transformer_checks_and_round_trip():
    with pytest.raises(ValueError, match="Received: residual='other'"):
        TokenTransformer(8, residual="other")
    with pytest.raises(ValueError, match="residual='input' needs `output_dim` equal"):
        TokenTransformer(8, residual="input")(np.zeros((1, 4, 6), "float32"))
    layer = TokenTransformer(None, residual="input", output_projection=False, final_norm=True)
    assert layer(np.zeros((1, 4, 6), "float32")).shape == (1, 4, 6)
    assert TokenTransformer.from_config(layer.get_config()).get_config() == layer.get_config()


def test_token_performer_is_a_normalised_kernel_attention():
    x = np.random.rand(2, 16, 12).astype("float32")
    layer = TokenPerformer(8)
    assert layer(x).shape == (2, 16, 8)
    w = keras.ops.convert_to_numpy(layer.random_features)
    assert not layer.random_features.trainable and w.shape == (4, 8)
    np.testing.assert_allclose(w @ w.T, 4.0 * np.eye(4), atol=1e-4)  # orthogonal rows, norm √m
    # φ(Q)φ(K)ᵀ / D: positive weights whose rows sum to one.
    q = np.random.randn(2, 16, 8).astype("float32")
    k = np.random.randn(2, 16, 8).astype("float32")
    qp, kp = (keras.ops.convert_to_numpy(layer.feature_map(t)) for t in (q, k))
    weights = np.einsum("btm,bsm->bts", qp, kp)
    weights = weights / weights.sum(-1, keepdims=True)
    assert (weights > 0).all()
    assert TokenPerformer.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="Received: output_dim=0"):
        TokenPerformer(0)


def test_token_transformer_fused_default_matches_numpy_attention():
    x = np.random.rand(2, 6, 12).astype("float32")
    layer = TokenTransformer(8, num_heads=2, mlp_ratio=1.0)
    out, scores = layer(x, return_attention_scores=True)
    h = keras.ops.convert_to_numpy(layer.norm1(x))
    qkv = (h @ keras.ops.convert_to_numpy(layer.qkv.kernel)).reshape(2, 6, 3, 2, 4)
    q, k = qkv[:, :, 0], qkv[:, :, 1]
    logits = np.einsum("bthd,bshd->bhts", q, k) * (12 // 2) ** -0.5  # the official input-width scale
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(scores), expected / expected.sum(-1, keepdims=True), atol=1e-5
    )
    # The default call runs the fused kernel and gives the same outputs.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), keras.ops.convert_to_numpy(out), atol=1e-5)
