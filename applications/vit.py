"""Vision Transformer (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021).

The paper's Table 1 sizes, the DeiT sizes (Touvron et al. 2021) and small-data
variants for 32×32 images, all built by one generic `VisionTransformer`.

`build_vit` is the one builder of every ViT-shaped model in the package, as
timm's `VisionTransformer(embed_layer=..., block_fn=...)`: it owns
embedding → dropout → block loop → final norm → pooling → head, and takes the
two parts that differ between families as hooks:

- `embedding(images) -> (tokens, num_prefix_tokens)`: Eq. (1), z_0.
  `patch_embedding` makes the ViT one (`PatchEncoder`, optionally after a
  `stem`: the hybrids' CNN, T2T-ViT's tokens-to-token module); DeepViT has
  vit-pytorch's normalised patch embedding.
- `block(name, drop_path) -> layer`: Eq. (2)-(3), one encoder block.
  `transformer_block` makes ViT's; DeepViT passes `ReAttentionBlock`s.
"""

import keras
import numpy as np

from keras_vit.applications.common import (
    TOKEN_POOLINGS,
    build_model,
    check_classes,
    check_heads,
    check_pooling,
    check_positive_ints,
    check_weights,
    image_inputs,
    pretrained_factory,
    variant,
)
from keras_vit.applications.registry import register_model
from keras_vit.layers import PatchEncoder, TokenPooling, TransformerBlock
from keras_vit.layers.patch_encoder import check_patch_size

# Table 1 of the ViT paper (Ti and S from DeiT / timm): width D, depth L,
# heads h and MLP size.
VIT_CONFIGS = {
    "tiny": {"hidden_dim": 192, "depth": 12, "num_heads": 3, "mlp_dim": 768},
    "small": {"hidden_dim": 384, "depth": 12, "num_heads": 6, "mlp_dim": 1536},
    "base": {"hidden_dim": 768, "depth": 12, "num_heads": 12, "mlp_dim": 3072},
    "large": {"hidden_dim": 1024, "depth": 24, "num_heads": 16, "mlp_dim": 4096},
    "huge": {"hidden_dim": 1280, "depth": 32, "num_heads": 16, "mlp_dim": 5120},
}

# A tiny ViT for tests (registry `tiny` entries): 32×32 images, 4×4 patches of 8, width 32.
TINY_VIT = {
    "hidden_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "mlp_dim": 64,
    "patch_size": 8,
    "input_shape": (32, 32, 3),
    "classes": 5,
}


def patch_embedding(
    patch_size,
    hidden_dim,
    *,
    stem=None,
    class_token=True,
    distillation=False,
    num_register_tokens=0,
    position_embedding="learned",
):
    """The ViT embedding hook of `build_vit`: optional stem, then `PatchEncoder` (Eq. 1).

    Args:
        patch_size: int or pair, patch side on the image (or on the stem's
            feature map); must divide it.
        hidden_dim: int, width D.
        stem: optional callable (Keras layer, model, or function of a tensor)
            applied to the images first; its `(B, h, w, c)` output is
            patchified instead (Sec. 3.1, "Hybrid Architecture").
        class_token, distillation, num_register_tokens, position_embedding:
            see `VisionTransformer`.

    Returns:
        `embed(images) -> (tokens, num_prefix_tokens)`; the encoder layer is
        named "patch_embed".
    """

    def embed(images):
        features = images if stem is None else stem(images)
        patch = check_patch_size(patch_size)
        for axis, extent, p in zip(("height", "width"), features.shape[1:3], patch):
            if extent is not None and extent % p:
                raise ValueError(
                    f"`patch_size` must divide the image {axis}. Received: patch_size={patch_size}, "
                    f"input_shape={tuple(images.shape[1:])}"
                    + ("" if stem is None else f", stem output={tuple(features.shape[1:])}")
                )
        encoder = PatchEncoder(
            patch_size,
            hidden_dim,
            class_token=class_token,
            distillation_token=distillation,
            num_register_tokens=num_register_tokens,
            position_embedding=position_embedding,
            name="patch_embed",
        )
        return encoder(features), encoder.num_prefix_tokens

    return embed


