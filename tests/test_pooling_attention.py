import numpy as np
import pytest
from keras import ops

from keras_vit.layers import PoolingAttention, relative_distance_index

pytestmark = pytest.mark.backends


def test_relative_distance_index_equal_and_pooled_sizes():
    # Equal sizes: offset i - j shifted by k - 1.
    np.testing.assert_array_equal(relative_distance_index(3, 3), np.array([[2, 1, 0], [3, 2, 1], [4, 3, 2]]))
    # Keys pooled 2×: key j sits at position 2j of the query grid.
    np.testing.assert_array_equal(relative_distance_index(4, 2), np.array([[2, 0], [3, 1], [4, 2], [5, 3]]))
    # Queries pooled 2×: query i sits at position 2i of the key grid.
    np.testing.assert_array_equal(relative_distance_index(2, 4), np.array([[3, 2, 1, 0], [5, 4, 3, 2]]))


def test_output_shapes_and_scores():
    layer = PoolingAttention(2, output_dim=16, stride_q=2, stride_kv=4)
    x = np.random.randn(2, 8, 8, 12).astype("float32")
    out, scores = layer(x, return_attention_scores=True)
    assert out.shape == (2, 4, 4, 16) == layer.compute_output_shape(x.shape)
    assert scores.shape == (2, 2, 16, 4)
    np.testing.assert_allclose(ops.convert_to_numpy(scores).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), ops.convert_to_numpy(out), atol=1e-5)


def test_residual_pooling_adds_pooled_queries():
    x = np.random.randn(1, 4, 4, 8).astype("float32")
    with_res = PoolingAttention(2, stride_kv=2, name="a")
    without = PoolingAttention(2, stride_kv=2, residual_pooling=False, name="a")
    y1 = with_res(x)
    without.build(x.shape)
    without.set_weights(with_res.get_weights())
    y0 = without(x)
    # Recover the pooled queries and check the difference is P_Q(Q) through the output projection.
    tokens = x.reshape(1, 16, 8)
    q, _, _ = with_res.attention.project_qkv(tokens)
    q = ops.convert_to_numpy(with_res._pool(q, with_res.pool_q, with_res.norm_q)).reshape(1, 16, 8)
    kernel = ops.convert_to_numpy(with_res.attention.proj.kernel)
    np.testing.assert_allclose(ops.convert_to_numpy(y1 - y0).reshape(1, 16, 8), q @ kernel, atol=1e-4)


def test_relative_position_changes_logits_only_through_tables():
    x = np.random.randn(1, 4, 4, 8).astype("float32")
    layer = PoolingAttention(2, stride_kv=2)
    y = ops.convert_to_numpy(layer(x))
    for table in (layer.rel_pos_h, layer.rel_pos_w):
        table.assign(np.zeros(table.shape, "float32"))
    plain = PoolingAttention(2, stride_kv=2, relative_position=False)
    plain.build(x.shape)
    weights = {w.path.split("/", 1)[1]: w for w in layer.weights}
    for w in plain.weights:
        w.assign(weights[w.path.split("/", 1)[1]])
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), ops.convert_to_numpy(plain(x)), atol=1e-5)
    assert np.abs(ops.convert_to_numpy(layer(x)) - y).max() > 1e-4


def test_config_round_trip_and_errors():
    layer = PoolingAttention(2, output_dim=8, kernel_size=3, stride_q=(2, 2), stride_kv=2, name="p")
    assert PoolingAttention.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match=r"Received: num_heads=0"):
        PoolingAttention(0)
    with pytest.raises(ValueError, match=r"Received: stride_q=0"):
        PoolingAttention(1, stride_q=0)
    with pytest.raises(ValueError, match=r"Received: output_dim=10, num_heads=4"):
        PoolingAttention(4, output_dim=10).build((None, 4, 4, 8))
