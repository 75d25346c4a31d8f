"""Generic CNN-hybrid ViT: any CNN's feature map as the patch sequence (Dosovitskiy et al. 2020,
Sec. 3.1, "Hybrid Architecture").

"As an alternative to raw image patches, the input sequence can be formed
from feature maps of a CNN": a `keras.applications` CNN (or any Keras model)
is cut at a chosen stage and its feature map patchified (1×1 patches, or
larger) into the ViT encoder. The encoder is `VisionTransformer` with the
truncated CNN as its `stem` (the ViT builder `build_vit` with the CNN as the
stem of its embedding hook).

This is the registry family "cnn_hybrid": a `keras.applications` backbone
(ResNet, MobileNetV2, EfficientNet) or a Keras model of your own, with that
CNN's Keras weights (`backbone_weights="imagenet"`) and no checkpoint
converter; it is for fine-tuning on your data. The paper's own R50+ViT-B/16
(a ResNetV2 with weight-standardised convolutions and GroupNorm, whose timm
and original checkpoints convert) is `vit_hybrid.py`, family "hybrid".
"""

import keras

from keras_vit.applications.common import pretrained_factory, resolve_input_shape
from keras_vit.applications.registry import register_model
from keras_vit.applications.vit import SMALL_DATA_CONFIG, VIT_CONFIGS, VisionTransformer

# keras.applications constructors and the output layer of each stage
# (stage s has stride 2^s: stage 2 → /4, 3 → /8, 4 → /16, 5 → /32).
CNN_BACKBONES = {
    "resnet50": (
        "ResNet50",
        {2: "conv2_block3_out", 3: "conv3_block4_out", 4: "conv4_block6_out", 5: "conv5_block3_out"},
    ),
    "resnet101": (
        "ResNet101",
        {2: "conv2_block3_out", 3: "conv3_block4_out", 4: "conv4_block23_out", 5: "conv5_block3_out"},
    ),
    "resnet152": (
        "ResNet152",
        {2: "conv2_block3_out", 3: "conv3_block8_out", 4: "conv4_block36_out", 5: "conv5_block3_out"},
    ),
    "resnet50v2": ("ResNet50V2", {2: "conv2_block3_out", 3: "conv3_block4_out", 4: "conv4_block6_out", 5: "post_relu"}),
    "mobilenet_v2": ("MobileNetV2", {2: "block_2_add", 3: "block_5_add", 4: "block_12_add", 5: "out_relu"}),
    "efficientnet_b0": ("EfficientNetB0", {2: "block2b_add", 3: "block3b_add", 4: "block5c_add", 5: "top_activation"}),
}


def cnn_stem(backbone="resnet50", stage=4, feature_layer=None, backbone_weights=None, input_shape=None):
    """A CNN truncated at a stage, as a `keras.Model` mapping images to a feature map.

    Args:
        backbone: a name of `CNN_BACKBONES`, or a `keras.Model` of your own.
        stage: int 2-5, the stage whose output is taken (named backbones).
        feature_layer: str, the layer whose output is taken; overrides
            `stage`. For a model of your own, None takes its output.
        backbone_weights: weights of a named backbone (`keras.applications`'
            `weights`: None or "imagenet" or a file path).
        input_shape: `(H, W, C)` for a named backbone.

    Returns:
        A `keras.Model` named "backbone", `(B, H, W, C)` → `(B, h, w, c)`.
    """
    if isinstance(backbone, keras.Model):
        model = backbone
        output = model.output if feature_layer is None else model.get_layer(feature_layer).output
    elif isinstance(backbone, str):
        if backbone not in CNN_BACKBONES:
            raise ValueError(
                f"`backbone` must be one of {sorted(CNN_BACKBONES)} or a keras.Model. Received: backbone={backbone!r}"
            )
        constructor, stages = CNN_BACKBONES[backbone]
        if feature_layer is None and stage not in stages:
            raise ValueError(f"`stage` must be one of {sorted(stages)}. Received: stage={stage!r}")
        model = getattr(keras.applications, constructor)(
            include_top=False, weights=backbone_weights, input_shape=tuple(input_shape)
        )
        output = model.get_layer(feature_layer or stages[stage]).output
    else:
        raise ValueError(f"`backbone` must be a name or a keras.Model. Received: backbone={backbone!r}")
    if len(output.shape) != 4:
        raise ValueError(
            f"The backbone's feature layer must give a (B, h, w, c) map. Received a tensor of shape {output.shape}"
        )
    return keras.Model(model.inputs, output, name="backbone")


@pretrained_factory("cnn_hybrid")
def CNNHybridViT(
    backbone="resnet50",
    stage=4,
    feature_layer=None,
    backbone_weights=None,
    patch_size=1,
    hidden_dim=768,
    depth=12,
    num_heads=12,
    mlp_dim=3072,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling="token",
    classes=1000,
    classifier_activation="softmax",
    name="cnn_hybrid_vit",
    **kwargs,
):
    """Builds a ViT over the feature map of a CNN.

    The CNN (`cnn_stem`) turns `(H, W, C)` images into an `(h, w, c)` map;
    `VisionTransformer(stem=...)` splits it into `patch_size`² cells,
    projects each to D (Eq. 1 with E applied to CNN features), adds the
    class token and E_pos, and runs the encoder and head.

    Args:
        backbone, stage, feature_layer, backbone_weights: see `cnn_stem`.
        patch_size: int, feature-map cells per patch side (1 in the paper).
        hidden_dim, depth, num_heads, mlp_dim: the ViT encoder.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications`;
            `input_shape` defaults to the backbone's or (224, 224, 3).
        **kwargs: other `VisionTransformer` arguments (`dropout`,
            `drop_path_rate`, `distillation`, ...).

    Returns:
        An uncompiled `keras.Model`.
    """
    if input_shape is None and input_tensor is None and isinstance(backbone, keras.Model):
        input_shape = tuple(backbone.input_shape[1:])
    input_shape = resolve_input_shape(input_tensor, input_shape)
    stem = cnn_stem(backbone, stage, feature_layer, backbone_weights, input_shape)
    return VisionTransformer(
        patch_size=patch_size,
        hidden_dim=hidden_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        stem=stem,
        name=name,
        **kwargs,
    )


# A tiny CNN hybrid for tests (registry `tiny` entries): ResNet-50 cut after stage 2 on 32×32
# images, one narrow encoder block.
TINY_CNN_HYBRID = {
    "stage": 2,
    "hidden_dim": 32,
    "depth": 1,
    "num_heads": 2,
    "mlp_dim": 64,
    "input_shape": (32, 32, 3),
    "classes": 5,
}


def _register_all():
    # ResNet-50 up to stage 4 (stride 16, 14×14 tokens at 224) under ViT-S and ViT-B encoders.
    for size in ("small", "base"):
        register_model(
            f"vit_hybrid_resnet50_{size}_s16_224",
            CNNHybridViT,
            family="cnn_hybrid",
            tiny=TINY_CNN_HYBRID,
            backbone="resnet50",
            stage=4,
            **VIT_CONFIGS[size],
            input_shape=(224, 224, 3),
        )
    # 32×32 images: ResNet-50 up to stage 2 (stride 4, 8×8 tokens, as ViT with patch 4).
    register_model(
        "vit_hybrid_resnet50_cifar_s4_32",
        CNNHybridViT,
        family="cnn_hybrid",
        tiny=TINY_CNN_HYBRID,
        backbone="resnet50",
        stage=2,
        **SMALL_DATA_CONFIG,
        depth=8,
        input_shape=(32, 32, 3),
        classes=10,
    )


_register_all()
