"""DeepViT (Zhou et al., "DeepViT: Towards Deeper Vision Transformer", 2021).

A ViT whose blocks use re-attention (`ReAttention`): the attention maps of
each layer are mixed across heads by a learned matrix and normalised, which
keeps deep layers' maps from collapsing onto one another (Sec. 3-4).
"""

import keras

from keras_vit.applications.common import (
    TOKEN_POOLINGS,
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
from keras_vit.applications.vit import build_vit, patch_embedding
from keras_vit.layers import ClassToken, PositionalEncoding, ReAttentionBlock

# The depth study of the paper (Sec. 5): width 384, 12 heads, MLP ratio 3,
# 16, 24 or 32 re-attention blocks; and a small-data variant for 32×32.
DEEPVIT_CONFIGS = {
    "16b": {"hidden_dim": 384, "depth": 16, "num_heads": 12, "mlp_dim": 1152},
    "24b": {"hidden_dim": 384, "depth": 24, "num_heads": 12, "mlp_dim": 1152},
    "32b": {"hidden_dim": 384, "depth": 32, "num_heads": 12, "mlp_dim": 1152},
    "cifar": {"hidden_dim": 192, "depth": 8, "num_heads": 3, "mlp_dim": 384},
}


@pretrained_factory("deepvit")
def DeepViT(
    patch_size=16,
    hidden_dim=384,
    depth=16,
    num_heads=12,
    mlp_dim=1152,
    head_dim=None,
    patch_norm=True,
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
    qkv_bias=False,
    reattention_norm="layer_norm",
    layer_norm_epsilon=1e-5,
    name="deepvit",
):
    """Builds a DeepViT.

    Patch embedding, class token and learned E_pos as in ViT (Eq. 1 of
    Dosovitskiy et al.), then `depth` `ReAttentionBlock`s, LayerNorm, pooling
    and a linear head: `build_vit` with `ReAttentionBlock` as its block.
    With `patch_norm=True` (vit-pytorch's layout) the flattened patches are
    layer-normalised before the projection and the embeddings after it;
    otherwise the plain `PatchEncoder` embeds them.

    Args:
        patch_size: int P; must divide the image size.
        hidden_dim: int D.
        depth: int, re-attention blocks.
        num_heads: int h.
        mlp_dim: int, MLP width.
        head_dim: int or None, per-head width (default D / h).
        patch_norm: bool, LayerNorm before and after the patch projection.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications` (see
            `VisionTransformer`); `input_shape` defaults to (224, 224, 3).
        dropout: float, after the embedding, attention projection and MLP.
        attention_dropout: float, on the attention maps.
        drop_path_rate: float, stochastic depth, rising linearly to this rate.
        qkv_bias: bool.
        reattention_norm: "layer_norm" or "none", the Norm of re-attention.
        layer_norm_epsilon: float.

    Returns:
        An uncompiled `keras.Model`.
    """
    check_pooling(pooling, include_top, TOKEN_POOLINGS)
    check_positive_ints(hidden_dim=hidden_dim, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim)
    if head_dim is None:
        check_heads(hidden_dim, num_heads)
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"`patch_size` must be a positive integer. Received: patch_size={patch_size!r}")
    check_classes(classes, include_top)
    check_weights(weights)

    inputs, input_shape = image_inputs(input_tensor, input_shape, require_size=True)
    if input_tensor is not None:
        input_shape = tuple(inputs.shape[1:])  # the patch reshapes follow the tensor's own shape
    height, width = input_shape[:2]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"`patch_size` must divide the image size. Received: patch_size={patch_size}, input_shape={input_shape}"
        )

    if patch_norm:
        embedding = _normalized_patch_embedding(patch_size, hidden_dim, layer_norm_epsilon)
    else:
        embedding = patch_embedding(patch_size, hidden_dim)

    def block(block_name, drop_path):
        return ReAttentionBlock(
            num_heads,
            mlp_dim,
            normalization=reattention_norm,
            head_dim=head_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            drop_path=drop_path,
            qkv_bias=qkv_bias,
            layer_norm_epsilon=layer_norm_epsilon,
            name=block_name,
        )

    return build_vit(
        inputs,
        embedding=embedding,
        block=block,
        depth=depth,
        pooling=pooling,
        include_top=include_top,
        classes=classes,
        classifier_activation=classifier_activation,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
        layer_norm_epsilon=layer_norm_epsilon,
        input_tensor=input_tensor,
        weights=weights,
        name=name,
    )


def _normalized_patch_embedding(patch_size, hidden_dim, layer_norm_epsilon):
    """vit-pytorch's patch embedding: LayerNorm, linear projection, LayerNorm; class token; learned E_pos.

    An embedding hook of `build_vit`; the patch size is checked by `DeepViT`.
    """

    def embed(images):
        height, width, channels = images.shape[1:]
        gh, gw = height // patch_size, width // patch_size
        # (B, H, W, C) → (B, N, P·P·C), each patch flattened as (row, column, channel).
        x = keras.layers.Reshape((gh, patch_size, gw, patch_size, channels), name="patchify_split")(images)
        x = keras.layers.Permute((1, 3, 2, 4, 5), name="patchify_permute")(x)
        x = keras.layers.Reshape((gh * gw, patch_size * patch_size * channels), name="patchify")(x)
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="patch_norm_in")(x)
        x = keras.layers.Dense(hidden_dim, name="patch_projection")(x)
        x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="patch_norm_out")(x)
        x = ClassToken(initializer=keras.initializers.TruncatedNormal(stddev=0.02), name="class_token")(x)
        x = PositionalEncoding("learned", max_length=gh * gw + 1, name="position_embedding")(x)
        return x, 1

    return embed


def _variant(func_name, size, description):
    return variant(func_name, DeepViT, DEEPVIT_CONFIGS[size], description)


DeepViT16B = _variant("DeepViT16B", "16b", "DeepViT-16B: D=384, 16 re-attention blocks, h=12, MLP 1152.")
DeepViT24B = _variant("DeepViT24B", "24b", "DeepViT-24B: D=384, 24 re-attention blocks, h=12, MLP 1152.")
DeepViT32B = _variant("DeepViT32B", "32b", "DeepViT-32B: D=384, 32 re-attention blocks, h=12, MLP 1152.")


# A tiny DeepViT for tests (registry `tiny` entries).
TINY_DEEPVIT = {
    "hidden_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "mlp_dim": 64,
    "patch_size": 8,
    "input_shape": (32, 32, 3),
    "classes": 5,
}


def _register_all():
    for size in ("16b", "24b", "32b"):
        register_model(
            f"deepvit_{size}_patch16_224",
            DeepViT,
            family="deepvit",
            tiny=TINY_DEEPVIT,
            **DEEPVIT_CONFIGS[size],
            patch_size=16,
            input_shape=(224, 224, 3),
        )
    register_model(
        "deepvit_cifar_patch4_depth8_32",
        DeepViT,
        family="deepvit",
        tiny=TINY_DEEPVIT,
        **DEEPVIT_CONFIGS["cifar"],
        patch_size=4,
        input_shape=(32, 32, 3),
        classes=10,
    )


_register_all()
