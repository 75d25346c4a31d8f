"""The DeepViT encoder block: re-attention and an MLP (Zhou et al. 2021, Sec. 4)."""

import keras

from keras_vit.layers.re_attention import ReAttention
from keras_vit.layers.transformer_block import TransformerBlock


@keras.saving.register_keras_serializable(package="keras_vit")
class ReAttentionBlock(TransformerBlock):
    """A pre-norm `TransformerBlock` whose attention is `ReAttention`.

    DeepViT, Zhou et al. (2021), Sec. 4: the ViT block of Dosovitskiy et al.
    Eq. (2)-(3) with multi-head self-attention replaced by re-attention,
    `z'_l = ReAttn(LN(z_{l-1})) + z_{l-1}`, `z_l = MLP(LN(z'_l)) + z'_l`.

    Args:
        num_heads: int, attention heads.
        mlp_dim: int, inner width of the MLP.
        normalization: "layer_norm" or "none", see `ReAttention`.
        mixing_initializer: initializer of the head-mixing matrix Θ.
        **kwargs: the other arguments of `TransformerBlock`.

    Call arguments and returns: as `TransformerBlock`.
    """

    def __init__(self, num_heads, mlp_dim, normalization="layer_norm", mixing_initializer=None, **kwargs):
        super().__init__(num_heads, mlp_dim, **kwargs)
        self.normalization = normalization
        self.mixing_initializer = mixing_initializer
        self.attention = ReAttention(
            num_heads,
            normalization=normalization,
            mixing_initializer=mixing_initializer,
            head_dim=self.head_dim,
            qkv_bias=self.qkv_bias,
            attention_dropout=self.attention_dropout,
            proj_dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            name="attention",
            dtype=self.dtype_policy,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "normalization": self.normalization,
                "mixing_initializer": self.attention.get_config()["mixing_initializer"],
            }
        )
        return config
