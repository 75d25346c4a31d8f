"""Position encodings: the fixed sinusoids of Vaswani et al. (1-D and 2-D) and a learned table."""

import math

import keras
from keras import ops

_KINDS = ("sinusoidal", "sinusoidal_2d", "learned")


def sinusoidal_encoding(length, dim, max_wavelength=10000.0, dtype="float32"):
    """The fixed encoding of Vaswani et al. (2017), Sec. 3.5.

    `PE(pos, 2i) = sin(pos / 10000^(2i/d))`, `PE(pos, 2i+1) = cos(pos / 10000^(2i/d))`.

    Args:
        length: int or scalar tensor, number of positions.
        dim: int, even model width d_model.
        max_wavelength: float, the 10000 of the formula.

    Returns:
        A `(length, dim)` tensor.
    """
    return sinusoidal_encoding_at(ops.arange(length), dim, max_wavelength, dtype)


def sinusoidal_encoding_at(positions, dim, max_wavelength=10000.0, dtype="float32"):
    """`sinusoidal_encoding` at the integer `positions` (a 1-D tensor), as a `(len(positions), dim)` tensor.

    Positions that start at a traced offset (a cached decoder's step inside a
    compiled loop) need no `arange` of a traced length.
    """
    if dim % 2:
        raise ValueError(f"`dim` must be even for sinusoidal encodings. Received: dim={dim}")
    position = ops.cast(positions, "float32")[:, None]
    two_i = ops.cast(ops.arange(0, dim, 2), "float32")
    inv_freq = ops.exp(-math.log(max_wavelength) * two_i / dim)
    angles = position * inv_freq[None, :]
    # Interleave sin (even channels) and cos (odd channels).
    pe = ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (-1, dim))
    return ops.cast(pe, dtype)


def sinusoidal_encoding_2d(grid_height, grid_width, dim, max_wavelength=10000.0, dtype="float32"):
    """2-D sin-cos encoding of a patch grid (as in MoCo v3, MAE and big_vision).

    A quarter of the channels each holds sin(x), cos(x), sin(y), cos(y), with
    the frequencies of `sinusoidal_encoding` over `dim // 4` channels.

    Returns:
        A `(grid_height * grid_width, dim)` tensor, row-major over the grid.
    """
    if dim % 4:
        raise ValueError(f"`dim` must be divisible by 4 for 2-D sin-cos encodings. Received: dim={dim}")
    quarter = dim // 4
    omega = ops.cast(ops.arange(quarter), "float32") / max(quarter - 1, 1)
    omega = 1.0 / (max_wavelength**omega)
    ys, xs = ops.meshgrid(
        ops.cast(ops.arange(grid_height), "float32"),
        ops.cast(ops.arange(grid_width), "float32"),
        indexing="ij",
    )
    xs = ops.reshape(xs, (-1, 1)) * omega[None, :]
    ys = ops.reshape(ys, (-1, 1)) * omega[None, :]
    pe = ops.concatenate([ops.sin(xs), ops.cos(xs), ops.sin(ys), ops.cos(ys)], axis=1)
    return ops.cast(pe, dtype)


@keras.saving.register_keras_serializable(package="keras_vit")
class PositionalEncoding(keras.layers.Layer):
    """Adds position information to a sequence (or grid) of embeddings.

    - `"sinusoidal"`: the fixed encoding of Vaswani et al. (2017), Sec. 3.5,
      for `(B, T, d)` inputs of any length.
    - `"sinusoidal_2d"`: its 2-D form for `(B, H, W, d)` feature grids.
    - `"learned"`: a trained `(max_length, d)` table, as the 1-D E_pos of
      Dosovitskiy et al. (2020), Eq. (1); inputs `(B, T ≤ max_length, d)`.

    Args:
        kind: one of "sinusoidal", "sinusoidal_2d", "learned".
        max_length: int, table size; required for "learned".
        max_wavelength: float, the 10000 of the sinusoid formula.
        initializer: initializer of the learned table.

    Call arguments:
        inputs: `(B, T, d)` or, for "sinusoidal_2d", `(B, H, W, d)`.

    Returns:
        `inputs + PE`, same shape.
    """

    def __init__(
        self,
        kind="sinusoidal",
        max_length=None,
        max_wavelength=10000.0,
        initializer="truncated_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in _KINDS:
            raise ValueError(f"`kind` must be one of {_KINDS}. Received: kind={kind!r}")
        if kind == "learned" and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(
                f"`max_length` must be a positive integer for kind='learned'. Received: max_length={max_length}"
            )
        self.kind = kind
        self.max_length = max_length
        self.max_wavelength = max_wavelength
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        expected_rank = 4 if self.kind == "sinusoidal_2d" else 3
        if len(input_shape) != expected_rank:
            raise ValueError(
                f"PositionalEncoding(kind={self.kind!r}) expects inputs of rank "
                f"{expected_rank}. Received: input_shape={input_shape}"
            )
        if self.kind == "learned":
            self.embeddings = self.add_weight(
                shape=(self.max_length, input_shape[-1]),
                initializer=self.initializer,
                name="embeddings",
            )
        self.built = True

    def encoding(self, inputs):
        """The encoding alone, broadcastable to `inputs`."""
        shape = ops.shape(inputs)
        dim = inputs.shape[-1]
        if self.kind == "sinusoidal":
            return sinusoidal_encoding(shape[1], dim, self.max_wavelength, inputs.dtype)[None]
        if self.kind == "sinusoidal_2d":
            pe = sinusoidal_encoding_2d(shape[1], shape[2], dim, self.max_wavelength, inputs.dtype)
            return ops.reshape(pe, (1, shape[1], shape[2], dim))
        length = inputs.shape[1]
        if length is not None and length > self.max_length:
            raise ValueError(f"The sequence length {length} exceeds `max_length={self.max_length}`.")
        return ops.cast(self.embeddings[None, : shape[1]], inputs.dtype)

    def call(self, inputs):
        return inputs + self.encoding(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kind": self.kind,
                "max_length": self.max_length,
                "max_wavelength": self.max_wavelength,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
