"""Patch merging: Swin's 2× downsampling between stages (Liu et al. 2021, Sec. 3.1)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchMerging(keras.layers.Layer):
    """Concatenates each 2×2 group of neighbouring tokens and projects them.

    Liu et al., "Swin Transformer" (2021), Sec. 3.1: "The first patch merging
    layer concatenates the features of each group of 2×2 neighboring patches,
    and applies a linear layer on the 4C-dimensional concatenated features",
    after a LayerNorm. The four neighbours are concatenated in the order
    (0, 0), (1, 0), (0, 1), (1, 1) of (row, column) offsets, the layout of the
    reference implementation. An odd height or width is zero-padded first.

    Args:
        output_dim: int or None, output width; defaults to 2C.
        layer_norm_epsilon: float.
        kernel_initializer: initializer of the reduction kernel.

    Call arguments:
        inputs: `(B, H, W, C)` with static H, W, C.

    Returns:
        `(B, ceil(H/2), ceil(W/2), output_dim)`.
    """

    def __init__(self, output_dim=None, layer_norm_epsilon=1e-5, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if output_dim is not None and (not isinstance(output_dim, int) or output_dim < 1):
            raise ValueError(f"`output_dim` must be a positive integer or None. Received: output_dim={output_dim!r}")
        self.output_dim = output_dim
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ValueError(
                "PatchMerging expects (batch, height, width, channels) inputs with known "
                f"height, width and channels. Received: input_shape={input_shape}"
            )
        channels = input_shape[-1]
        kw = dict(dtype=self.dtype_policy)
        self.norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm", **kw)
        self.norm.build((None, None, None, 4 * channels))
        self.reduction = keras.layers.Dense(
            self.output_dim or 2 * channels,
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            name="reduction",
            **kw,
        )
        self.reduction.build((None, None, None, 4 * channels))
        self.built = True

    def call(self, inputs):
        height, width, channels = inputs.shape[1:]
        x = inputs
        if height % 2 or width % 2:
            x = ops.pad(x, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
            height, width = height + height % 2, width + width % 2
        x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, channels))
        # (B, H/2, W/2, col offset, row offset, C): rows vary fastest in the 4C vector.
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))
        x = ops.reshape(x, (-1, height // 2, width // 2, 4 * channels))
        return self.reduction(self.norm(x))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, (height + 1) // 2, (width + 1) // 2, self.output_dim or 2 * channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
