"""Swin Transformer (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows", ICCV 2021).

Swin-T/S/B of the paper's Sec. 3.3, built by one generic `SwinTransformer`
and registered under timm's names.
"""

import keras
import numpy as np

from keras_vit.applications.registry import register_model
from keras_vit.applications.vit import _check_weights, load_weights_file
from keras_vit.layers import PatchEncoder, PatchMerging, SwinTransformerBlock

# Sec. 3.3 of the paper: channel number C of the first stage, blocks per
# stage, and heads per stage (head width 32).
SWIN_CONFIGS = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
}

_POOLINGS = ("avg", "max", None)


def image_inputs(input_tensor, input_shape, default_shape=(224, 224, 3)):
    """The model input, from `input_tensor` or `input_shape` (keras.applications rules).

    Returns:
        `(inputs, input_shape)`: the Keras tensor the model starts from and its
        `(H, W, C)` shape.
    """
    if input_tensor is not None:
        inputs = input_tensor if keras.backend.is_keras_tensor(input_tensor) else keras.Input(tensor=input_tensor)
        return inputs, tuple(inputs.shape[1:]) if input_shape is None else tuple(input_shape)
    input_shape = tuple(input_shape) if input_shape is not None else tuple(default_shape)
    if len(input_shape) != 3 or None in input_shape[:2]:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with a known height and width. "
            f"Received: input_shape={input_shape}"
        )
    return keras.Input(shape=input_shape, name="images"), input_shape


def stage_values(value, num_stages, arg, doubling=True):
    """One value per stage: a sequence is checked, an int doubles from stage to stage."""
    if isinstance(value, (int, np.integer)):
        values = tuple(int(value) * (2**i if doubling else 1) for i in range(num_stages))
    else:
        values = tuple(value)
    if len(values) != num_stages or not all(isinstance(v, (int, np.integer)) and v > 0 for v in values):
        raise ValueError(
            f"`{arg}` must be a positive integer or {num_stages} positive integers, one per stage. "
            f"Received: {arg}={value!r}"
        )
    return tuple(int(v) for v in values)


def check_top(include_top, pooling, classes):
    if pooling not in _POOLINGS:
        raise ValueError(f"`pooling` must be one of {_POOLINGS}. Received: pooling={pooling!r}")
    if include_top and pooling is None:
        raise ValueError("`include_top=True` needs a `pooling` mode. Received: pooling=None")
    if include_top and (not isinstance(classes, (int, np.integer)) or classes < 1):
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")


def classifier(x, include_top, pooling, classes, classifier_activation, dropout):
    """Global pooling of a `(B, H, W, C)` map, then the optional dense head."""
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    elif pooling is not None:
        raise ValueError(f"`pooling` must be one of {_POOLINGS}. Received: pooling={pooling!r}")
    if include_top:
        x = keras.layers.Dropout(dropout, name="head_drop")(x)
        x = keras.layers.Dense(classes, name="head")(x)
        if classifier_activation is not None:
            x = keras.layers.Activation(classifier_activation, name="predictions")(x)
    return x


