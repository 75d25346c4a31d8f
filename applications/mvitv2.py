"""MViTv2 (Li et al., "MViTv2: Improved Multiscale Vision Transformers for Classification
and Detection", CVPR 2022).

MViTv2-T/S/B of the paper's Table 1 (image classification), built by one
generic `MViTv2` and registered under timm's names.
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
from keras_vit.layers import MultiScaleBlock

# Table 1 / Sec. A.1 of MViTv2: blocks per stage; the width starts at 96 and
# the heads at 1, both doubling at every stage.
MVITV2_CONFIGS = {
    "tiny": {"hidden_dim": 96, "depth": (1, 2, 5, 2), "num_heads": 1},
    "small": {"hidden_dim": 96, "depth": (1, 2, 11, 2), "num_heads": 1},
    "base": {"hidden_dim": 96, "depth": (2, 3, 16, 3), "num_heads": 1},
}


@pretrained_factory("mvitv2")
def MViTv2(
    hidden_dim=96,
    depth=(1, 2, 5, 2),
    num_heads=1,
    mlp_ratio=4.0,
    pool_kernel_size=3,
    kv_stride=4,
    patch_kernel_size=7,
    patch_stride=4,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling="avg",
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    drop_path_rate=0.0,
    qkv_bias=True,
    residual_pooling=True,
    relative_position=True,
    layer_norm_epsilon=1e-6,
    name="mvitv2",
):
    """Builds an MViTv2 image classifier.

    Li et al. (2022): an overlapping patch embedding (a `patch_kernel_size`
    convolution with stride `patch_stride`), then stages of
    `MultiScaleBlock`s. The first block of every stage after the first
    pools the queries with stride 2 (half the resolution) and widens the
    channels ×2; keys and values are pooled with stride `kv_stride` in the
    first stage and less in later stages, so that the key/value map keeps
    the same size (the reference's adaptive kv stride). Attention uses
    decomposed relative positions and the residual pooling connection. A
    final LayerNorm, global pooling and a linear head follow.

    Args:
        hidden_dim: int, width of the first stage (stage i has hidden_dim * 2^i).
        depth: blocks per stage, one int per stage.
        num_heads: heads per stage, or an int for the first stage, doubled
            at each stage.
        mlp_ratio: float.
        pool_kernel_size: int, attention pooling kernel.
        kv_stride: int, key/value pooling stride of the first stage.
        patch_kernel_size: int, patch-embedding kernel (padding k // 2).
        patch_stride: int, patch-embedding stride.
        include_top: bool, whether to include the classification head.
        weights: None (random initialisation), the path of a Keras weights
            file (`.weights.h5` / `.keras`), or a timm checkpoint file
            (`.safetensors` / `.pth` / `.bin`), converted through
            `keras_vit.convert.load_checkpoint`.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: `(H, W, C)`, square; defaults to `(224, 224, 3)`. H must
            be divisible by `patch_stride * 2^(stages - 1)`.
        pooling: "avg", "max", or None (return the normalised last map,
            only with `include_top=False`).
        classes: int, number of classes of the head.
        classifier_activation: activation of the head ("softmax", None for
            logits).
        dropout: float, dropout before the head.
        drop_path_rate: float, stochastic depth, rising linearly over all
            blocks to this rate.
        qkv_bias: bool.
        residual_pooling: bool, the residual pooling connection.
        relative_position: bool, decomposed relative position embeddings.
        layer_norm_epsilon: float.
        name: model name.

    Returns:
        An uncompiled `keras.Model`.
    """
    check_pooling(pooling, include_top, MAP_POOLINGS)
    check_classes(classes, include_top)
    stage_depths, heads, dims = check_stages(hidden_dim, depth, num_heads)
    num_stages = len(stage_depths)
    check_weights(weights)

    inputs, input_shape = image_inputs(input_tensor, input_shape, require_size=True)
    reduction = patch_stride * 2 ** (num_stages - 1)
    if input_shape[0] != input_shape[1] or input_shape[0] % reduction:
        raise ValueError(
            f"`input_shape` must be square with a side divisible by {reduction} "
            f"(patch_stride={patch_stride} × 2 per later stage). Received: input_shape={input_shape}"
        )
    pad = patch_kernel_size // 2
    x = keras.layers.ZeroPadding2D(pad, name="patch_embed_pad")(inputs)
    x = keras.layers.Conv2D(dims[0], patch_kernel_size, strides=patch_stride, name="patch_embed")(x)
    rates = np.linspace(0.0, drop_path_rate, sum(stage_depths))
    block = 0
    stride_kv = kv_stride
    in_dim = dims[0]
    for i in range(num_stages):
        stride_q = 1 if i == 0 else 2
        if stride_q > 1:
            stride_kv = max(stride_kv // stride_q, 1)
        for j in range(stage_depths[i]):
            x = MultiScaleBlock(
                heads[i],
                output_dim=dims[i] if j == 0 and dims[i] != in_dim else None,
                mlp_ratio=mlp_ratio,
                kernel_size=pool_kernel_size,
                stride_q=stride_q if j == 0 else 1,
                stride_kv=stride_kv,
                qkv_bias=qkv_bias,
                residual_pooling=residual_pooling,
                relative_position=relative_position,
                drop_path=float(rates[block]),
                layer_norm_epsilon=layer_norm_epsilon,
                name=f"stage_{i}_block_{j}",
            )(x)
            block += 1
        in_dim = dims[i]
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm")(x)
    x = classifier(x, include_top, pooling, classes, classifier_activation, dropout)
    return build_model(inputs, x, input_tensor, weights, name)


def _variant(func_name, size, description):
    return variant(func_name, MViTv2, MVITV2_CONFIGS[size], description, default_pooling="avg")


MViTv2Tiny = _variant("MViTv2Tiny", "tiny", "MViTv2-T: width 96, depth (1, 2, 5, 2), heads 1→8.")
MViTv2Small = _variant("MViTv2Small", "small", "MViTv2-S: width 96, depth (1, 2, 11, 2), heads 1→8.")
MViTv2Base = _variant("MViTv2Base", "base", "MViTv2-B: width 96, depth (2, 3, 16, 3), heads 1→8.")


# A tiny MViTv2 for tests (registry `tiny` entries): two one-block stages on 16×16 images.
TINY_MVITV2 = {"hidden_dim": 8, "depth": (1, 1), "num_heads": 1, "input_shape": (16, 16, 3), "classes": 5}


def _register_all():
    for size, config in MVITV2_CONFIGS.items():
        register_model(f"mvitv2_{size}", MViTv2, family="mvitv2", tiny=TINY_MVITV2, **config, input_shape=(224, 224, 3))


_register_all()
