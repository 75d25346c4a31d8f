"""The ViT paper's CNN hybrid: a ResNetV2 stem feeding a Vision Transformer.

Dosovitskiy et al. (2020), Sec. 3.1 "Hybrid Architecture": the patch
embedding E is applied to 1×1 patches of a CNN feature map. The R50+ViT-B/16
model uses a ResNet-50 v2 with weight-standardised convolutions and
GroupNorm (Big Transfer, Kolesnikov et al. 2020) cut after its third stage
(stride 16, 1024 channels), with 3, 4 and 9 bottleneck units.

This is the registry family "hybrid": the paper's own architecture, with
layer names that follow timm's modules, so that timm's `vit_base_r50_s16_*`
checkpoints and the original `.npz` release convert onto it
(`weights=`). `cnn_hybrid.py` (family "cnn_hybrid") is the other one: any
`keras.applications` CNN as the stem, with that CNN's Keras ImageNet weights
and no checkpoint converter. Both are `VisionTransformer(stem=...)`, i.e. the
ViT builder `build_vit` with the CNN as the stem of its embedding hook.
"""

import keras

from keras_vit.applications.common import pretrained_factory, resolve_input_shape, variant
from keras_vit.applications.registry import register_model
from keras_vit.applications.vit import VIT_CONFIGS, VisionTransformer
from keras_vit.layers import StdConv2D

# Units per stage of the ResNetV2 stems (Sec. 3.1 / Appendix D.4 of the ViT
# paper: "we remove stage 4, place the same number of layers in stage 3").
HYBRID_STEM_CONFIGS = {
    "r50": {"stem_layers": (3, 4, 9), "stem_width": 64, "stage_channels": (256, 512, 1024)},
}


def resnetv2_stem(
    input_shape, stem_layers=(3, 4, 9), stem_width=64, stage_channels=(256, 512, 1024), groups=32, name="resnetv2_stem"
):
    """A non-pre-activation ResNetV2 feature extractor (timm's `ResNetV2(preact=False)`).

    7×7/2 StdConv + GroupNorm + ReLU + 3×3/2 max-pool, then one stage per
    entry of `stem_layers` of bottleneck units (1×1, 3×3, 1×1 StdConv, each
    with GroupNorm; the first unit of a stage has a projection shortcut and,
    past the first stage, stride 2). All padding is TensorFlow's SAME.

    Args:
        input_shape: `(H, W, C)`.
        stem_layers: units per stage.
        stem_width: channels of the 7×7 convolution.
        stage_channels: output channels per stage (bottleneck width is a quarter).
        groups: GroupNorm groups; must divide every width.
        name: model name.

    Returns:
        A `keras.Model` mapping `(B, H, W, C)` to `(B, H/s, W/s, stage_channels[-1])`,
        s = 4 · 2^(stages-1). Layer names follow timm's module names with `_`
        for `.` (`stages_0_blocks_0_conv1`), which the weight converter relies on.
    """
    if len(stem_layers) != len(stage_channels):
        raise ValueError(
            "`stem_layers` and `stage_channels` must have the same length. "
            f"Received: stem_layers={stem_layers}, stage_channels={stage_channels}"
        )
    for width in (stem_width, *stage_channels, *(c // 4 for c in stage_channels)):
        if width % groups:
            raise ValueError(
                f"Every width must be divisible by `groups`. Received: groups={groups}, width={width} "
                f"(stem_width={stem_width}, stage_channels={stage_channels})"
            )

    def norm(x, layer_name, relu=True):
        x = keras.layers.GroupNormalization(groups, epsilon=1e-5, name=layer_name)(x)
        return keras.layers.ReLU(name=f"{layer_name}_act")(x) if relu else x

    inputs = keras.Input(shape=tuple(input_shape), name="stem_images")
    x = StdConv2D(stem_width, 7, strides=2, padding="same", name="stem_conv")(inputs)
    x = norm(x, "stem_norm")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for i, (units, channels) in enumerate(zip(stem_layers, stage_channels)):
        for j in range(units):
            prefix = f"stages_{i}_blocks_{j}"
            stride = 2 if (i > 0 and j == 0) else 1
            mid = channels // 4
            shortcut = x
            if j == 0:
                shortcut = StdConv2D(channels, 1, strides=stride, padding="same", name=f"{prefix}_downsample_conv")(x)
                shortcut = norm(shortcut, f"{prefix}_downsample_norm", relu=False)
            y = StdConv2D(mid, 1, name=f"{prefix}_conv1")(x)
            y = norm(y, f"{prefix}_norm1")
            y = StdConv2D(mid, 3, strides=stride, padding="same", name=f"{prefix}_conv2")(y)
            y = norm(y, f"{prefix}_norm2")
            y = StdConv2D(channels, 1, name=f"{prefix}_conv3")(y)
            y = norm(y, f"{prefix}_norm3", relu=False)
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = keras.layers.ReLU(name=f"{prefix}_act")(x)
    return keras.Model(inputs, x, name=name)


@pretrained_factory("hybrid")
def VisionTransformerHybrid(
    stem_layers=(3, 4, 9),
    stem_width=64,
    stage_channels=(256, 512, 1024),
    patch_size=1,
    input_shape=None,
    input_tensor=None,
    weights=None,
    name="vit_hybrid",
    **kwargs,
):
    """Builds a ResNetV2 + ViT hybrid (R50+ViT-B/16 with the defaults and `VIT_CONFIGS["base"]`).

    Args:
        stem_layers, stem_width, stage_channels: the ResNetV2 stem, see `resnetv2_stem`.
        patch_size: patch side on the stem's feature map (1 in the paper).
        input_shape: `(H, W, C)`, default `(224, 224, 3)`.
        input_tensor: optional Keras tensor to use as the image input.
        weights: None, a Keras weights file, or a timm / `.npz` checkpoint.
        name: model name.
        **kwargs: `VisionTransformer` arguments (`hidden_dim`, `depth`,
            `num_heads`, `mlp_dim`, `include_top`, `pooling`, `classes`, ...).

    Returns:
        An uncompiled `keras.Model`.
    """
    input_shape = resolve_input_shape(input_tensor, input_shape)
    stem = resnetv2_stem(input_shape, stem_layers, stem_width, stage_channels)
    return VisionTransformer(
        patch_size=patch_size,
        input_shape=input_shape,
        input_tensor=input_tensor,
        stem=stem,
        weights=weights,
        name=name,
        **kwargs,
    )


ViTBaseR50S16 = variant(
    "ViTBaseR50S16",
    VisionTransformerHybrid,
    {**HYBRID_STEM_CONFIGS["r50"], **VIT_CONFIGS["base"]},
    "R50+ViT-B/16 (timm `vit_base_r50_s16_224`): ResNet-50 v2 stem to stride 16, ViT-B on 1×1 patches.",
    default_name="vit_base_r50_s16_224",
)


# A tiny hybrid for tests (registry `tiny` entries): two one-unit stages (stride 8) on 32×32 images.
TINY_HYBRID = {
    "stem_layers": (1, 1),
    "stem_width": 32,
    "stage_channels": (128, 256),
    "hidden_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "mlp_dim": 64,
    "patch_size": 1,
    "input_shape": (32, 32, 3),
    "classes": 5,
}

for _image in (224, 384):
    register_model(
        f"vit_base_r50_s16_{_image}",
        VisionTransformerHybrid,
        family="hybrid",
        tiny=TINY_HYBRID,
        **HYBRID_STEM_CONFIGS["r50"],
        **VIT_CONFIGS["base"],
        input_shape=(_image, _image, 3),
    )
