"""The Transformer decoder block of Vaswani et al. (2017), with a key/value cache."""

import keras
from keras import ops

from keras_vit.layers.mlp import MLP
from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerDecoderBlock(keras.layers.Layer):
    """Causal self-attention, attention over the encoder output, and an MLP.

    Vaswani et al. (2017), Sec. 3.1: "In addition to the two sub-layers in
    each encoder layer, the decoder inserts a third sub-layer, which performs
    multi-head attention over the output of the encoder stack ... We also
    modify the self-attention sub-layer in the decoder stack to prevent
    positions from attending to subsequent positions."

    Post-norm (`norm_first=False`, the paper): `x = LN(x + Dropout(Sublayer(x)))`
    after each of the three sub-layers. Pre-norm (`norm_first=True`):
    `x = x + Dropout(Sublayer(LN(x)))`; a final LayerNorm then belongs to the
    decoder stack, not to the block.

    Incremental decoding: pass `self_attention_cache` `(B, 2, L, h, d_k)` (see
    `initial_cache`) and `cache_update_index`; the keys and values of the new
    tokens are written into the cache, so each step costs one token's work.
    `cross_attention_cache` (see `compute_cross_attention_cache`) holds the
    projected encoder keys/values, computed once per source.

    Args:
        num_heads: int, attention heads h.
        mlp_dim: int, inner width d_ff of the MLP.
        head_dim: int or None, per-head width; defaults to `hidden_dim // num_heads`.
        dropout: float, residual dropout P_drop (after each sub-layer) and in the MLP.
        attention_dropout: float, dropout on the attention scores.
        norm_first: bool, pre-norm (True) or post-norm (False, the paper).
        layer_norm_epsilon: float.
        activation: activation of the MLP (ReLU in the paper, Eq. (2)).
        qkv_bias: bool.
        kernel_initializer: initializer of every kernel.

    Call arguments:
        inputs: `(B, T, hidden_dim)` decoder sequence.
        encoder_outputs: `(B, S, enc_dim)`. Not needed when
            `cross_attention_cache` is given.
        decoder_padding_mask: bool `(B, T)`, True at real target tokens
            (or `(B, L)` over the cache slots when decoding with a cache).
        encoder_padding_mask: bool `(B, S)`, True at real source tokens.
        self_attention_cache: `(B, 2, L, h, d_k)` or None.
        cross_attention_cache: `(B, 2, S, h, d_k)` or None.
        cache_update_index: int or scalar tensor, cache slot of `inputs[:, 0]`.
        return_attention_scores: bool, also return the cross-attention scores
            `(B, h, T, S)` (the alignment of target to source tokens).
        training: bool.

    Returns:
        `(B, T, hidden_dim)`; with `return_attention_scores=True`,
        `(outputs, cross_scores)`; with a `self_attention_cache`, the updated
        cache is appended to the returned tuple.
    """

    def __init__(
        self,
        num_heads,
        mlp_dim,
        head_dim=None,
        dropout=0.0,
        attention_dropout=0.0,
        norm_first=False,
        layer_norm_epsilon=1e-6,
        activation="relu",
        qkv_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(mlp_dim, int) or mlp_dim < 1:
            raise ValueError(f"`mlp_dim` must be a positive integer. Received: mlp_dim={mlp_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.head_dim = head_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.norm_first = norm_first
        self.layer_norm_epsilon = layer_norm_epsilon
        self.activation = keras.activations.get(activation)
        self.qkv_bias = qkv_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        kw = dict(
            head_dim=head_dim,
            qkv_bias=qkv_bias,
            attention_dropout=attention_dropout,
            proj_dropout=dropout,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
        )
        self.self_attention = MultiHeadSelfAttention(num_heads, name="self_attention", **kw)
        self.cross_attention = MultiHeadSelfAttention(num_heads, cross_attention=True, name="cross_attention", **kw)

    def build(self, inputs_shape, encoder_outputs_shape=None):
        input_shape = inputs_shape
        if len(input_shape) != 3:
            raise ValueError(
                f"TransformerDecoderBlock expects (batch, tokens, dim) inputs. Received: input_shape={input_shape}"
            )
        kw = dict(dtype=self.dtype_policy)
        self.self_attention.build(input_shape)
        self.cross_attention.build(input_shape, encoder_outputs_shape or input_shape)
        for i in (1, 2, 3):
            norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name=f"norm{i}", **kw)
            norm.build(input_shape)
            setattr(self, f"norm{i}", norm)
        self.mlp = MLP(
            self.mlp_dim,
            activation=self.activation,
            dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            name="mlp",
            **kw,
        )
        self.mlp.build(input_shape)
        self.built = True

    def initial_cache(self, batch_size, max_length, dtype=None):
        """An empty self-attention cache `(B, 2, max_length, h, d_k)`."""
        a = self.self_attention
        return ops.zeros((batch_size, 2, max_length, a.num_heads, a._head_dim), dtype or self.compute_dtype)

    def compute_cross_attention_cache(self, encoder_outputs):
        """Projected encoder keys and values `(B, 2, S, h, d_k)`."""
        return self.cross_attention.compute_key_value_cache(encoder_outputs)

    def _residual(self, x, sublayer, norm):
        """Post-norm `LN(x + f(x))` or pre-norm `x + f(LN(x))`; `f` returns a tuple."""
        if self.norm_first:
            out = sublayer(norm(x))
            return x + out[0], out[1:]
        out = sublayer(x)
        return norm(x + out[0]), out[1:]

    def call(
        self,
        inputs,
        encoder_outputs=None,
        decoder_padding_mask=None,
        encoder_padding_mask=None,
        self_attention_cache=None,
        cross_attention_cache=None,
        cache_update_index=None,
        return_attention_scores=False,
        training=None,
    ):
        if encoder_outputs is None and cross_attention_cache is None:
            raise ValueError("`encoder_outputs` or `cross_attention_cache` is required. Received neither.")

        def self_attn(x):
            out = self.self_attention(
                x,
                attention_mask=decoder_padding_mask,
                use_causal_mask=self_attention_cache is None,
                cache=self_attention_cache,
                cache_update_index=cache_update_index,
                training=training,
            )
            return out if isinstance(out, tuple) else (out,)

        def cross_attn(x):
            out = self.cross_attention(
                x,
                context=None if cross_attention_cache is not None else encoder_outputs,
                attention_mask=encoder_padding_mask,
                return_attention_scores=return_attention_scores,
                cache=cross_attention_cache,
                training=training,
            )
            out = out if isinstance(out, tuple) else (out,)
            # The cross-attention cache is read-only: drop it from the outputs.
            return out[:2] if return_attention_scores else out[:1]

        x, new_cache = self._residual(inputs, self_attn, self.norm1)
        x, scores = self._residual(x, cross_attn, self.norm2)
        x, _ = self._residual(x, lambda y: (self.mlp(y, training=training),), self.norm3)
        outputs = (x,)
        if return_attention_scores:
            outputs += (scores[0],)
        if self_attention_cache is not None:
            outputs += (new_cache[0],)
        return outputs if len(outputs) > 1 else x

    def compute_output_shape(self, inputs_shape, encoder_outputs_shape=None):
        return tuple(inputs_shape)

    def compute_output_spec(
        self,
        inputs,
        encoder_outputs=None,
        decoder_padding_mask=None,
        encoder_padding_mask=None,
        self_attention_cache=None,
        cross_attention_cache=None,
        cache_update_index=None,
        return_attention_scores=False,
        training=None,
    ):
        # Keras passes `compute_output_shape` the input shapes only; the
        # cross-attention scores and the self-attention cache that the call
        # returns beside the output are described here.
        output = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        outputs = (output,)
        if return_attention_scores:
            _, scores, *_ = self.cross_attention.compute_output_spec(
                inputs,
                context=None if cross_attention_cache is not None else encoder_outputs,
                return_attention_scores=True,
                cache=cross_attention_cache,
            )
            outputs += (scores,)
        if self_attention_cache is not None:
            outputs += (keras.KerasTensor(self_attention_cache.shape, dtype=self_attention_cache.dtype),)
        return outputs if len(outputs) > 1 else output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "head_dim": self.head_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "norm_first": self.norm_first,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "activation": keras.activations.serialize(self.activation),
                "qkv_bias": self.qkv_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