def transformer_block(
    num_heads,
    mlp_dim,
    *,
    dropout=0.0,
    attention_dropout=0.0,
    layer_scale_init=None,
    qkv_bias=True,
    layer_norm_epsilon=1e-6,
):
    """The ViT block hook of `build_vit`: `block(name, drop_path)` → a pre-norm `TransformerBlock`."""

    def block(name, drop_path):
        return TransformerBlock(
            num_heads,
            mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            drop_path=drop_path,
            layer_scale_init=layer_scale_init,
            qkv_bias=qkv_bias,
            layer_norm_epsilon=layer_norm_epsilon,
            name=name,
        )

    return block


def build_vit(
    inputs,
    *,
    embedding,
    block,
    depth,
    pooling="token",
    include_top=True,
    classes=1000,
    classifier_activation="softmax",
    dropout=0.0,
    drop_path_rate=0.0,
    layer_norm_epsilon=1e-6,
    distillation=False,
    input_tensor=None,
    weights=None,
    name="vision_transformer",
):
    """The one ViT builder: embedding → `depth` blocks → norm → pooling → head (Eq. 1-4).

    The factories check their arguments first; this builds the graph.
    Layer names are fixed ("pos_drop", "block_{i}", "norm", "pool",
    "pool_dist", "fc_norm", "head", "head_dist", "head_average",
    "predictions"): the checkpoint converters address weights by them.

    Args:
        inputs: the model's image input tensor `(B, H, W, C)`.
        embedding: `embed(images) -> (tokens (B, N, D), num_prefix_tokens)`,
            e.g. `patch_embedding(...)`.
        block: `block(name, drop_path) -> layer` mapping `(B, N, D)` to
            `(B, N, D)`, e.g. `transformer_block(...)`.
        depth: int, number of blocks L.
        pooling: "token" (first token, then the final LayerNorm before it),
            "avg"/"max" over the patch tokens followed by LayerNorm (timm's
            `fc_norm`), or None (all normalised tokens).
        include_top, classes, classifier_activation: the linear head.
        dropout: float, after the embedding.
        drop_path_rate: float, stochastic depth rising linearly over the
            blocks to this rate.
        layer_norm_epsilon: float.
        distillation: bool, DeiT's second head on the distillation token
            (token 1); the two heads' outputs are averaged. Without heads
            (`include_top=False`) the class and distillation tokens are.
        input_tensor, weights, name: see `build_model`.

    Returns:
        An uncompiled `keras.Model`.
    """
    x, num_prefix = embedding(inputs)
    x = keras.layers.Dropout(dropout, name="pos_drop")(x)
    rates = np.linspace(0.0, drop_path_rate, depth) if depth > 1 else [drop_path_rate]
    for i in range(depth):
        x = block(f"block_{i}", float(rates[i]))(x)
    if pooling in (None, "token"):
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm")(x)
    if pooling is not None:
        if distillation:
            x_dist = TokenPooling("token", num_prefix, token_index=1, name="pool_dist")(x)
        x = TokenPooling(pooling, num_prefix, name="pool")(x)
        if pooling != "token":
            x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="fc_norm")(x)
        if distillation and not include_top:
            # Without heads, DeiT's features are the mean of its class and distillation tokens (as timm's pre-logits).
            x = keras.layers.Average(name="pool_average")([x, x_dist])
    if include_top:
        x = keras.layers.Dense(classes, name="head")(x)
        if distillation:
            x_dist = keras.layers.Dense(classes, name="head_dist")(x_dist)
            x = keras.layers.Average(name="head_average")([x, x_dist])
        if classifier_activation is not None:
            # float32 probabilities under mixed precision, as the Keras mixed-precision guide advises.
            x = keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    return build_model(inputs, x, input_tensor, weights, name)


