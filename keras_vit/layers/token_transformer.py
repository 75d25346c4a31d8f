"""The Tokens-to-Token transformer layer (T2T-ViT, Yuan et al. 2021, Sec. 3.1)."""

import keras
from keras import ops

from keras_vit.layers.mlp import MLP
from keras_vit.layers.multi_head_self_attention import scaled_dot_product_attention

_RESIDUALS = ("value", "input")


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenTransformer(keras.layers.Layer):
    """A transformer layer over soft-split tokens that may narrow them.

    The re-structurization step of Tokens-to-Token ViT (Yuan et al., ICCV
    2021, Eq. 1): `T' = MLP(MSA(T))`, applied to the tokens of one soft split
    before they are reshaped back into an image. The official T2T-ViT layer
    maps the wide unfolded tokens (C·k² channels) to `output_dim` channels;
    since the input and output widths differ, the attention branch's
    residual is the value V rather than the input:

        y = V + W^O softmax(Q Kᵀ · s) V,   Q, K, V = LN(T) W^{Q,K,V}
        T' = y + MLP(LN(y))

    with `s = (input_dim / num_heads)^-1/2` (the official code scales by the
    input width). With `residual="input"`, `output_dim=None`,
    `output_projection=False` and `final_norm=True` the layer is the
    single-head pre-norm block of vit-pytorch's `T2TViT` instead:
    `y = T + softmax(QKᵀ s) V; T' = LN(y + MLP(LN(y)))`.

    Args:
        output_dim: int or None, width of the output tokens; None keeps the
            input width.
        num_heads: int, attention heads; must divide the output width.
        mlp_ratio: float, MLP width as a multiple of the output width.
        qkv_bias: bool.
        residual: "value" (official T2T-ViT) or "input" (standard).
        output_projection: bool, whether the attention has its W^O.
        final_norm: bool, a LayerNorm after the block.
        dropout: float, dropout after the attention projection and in the MLP.
        layer_norm_epsilon: float.

    Call arguments:
        inputs: `(B, N, input_dim)`.
        return_attention_scores: bool, also return `(B, h, N, N)`.
        training: bool.

    Returns:
        `(B, N, output_dim)`, or `(outputs, scores)`.
    """

    def __init__(
        self,
        output_dim=None,
        num_heads=1,
        mlp_ratio=1.0,
        qkv_bias=False,
        residual="value",
        output_projection=True,
        final_norm=False,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output_dim is not None and (not isinstance(output_dim, int) or output_dim < 1):
            raise ValueError(f"`output_dim` must be a positive integer or None. Received: output_dim={output_dim}")
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"`num_heads` must be a positive integer. Received: num_heads={num_heads}")
        if not mlp_ratio > 0:
            raise ValueError(f"`mlp_ratio` must be positive. Received: mlp_ratio={mlp_ratio}")
        if residual not in _RESIDUALS:
            raise ValueError(f"`residual` must be one of {_RESIDUALS}. Received: residual={residual!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
        self.output_dim = output_dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.residual = residual
        self.output_projection = output_projection
        self.final_norm = final_norm
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"TokenTransformer expects (batch, tokens, dim) inputs with a known dim. Received: input_shape={input_shape}"
            )
        input_dim = input_shape[-1]
        width = self.output_dim or input_dim
        if width % self.num_heads:
            raise ValueError(
                "The output width must be divisible by `num_heads`. "
                f"Received: output_dim={width}, num_heads={self.num_heads}"
            )
        if self.residual == "input" and width != input_dim:
            raise ValueError(
                "residual='input' needs `output_dim` equal to the input width. "
                f"Received: output_dim={width}, input width {input_dim}"
            )
        self._width = width
        self._scale = float(input_dim // self.num_heads) ** -0.5
        kw = dict(dtype=self.dtype_policy)
        out_shape = (*input_shape[:-1], width)
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1", **kw)
        self.norm1.build(input_shape)
        self.qkv = keras.layers.Dense(3 * width, use_bias=self.qkv_bias, name="qkv", **kw)
        self.qkv.build(input_shape)
        if self.output_projection:
            self.proj = keras.layers.Dense(width, name="proj", **kw)
            self.proj.build(out_shape)
        self.drop = keras.layers.Dropout(self.dropout, name="drop", **kw)
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2", **kw)
        self.norm2.build(out_shape)
        self.mlp = MLP(max(1, int(width * self.mlp_ratio)), dropout=self.dropout, name="mlp", **kw)
        self.mlp.build(out_shape)
        if self.final_norm:
            self.norm3 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm3", **kw)
            self.norm3.build(out_shape)
        self.built = True

    def call(self, inputs, return_attention_scores=False, training=None):
        batch, tokens = ops.shape(inputs)[0], ops.shape(inputs)[1]
        h, d = self.num_heads, self._width // self.num_heads
        qkv = ops.reshape(self.qkv(self.norm1(inputs)), (batch, tokens, 3, h, d))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, N, h, d)
        # The package's one attention kernel (fused unless the scores are asked for),
        # with the official code's input-width scale.
        y, scores = scaled_dot_product_attention(q, k, v, self._scale, explicit=return_attention_scores)
        y = ops.reshape(y, (batch, tokens, self._width))
        if self.output_projection:
            y = self.proj(y)
        y = self.drop(y, training=training)
        skip = ops.reshape(v, (batch, tokens, self._width)) if self.residual == "value" else inputs
        x = skip + y
        x = x + self.mlp(self.norm2(x), training=training)
        if self.final_norm:
            x = self.norm3(x)
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim or input_shape[-1])

    def compute_output_spec(self, inputs, return_attention_scores=False, training=None):
        # Keras passes `compute_output_shape` the input shapes only; the
        # scores that `return_attention_scores` adds are described here.
        output = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        # The explicit kernel casts the softmax back to the dtype of Q, the compute dtype.
        batch, tokens = inputs.shape[:2]
        scores = keras.KerasTensor((batch, self.num_heads, tokens, tokens), dtype=self.compute_dtype)
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias,
                "residual": self.residual,
                "output_projection": self.output_projection,
                "final_norm": self.final_norm,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
