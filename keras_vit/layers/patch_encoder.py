"""Image → token sequence: z_0 of the Vision Transformer (Dosovitskiy et al. 2020, Eq. 1)."""

import numbers

import keras
from keras import ops

from keras_vit.interpolation import interpolation_matrix
from keras_vit.layers.positional_encoding import sinusoidal_encoding_2d

_POSITION_EMBEDDINGS = ("learned", "sincos", "none")


def resample_position_embedding(
    position_embedding, new_grid, old_grid=None, num_prefix_tokens=1, interpolation="bicubic"
):
    """Resizes a `(1, P + H*W, D)` position table to a new patch grid.

    The P prefix-token rows (class, distillation) are kept apart and unchanged;
    the H×W patch rows are resized as an image, as in timm's
    `resample_abs_pos_embed` and Sec. 3.2 of the ViT paper ("2D interpolation
    of the pre-trained position embeddings"), with the same arithmetic
    (`keras_vit.interpolation.interpolation_matrix`, antialiased when
    shrinking) on every backend. Returns the input unchanged when the grids
    already match.

    Args:
        position_embedding: array `(1, P + H*W, D)`.
        new_grid: `(new_H, new_W)`.
        old_grid: `(H, W)`; inferred as square when None.
        num_prefix_tokens: int P.
        interpolation: "bicubic", "bilinear" or "nearest".

    Returns:
        `(1, P + new_H*new_W, D)`.
    """
    pos = ops.convert_to_tensor(position_embedding)
    n = pos.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = int(round(n**0.5))
        if side * side != n:
            raise ValueError(f"Cannot infer a square grid from {n} patch positions; pass `old_grid`.")
        old_grid = (side, side)
    old_grid, new_grid = tuple(int(g) for g in old_grid), tuple(int(g) for g in new_grid)
    if old_grid == new_grid:
        return pos
    prefix, grid = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    dim = pos.shape[-1]
    grid = ops.reshape(grid, (1, old_grid[0], old_grid[1], dim))
    # Separable resize matrices computed once in NumPy (the sizes are static): the same numbers on
    # every backend, and timm's `resample_abs_pos_embed` arithmetic (antialiased when shrinking).
    rows = ops.convert_to_tensor(interpolation_matrix(old_grid[0], new_grid[0], interpolation), dtype=grid.dtype)
    cols = ops.convert_to_tensor(interpolation_matrix(old_grid[1], new_grid[1], interpolation), dtype=grid.dtype)
    grid = ops.einsum("hi,wj,bijd->bhwd", rows, cols, grid)
    grid = ops.reshape(ops.cast(grid, pos.dtype), (1, new_grid[0] * new_grid[1], dim))
    return ops.concatenate([prefix, grid], axis=1)