@pretrained_factory("vit", "deit")
def VisionTransformer(
    patch_size=16,
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
    dropout=0.0,
    attention_dropout=0.0,
    drop_path_rate=0.0,
    qkv_bias=True,
    layer_scale_init=None,
    class_token=True,
    distillation=False,
    num_register_tokens=0,
    position_embedding="learned",
    layer_norm_epsilon=1e-6,
    stem=None,
    name="vision_transformer",
):
    """Builds a Vision Transformer (ViT).

    The model computes Eq. (1)-(4) of Dosovitskiy et al. (2020): patch
    embedding plus position embedding (`PatchEncoder`), L pre-norm encoder
    blocks (`TransformerBlock`), a final LayerNorm, pooling (class token, or
    the mean/max of the patch tokens followed by LayerNorm, as timm does for
    global pooling) and a linear head. With `distillation=True` it is DeiT's
    distilled model (Touvron et al. 2021): a distillation token with its own
    head; at inference the two heads' outputs are averaged.

    Args:
        patch_size: int, patch side P; must divide the image size.
        hidden_dim: int, width D.
        depth: int, number of encoder blocks L.
        num_heads: int, attention heads; must divide `hidden_dim`.
        mlp_dim: int, inner width of each MLP.
        include_top: bool, whether to include the classification head.
        weights: None (random initialisation), the path of a Keras weights
            file (`.weights.h5` / `.keras`) for this architecture, or of a
            timm / Hugging Face / original-ViT checkpoint (`.safetensors`,
            `.pth`, `.bin`, `.npz`), converted on load; its position table is
            resampled to this input size and a head with another number of
            classes is left freshly initialised (fine-tuning).
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: `(H, W, C)` with a known height and width (E_pos is
            sized for one patch grid; `set_image_size` rebuilds a model for
            another); defaults to `(224, 224, 3)`.
        pooling: "token" (class token), "avg", "max", or None (return all
            tokens, only with `include_top=False`).
        classes: int, number of classes of the head.
        classifier_activation: activation of the head ("softmax", None for
            logits).
        dropout: float, dropout after the patch embedding, in attention
            projections and MLPs.
        attention_dropout: float, dropout on attention scores.
        drop_path_rate: float, stochastic depth, rising linearly over blocks
            to this rate.
        qkv_bias: bool.
        layer_scale_init: float or None (LayerScale off).
        class_token: bool.
        distillation: bool, DeiT distillation token and head. With
            `include_top=False` the features are the mean of the class and
            distillation tokens (timm's pre-logits), or all tokens with
            `pooling=None`.
        num_register_tokens: int, register tokens.
        position_embedding: "learned", "sincos" or "none".
        layer_norm_epsilon: float.
        stem: optional Keras layer or model applied to the images before the
            patch embedding; its feature map is patchified instead of the
            image (the ViT paper's hybrid architecture, Sec. 3.1: "the input
            sequence can be formed from feature maps of a CNN"). With a stem,
            `patch_size` counts feature-map cells (1 for 1×1 patches).
        name: model name.

    Returns:
        An uncompiled `keras.Model`.
    """
    check_pooling(pooling, include_top, TOKEN_POOLINGS)
    if pooling == "token" and not class_token:
        raise ValueError("pooling='token' needs `class_token=True`. Received: class_token=False")
    if distillation and (not class_token or pooling not in ("token", None)):
        raise ValueError(
            "`distillation=True` needs the class token and pooling='token' (or None for all tokens). "
            f"Received: class_token={class_token}, pooling={pooling!r}"
        )
    check_positive_ints(hidden_dim=hidden_dim, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim)
    check_heads(hidden_dim, num_heads)
    check_classes(classes, include_top)
    check_weights(weights)

    # The position table is sized for one patch grid: a dynamic size is refused here, by name, rather than
    # deep inside the patch embedding; `set_image_size` gives a model for another size.
    inputs, _ = image_inputs(input_tensor, input_shape, require_size=True)
    return build_vit(
        inputs,
        embedding=patch_embedding(
            patch_size,
            hidden_dim,
            stem=stem,
            class_token=class_token,
            distillation=distillation,
            num_register_tokens=num_register_tokens,
            position_embedding=position_embedding,
        ),
        block=transformer_block(
            num_heads,
            mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            layer_scale_init=layer_scale_init,
            qkv_bias=qkv_bias,
            layer_norm_epsilon=layer_norm_epsilon,
        ),
        depth=depth,
        pooling=pooling,
        include_top=include_top,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        layer_norm_epsilon=layer_norm_epsilon,
        distillation=distillation,
        input_tensor=input_tensor,
        weights=weights,
        name=name,
    )


