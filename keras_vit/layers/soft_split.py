"""Soft split: overlapping patches of a feature map as tokens (T2T-ViT, Yuan et al. 2021, Sec. 3.1)."""

import keras
from keras import ops


def _pair(value, arg):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"`{arg}` must be an int or a pair of ints. Received: {arg}={value}")
    return pair


@keras.saving.register_keras_serializable(package="keras_vit")
class SoftSplit(keras.layers.Layer):
    """Splits a feature map into overlapping k×k patches, one token per patch.

    The "soft split" of Tokens-to-Token ViT (Yuan et al., ICCV 2021, Eq. 3):
    `T_{i+1} = SS(I_i)`, the unfold operation (PyTorch's `nn.Unfold`) with
    kernel k, stride s and zero padding p. Neighbouring patches overlap by
    k - s pixels, so each token carries its neighbourhood's context. The
    patch vector is laid out channel-major, `(C, k_h, k_w)` flattened, the
    order of `nn.Unfold`, so converted weights need no permutation.

    Args:
        kernel_size: int or `(k_h, k_w)`.
        strides: int or `(s_h, s_w)`.
        padding: int or `(p_h, p_w)`, zeros added on each side.

    Call arguments:
        inputs: `(B, H, W, C)`.

    Returns:
        `(B, H' * W', C * k_h * k_w)` with
        `H' = (H + 2 p_h - k_h) // s_h + 1` (likewise W'), row-major.
    """

    def __init__(self, kernel_size, strides=1, padding=0, **kwargs):
        super().__init__(**kwargs)
        self._kernel = _pair(kernel_size, "kernel_size")
        self._strides = _pair(strides, "strides")
        self._padding = _pair(padding, "padding")
        if min(self._kernel) < 1:
            raise ValueError(f"`kernel_size` must be positive. Received: kernel_size={kernel_size}")
        if min(self._strides) < 1:
            raise ValueError(f"`strides` must be positive. Received: strides={strides}")
        if min(self._padding) < 0:
            raise ValueError(f"`padding` must be non-negative. Received: padding={padding}")
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding

    def output_grid(self, height, width):
        """`(H', W')` for an input of size `(height, width)`."""
        (kh, kw), (sh, sw), (ph, pw) = self._kernel, self._strides, self._padding
        return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"SoftSplit expects (batch, height, width, channels) inputs. Received: input_shape={input_shape}"
            )
        height, width = input_shape[1:3]
        if height is not None and width is not None and min(self.output_grid(height, width)) < 1:
            raise ValueError(
                f"The input is smaller than `kernel_size`. Received: input_shape={input_shape}, "
                f"kernel_size={self.kernel_size}, padding={self.padding}"
            )
        self.built = True

    def call(self, inputs):
        (kh, kw), (sh, sw), (ph, pw) = self._kernel, self._strides, self._padding
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        if height is None or width is None:
            raise ValueError(f"SoftSplit needs a static spatial size. Received an input of shape {inputs.shape}")
        out_h, out_w = self.output_grid(height, width)
        x = ops.pad(inputs, ((0, 0), (ph, ph), (pw, pw), (0, 0))) if ph or pw else inputs
        # One strided slice per kernel offset (i, j): x[:, i + s·a, j + s·b, :].
        offsets = []
        for i in range(kh):
            for j in range(kw):
                offsets.append(x[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw, :])
        patches = ops.stack(offsets, axis=-1)  # (B, H', W', C, k_h·k_w): channel-major.
        return ops.reshape(patches, (ops.shape(inputs)[0], out_h * out_w, channels * kh * kw))

    def compute_output_shape(self, input_shape):
        height, width, channels = input_shape[1:]
        kh, kw = self._kernel
        n = None if height is None or width is None else self.output_grid(height, width)
        tokens = None if n is None else n[0] * n[1]
        return (input_shape[0], tokens, None if channels is None else channels * kh * kw)

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "strides": self.strides, "padding": self.padding})
        return config
