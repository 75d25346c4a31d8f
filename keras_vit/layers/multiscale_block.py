"""The MViTv2 block: pooling attention and an MLP with pooled residuals (Li et al. 2022)."""

import keras
import numpy as np
from keras import ops

from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.mlp import MLP
from keras_vit.layers.pooling_attention import PoolingAttention
from keras_vit.layers.window_attention import _pair


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiScaleBlock(keras.layers.Layer):
    """Multiscale Transformer block on a `(B, H, W, C)` map.

    Fan et al., "Multiscale Vision Transformers" (2021), Sec. 3.2-3.3, in the
    MViTv2 form (Li et al. 2022):

        X' = P(Proj(LN(X)) or X) + MHPA(LN(X))
        Y  = X' + MLP(LN(X'))

    `MHPA` is `PoolingAttention`. When the block changes the width, the
    skip path is the LayerNormed input through a linear projection (the
    "expand attention" layout); when it downsamples (`stride_q > 1`), the
    skip path is max-pooled with kernel `stride + 1`, stride `stride` and
    padding `(stride + 1) // 2` so that it meets the pooled queries.

    Args:
        num_heads: int.
        output_dim: int or None, output width; defaults to the input width.
        mlp_ratio: float, MLP width / output_dim.
        kernel_size: int or pair, attention pooling kernel.
        stride_q: int or pair, query (and skip path) stride.
        stride_kv: int or pair, key/value stride.
        qkv_bias: bool.
        residual_pooling: bool, see `PoolingAttention`.
        relative_position: bool, see `PoolingAttention`.
        drop_path: float, stochastic-depth rate.
        layer_norm_epsilon: float.
        kernel_initializer: initializer of every kernel.

    Call arguments:
        inputs: `(B, H, W, C)` with static H, W.
        return_attention_scores: bool, also return the attention scores.
        training: bool.

    Returns:
        `(B, H', W', output_dim)`, or `(outputs, scores)`.
    """

    def __init__(
        self,
        num_heads,
        output_dim=None,
        mlp_ratio=4.0,
        kernel_size=3,
        stride_q=1,
        stride_kv=1,
        qkv_bias=True,
        residual_pooling=True,
        relative_position=True,
        drop_path=0.0,
        layer_norm_epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not mlp_ratio > 0:
            raise ValueError(f"`mlp_ratio` must be positive. Received: mlp_ratio={mlp_ratio}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"`drop_path` must be in [0, 1). Received: drop_path={drop_path}")
        self.num_heads = num_heads
        self.output_dim = output_dim
        self.mlp_ratio = mlp_ratio
        self.kernel_size = kernel_size
        self.stride_q = stride_q
        self.stride_kv = stride_kv
        self.qkv_bias = qkv_bias
        self.residual_pooling = residual_pooling
        self.relative_position = relative_position
        self.drop_path = drop_path
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self._stride_q = _pair(stride_q, "stride_q")
        # Validates num_heads, output_dim, kernel and strides early.
        self.attention = PoolingAttention(
            num_heads,
            output_dim=output_dim,
            kernel_size=kernel_size,
            stride_q=stride_q,
            stride_kv=stride_kv,
            qkv_bias=qkv_bias,
            residual_pooling=residual_pooling,
            relative_position=relative_position,
            layer_norm_epsilon=layer_norm_epsilon,
            kernel_initializer=self.kernel_initializer,
            name="attention",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ValueError(
                "MultiScaleBlock expects (batch, height, width, channels) inputs with known "
                f"height, width and channels. Received: input_shape={input_shape}"
            )
        channels = input_shape[-1]
        dim = self.output_dim or channels
        kw = dict(dtype=self.dtype_policy)
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1", **kw)
        self.norm1.build(input_shape)
        self.shortcut_proj_attn = None
        if dim != channels:
            self.shortcut_proj_attn = keras.layers.Dense(
                dim, kernel_initializer=self.kernel_initializer, name="shortcut_proj_attn", **kw
            )
            self.shortcut_proj_attn.build(input_shape)
        self.attention.build(input_shape)
        out_shape = self.attention.compute_output_shape(input_shape)
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2", **kw)
        self.norm2.build(out_shape)
        self.mlp = MLP(int(dim * self.mlp_ratio), kernel_initializer=self.kernel_initializer, name="mlp", **kw)
        self.mlp.build(out_shape)
        self.drop_path1 = DropPath(self.drop_path, name="drop_path1", **kw)
        self.drop_path2 = DropPath(self.drop_path, name="drop_path2", **kw)
        self.built = True

    def _shortcut_pool(self, x):
        if np.prod(self._stride_q) == 1:
            return x
        kernel = tuple(s + 1 if s > 1 else s for s in self._stride_q)
        pad = [k // 2 for k in kernel]
        neg_inf = ops.cast(float("-inf"), x.dtype)
        x = ops.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)), constant_values=neg_inf)
        return ops.max_pool(x, kernel, strides=self._stride_q, padding="valid")

    def call(self, inputs, return_attention_scores=False, training=None):
        x_norm = self.norm1(inputs)
        shortcut = inputs if self.shortcut_proj_attn is None else self.shortcut_proj_attn(x_norm)
        shortcut = self._shortcut_pool(shortcut)
        attn = self.attention(x_norm, return_attention_scores=return_attention_scores, training=training)
        attn, scores = attn if return_attention_scores else (attn, None)
        x = shortcut + self.drop_path1(attn, training=training)
        x = x + self.drop_path2(self.mlp(self.norm2(x), training=training), training=training)
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return self.attention.compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, return_attention_scores=False, training=None):
        # Keras passes `compute_output_shape` the input shapes only; the
        # scores that `return_attention_scores` adds are those of the attention.
        output = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        _, scores = self.attention.compute_output_spec(inputs, return_attention_scores=True)
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "output_dim": self.output_dim,
                "mlp_ratio": self.mlp_ratio,
                "kernel_size": self.kernel_size,
                "stride_q": self.stride_q,
                "stride_kv": self.stride_kv,
                "qkv_bias": self.qkv_bias,
                "residual_pooling": self.residual_pooling,
                "relative_position": self.relative_position,
                "drop_path": self.drop_path,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
