"""Weight-standardised 2-D convolution (Qiao et al. 2019), as used by BiT and the ViT hybrid."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class StdConv2D(keras.layers.Conv2D):
    """A `Conv2D` whose kernel is standardised per output channel before use.

    Weight Standardization (Qiao et al., "Micro-Batch Training with
    Batch-Channel Normalization and Weight Standardization", 2019, Eq. 5):

        Ŵ[:, o] = (W[:, o] - mean(W[:, o])) / sqrt(var(W[:, o]) + eps)

    over the kh·kw·C_in entries of each output channel o (biased variance).
    Big Transfer's ResNetV2 and the ViT paper's R50 hybrid stem use it with
    GroupNorm. `padding="same"` is TensorFlow's SAME (extra padding at the
    end), as in the original models.

    Args:
        filters, kernel_size, strides, padding, use_bias, ...: as `keras.layers.Conv2D`.
        epsilon: float, added to the variance.

    Call arguments:
        inputs: `(B, H, W, C_in)`.

    Returns:
        `(B, H', W', filters)`.
    """

    def __init__(self, filters, kernel_size, epsilon=1e-8, **kwargs):
        kwargs.setdefault("use_bias", False)
        super().__init__(filters, kernel_size, **kwargs)
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon}")
        self.epsilon = epsilon

    def standardized_kernel(self):
        """The kernel Ŵ actually applied, `(kh, kw, C_in, filters)`."""
        # At least float32: half-precision statistics would be too coarse.
        kernel = self.kernel if self.kernel.dtype == "float64" else ops.cast(self.kernel, "float32")
        mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
        var = ops.mean(ops.square(kernel - mean), axis=(0, 1, 2), keepdims=True)
        return (kernel - mean) / ops.sqrt(var + self.epsilon)

    def convolution_op(self, inputs, kernel):
        kernel = ops.cast(self.standardized_kernel(), inputs.dtype)
        return super().convolution_op(inputs, kernel)

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config
