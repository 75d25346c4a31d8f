"""The Transformer's position-wise feed-forward network."""

import keras


@keras.saving.register_keras_serializable(package="keras_vit")
class MLP(keras.layers.Layer):
    """Two dense layers with a non-linearity between them.

    Vaswani et al. (2017), Eq. (2): `FFN(x) = max(0, x W1 + b1) W2 + b2`; ViT
    (Dosovitskiy et al. 2020, Eq. (3)) uses GELU instead of ReLU.

    Args:
        mlp_dim: int, width of the inner layer (the ViT paper's "MLP size",
            the Transformer's `d_ff`).
        output_dim: int or None, output width; defaults to the input width.
        activation: activation of the inner layer ("gelu" is the exact erf
            form, as in ViT).
        dropout: float, dropout after each dense layer.
        use_bias: bool.
        kernel_initializer: initializer of both kernels.

    Call arguments:
        inputs: tensor `(..., dim)`.
        training: bool.

    Returns:
        A tensor `(..., output_dim)`.
    """

    def __init__(
        self,
        mlp_dim,
        output_dim=None,
        activation="gelu",
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(mlp_dim, int) or mlp_dim < 1:
            raise ValueError(f"`mlp_dim` must be a positive integer. Received: mlp_dim={mlp_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
        self.mlp_dim = mlp_dim
        self.output_dim = output_dim
        self.activation = keras.activations.get(activation)
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        kw = dict(
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
        )
        self.fc1 = keras.layers.Dense(self.mlp_dim, activation=self.activation, name="fc1", **kw)
        self.fc1.build(input_shape)
        self.fc2 = keras.layers.Dense(self.output_dim or input_shape[-1], name="fc2", **kw)
        self.fc2.build((*input_shape[:-1], self.mlp_dim))
        self.drop = keras.layers.Dropout(self.dropout, name="drop", dtype=self.dtype_policy)
        self.built = True

    def call(self, inputs, training=None):
        x = self.drop(self.fc1(inputs), training=training)
        return self.drop(self.fc2(x), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim or input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mlp_dim": self.mlp_dim,
                "output_dim": self.output_dim,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
