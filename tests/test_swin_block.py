import numpy as np
import pytest
from keras import ops

from keras_vit.layers import SwinTransformerBlock, shifted_window_mask, window_partition, window_reverse

pytestmark = pytest.mark.backends


def brute_force_mask(height, width, window, shift):
    """Sec. 3.2 of the Swin paper, from first principles.

    After rolling the map by -shift, the token at shifted position r came from
    row (r + shift) mod H: it "wrapped around" iff r >= H - shift. Two tokens
    of one window were neighbours in the image iff they wrapped alike along
    both axes; only then may they attend to each other.
    """
    wh, ww = window
    sh, sw = shift
    windows = []
    for top in range(0, height, wh):
        for left in range(0, width, ww):
            cells = [(top + i, left + j) for i in range(wh) for j in range(ww)]
            allowed = np.zeros((len(cells), len(cells)), dtype=bool)
            for a, (ra, ca) in enumerate(cells):
                for b, (rb, cb) in enumerate(cells):
                    same_rows = (ra >= height - sh) == (rb >= height - sh) if sh else True
                    same_cols = (ca >= width - sw) == (cb >= width - sw) if sw else True
                    allowed[a, b] = same_rows and same_cols
            windows.append(allowed)
    return np.stack(windows)


@pytest.mark.parametrize(
    "size, window, shift",
    [((8, 8), (4, 4), (2, 2)), ((6, 9), (3, 3), (1, 1)), ((8, 12), (4, 6), (2, 3)), ((8, 4), (4, 4), (2, 0))],
)
def test_shifted_window_mask_equals_brute_force(size, window, shift):
    mask = shifted_window_mask(size, window, shift)
    expected = brute_force_mask(*size, window, shift)
    assert mask.shape == expected.shape
    np.testing.assert_array_equal(mask, expected)
    # Only the windows on the bottom/right edges are restricted.
    assert mask[0].all()
    assert not mask[-1].all()


def test_window_partition_round_trip_and_order():
    x = np.arange(2 * 4 * 6 * 3, dtype="float32").reshape(2, 4, 6, 3)
    windows = ops.convert_to_numpy(window_partition(x, (2, 3)))
    assert windows.shape == (2 * 2 * 2, 6, 3)
    # The second window of the first image is rows 0-1, columns 3-5.
    np.testing.assert_array_equal(windows[1], x[0, 0:2, 3:6].reshape(6, 3))
    np.testing.assert_array_equal(ops.convert_to_numpy(window_reverse(windows, (2, 3), 4, 6)), x)


def test_block_is_shift_equivariant_without_masking_effects():
    """A block with no shift commutes with a whole-window roll of its input."""
    block = SwinTransformerBlock(2, window_size=2, shift_size=0)
    x = np.random.randn(1, 4, 4, 8).astype("float32")
    y = ops.convert_to_numpy(block(x))
    rolled = ops.convert_to_numpy(block(np.roll(x, 2, axis=(1, 2))))
    np.testing.assert_allclose(rolled, np.roll(y, 2, axis=(1, 2)), atol=1e-5)


def test_shifted_block_equals_manual_roll_and_mask():
    block = SwinTransformerBlock(2, window_size=2, shift_size=1)
    x = np.random.randn(2, 4, 4, 8).astype("float32")
    y = ops.convert_to_numpy(block(x))
    # Recompute the attention branch by hand with the layer's own pieces.
    h = np.roll(ops.convert_to_numpy(block.norm1(x)), (-1, -1), axis=(1, 2))
    windows = window_partition(h, (2, 2))
    attn = block.attention(windows, attention_mask=brute_force_mask(4, 4, (2, 2), (1, 1)))
    attn = np.roll(ops.convert_to_numpy(window_reverse(attn, (2, 2), 4, 4)), (1, 1), axis=(1, 2))
    z = x + attn
    expected = z + ops.convert_to_numpy(block.mlp(block.norm2(z)))
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_window_shrinks_to_small_maps():
    block = SwinTransformerBlock(2, window_size=7, shift_size=3)
    block.build((None, 4, 12, 8))
    assert block.resolved_window == (4, 7)
    assert block.resolved_shift == (0, 3)
    out, scores = block(np.zeros((1, 4, 12, 8), "float32"), return_attention_scores=True)
    assert out.shape == (1, 4, 12, 8)
    assert scores.shape == (2, 2, 28, 28)  # padded to 14 columns: two windows of 4×7


def test_block_config_round_trip():
    block = SwinTransformerBlock(2, window_size=3, shift_size=1, mlp_ratio=2.0, drop_path=0.1, name="b")
    clone = SwinTransformerBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()


def test_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: shift_size=4, window_size=4"):
        SwinTransformerBlock(2, window_size=4, shift_size=4)
    with pytest.raises(ValueError, match=r"Received: mlp_ratio=0"):
        SwinTransformerBlock(2, mlp_ratio=0)
    with pytest.raises(ValueError, match=r"known height and width. Received: input_shape"):
        SwinTransformerBlock(2).build((None, None, None, 8))
