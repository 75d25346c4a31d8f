"""Reduce a token sequence to one vector: class token, mean or max of the patch tokens."""

import keras
from keras import ops

_MODES = ("token", "avg", "max")


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPooling(keras.layers.Layer):
    """Pools `(B, T, D)` tokens to `(B, D)`.

    "token" takes the class token, y = z_L^0 (ViT paper, Eq. 4); "avg" and
    "max" pool the patch tokens only (the prefix tokens are excluded), "avg"
    being the global-average-pooling variant of the ViT paper, Appendix D.3.

    Args:
        mode: "token", "avg" or "max".
        num_prefix_tokens: int, tokens before the patch tokens.
        token_index: int, which token "token" mode takes.

    Call arguments:
        inputs: `(B, T, D)`.

    Returns:
        `(B, D)`.
    """

    def __init__(self, mode="token", num_prefix_tokens=1, token_index=0, **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {_MODES}. Received: mode={mode!r}")
        if mode == "token" and token_index >= num_prefix_tokens:
            raise ValueError(
                "mode='token' needs a prefix token to take. Received: "
                f"num_prefix_tokens={num_prefix_tokens}, token_index={token_index}"
            )
        self.mode = mode
        self.num_prefix_tokens = num_prefix_tokens
        self.token_index = token_index

    def call(self, inputs):
        if self.mode == "token":
            return inputs[:, self.token_index]
        patches = inputs[:, self.num_prefix_tokens :]
        if self.mode == "avg":
            return ops.mean(patches, axis=1)
        return ops.max(patches, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "num_prefix_tokens": self.num_prefix_tokens,
                "token_index": self.token_index,
            }
        )
        return config
