"""Window multi-head self-attention with relative position bias (Swin, Liu et al. 2021)."""

import keras
import numpy as np
from keras import ops

from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention


def _pair(value, arg):
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"`{arg}` must be a positive integer or a pair of them. Received: {arg}={value!r}")
    return (int(pair[0]), int(pair[1]))


def relative_position_index(window_size):
    """Index of the bias-table row of every (query, key) pair in a window.

    Sec. 3.2 of the Swin paper: relative offsets along each axis lie in
    [-M+1, M-1], so a `(2M_h-1)(2M_w-1)` table B̂ holds one bias per offset,
    and B = B̂[index].

    Args:
        window_size: int or `(M_h, M_w)`.

    Returns:
        int array `(M_h*M_w, M_h*M_w)`.
    """
    win_h, win_w = _pair(window_size, "window_size")
    coords = np.stack(np.meshgrid(np.arange(win_h), np.arange(win_w), indexing="ij")).reshape(2, -1)
    offsets = coords[:, :, None] - coords[:, None, :]
    return (offsets[0] + win_h - 1) * (2 * win_w - 1) + (offsets[1] + win_w - 1)


@keras.saving.register_keras_serializable(package="keras_vit")
class WindowAttention(keras.layers.Layer):
    """W-MSA: multi-head self-attention inside each local window.

    Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
    Shifted Windows" (2021), Eq. (4):

        Attention(Q, K, V) = SoftMax(Q Kᵀ/√d + B) V

    where B is the relative position bias, read from a learned table indexed
    by the offset between query and key inside the window. The attention
    itself is `MultiHeadSelfAttention` with B as its additive bias; a boolean
    mask restricts shifted windows to tokens that were adjacent before the
    cyclic shift (see `SwinTransformerBlock`).

    Args:
        num_heads: int, attention heads.
        window_size: int or `(M_h, M_w)`, window side(s).
        qkv_bias: bool.
        attention_dropout: float, dropout on the attention scores.
        proj_dropout: float, dropout after the output projection.
        kernel_initializer: initializer of the projection kernels.

    Call arguments:
        inputs: `(B * num_windows, M_h*M_w, dim)`, windows in batch-major order.
        attention_mask: optional boolean `(num_windows, M_h*M_w, M_h*M_w)`,
            True where a query may attend to a key; shared by every image.
        return_attention_scores: bool, also return `(B * num_windows, h, N, N)`.
        training: bool.

    Returns:
        `(B * num_windows, M_h*M_w, dim)`, or `(outputs, scores)`.
    """

    def __init__(
        self,
        num_heads,
        window_size=7,
        qkv_bias=True,
        attention_dropout=0.0,
        proj_dropout=0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv_bias = qkv_bias
        self.attention_dropout = attention_dropout
        self.proj_dropout = proj_dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self._window = _pair(window_size, "window_size")
        # The attention layer validates num_heads and the dropout rates.
        self.attention = MultiHeadSelfAttention(
            num_heads,
            qkv_bias=qkv_bias,
            attention_dropout=attention_dropout,
            proj_dropout=proj_dropout,
            kernel_initializer=self.kernel_initializer,
            name="attention",
            dtype=self.dtype_policy,
        )
        self._index = relative_position_index(self._window).reshape(-1)

    def build(self, input_shape):
        area = self._window[0] * self._window[1]
        if len(input_shape) != 3 or input_shape[1] not in (None, area):
            raise ValueError(
                f"WindowAttention expects (windows, {area}, dim) inputs for window_size="
                f"{self.window_size}. Received: input_shape={input_shape}"
            )
        self.attention.build(input_shape)
        table_size = (2 * self._window[0] - 1) * (2 * self._window[1] - 1)
        self.relative_position_bias_table = self.add_weight(
            shape=(table_size, self.num_heads),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="relative_position_bias_table",
        )
        self.built = True

    def relative_position_bias(self):
        """B of Eq. (4), `(1, h, N, N)`."""
        area = self._window[0] * self._window[1]
        bias = ops.take(self.relative_position_bias_table, self._index, axis=0)
        bias = ops.reshape(bias, (area, area, self.num_heads))
        return ops.transpose(bias, (2, 0, 1))[None]

    def call(self, inputs, attention_mask=None, return_attention_scores=False, training=None):
        bias = ops.cast(self.relative_position_bias(), "float32")
        if attention_mask is not None:
            # The mask joins the bias as a large negative logit (not every backend's
            # fused attention takes a bias and a mask together).
            num_windows, area = attention_mask.shape[0], attention_mask.shape[-1]
            images = ops.shape(inputs)[0] // num_windows
            mask = ops.convert_to_tensor(attention_mask, dtype="bool")
            blocked = ops.where(mask, 0.0, -1e9)[None, :, None]  # (1, nW, 1, N, N)
            bias = ops.broadcast_to(bias[:, None] + blocked, (images, num_windows, self.num_heads, area, area))
            bias = ops.reshape(bias, (-1, self.num_heads, area, area))
        return self.attention(
            inputs,
            attention_bias=ops.cast(bias, self.compute_dtype),
            return_attention_scores=return_attention_scores,
            training=training,
        )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, attention_mask=None, return_attention_scores=False, training=None):
        # Keras passes `compute_output_shape` the input shapes only; the
        # scores that `return_attention_scores` adds are the attention's.
        return self.attention.compute_output_spec(inputs, return_attention_scores=return_attention_scores)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "window_size": self.window_size,
                "qkv_bias": self.qkv_bias,
                "attention_dropout": self.attention_dropout,
                "proj_dropout": self.proj_dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
