import numpy as np
import pytest
from keras import ops

from keras_vit.layers import WindowAttention, relative_position_index

pytestmark = pytest.mark.backends


def _softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def test_relative_position_index_matches_offsets():
    win_h, win_w = 2, 3
    index = relative_position_index((win_h, win_w))
    coords = [(i, j) for i in range(win_h) for j in range(win_w)]
    for a, (ya, xa) in enumerate(coords):
        for b, (yb, xb) in enumerate(coords):
            expected = (ya - yb + win_h - 1) * (2 * win_w - 1) + (xa - xb + win_w - 1)
            assert index[a, b] == expected
    assert index.max() == (2 * win_h - 1) * (2 * win_w - 1) - 1


def test_window_attention_matches_numpy():
    heads, dim, window = 2, 8, 2
    layer = WindowAttention(heads, window_size=window)
    x = np.random.randn(6, window * window, dim).astype("float32")  # 2 images × 3 windows
    mask = np.random.rand(3, 4, 4) > 0.3
    mask[:, np.arange(4), np.arange(4)] = True
    layer.build(x.shape)
    table = np.random.randn(*layer.relative_position_bias_table.shape).astype("float32")
    layer.relative_position_bias_table.assign(table)
    out, scores = layer(x, attention_mask=mask, return_attention_scores=True)

    attn = layer.attention
    wq, bq = (ops.convert_to_numpy(v) for v in attn.qkv.weights)
    qkv = (x @ wq + bq).reshape(6, 4, 3, heads, dim // heads)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim // heads)
    bias = table[relative_position_index(window).reshape(-1)].reshape(4, 4, heads).transpose(2, 0, 1)
    logits = logits + bias[None]
    logits = np.where(np.tile(mask, (2, 1, 1))[:, None], logits, -1e9)
    expected_scores = _softmax(logits)
    ctx = (expected_scores @ v).transpose(0, 2, 1, 3).reshape(6, 4, dim)
    wp, bp = (ops.convert_to_numpy(v) for v in attn.proj.weights)
    np.testing.assert_allclose(ops.convert_to_numpy(scores), expected_scores, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(out), ctx @ wp + bp, atol=1e-5)
    # The fused path (no scores requested) gives the same output.
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x, attention_mask=mask)), ctx @ wp + bp, atol=1e-5)


def test_window_attention_config_round_trip():
    layer = WindowAttention(3, window_size=(2, 3), qkv_bias=False, name="w")
    clone = WindowAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    x = np.random.randn(2, 6, 12).astype("float32")
    assert clone(x).shape == (2, 6, 12)


def test_window_attention_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: window_size=0"):
        WindowAttention(2, window_size=0)
    with pytest.raises(ValueError, match=r"Received: num_heads=0"):
        WindowAttention(0)
    with pytest.raises(ValueError, match=r"expects \(windows, 4, dim\).*Received: input_shape"):
        WindowAttention(2, window_size=2).build((None, 9, 8))
