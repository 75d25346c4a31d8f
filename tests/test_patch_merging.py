import numpy as np
import pytest
from keras import ops

from keras_vit.layers import PatchMerging

pytestmark = pytest.mark.backends


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_patch_merging_matches_numpy_concatenation():
    layer = PatchMerging(layer_norm_epsilon=1e-5)
    x = np.random.randn(2, 4, 6, 3).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    assert y.shape == (2, 2, 3, 6)
    # Sec. 3.1: concatenate each 2×2 group, (row, col) offsets (0,0), (1,0), (0,1), (1,1).
    concat = np.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    gamma, beta = (ops.convert_to_numpy(v) for v in layer.norm.weights)
    kernel = ops.convert_to_numpy(layer.reduction.kernel)
    np.testing.assert_allclose(y, _layer_norm(concat, gamma, beta, 1e-5) @ kernel, atol=1e-5)


def test_patch_merging_pads_odd_maps():
    layer = PatchMerging(output_dim=5)
    x = np.random.randn(1, 5, 3, 2).astype("float32")
    y = ops.convert_to_numpy(layer(x))
    assert y.shape == (1, 3, 2, 5) == layer.compute_output_shape((1, 5, 3, 2))
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    np.testing.assert_allclose(y, ops.convert_to_numpy(PatchMerging.__call__(layer, padded)), atol=1e-6)


def test_patch_merging_config_and_errors():
    layer = PatchMerging(output_dim=7, layer_norm_epsilon=1e-6, name="m")
    assert PatchMerging.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match=r"Received: output_dim=0"):
        PatchMerging(output_dim=0)
    with pytest.raises(ValueError, match=r"Received: input_shape"):
        PatchMerging().build((None, None, 4, 3))
