"""The Performer variant of the Tokens-to-Token layer (T2T-ViT, Yuan et al. 2021, Sec. 3.1)."""

import math

import keras
from keras import ops

from keras_vit.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPerformer(keras.layers.Layer):
    """Single-head linear (Performer) attention over soft-split tokens.

    The T2T layer of the official `t2t_vit_*` models: softmax attention is
    replaced by its positive-random-feature approximation (Choromanski et
    al., "Rethinking Attention with Performers", ICLR 2021, Lemma 1):

        φ(x) = exp(W x - |x|²/2) / √m,    W: m×d fixed random orthogonal rows
        Att(Q, K, V) ≈ D⁻¹ φ(Q) (φ(K)ᵀ V),   D = diag(φ(Q) φ(K)ᵀ 1)

    linear in the number of tokens, which matters for the 3,136 tokens of
    the first soft split at 224×224. As in `TokenTransformer`, the widths of
    input and output differ and the residual is the value V:
    `y = V + W^O Att(...)`, `T' = y + MLP(LN(y))`, with K, Q, V = LN(T) W.
    W is drawn once (orthogonal, scaled by √m) and kept fixed
    (non-trainable).

    Args:
        output_dim: int, width of the output tokens (the official token_dim 64).
        kernel_ratio: float, m = int(output_dim · kernel_ratio) random features.
        dropout: float, dropout after the attention projection and in the MLP.
        layer_norm_epsilon: float.
        epsilon: float, added to D before the division.

    Call arguments:
        inputs: `(B, N, input_dim)`.
        training: bool.

    Returns:
        `(B, N, output_dim)`.
    """

    def __init__(self, output_dim, kernel_ratio=0.5, dropout=0.0, layer_norm_epsilon=1e-5, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(f"`output_dim` must be a positive integer. Received: output_dim={output_dim}")
        if not kernel_ratio > 0 or int(output_dim * kernel_ratio) < 1:
            raise ValueError(
                f"`kernel_ratio` must give at least one random feature. Received: kernel_ratio={kernel_ratio}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
        self.output_dim = output_dim
        self.kernel_ratio = kernel_ratio
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.epsilon = epsilon

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"TokenPerformer expects (batch, tokens, dim) inputs with a known dim. Received: input_shape={input_shape}"
            )
        emb = self.output_dim
        self.num_features = int(emb * self.kernel_ratio)
        kw = dict(dtype=self.dtype_policy)
        out_shape = (*input_shape[:-1], emb)
        self.norm1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm1", **kw)
        self.norm1.build(input_shape)
        self.kqv = keras.layers.Dense(3 * emb, name="kqv", **kw)
        self.kqv.build(input_shape)
        self.proj = keras.layers.Dense(emb, name="proj", **kw)
        self.proj.build(out_shape)
        self.drop = keras.layers.Dropout(self.dropout, name="drop", **kw)
        self.norm2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="norm2", **kw)
        self.norm2.build(out_shape)
        self.mlp = MLP(emb, dropout=self.dropout, name="mlp", **kw)
        self.mlp.build(out_shape)
        self.random_features = self.add_weight(
            shape=(self.num_features, emb),
            initializer=keras.initializers.Orthogonal(gain=math.sqrt(self.num_features)),
            trainable=False,
            name="random_features",
        )
        self.built = True

    def feature_map(self, x):
        """φ(x) = exp(W x - |x|²/2) / √m, `(B, N, d)` → `(B, N, m)`."""
        x = ops.cast(x, "float32")
        half_norm = ops.sum(x * x, axis=-1, keepdims=True) / 2.0
        wtx = ops.einsum("btd,md->btm", x, ops.cast(self.random_features, "float32"))
        return ops.exp(wtx - half_norm) / math.sqrt(self.num_features)

    def call(self, inputs, training=None):
        k, q, v = ops.split(self.kqv(self.norm1(inputs)), 3, axis=-1)  # the official order: K, Q, V
        kp, qp = self.feature_map(k), self.feature_map(q)  # (B, N, m)
        normaliser = ops.einsum("btm,bm->bt", qp, ops.sum(kp, axis=1))[..., None]  # (B, N, 1)
        kptv = ops.einsum("bsd,bsm->bdm", ops.cast(v, "float32"), kp)  # φ(K)ᵀ V: (B, d, m)
        y = ops.einsum("btm,bdm->btd", qp, kptv) / (normaliser + self.epsilon)
        y = v + self.drop(self.proj(ops.cast(y, v.dtype)), training=training)
        return y + self.mlp(self.norm2(y), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "kernel_ratio": self.kernel_ratio,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "epsilon": self.epsilon,
            }
        )
        return config
