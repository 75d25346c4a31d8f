"""The Transformer encoder block, pre-norm (ViT) or post-norm (Vaswani et al.)."""

import keras

from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.layer_scale import LayerScale
from keras_vit.layers.mlp import MLP
from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerBlock(keras.layers.Layer):
    """Multi-head self-attention and an MLP, each in a residual branch.

    Pre-norm (`norm_first=True`), Dosovitskiy et al. (2020), Eq. (2)-(3):

        z'_l = MSA(LN(z_{l-1})) + z_{l-1}
        z_l  = MLP(LN(z'_l)) + z'_l

    Post-norm (`norm_first=False`), Vaswani et al. (2017), Sec. 3.1 and 5.4:
    `LayerNorm(x + Dropout(Sublayer(x)))`. Each branch may pass through
    `LayerScale` (CaiT) and `DropPath` (stochastic depth) before the sum.

    Args:
        num_heads: int, attention heads.
        mlp_dim: int, inner width of the MLP (`d_ff`).
        head_dim: int or None, per-head width; defaults to `hidden_dim // num_heads`.
        dropout: float, dropout after the attention projection and in the MLP.
        attention_dropout: float, dropout on the attention scores.
        drop_path: float, stochastic-depth rate of both branches.
        layer_scale_init: float or None, LayerScale's initial λ; None turns it off.
        norm_first: bool, pre-norm (True) or post-norm (False).
        layer_norm_epsilon: float.
        activation: activation of the MLP.
        qkv_bias: bool.
        kernel_initializer: initializer of every kernel.

    Call arguments:
        inputs: `(B, T, hidden_dim)`.
        attention_mask: boolean mask, see `MultiHeadSelfAttention`.
        attention_bias: additive logit bias, see `MultiHeadSelfAttention`.
        use_causal_mask: bool.
        return_attention_scores: bool, also return `(B, h, T, T)` scores.
        training: bool.

    Returns:
        `(B, T, hidden_dim)`, or `(outputs, scores)`.
    """

    def __init__(
        self,
        num_heads,
        mlp_dim,
        head_dim=None,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path=0.0,
        layer_scale_init=None,
        norm_first=True,
        layer_norm_epsilon=1e-6,
        activation="gelu",
        qkv_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(mlp_dim, int) or mlp_dim < 1:
            raise ValueError(f"`mlp_dim` must be a positive integer. Received: mlp_dim={mlp_dim}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"`drop_path` must be in [0, 1). Received: drop_path={drop_path}")
        if layer_scale_init is not None and not layer_scale_init > 0:
            raise ValueError(
                f"`layer_scale_init` must be positive or None. Received: layer_scale_init={layer_scale_init}"
            )
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.head_dim = head_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.drop_path = drop_path
        self.layer_scale_init = layer_scale_init
        self.norm_first = norm_first
        self.layer_norm_epsilon = layer_norm_epsilon
        self.activation = keras.activations.get(activation)
        self.qkv_bias = qkv_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # Validate num_heads/head_dim early with the attention layer's own checks.
        self.attention = MultiHeadSelfAttention(
            num_heads,
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attention_dropout=attention_dropout,
            proj_dropout=dropout,
            kernel_initializer=self.kernel_initializer,
            name="attention",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"TransformerBlock expects (batch, tokens, dim) inputs. Received: input_shape={input_shape}"
            )
        kw = dict(dtype=self.dtype_policy)
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1", **kw)
        self.norm1.build(input_shape)
        self.attention.build(input_shape)
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2", **kw)
        self.norm2.build(input_shape)
        self.mlp = MLP(
            self.mlp_dim,
            activation=self.activation,
            dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            name="mlp",
            **kw,
        )
        self.mlp.build(input_shape)
        self.drop_path1 = DropPath(self.drop_path, name="drop_path1", **kw)
        self.drop_path2 = DropPath(self.drop_path, name="drop_path2", **kw)
        if self.layer_scale_init is not None:
            self.layer_scale1 = LayerScale(self.layer_scale_init, name="layer_scale1", **kw)
            self.layer_scale1.build(input_shape)
            self.layer_scale2 = LayerScale(self.layer_scale_init, name="layer_scale2", **kw)
            self.layer_scale2.build(input_shape)
        self.built = True

    def _branch(self, x, scale, drop, training):
        if self.layer_scale_init is not None:
            x = scale(x)
        return drop(x, training=training)

    def call(
        self,
        inputs,
        attention_mask=None,
        attention_bias=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        ls1 = getattr(self, "layer_scale1", None)
        ls2 = getattr(self, "layer_scale2", None)
        attn_in = self.norm1(inputs) if self.norm_first else inputs
        attn = self.attention(
            attn_in,
            attention_mask=attention_mask,
            attention_bias=attention_bias,
            use_causal_mask=use_causal_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        attn, scores = attn if return_attention_scores else (attn, None)
        x = inputs + self._branch(attn, ls1, self.drop_path1, training)
        if not self.norm_first:
            x = self.norm1(x)
        mlp_in = self.norm2(x) if self.norm_first else x
        x = x + self._branch(self.mlp(mlp_in, training=training), ls2, self.drop_path2, training)
        if not self.norm_first:
            x = self.norm2(x)
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(
        self,
        inputs,
        attention_mask=None,
        attention_bias=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        # Keras passes `compute_output_shape` the input shapes only; the
        # scores that `return_attention_scores` adds are the attention's.
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
                "mlp_dim": self.mlp_dim,
                "head_dim": self.head_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "drop_path": self.drop_path,
                "layer_scale_init": self.layer_scale_init,
                "norm_first": self.norm_first,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "activation": keras.activations.serialize(self.activation),
                "qkv_bias": self.qkv_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
