"""Stochastic depth (Huang et al. 2016), per-sample residual-branch dropout."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class DropPath(keras.layers.Layer):
    """Drops a whole residual branch per sample (stochastic depth).

    Huang et al., "Deep Networks with Stochastic Depth" (2016), Eq. (2), in the
    "inverted" form used by DeiT and timm: during training each sample's branch
    output is zeroed with probability `rate` and scaled by `1 / (1 - rate)`
    otherwise, so inference is the identity.

    Args:
        rate: float in [0, 1), the drop probability.
        seed: int or None, random seed.

    Call arguments:
        inputs: tensor `(B, ...)`.
        training: bool.

    Returns:
        A tensor of the input's shape.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"`rate` must be in [0, 1). Received: rate={rate}")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, dtype=inputs.dtype, seed=self.seed_generator)
        mask = ops.cast(noise < keep, inputs.dtype)
        return inputs * mask / ops.cast(keep, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
