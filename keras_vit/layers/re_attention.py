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
    attention. Only the head-mixing step (`mix_heads`) is this layer's: Q,
    K, V, W^O and the attention kernel are the parent layer's (`project_qkv`,
    `qkv`, `proj`, `scaled_dot_product_attention`), so the same weights
    convert. Attention dropout acts on the re-attention maps that weight V
    (vit-pytorch drops before the mixing; the two agree at inference), and
    `attention_probs_hook` sees the re-attention maps.

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

    def build(self, inputs_shape, context_shape=None):
        super().build(inputs_shape, context_shape)
        h = self.num_heads
        self.mixing = self.add_weight(shape=(h, h), initializer=self.mixing_initializer, name="mixing")
        if self.normalization == "layer_norm":
            self.head_norm = keras.layers.LayerNormalization(
                epsilon=self.layer_norm_epsilon, name="head_norm", dtype=self.dtype_policy
            )
            self.head_norm.build((None, None, None, h))
        self.built = True

    def mix_heads(self, probs):
        """Norm(Θᵀ A): the h maps of A `(B, h, T, S)` mixed into h new ones (Eq. 3)."""
        mixed = ops.einsum("bhts,hg->btsg", probs, ops.cast(self.mixing, probs.dtype))  # heads last
        if self.normalization == "layer_norm":
            mixed = self.head_norm(mixed)
        return ops.transpose(mixed, (0, 3, 1, 2))  # (B, h, T, S)

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
