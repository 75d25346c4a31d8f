"""The Swin Transformer block: (shifted) window attention and an MLP (Liu et al. 2021)."""

import math

import keras
import numpy as np
from keras import ops

from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.mlp import MLP
from keras_vit.layers.window_attention import WindowAttention, _pair


def window_partition(x, window_size):
    """`(B, H, W, C)` → `(B * H/M_h * W/M_w, M_h*M_w, C)`, windows in batch-major, row-major order."""
    win_h, win_w = window_size
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    x = ops.reshape(x, (-1, height // win_h, win_h, width // win_w, win_w, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, win_h * win_w, channels))


def window_reverse(windows, window_size, height, width):
    """Inverse of `window_partition`: `(B * num_windows, M_h*M_w, C)` → `(B, H, W, C)`."""
    win_h, win_w = window_size
    channels = windows.shape[-1]
    x = ops.reshape(windows, (-1, height // win_h, width // win_w, win_h, win_w, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height, width, channels))


def cyclic_shift(x, shift):
    """`ops.roll(x, shift, axis=(1, 2))` as slices and a concatenation: the cyclic shift of Fig. 4.

    The same permutation, written with operators every converter maps to
    built-ins (LiteRT has no roll; it would need TensorFlow's select ops).
    """
    for axis, s in zip((1, 2), shift):
        size = x.shape[axis]
        s = int(s) % size
        if s:
            x = ops.concatenate(
                [_slice_axis(x, axis, size - s, size), _slice_axis(x, axis, 0, size - s)],
                axis=axis,
            )
    return x


def _slice_axis(x, axis, start, stop):
    index = [slice(None)] * len(x.shape)
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def shifted_window_mask(padded_size, window_size, shift_size):
    """Attention mask of the shifted-window partition (Swin, Sec. 3.2, Fig. 4).

    After the cyclic shift by `-shift_size`, a window at the bottom/right edge
    holds tokens from up to four regions of the image that were not adjacent.
    The image is labelled with 3×3 regions, split at `-window` and `-shift`
    along each axis; two tokens of a window may attend to each other only when
    their labels are equal.

    Args:
        padded_size: `(H, W)` of the (padded) feature map; multiples of the window.
        window_size: `(M_h, M_w)`.
        shift_size: `(S_h, S_w)`.

    Returns:
        bool array `(num_windows, M_h*M_w, M_h*M_w)`, True where attention is allowed.
    """
    (height, width), (win_h, win_w), (shift_h, shift_w) = padded_size, window_size, shift_size
    labels = np.zeros((height, width), dtype="int64")
    count = 0
    for rows in (slice(0, -win_h), slice(-win_h, -shift_h), slice(-shift_h, None)):
        for cols in (slice(0, -win_w), slice(-win_w, -shift_w), slice(-shift_w, None)):
            labels[rows, cols] = count
            count += 1
    labels = labels.reshape(height // win_h, win_h, width // win_w, win_w)
    labels = labels.transpose(0, 2, 1, 3).reshape(-1, win_h * win_w)
    return labels[:, :, None] == labels[:, None, :]


@keras.saving.register_keras_serializable(package="keras_vit")
class SwinTransformerBlock(keras.layers.Layer):
    """Swin Transformer block on a `(B, H, W, C)` feature map.

    Liu et al., "Swin Transformer" (2021), Eq. (3):

        ẑ^l = (S)W-MSA(LN(z^{l-1})) + z^{l-1}
        z^l = MLP(LN(ẑ^l)) + ẑ^l

    W-MSA attends inside non-overlapping M×M windows (`WindowAttention`);
    with `shift_size > 0` the map is first rolled by `-shift_size` (the
    cyclic shift of Fig. 4), attended with `shifted_window_mask`, and rolled
    back. Where the map is no larger than the window along an axis, the
    window shrinks to the map and that axis is not shifted; maps that are
    not a multiple of the window are zero-padded bottom/right (as in the
    reference implementation).

    Args:
        num_heads: int, attention heads.
        window_size: int or `(M_h, M_w)`.
        shift_size: int or `(S_h, S_w)`, 0 for W-MSA, `M // 2` for SW-MSA.
        mlp_ratio: float, MLP width / C.
        qkv_bias: bool.
        dropout: float, dropout after the attention projection and in the MLP.
        attention_dropout: float.
        drop_path: float, stochastic-depth rate.
        layer_norm_epsilon: float.
        kernel_initializer: initializer of every kernel.

    Call arguments:
        inputs: `(B, H, W, C)` with static H, W.
        return_attention_scores: bool, also return the window scores
            `(B * num_windows, h, M_h*M_w, M_h*M_w)`.
        training: bool.

    Returns:
        `(B, H, W, C)`, or `(outputs, scores)`.
    """

    def __init__(
        self,
        num_heads,
        window_size=7,
        shift_size=0,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path=0.0,
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        window = _pair(window_size, "window_size")
        shift = (shift_size, shift_size) if isinstance(shift_size, (int, np.integer)) else tuple(shift_size)
        if len(shift) != 2 or not all(0 <= s < w for s, w in zip(shift, window)):
            raise ValueError(
                "`shift_size` must be in [0, window_size). "
                f"Received: shift_size={shift_size!r}, window_size={window_size!r}"
            )
        if not mlp_ratio > 0:
            raise ValueError(f"`mlp_ratio` must be positive. Received: mlp_ratio={mlp_ratio}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"`drop_path` must be in [0, 1). Received: drop_path={drop_path}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.drop_path = drop_path
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self._target_window, self._target_shift = window, tuple(int(s) for s in shift)

    def _resolve(self, height, width):
        """Window, shift and padded map size for a `height × width` map."""
        # A window larger than the map shrinks to it, and is then not shifted.
        window = tuple(min(r, w) for r, w in zip((height, width), self._target_window))
        shift = tuple(0 if r <= w else s for r, w, s in zip((height, width), self._target_window, self._target_shift))
        padded = tuple(math.ceil(r / w) * w for r, w in zip((height, width), window))
        return window, shift, padded

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                "SwinTransformerBlock expects (batch, height, width, channels) inputs with a "
                f"known height and width. Received: input_shape={input_shape}"
            )
        height, width, channels = input_shape[1:]
        self.resolved_window, self.resolved_shift, self._padded = self._resolve(height, width)
        self.attention_mask = None
        if any(self.resolved_shift):
            self.attention_mask = shifted_window_mask(self._padded, self.resolved_window, self.resolved_shift)
        kw = dict(dtype=self.dtype_policy)
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1", **kw)
        self.norm1.build(input_shape)
        self.attention = WindowAttention(
            self.num_heads,
            window_size=self.resolved_window,
            qkv_bias=self.qkv_bias,
            attention_dropout=self.attention_dropout,
            proj_dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            name="attention",
            **kw,
        )
        self.attention.build((None, self.resolved_window[0] * self.resolved_window[1], channels))
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2", **kw)
        self.norm2.build(input_shape)
        self.mlp = MLP(
            int(channels * self.mlp_ratio),
            dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            name="mlp",
            **kw,
        )
        self.mlp.build(input_shape)
        self.drop_path1 = DropPath(self.drop_path, name="drop_path1", **kw)
        self.drop_path2 = DropPath(self.drop_path, name="drop_path2", **kw)
        self.built = True

    def _window_attention(self, x, return_attention_scores, training):
        height, width = x.shape[1], x.shape[2]
        shift = self.resolved_shift
        if any(shift):
            x = cyclic_shift(x, (-shift[0], -shift[1]))
        pad_h, pad_w = self._padded[0] - height, self._padded[1] - width
        if pad_h or pad_w:
            x = ops.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        windows = window_partition(x, self.resolved_window)
        out = self.attention(
            windows,
            attention_mask=self.attention_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        out, scores = out if return_attention_scores else (out, None)
        x = window_reverse(out, self.resolved_window, *self._padded)
        if pad_h or pad_w:
            x = x[:, :height, :width, :]
        if any(shift):
            x = cyclic_shift(x, shift)
        return x, scores

    def call(self, inputs, return_attention_scores=False, training=None):
        attn, scores = self._window_attention(self.norm1(inputs), return_attention_scores, training)
        x = inputs + self.drop_path1(attn, training=training)
        x = x + self.drop_path2(self.mlp(self.norm2(x), training=training), training=training)
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, return_attention_scores=False, training=None):
        # Keras passes `compute_output_shape` the input shapes only; the
        # scores that `return_attention_scores` adds are described here.
        output = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        batch, height, width = inputs.shape[:3]
        window, _, padded = self._resolve(height, width)
        num_windows = (padded[0] // window[0]) * (padded[1] // window[1])
        area = window[0] * window[1]
        windows = None if batch is None else batch * num_windows
        scores = keras.KerasTensor((windows, self.num_heads, area, area), dtype=self.compute_dtype)
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "window_size": self.window_size,
                "shift_size": self.shift_size,
                "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path": self.drop_path,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
