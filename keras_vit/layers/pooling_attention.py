"""MViTv2 pooling attention with decomposed relative positions (Li et al. 2022)."""

import keras
import numpy as np
from keras import ops

from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_vit.layers.window_attention import _pair


def relative_distance_index(query_size, key_size):
    """Row of the relative-position table for every (query, key) pair along one axis.

    MViTv2, Sec. 3.1: the offset between query i and key j is measured in the
    finer of the two resolutions, `i * max(k/q, 1) - j * max(q/k, 1)`, and
    shifted to be non-negative (the reference computes it in float32 and
    truncates, as here).

    Returns:
        int array `(query_size, key_size)`.
    """
    q_ratio = np.float32(max(key_size / query_size, 1.0))
    k_ratio = np.float32(max(query_size / key_size, 1.0))
    dist = (
        np.arange(query_size, dtype="float32")[:, None] * q_ratio
        - np.arange(key_size, dtype="float32")[None, :] * k_ratio
    )
    dist = dist + np.float32((key_size - 1) * k_ratio)
    return dist.astype("int64")


def _pooled_size(size, kernel, stride):
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@keras.saving.register_keras_serializable(package="keras_vit")
class PoolingAttention(keras.layers.Layer):
    """Multi-head pooling attention (MHPA) of MViTv2 on a `(B, H, W, C)` map.

    Fan et al., "Multiscale Vision Transformers" (2021), Sec. 3.1, and Li et
    al., "MViTv2" (2022), Sec. 3.1-3.2. Q, K and V are projected as in
    `MultiHeadSelfAttention` (whose weights and attention this layer uses),
    then each is pooled by a depthwise convolution P (kernel `kernel_size`,
    padding `kernel_size // 2`, shared by the heads) and a LayerNorm:

        Z = Softmax(P_Q(Q) P_K(K)ᵀ / √d + E^(rel)) P_V(V) + P_Q(Q)

    The last term is the residual pooling connection (Eq. 3). E^(rel) is the
    decomposed relative position embedding (Eq. 2):
    `E^(rel)_ij = Q_i · (R^h_{h(i),h(j)} + R^w_{w(i),w(j)})`, with one learned
    table per axis, added to the scaled logits as in the reference
    implementation.

    Args:
        num_heads: int, attention heads; must divide `output_dim`.
        output_dim: int or None, width of Q, K, V and of the output;
            defaults to the input width.
        kernel_size: int or pair, pooling kernel.
        stride_q: int or pair, query pooling stride (downsamples the map).
        stride_kv: int or pair, key/value pooling stride.
        qkv_bias: bool.
        residual_pooling: bool, add P_Q(Q) to the attention output.
        relative_position: bool, add the decomposed relative positions.
        layer_norm_epsilon: float, of the pooling LayerNorms.
        kernel_initializer: initializer of the projection kernels.

    Call arguments:
        inputs: `(B, H, W, C)` with static H, W.
        return_attention_scores: bool, also return `(B, h, H'W', H_kv W_kv)`.
        training: bool.

    Returns:
        `(B, H', W', output_dim)` with `H' = (H + 2*(k//2) - k) // stride_q + 1`,
        or `(outputs, scores)`.
    """

    def __init__(
        self,
        num_heads,
        output_dim=None,
        kernel_size=3,
        stride_q=1,
        stride_kv=1,
        qkv_bias=True,
        residual_pooling=True,
        relative_position=True,
        layer_norm_epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(num_heads, (int, np.integer)) or num_heads < 1:
            raise ValueError(f"`num_heads` must be a positive integer. Received: num_heads={num_heads!r}")
        if output_dim is not None and (not isinstance(output_dim, (int, np.integer)) or output_dim < 1):
            raise ValueError(f"`output_dim` must be a positive integer or None. Received: output_dim={output_dim!r}")
        self._kernel = _pair(kernel_size, "kernel_size")
        self._stride_q = _pair(stride_q, "stride_q")
        self._stride_kv = _pair(stride_kv, "stride_kv")
        self.num_heads = int(num_heads)
        self.output_dim = output_dim
        self.kernel_size = kernel_size
        self.stride_q = stride_q
        self.stride_kv = stride_kv
        self.qkv_bias = qkv_bias
        self.residual_pooling = residual_pooling
        self.relative_position = relative_position
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _pooled_grid(self, height, width, stride):
        """`(H', W')` of a `height × width` map pooled with `stride`."""
        # A 1×1 stride-1 pooling is the identity: the reference then skips it and its norm.
        if self._kernel == (1, 1) and stride == (1, 1):
            return (height, width)
        return tuple(_pooled_size(r, k, s) for r, k, s in zip((height, width), self._kernel, stride))

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ValueError(
                "PoolingAttention expects (batch, height, width, channels) inputs with known "
                f"height, width and channels. Received: input_shape={input_shape}"
            )
        height, width, channels = input_shape[1:]
        dim = self.output_dim or channels
        if dim % self.num_heads:
            raise ValueError(
                f"`output_dim` must be divisible by `num_heads`. Received: output_dim={dim}, num_heads={self.num_heads}"
            )
        self._dim = dim
        self._head_dim = dim // self.num_heads
        self._grid = (height, width)
        kw = dict(dtype=self.dtype_policy)
        self.attention = MultiHeadSelfAttention(
            self.num_heads,
            head_dim=self._head_dim,
            output_dim=dim,
            qkv_bias=self.qkv_bias,
            kernel_initializer=self.kernel_initializer,
            name="attention",
            **kw,
        )
        self.attention.build((None, None, channels))
        # The identity pooling (see `_pooled_grid`) has no convolution and no norm.
        identity_kernel = self._kernel == (1, 1)
        self._sizes = {}
        for part, stride in (("q", self._stride_q), ("kv", self._stride_kv)):
            names = ("q",) if part == "q" else ("k", "v")
            self._sizes[part] = self._pooled_grid(height, width, stride)
            if identity_kernel and stride == (1, 1):
                for name in names:
                    setattr(self, f"pool_{name}", None)
                    setattr(self, f"norm_{name}", None)
                continue
            for name in names:
                pool = keras.layers.DepthwiseConv2D(
                    self._kernel, strides=stride, padding="valid", use_bias=False, name=f"pool_{name}", **kw
                )
                pool.build(
                    (None, height + 2 * (self._kernel[0] // 2), width + 2 * (self._kernel[1] // 2), self._head_dim)
                )
                norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name=f"norm_{name}", **kw)
                norm.build((None, None, None, self._head_dim))
                setattr(self, f"pool_{name}", pool)
                setattr(self, f"norm_{name}", norm)
        if self.relative_position:
            self._index = []
            for axis, name in enumerate(("h", "w")):
                extent = (height, width)[axis]
                # Table length as in the reference: 2 * max(extent // stride) - 1.
                length = 2 * max(extent // self._stride_q[axis], extent // self._stride_kv[axis]) - 1
                index = relative_distance_index(self._sizes["q"][axis], self._sizes["kv"][axis])
                if index.max() >= length:
                    raise ValueError(
                        "The input map is too small or not divisible by the pooling strides for the "
                        f"relative position table. Received: input_shape={input_shape}, "
                        f"stride_q={self.stride_q}, stride_kv={self.stride_kv}"
                    )
                self._index.append(index)
                setattr(
                    self,
                    f"rel_pos_{name}",
                    self.add_weight(
                        shape=(length, self._head_dim),
                        initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                        name=f"rel_pos_{name}",
                    ),
                )
        self.built = True

    def _pool(self, x, pool, norm):
        # (B, T, h, d) → per-head maps (B*h, H, W, d) → pool → (B, T', h, d).
        if pool is None:
            return x
        height, width = self._grid
        x = ops.transpose(x, (0, 2, 1, 3))
        x = ops.reshape(x, (-1, height, width, self._head_dim))
        pad_h, pad_w = self._kernel[0] // 2, self._kernel[1] // 2
        x = ops.pad(x, ((0, 0), (pad_h, pad_h), (pad_w, pad_w), (0, 0)))
        x = pool(x)
        x = ops.reshape(x, (-1, self.num_heads, x.shape[1] * x.shape[2], self._head_dim))
        return norm(ops.transpose(x, (0, 2, 1, 3)))

    def relative_position_bias(self, q):
        """E^(rel) of Eq. (2) from the pooled queries `(B, T_q, h, d)`: `(B, h, T_q, T_kv)`."""
        (q_h, q_w), (k_h, k_w) = self._sizes["q"], self._sizes["kv"]
        r_h = ops.reshape(ops.take(self.rel_pos_h, self._index[0].reshape(-1), axis=0), (q_h, k_h, -1))
        r_w = ops.reshape(ops.take(self.rel_pos_w, self._index[1].reshape(-1), axis=0), (q_w, k_w, -1))
        r_q = ops.reshape(q, (-1, q_h, q_w, self.num_heads, self._head_dim))
        rel_h = ops.einsum("byxnc,ykc->bnyxk", r_q, ops.cast(r_h, q.dtype))
        rel_w = ops.einsum("byxnc,xkc->bnyxk", r_q, ops.cast(r_w, q.dtype))
        bias = rel_h[..., :, None] + rel_w[..., None, :]
        return ops.reshape(bias, (-1, self.num_heads, q_h * q_w, k_h * k_w))

    def call(self, inputs, return_attention_scores=False, training=None):
        height, width = self._grid
        tokens = ops.reshape(inputs, (-1, height * width, inputs.shape[-1]))
        q, k, v = self.attention.project_qkv(tokens)
        q = self._pool(q, self.pool_q, self.norm_q)
        k = self._pool(k, self.pool_k, self.norm_k)
        v = self._pool(v, self.pool_v, self.norm_v)
        bias = self.relative_position_bias(q) if self.relative_position else None
        out, scores = self.attention.attend(
            q, k, v, attention_bias=bias, return_attention_scores=return_attention_scores, training=training
        )
        if self.residual_pooling:
            out = out + q
        q_h, q_w = self._sizes["q"]
        out = ops.reshape(out, (-1, q_h * q_w, self._dim))
        out = self.attention.proj_drop(self.attention.proj(out), training=training)
        out = ops.reshape(out, (-1, q_h, q_w, self._dim))
        if return_attention_scores:
            return out, scores
        return out

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, *self._pooled_grid(height, width, self._stride_q), self.output_dim or channels)

    def compute_output_spec(self, inputs, return_attention_scores=False, training=None):
        # Keras passes `compute_output_shape` the input shapes only; the
        # scores that `return_attention_scores` adds are described here.
        output = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        batch, height, width = inputs.shape[:3]
        (q_h, q_w), (k_h, k_w) = (self._pooled_grid(height, width, s) for s in (self._stride_q, self._stride_kv))
        # Q is pooled and normalised in the compute dtype, and the softmax is cast back to it.
        scores = keras.KerasTensor((batch, self.num_heads, q_h * q_w, k_h * k_w), dtype=self.compute_dtype)
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "output_dim": self.output_dim,
                "kernel_size": self.kernel_size,
                "stride_q": self.stride_q,
                "stride_kv": self.stride_kv,
                "qkv_bias": self.qkv_bias,
                "residual_pooling": self.residual_pooling,
                "relative_position": self.relative_position,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
