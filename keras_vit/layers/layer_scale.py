"""LayerScale (Touvron et al. 2021, CaiT), a learned per-channel residual gain."""

import keras


@keras.saving.register_keras_serializable(package="keras_vit")
class LayerScale(keras.layers.Layer):
    """Multiplies the input by a learned per-channel vector.

    Touvron et al., "Going deeper with Image Transformers" (2021), Eq. (4):
    `x_{l+1} = x_l + diag(λ_1, ..., λ_d) × SA(η(x_l))`, with λ initialised
    to a small value.

    Args:
        init_value: float, the initial value of every λ.

    Call arguments:
        inputs: tensor `(..., dim)`.

    Returns:
        A tensor of the input's shape.
    """

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        if not init_value > 0:
            raise ValueError(f"`init_value` must be positive. Received: init_value={init_value}")
        self.init_value = init_value

    def build(self, input_shape):
        self.gamma = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
            name="gamma",
        )
        self.built = True

    def call(self, inputs):
        return inputs * self.gamma

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"init_value": self.init_value})
        return config