def _variant(func_name, size, patch_size, image_size, description):
    config = {**VIT_CONFIGS[size], "patch_size": patch_size}
    return variant(func_name, VisionTransformer, config, description, default_input_shape=(image_size, image_size, 3))


ViTTiny16 = _variant("ViTTiny16", "tiny", 16, 224, "ViT-Ti/16 (DeiT-Ti): D=192, L=12, h=3, MLP 768.")
ViTSmall16 = _variant("ViTSmall16", "small", 16, 224, "ViT-S/16 (DeiT-S): D=384, L=12, h=6, MLP 1536.")
ViTSmall32 = _variant("ViTSmall32", "small", 32, 224, "ViT-S/32: D=384, L=12, h=6, MLP 1536.")
ViTBase8 = _variant("ViTBase8", "base", 8, 224, "ViT-B/8: D=768, L=12, h=12, MLP 3072.")
ViTBase16 = _variant("ViTBase16", "base", 16, 224, "ViT-B/16: D=768, L=12, h=12, MLP 3072 (86.6M parameters).")
ViTBase32 = _variant("ViTBase32", "base", 32, 224, "ViT-B/32: D=768, L=12, h=12, MLP 3072.")
ViTLarge16 = _variant("ViTLarge16", "large", 16, 224, "ViT-L/16: D=1024, L=24, h=16, MLP 4096.")
ViTLarge32 = _variant("ViTLarge32", "large", 32, 224, "ViT-L/32: D=1024, L=24, h=16, MLP 4096.")
ViTHuge14 = _variant("ViTHuge14", "huge", 14, 224, "ViT-H/14: D=1280, L=32, h=16, MLP 5120.")

# Small-data variants for 32×32 images (CIFAR): patch 4 or 8, depth 8 or 12,
# the configurations the course material compares. Width 192, 3 heads of 64,
# MLP ratio 2.
SMALL_DATA_CONFIG = {"hidden_dim": 192, "num_heads": 3, "mlp_dim": 384}


def _register_all():
    sizes = {
        "tiny": [(16, 224), (16, 384)],
        "small": [(16, 224), (32, 224), (8, 224), (16, 384), (32, 384)],
        "base": [(8, 224), (16, 224), (32, 224), (16, 384), (32, 384)],
        "large": [(16, 224), (32, 224), (16, 384), (32, 384)],
        "huge": [(14, 224)],
    }
    for size, entries in sizes.items():
        for patch, image in entries:
            register_model(
                f"vit_{size}_patch{patch}_{image}",
                VisionTransformer,
                family="vit",
                tiny=TINY_VIT,
                **VIT_CONFIGS[size],
                patch_size=patch,
                input_shape=(image, image, 3),
            )
    # DeiT (Touvron et al. 2021): the ViT architecture; distilled ones add a token.
    for size in ("tiny", "small", "base"):
        register_model(
            f"deit_{size}_patch16_224",
            VisionTransformer,
            family="deit",
            tiny=TINY_VIT,
            **VIT_CONFIGS[size],
            patch_size=16,
            input_shape=(224, 224, 3),
        )
        register_model(
            f"deit_{size}_distilled_patch16_224",
            VisionTransformer,
            family="deit",
            tiny=TINY_VIT,
            **VIT_CONFIGS[size],
            patch_size=16,
            input_shape=(224, 224, 3),
            distillation=True,
        )
    for patch in (4, 8):
        for depth in (8, 12):
            register_model(
                f"vit_cifar_patch{patch}_depth{depth}_32",
                VisionTransformer,
                family="vit",
                tiny=TINY_VIT,
                **SMALL_DATA_CONFIG,
                depth=depth,
                patch_size=patch,
                input_shape=(32, 32, 3),
                classes=10,
            )


_register_all()