def check_patch_size(patch_size):
    """`patch_size` as a `(P_h, P_w)` pair of positive ints, or a `ValueError` naming it.

    Floats, strings and bools are refused rather than coerced: `8.0` or `"8"`
    are most likely a config read with the wrong type, and a silent cast would
    hide it.
    """
    patch = (patch_size, patch_size) if not isinstance(patch_size, (tuple, list)) else tuple(patch_size)
    if len(patch) != 2 or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) and p > 0 for p in patch):
        raise ValueError(f"`patch_size` must be a positive int or a pair of them. Received: patch_size={patch_size!r}")
    return tuple(int(p) for p in patch)


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchEncoder(keras.layers.Layer):
    """Splits an image into patches, embeds them and adds position embeddings.

    Implements Eq. (1) of Dosovitskiy et al., "An Image is Worth 16x16 Words"
    (2020):

        z_0 = [x_class; x_p^1 E; x_p^2 E; ...; x_p^N E] + E_pos

    An image `(H, W, C)` becomes N = HW/P² flattened patches x_p^n of length
    P²·C, each projected by E to D dimensions. A P×P convolution with stride P
    is exactly that linear map, and is what this layer uses. Optional extra
    tokens: a distillation token (DeiT, Touvron et al. 2021, Sec. 4) and
    register tokens (Darcet et al. 2024), the latter without position
    embedding. When the input grid differs from the one the table was built
    for, the patch part of E_pos is interpolated (ViT paper, Sec. 3.2).

    Args:
        patch_size: int P (or a `(P_h, P_w)` tuple).
        hidden_dim: int D.
        class_token: bool, prepend the learnable x_class.
        distillation_token: bool, add DeiT's distillation token after it.
        num_register_tokens: int, register tokens after the prefix tokens.
        position_embedding: "learned" (E_pos, a trained table), "sincos"
            (fixed 2-D sinusoids) or "none".
        image_size: `(H, W)` the table is built for when the model's input
            size is dynamic; defaults to the built input size.
        use_bias: bool, bias of the projection E.
        interpolation: resize method for E_pos at other resolutions.

    Call arguments:
        inputs: images `(B, H, W, C)`.

    Returns:
        Tokens `(B, num_prefix_tokens + N, D)` with the prefix tokens
        (class, distillation, registers) first.
    """

    def __init__(
        self,
        patch_size,
        hidden_dim,
        class_token=True,
        distillation_token=False,
        num_register_tokens=0,
        position_embedding="learned",
        image_size=None,
        use_bias=True,
        interpolation="bicubic",
        **kwargs,
    ):
        super().__init__(**kwargs)
        patch = check_patch_size(patch_size)
        if not isinstance(hidden_dim, int) or hidden_dim < 1:
            raise ValueError(f"`hidden_dim` must be a positive integer. Received: hidden_dim={hidden_dim}")
        if position_embedding not in _POSITION_EMBEDDINGS:
            raise ValueError(
                f"`position_embedding` must be one of {_POSITION_EMBEDDINGS}. "
                f"Received: position_embedding={position_embedding!r}"
            )
        if not isinstance(num_register_tokens, int) or num_register_tokens < 0:
            raise ValueError(
                "`num_register_tokens` must be a non-negative integer. "
                f"Received: num_register_tokens={num_register_tokens}"
            )
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.class_token = class_token
        self.distillation_token = distillation_token
        self.num_register_tokens = num_register_tokens
        self.position_embedding = position_embedding
        self.image_size = tuple(image_size) if image_size is not None else None
        self.use_bias = use_bias
        self.interpolation = interpolation
        self._patch = patch

    @property
    def num_embedded_prefix_tokens(self):
        """Prefix tokens that carry a row of E_pos (class and distillation)."""
        return int(self.class_token) + int(self.distillation_token)

    @property
    def num_prefix_tokens(self):
        """All tokens before the patch tokens."""
        return self.num_embedded_prefix_tokens + self.num_register_tokens

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "PatchEncoder expects images of shape (batch, height, width, channels). "
                f"Received: input_shape={input_shape}"
            )
        height, width, channels = input_shape[1:]
        if channels is None:
            raise ValueError(f"The channel axis must be known. Received: input_shape={input_shape}")
        size = self.image_size or (height, width)
        if size[0] is None or size[1] is None:
            raise ValueError(
                "The image size is dynamic; pass `image_size` to fix the position "
                f"table. Received: input_shape={input_shape}"
            )
        for axis, extent, p in (("height", size[0], self._patch[0]), ("width", size[1], self._patch[1])):
            if extent % p:
                raise ValueError(
                    f"`patch_size` must divide the image {axis}. Received: patch_size="
                    f"{self.patch_size} for an image of size {tuple(size)}"
                )
        self.grid_size = (size[0] // self._patch[0], size[1] // self._patch[1])
        self.channels = channels
        self.projection = keras.layers.Conv2D(
            self.hidden_dim,
            self._patch,
            strides=self._patch,
            padding="valid",
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal"),
            name="projection",
            dtype=self.dtype_policy,
        )
        self.projection.build(input_shape)
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        if self.class_token:
            self.cls_token = self.add_weight(shape=(1, 1, self.hidden_dim), initializer="zeros", name="class_token")
        if self.distillation_token:
            self.dist_token = self.add_weight(
                shape=(1, 1, self.hidden_dim), initializer=init, name="distillation_token"
            )
        if self.num_register_tokens:
            self.register_tokens = self.add_weight(
                shape=(1, self.num_register_tokens, self.hidden_dim), initializer=init, name="register_tokens"
            )
        if self.position_embedding == "learned":
            length = self.num_embedded_prefix_tokens + self.grid_size[0] * self.grid_size[1]
            self.pos_embed = self.add_weight(
                shape=(1, length, self.hidden_dim), initializer=init, name="position_embedding"
            )
        self.built = True

    def position_table(self, grid_size=None):
        """E_pos `(1, P + h*w, D)` for a patch grid, interpolated if it differs from the built one."""
        grid_size = tuple(grid_size or self.grid_size)
        if self.position_embedding == "learned":
            return resample_position_embedding(
                self.pos_embed,
                grid_size,
                self.grid_size,
                self.num_embedded_prefix_tokens,
                self.interpolation,
            )
        if self.position_embedding == "sincos":
            pe = sinusoidal_encoding_2d(grid_size[0], grid_size[1], self.hidden_dim)
            prefix = ops.zeros((self.num_embedded_prefix_tokens, self.hidden_dim))
            return ops.concatenate([prefix, pe], axis=0)[None]
        return None

    def call(self, inputs):
        if len(inputs.shape) != 4:
            raise ValueError(
                "PatchEncoder expects images of shape (batch, height, width, channels). "
                f"Received an input of shape {inputs.shape}"
            )
        if inputs.shape[-1] is not None and inputs.shape[-1] != self.channels:
            raise ValueError(
                f"PatchEncoder was built for {self.channels} channels. Received an input of "
                f"shape {inputs.shape} with {inputs.shape[-1]} channels"
            )
        # The strided projection would drop the last rows/columns silently; timm's PatchEmbed
        # raises here too (unless it is asked to pad).
        for axis, extent, p in zip(("height", "width"), inputs.shape[1:3], self._patch):
            if extent is not None and extent % p:
                raise ValueError(
                    f"`patch_size` must divide the image {axis}. Received: patch_size={self.patch_size} "
                    f"for an input of shape {tuple(inputs.shape)}"
                )
        x = self.projection(inputs)  # (B, h, w, D): x_p^n E for every patch.
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            raise ValueError(
                f"PatchEncoder needs a static image size at call time. Received an input of shape {inputs.shape}"
            )
        batch = ops.shape(x)[0]
        x = ops.reshape(x, (batch, height * width, self.hidden_dim))
        prefix = []
        if self.class_token:
            prefix.append(ops.broadcast_to(ops.cast(self.cls_token, x.dtype), (batch, 1, self.hidden_dim)))
        if self.distillation_token:
            prefix.append(ops.broadcast_to(ops.cast(self.dist_token, x.dtype), (batch, 1, self.hidden_dim)))
        x = ops.concatenate(prefix + [x], axis=1) if prefix else x
        pos = self.position_table((height, width))
        if pos is not None:
            x = x + ops.cast(pos, x.dtype)  # + E_pos
        if self.num_register_tokens:
            regs = ops.broadcast_to(
                ops.cast(self.register_tokens, x.dtype), (batch, self.num_register_tokens, self.hidden_dim)
            )
            n = self.num_embedded_prefix_tokens
            x = ops.concatenate([x[:, :n], regs, x[:, n:]], axis=1)
        return x

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        n = None if h is None or w is None else (h // self._patch[0]) * (w // self._patch[1])
        return (input_shape[0], None if n is None else self.num_prefix_tokens + n, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim,
                "class_token": self.class_token,
                "distillation_token": self.distillation_token,
                "num_register_tokens": self.num_register_tokens,
                "position_embedding": self.position_embedding,
                "image_size": self.image_size,
                "use_bias": self.use_bias,
                "interpolation": self.interpolation,
            }
        )
        return config