def SwinTransformer(
    patch_size=4,
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    window_size=7,
    mlp_ratio=4.0,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling="avg",
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    attention_dropout=0.0,
    drop_path_rate=0.0,
    qkv_bias=True,
    layer_norm_epsilon=1e-5,
    name="swin_transformer",
):
    """Builds a Swin Transformer.

    Liu et al. (2021), Fig. 3: patch partition and linear embedding (a P×P
    strided convolution, then LayerNorm), then stages of Swin Transformer
    blocks that alternate regular and shifted windows (`SwinTransformerBlock`,
    Eq. 3), each stage after the first starting with `PatchMerging` (half the
    resolution, twice the width). A final LayerNorm, global pooling and a
    linear head follow, as in the reference implementation.

    Args:
        patch_size: int, patch side P; must divide the image size.
        embed_dim: int, width C of the first stage (stage i has C * 2^i).
        depths: blocks per stage.
        num_heads: heads per stage, or an int for the first stage, doubled
            at each stage.
        window_size: int or `(M_h, M_w)`, window side M; shifted blocks
            shift by M // 2. Stages whose map is no larger than the window
            use one unshifted window covering the map.
        mlp_ratio: float, MLP width / stage width.
        include_top: bool, whether to include the classification head.
        weights: None (random initialisation) or the path of a Keras weights
            file (`.weights.h5` / `.keras`) for this architecture; timm
            checkpoints convert with `keras_vit.convert_swin_mvit.convert_timm_swin`.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: `(H, W, C)`; defaults to `(224, 224, 3)`.
        pooling: "avg", "max", or None (return the normalised last map
            `(B, H/32, W/32, 8C)`, only with `include_top=False`).
        classes: int, number of classes of the head.
        classifier_activation: activation of the head ("softmax", None for
            logits).
        dropout: float, dropout in attention projections, MLPs and before the head.
        attention_dropout: float, dropout on attention scores.
        drop_path_rate: float, stochastic depth, rising linearly over all
            blocks to this rate.
        qkv_bias: bool.
        layer_norm_epsilon: float.
        name: model name.

    Returns:
        An uncompiled `keras.Model`.
    """
    check_top(include_top, pooling, classes)
    if not isinstance(depths, (list, tuple)) or not depths:
        raise ValueError(f"`depths` must be a non-empty sequence of blocks per stage. Received: depths={depths!r}")
    num_stages = len(depths)
    depths = stage_values(depths, num_stages, "depths")
    heads = stage_values(num_heads, num_stages, "num_heads")
    if not isinstance(embed_dim, (int, np.integer)) or embed_dim < 1:
        raise ValueError(f"`embed_dim` must be a positive integer. Received: embed_dim={embed_dim!r}")
    dims = [int(embed_dim) * 2**i for i in range(num_stages)]
    for i, (dim, h) in enumerate(zip(dims, heads)):
        if dim % h:
            raise ValueError(
                f"Each stage width must be divisible by its heads. Received: embed_dim={embed_dim}, "
                f"num_heads={num_heads} (stage {i}: width {dim}, {h} heads)"
            )
    window = (window_size, window_size) if isinstance(window_size, (int, np.integer)) else tuple(window_size)
    if len(window) != 2 or not all(isinstance(w, (int, np.integer)) and w > 0 for w in window):
        raise ValueError(f"`window_size` must be a positive integer or pair. Received: window_size={window_size!r}")
    _check_weights(weights)

    inputs, input_shape = image_inputs(input_tensor, input_shape)
    for axis, extent in zip(("height", "width"), input_shape[:2]):
        if extent is not None and extent % patch_size:
            raise ValueError(
                f"`patch_size` must divide the image {axis}. "
                f"Received: patch_size={patch_size}, input_shape={input_shape}"
            )
    grid = (input_shape[0] // patch_size, input_shape[1] // patch_size)
    x = PatchEncoder(patch_size, dims[0], class_token=False, position_embedding="none", name="patch_embed")(inputs)
    x = keras.layers.Reshape((*grid, dims[0]), name="patch_grid")(x)
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="patch_norm")(x)
    rates = np.linspace(0.0, drop_path_rate, sum(depths))
    block = 0
    for i in range(num_stages):
        if i > 0:
            x = PatchMerging(dims[i], layer_norm_epsilon=layer_norm_epsilon, name=f"stage_{i}_downsample")(x)
        for j in range(depths[i]):
            x = SwinTransformerBlock(
                heads[i],
                window_size=window,
                shift_size=0 if j % 2 == 0 else (window[0] // 2, window[1] // 2),
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                dropout=dropout,
                attention_dropout=attention_dropout,
                drop_path=float(rates[block]),
                layer_norm_epsilon=layer_norm_epsilon,
                name=f"stage_{i}_block_{j}",
            )(x)
            block += 1
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm")(x)
    x = classifier(x, include_top, pooling, classes, classifier_activation, dropout)
    source = inputs if input_tensor is None else keras.utils.get_source_inputs(input_tensor) or inputs
    model = keras.Model(source, x, name=name)
    if weights is not None:
        load_weights_file(model, weights)
    return model


def _variant(func_name, size, description):
    def build(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling="avg",
        classes=1000,
        classifier_activation="softmax",
        name=func_name.lower(),
        **kwargs,
    ):
        config = {**SWIN_CONFIGS[size], "patch_size": 4, "window_size": 7, **kwargs}
        return SwinTransformer(
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            **config,
        )

    build.__name__ = build.__qualname__ = func_name
    build.__doc__ = f"""{description}

    See `SwinTransformer` for the arguments; other keyword arguments
    (`window_size`, `drop_path_rate`, ...) override the configuration.
    """
    return build


SwinTiny = _variant("SwinTiny", "tiny", "Swin-T: C=96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), window 7 (28.3M parameters).")
SwinSmall = _variant("SwinSmall", "small", "Swin-S: C=96, depths (2, 2, 18, 2), heads (3, 6, 12, 24), window 7 (49.6M parameters).")
SwinBase = _variant("SwinBase", "base", "Swin-B: C=128, depths (2, 2, 18, 2), heads (4, 8, 16, 32), window 7 (87.8M parameters).")


def _register_all():
    for size, config in SWIN_CONFIGS.items():
        register_model(
            f"swin_{size}_patch4_window7_224",
            SwinTransformer,
            **config,
            patch_size=4,
            window_size=7,
            input_shape=(224, 224, 3),
        )


_register_all()
