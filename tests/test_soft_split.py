import keras
import numpy as np
import pytest

from keras_vit.layers import SoftSplit


def unfold_reference(x, k, s, p):
    """nn.Unfold on an NHWC array: (B, L, C·k·k), channel-major patch vectors."""
    b, h, w, c = x.shape
    x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((b, oh * ow, c * k * k), "float32")
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * s : i * s + k, j * s : j * s + k, :]  # (B, k, k, C)
            out[:, i * ow + j] = patch.transpose(0, 3, 1, 2).reshape(b, -1)
    return out


@pytest.mark.parametrize("k,s,p,size", [(7, 4, 2, (16, 16)), (3, 2, 1, (8, 6)), (3, 1, 1, (5, 5)), (2, 2, 0, (4, 4))])
def test_soft_split_matches_unfold(k, s, p, size):
    x = np.random.rand(2, *size, 3).astype("float32")
    layer = SoftSplit(k, s, p)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, unfold_reference(x, k, s, p), atol=1e-6)
    assert layer.compute_output_shape((2, *size, 3)) == out.shape


def test_soft_split_config_round_trip_and_errors():
    layer = SoftSplit(3, 2, 1, name="ss")
    clone = SoftSplit.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="Received: strides=0"):
        SoftSplit(3, 0)
    with pytest.raises(ValueError, match="Received: padding=-1"):
        SoftSplit(3, 1, -1)
    with pytest.raises(ValueError, match="smaller than `kernel_size`"):
        SoftSplit(7, 1)(np.zeros((1, 4, 4, 3), "float32"))
