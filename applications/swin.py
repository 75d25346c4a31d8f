"""Swin Transformer (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows", ICCV 2021).

Swin-T/S/B of the paper's Sec. 3.3, built by one generic `SwinTransformer`
and registered under timm's names.
"""

import keras
import numpy as np

from keras_vit.applications.common import (
    MAP_POOLINGS,
    build_model,
    check_classes,
    check_pooling,
    check_stages,
    check_weights,
    classifier,
    image_inputs,
    pretrained_factory,
    variant,
)
from keras_vit.applications.registry import register_model
from keras_vit.layers import PatchEncoder, PatchMerging, SwinTransformerBlock

# Sec. 3.3 of the paper: channel number C of the first stage, blocks per
# stage, and heads per stage (head width 32).
SWIN_CONFIGS = {
    "tiny": {"hidden_dim": 96, "depth": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "small": {"hidden_dim": 96, "depth": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "base": {"hidden_dim": 128, "depth": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
}


@pretrained_factory("swin")
def SwinTransformer(
    patch_size=4,
    hidden_dim=96,
    depth=(2, 2, 6, 2),
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
        hidden_dim: int, width C of the first stage (stage i has C * 2^i).
        depth: blocks per stage, one int per stage.
        num_heads: heads per stage, or an int for the first stage, doubled
            at each stage.
        window_size: int or `(M_h, M_w)`, window side M; shifted blocks
            shift by M // 2. Stages whose map is no larger than the window
            use one unshifted window covering the map.
        mlp_ratio: float, MLP width / stage width.
        include_top: bool, whether to include the classification head.
        weights: None (random initialisation), the path of a Keras weights
            file (`.weights.h5` / `.keras`), or a timm checkpoint file
            (`.safetensors` / `.pth` / `.bin`), converted through
            `keras_vit.convert.load_checkpoint`.
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
    check_pooling(pooling, include_top, MAP_POOLINGS)
    check_classes(classes, include_top)
    stage_depths, heads, dims = check_stages(hidden_dim, depth, num_heads)
    num_stages = len(stage_depths)
    window = (window_size, window_size) if isinstance(window_size, (int, np.integer)) else tuple(window_size)
    if len(window) != 2 or not all(isinstance(w, (int, np.integer)) and w > 0 for w in window):
        raise ValueError(f"`window_size` must be a positive integer or pair. Received: window_size={window_size!r}")
    check_weights(weights)

    inputs, input_shape = image_inputs(input_tensor, input_shape, require_size=True)
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
    rates = np.linspace(0.0, drop_path_rate, sum(stage_depths))
    block = 0
    for i in range(num_stages):
        if i > 0:
            x = PatchMerging(dims[i], layer_norm_epsilon=layer_norm_epsilon, name=f"stage_{i}_downsample")(x)
        for j in range(stage_depths[i]):
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
    return build_model(inputs, x, input_tensor, weights, name)


def _variant(func_name, size, description):
    config = {**SWIN_CONFIGS[size], "patch_size": 4, "window_size": 7}
    return variant(func_name, SwinTransformer, config, description, default_pooling="avg")


SwinTiny = _variant(
    "SwinTiny", "tiny", "Swin-T: C=96, depth (2, 2, 6, 2), heads (3, 6, 12, 24), window 7 (28.3M parameters)."
)
SwinSmall = _variant(
    "SwinSmall", "small", "Swin-S: C=96, depth (2, 2, 18, 2), heads (3, 6, 12, 24), window 7 (49.6M parameters)."
)
SwinBase = _variant(
    "SwinBase", "base", "Swin-B: C=128, depth (2, 2, 18, 2), heads (4, 8, 16, 32), window 7 (87.8M parameters)."
)


# A tiny Swin for tests (registry `tiny` entries): two stages, 2×2 windows on a 4×4 patch grid.
TINY_SWIN = {
    "hidden_dim": 8,
    "depth": (2, 1),
    "num_heads": (1, 2),
    "window_size": 2,
    "input_shape": (16, 16, 3),
    "classes": 5,
}


def _register_all():
    for size, config in SWIN_CONFIGS.items():
        register_model(
            f"swin_{size}_patch4_window7_224",
            SwinTransformer,
            family="swin",
            tiny=TINY_SWIN,
            **config,
            patch_size=4,
            window_size=7,
            input_shape=(224, 224, 3),
        )


_register_all()
