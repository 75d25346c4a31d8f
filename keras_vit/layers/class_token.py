"""Prepend learnable tokens (the class token x_class of ViT, Dosovitskiy et al. 2020, Eq. 1)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassToken(keras.layers.Layer):
    """Prepends `num_tokens` learnable tokens to a token sequence.

    `[x_class; x_1; ...; x_N]` of Dosovitskiy et al. (2020), Eq. (1), for
    models that embed patches with something other than `PatchEncoder`
    (which has the class token built in).

    Args:
        num_tokens: int, tokens to prepend.
        initializer: initializer of the tokens.

    Call arguments:
        inputs: `(B, N, D)`.

    Returns:
        `(B, num_tokens + N, D)`.
    """

    def __init__(self, num_tokens=1, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"`num_tokens` must be a positive integer. Received: num_tokens={num_tokens}")
        self.num_tokens = num_tokens
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"ClassToken expects (batch, tokens, dim) inputs. Received: input_shape={input_shape}")
        self.tokens = self.add_weight(
            shape=(1, self.num_tokens, input_shape[-1]), initializer=self.initializer, name="tokens"
        )
        self.built = True

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        tokens = ops.broadcast_to(ops.cast(self.tokens, inputs.dtype), (batch, self.num_tokens, inputs.shape[-1]))
        return ops.concatenate([tokens, inputs], axis=1)

    def compute_output_shape(self, input_shape):
        n = None if input_shape[1] is None else input_shape[1] + self.num_tokens
        return (input_shape[0], n, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update({"num_tokens": self.num_tokens, "initializer": keras.initializers.serialize(self.initializer)})
        return config
