import numpy as np
import pytest
from keras import ops

from keras_vit.layers import MultiScaleBlock

pytestmark = pytest.mark.backends


def test_downsampling_block_shapes_and_skip_path():
    block = MultiScaleBlock(2, output_dim=16, stride_q=2, stride_kv=2)
    x = np.random.randn(2, 8, 8, 8).astype("float32")
    y, scores = block(x, return_attention_scores=True)
    assert y.shape == (2, 4, 4, 16) == block.compute_output_shape(x.shape)
    assert scores.shape == (2, 2, 16, 16)
    # The skip path: projected LN(x), max-pooled 3×3/2 with padding 1.
    skip = ops.convert_to_numpy(block.shortcut_proj_attn(block.norm1(x)))
    padded = np.pad(skip, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    pooled = np.stack(
        [
            np.stack([padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max(axis=(1, 2)) for j in range(4)], 1)
            for i in range(4)
        ],
        1,
    )
    np.testing.assert_allclose(ops.convert_to_numpy(block._shortcut_pool(skip)), pooled, atol=1e-6)
    z = pooled + ops.convert_to_numpy(block.attention(block.norm1(x)))
    np.testing.assert_allclose(ops.convert_to_numpy(y), z + ops.convert_to_numpy(block.mlp(block.norm2(z))), atol=1e-4)


def test_same_width_block_keeps_identity_skip():
    block = MultiScaleBlock(1, stride_kv=2)
    x = np.random.randn(1, 4, 4, 8).astype("float32")
    y = ops.convert_to_numpy(block(x))
    assert block.shortcut_proj_attn is None
    z = x + ops.convert_to_numpy(block.attention(block.norm1(x)))
    np.testing.assert_allclose(y, z + ops.convert_to_numpy(block.mlp(block.norm2(z))), atol=1e-5)


def test_config_round_trip_and_errors():
    block = MultiScaleBlock(2, output_dim=8, mlp_ratio=2.0, stride_q=2, stride_kv=1, drop_path=0.1, name="b")
    assert MultiScaleBlock.from_config(block.get_config()).get_config() == block.get_config()
    with pytest.raises(ValueError, match=r"Received: drop_path=1.0"):
        MultiScaleBlock(2, drop_path=1.0)
    with pytest.raises(ValueError, match=r"Received: mlp_ratio=-1"):
        MultiScaleBlock(2, mlp_ratio=-1)
