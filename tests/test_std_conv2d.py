import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.layers import StdConv2D


def test_kernel_is_standardized_per_output_channel():
    layer = StdConv2D(4, 3, epsilon=1e-8)
    layer.build((None, 8, 8, 2))
    w = ops.convert_to_numpy(layer.kernel).astype(np.float64)
    flat = w.reshape(-1, 4)
    expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-8)
    got = ops.convert_to_numpy(layer.standardized_kernel()).reshape(-1, 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(got.std(0), 1.0, atol=1e-4)


def test_output_equals_conv_with_standardized_kernel():
    x = np.random.default_rng(0).standard_normal((2, 7, 7, 3)).astype("float32")
    layer = StdConv2D(5, 3, strides=2, padding="same")
    y = ops.convert_to_numpy(layer(x))
    plain = keras.layers.Conv2D(5, 3, strides=2, padding="same", use_bias=False)
    plain.build(x.shape)
    plain.kernel.assign(layer.standardized_kernel())
    np.testing.assert_allclose(y, ops.convert_to_numpy(plain(x)), atol=1e-5)
    assert y.shape == (2, 4, 4, 5) == tuple(layer.compute_output_shape(x.shape))


def test_config_round_trip_and_bad_epsilon():
    layer = StdConv2D(4, 1, strides=2, epsilon=1e-6, name="c")
    config = layer.get_config()
    assert config["epsilon"] == 1e-6 and config["use_bias"] is False
    assert StdConv2D.from_config(config).get_config() == config
    with pytest.raises(ValueError, match=r"`epsilon` must be positive. Received: epsilon=0"):
        StdConv2D(4, 1, epsilon=0)
