"""Re-attention: attention maps mixed across heads (DeepViT, Zhou et al. 2021, Eq. 3)."""

import keras
from keras import ops

from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention

_NORMALIZATIONS = ("layer_norm", "none")


@keras.saving.register_keras_serializable(package="keras_vit")
class ReAttention(MultiHeadSelfAttention):
    """Multi-head self-attention whose maps are re-mixed across heads.

    DeepViT (Zhou et al., "DeepViT: Towards Deeper Vision Transformer",
    2021, Eq. 3):

        Re-Attention(Q, K, V) = Norm(Θᵀ softmax(Q Kᵀ / √d)) V

    A learnable h×h matrix Θ mixes the h attention maps of a layer into h
    new ones, `A'_g = Σ_h Θ_{h,g} A_h`, which keeps the maps of deep layers
    diverse (the paper's remedy for "attention collapse"). `Norm` is a
    LayerNorm across the head axis, as in vit-pytorch's `DeepViT`; with
    `normalization="none"` and Θ = I the layer is plain multi-head
    attention. Q, K, V and W^O are the parent layer's (`project_qkv`, `qkv`,
    `proj`), so the same weights convert.

    Args:
        num_heads: int, attention heads h.
        normalization: "layer_norm" or "none".
        mixing_initializer: initializer of Θ (vit-pytorch draws N(0, 1)).
        layer_norm_epsilon: float.
        **kwargs: the arguments of `MultiHeadSelfAttention` (`head_dim`,
            `qkv_bias`, `attention_dropout`, `proj_dropout`, ...);
            cross-attention is not supported.

    Call arguments:
        As `MultiHeadSelfAttention` (without `context`).

    Returns:
        `(B, T, dim)`, or `(outputs, scores)` where the scores are the
        re-attention maps `(B, h, T, T)`.
    """

    def __init__(
        self,
        num_heads,
        normalization="layer_norm",
        mixing_initializer=None,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        if kwargs.get("cross_attention"):
            raise ValueError("ReAttention is self-attention only. Received: cross_attention=True")
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {_NORMALIZATIONS}. Received: normalization={normalization!r}"
            )
        super().__init__(num_heads, **kwargs)
        self.normalization = normalization
        self.mixing_initializer = keras.initializers.get(
            mixing_initializer if mixing_initializer is not None else keras.initializers.RandomNormal(stddev=1.0)
        )
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape, context_shape=None):
        super().build(input_shape, context_shape)
        h = self.num_heads
        self.mixing = self.add_weight(shape=(h, h), initializer=self.mixing_initializer, name="mixing")
        if self.normalization == "layer_norm":
            self.head_norm = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon, name="head_norm", dtype=self.dtype_policy
            )
            self.head_norm.build((None, None, None, h))
        self.built = True

    def attend(
        self,
        q,
        k,
        v,
        attention_mask=None,
        attention_bias=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        """Norm(Θᵀ softmax(Q Kᵀ/√d_k + bias, masked)) V on `(B, T, h, d)` tensors."""
        logits = ops.einsum("bthd,bshd->bhts", q, k) * ops.cast(float(self._head_dim) ** -0.5, q.dtype)
        if attention_bias is not None:
            logits = logits + ops.cast(attention_bias, logits.dtype)
        mask = self._expand_mask(attention_mask)
        if use_causal_mask:
            t, s = ops.shape(q)[1], ops.shape(k)[1]
            causal = ops.greater_equal(ops.arange(t)[:, None] + (s - t), ops.arange(s)[None, :])[None, None]
            mask = causal if mask is None else ops.logical_and(mask, causal)
        if mask is not None:
            logits = ops.where(mask, logits, ops.cast(-1e9, logits.dtype))
        scores = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), q.dtype)
        scores = self.attn_drop(scores, training=training)
        mixed = ops.einsum("bhts,hg->btsg", scores, ops.cast(self.mixing, scores.dtype))  # heads last
        if self.normalization == "layer_norm":
            mixed = self.head_norm(mixed)
        mixed = ops.transpose(mixed, (0, 3, 1, 2))  # (B, h, T, S)
        out = ops.einsum("bhts,bshd->bthd", mixed, v)
        return out, (mixed if return_attention_scores else None)

    def get_config(self):
        config = super().get_config()
        del config["cross_attention"]
        config.update(
            {
                "normalization": self.normalization,
                "mixing_initializer": keras.initializers.serialize(self.mixing_initializer),
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
