"""Token embedding shared with the output projection (Vaswani et al. 2017, Sec. 3.4)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenEmbedding(keras.layers.Layer):
    """A learned token embedding that can also act as the pre-softmax projection.

    Vaswani et al. (2017), Sec. 3.4: "we share the same weight matrix between
    the two embedding layers and the pre-softmax linear transformation ... In
    the embedding layers, we multiply those weights by √d_model."

    Args:
        vocabulary_size: int, number of tokens V.
        hidden_dim: int, embedding width d_model.
        scale_by_sqrt_dim: bool, whether lookups are multiplied by √d_model.
        embeddings_initializer: initializer of the `(V, d_model)` table. The
            default N(0, d_model^-1/2) keeps scaled lookups near unit variance.

    Call arguments:
        inputs: integer tensor `(B, T)` of token ids, or, with
            `reverse=True`, a float tensor `(B, T, d_model)`.
        reverse: bool, compute logits `x Eᵀ` `(B, T, V)` instead of a lookup.

    Returns:
        `(B, T, d_model)` embeddings, or `(B, T, V)` logits with `reverse=True`.
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        scale_by_sqrt_dim=True,
        embeddings_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, value in (("vocabulary_size", vocabulary_size), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer. Received: {arg}={value}")
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.scale_by_sqrt_dim = scale_by_sqrt_dim
        if embeddings_initializer is None:
            embeddings_initializer = keras.initializers.RandomNormal(stddev=hidden_dim**-0.5)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            shape=(self.vocabulary_size, self.hidden_dim),
            initializer=self.embeddings_initializer,
            name="embeddings",
        )
        self.built = True

    def call(self, inputs, reverse=False):
        if reverse:
            kernel = ops.cast(self.embeddings, self.compute_dtype)
            return ops.matmul(inputs, ops.transpose(kernel))
        x = ops.take(self.embeddings, ops.cast(inputs, "int32"), axis=0)
        x = ops.cast(x, self.compute_dtype)
        if self.scale_by_sqrt_dim:
            x = x * ops.cast(self.hidden_dim**0.5, x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        """The shape of a lookup, `(B, T)` → `(B, T, d_model)`."""
        return (*input_shape, self.hidden_dim)

    def compute_output_spec(self, inputs, reverse=False):
        # Keras passes `compute_output_shape` the input shapes only, so the
        # `reverse` projection's shape is given here, for symbolic calls.
        if reverse:
            shape = (*inputs.shape[:-1], self.vocabulary_size)
        else:
            shape = self.compute_output_shape(inputs.shape)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "scale_by_sqrt_dim": self.scale_by_sqrt_dim,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            }
        )
        return config
