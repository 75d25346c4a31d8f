"""Tokens-to-Token ViT (Yuan et al., "Tokens-to-Token ViT: Training Vision Transformers from
Scratch on ImageNet", ICCV 2021).

The image is tokenised progressively: a soft split (overlapping unfold) makes
tokens, a token transformer re-structures them, they are reshaped into an
image again and split again (Eq. 1-3 of the paper); the final tokens enter
the ViT backbone. T2T-ViT is a configuration of the ViT builder
(`build_vit` through `VisionTransformer`): the T2T module is the stem of its
embedding hook, with 1×1 patches, so the patch projection is the T2T module's
`project`.
"""

import keras

from keras_vit.applications.common import pretrained_factory, variant
from keras_vit.applications.registry import register_model
from keras_vit.applications.vit import VisionTransformer
from keras_vit.layers import SoftSplit, TokenPerformer, TokenTransformer

# The official model table (models/t2t_vit.py of the T2T-ViT code): width,
# depth, heads, MLP width (mlp_ratio × width) and the token-layer type.
T2T_CONFIGS = {
    "t2t_vit_7": {"hidden_dim": 256, "depth": 7, "num_heads": 4, "mlp_dim": 512, "tokens_type": "performer"},
    "t2t_vit_10": {"hidden_dim": 256, "depth": 10, "num_heads": 4, "mlp_dim": 512, "tokens_type": "performer"},
    "t2t_vit_12": {"hidden_dim": 256, "depth": 12, "num_heads": 4, "mlp_dim": 512, "tokens_type": "performer"},
    "t2t_vit_14": {"hidden_dim": 384, "depth": 14, "num_heads": 6, "mlp_dim": 1152, "tokens_type": "performer"},
    "t2t_vit_19": {"hidden_dim": 448, "depth": 19, "num_heads": 7, "mlp_dim": 1344, "tokens_type": "performer"},
    "t2t_vit_24": {"hidden_dim": 512, "depth": 24, "num_heads": 8, "mlp_dim": 1536, "tokens_type": "performer"},
    "t2t_vit_t_14": {"hidden_dim": 384, "depth": 14, "num_heads": 6, "mlp_dim": 1152, "tokens_type": "transformer"},
    "t2t_vit_t_19": {"hidden_dim": 448, "depth": 19, "num_heads": 7, "mlp_dim": 1344, "tokens_type": "transformer"},
    "t2t_vit_t_24": {"hidden_dim": 512, "depth": 24, "num_heads": 8, "mlp_dim": 1536, "tokens_type": "transformer"},
}

# (kernel, stride, padding) of the three soft splits: 224 → 56 → 28 → 14.
IMAGENET_SOFT_SPLITS = ((7, 4, 2), (3, 2, 1), (3, 2, 1))
# For 32×32 images: 32 → 32 → 16 → 8, i.e. 64 tokens.
CIFAR_SOFT_SPLITS = ((3, 1, 1), (3, 2, 1), (3, 2, 1))

_TOKENS_TYPES = ("performer", "transformer")


def _soft_split_specs(soft_splits):
    specs = []
    for spec in soft_splits:
        spec = tuple(spec)
        if len(spec) == 2:  # (kernel, stride): padding stride // 2, as in vit-pytorch.
            spec = (spec[0], spec[1], spec[1] // 2)
        if len(spec) != 3 or not all(isinstance(v, int) and v >= 0 for v in spec) or spec[0] < 1 or spec[1] < 1:
            raise ValueError(
                "`soft_splits` must hold (kernel, stride) or (kernel, stride, padding) tuples of "
                f"non-negative ints. Received: soft_splits={soft_splits}"
            )
        specs.append(spec)
    if not specs:
        raise ValueError(f"`soft_splits` must not be empty. Received: soft_splits={soft_splits}")
    return specs


def tokens_to_token(soft_splits=IMAGENET_SOFT_SPLITS, tokens_type="performer", token_dim=64, dropout=0.0, name="t2t"):
    """The T2T module as a function of an image tensor (a `stem` for `VisionTransformer`).

    Soft split, then for each further split: token layer (re-structurization,
    Eq. 1), reshape to an image (Eq. 2), soft split (Eq. 3). Returns a
    function mapping `(B, H, W, C)` to the last split's tokens laid out on
    their grid, `(B, h, w, C_last · k²)`; the ViT patch embedding with 1×1
    patches then projects them to the model width.

    Args:
        soft_splits: (kernel, stride[, padding]) per soft split.
        tokens_type: "performer" (`TokenPerformer`) or "transformer"
            (`TokenTransformer`).
        token_dim: int, width the token layers narrow to (64 in the paper);
            None keeps the full unfolded width with standard residuals, the
            layout of vit-pytorch's `T2TViT` ("transformer" only).
        dropout: float.
        name: prefix of the layer names.
    """
    specs = _soft_split_specs(soft_splits)
    if tokens_type not in _TOKENS_TYPES:
        raise ValueError(f"`tokens_type` must be one of {_TOKENS_TYPES}. Received: tokens_type={tokens_type!r}")
    if token_dim is None and tokens_type == "performer":
        raise ValueError("tokens_type='performer' needs a `token_dim`. Received: token_dim=None")

    def stem(images):
        x = images
        height, width = images.shape[1], images.shape[2]
        for i, (kernel, stride, padding) in enumerate(specs):
            split = SoftSplit(kernel, stride, padding, name=f"{name}_soft_split{i}")
            if i > 0:
                x = keras.layers.Reshape((height, width, x.shape[-1]), name=f"{name}_to_image{i}")(x)
            x = split(x)
            height, width = split.output_grid(height, width)
            if i == len(specs) - 1:
                break
            if tokens_type == "performer":
                layer = TokenPerformer(token_dim, dropout=dropout, name=f"{name}_attention{i + 1}")
            elif token_dim is None:
                layer = TokenTransformer(
                    None,
                    residual="input",
                    output_projection=False,
                    final_norm=True,
                    dropout=dropout,
                    name=f"{name}_attention{i + 1}",
                )
            else:
                layer = TokenTransformer(token_dim, dropout=dropout, name=f"{name}_attention{i + 1}")
            x = layer(x)
        return keras.layers.Reshape((height, width, x.shape[-1]), name=f"{name}_tokens")(x)

    return stem


@pretrained_factory("t2t")
def T2TViT(
    hidden_dim=384,
    depth=14,
    num_heads=6,
    mlp_dim=1152,
    tokens_type="performer",
    token_dim=64,
    soft_splits=IMAGENET_SOFT_SPLITS,
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
    position_embedding="learned",
    layer_norm_epsilon=1e-5,
    name="t2t_vit",
):
    """Builds a Tokens-to-Token ViT.

    The T2T module (`tokens_to_token`) followed by the ViT backbone: class
    token, position embedding, `depth` pre-norm blocks, LayerNorm and the
    head (Yuan et al. 2021, Sec. 3.2). The official code fixes E_pos to the
    1-D sinusoid table; here E_pos is learned (a converted checkpoint
    simply copies that table into it), which keeps the parameter count equal
    to the official one.

    Args:
        hidden_dim: int, backbone width.
        depth: int, backbone blocks.
        num_heads: int, backbone heads.
        mlp_dim: int, backbone MLP width.
        tokens_type: "performer" or "transformer", the T2T token layer.
        token_dim: int or None, width of the T2T tokens (see `tokens_to_token`).
        soft_splits: (kernel, stride[, padding]) per soft split; their
            strides multiply to the total downsampling (16 for ImageNet).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in `keras.applications`
            (see `VisionTransformer`); `input_shape` defaults to (224, 224, 3).
        dropout, attention_dropout, drop_path_rate, qkv_bias,
            position_embedding, layer_norm_epsilon: see `VisionTransformer`.

    Returns:
        An uncompiled `keras.Model`.
    """
    stem = tokens_to_token(soft_splits, tokens_type, token_dim, dropout=dropout)
    return VisionTransformer(
        patch_size=1,
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
        dropout=dropout,
        attention_dropout=attention_dropout,
        drop_path_rate=drop_path_rate,
        qkv_bias=qkv_bias,
        position_embedding=position_embedding,
        layer_norm_epsilon=layer_norm_epsilon,
        stem=stem,
        name=name,
    )


def _variant(func_name, config_name):
    config = T2T_CONFIGS[config_name]
    description = (
        f"T2T-ViT `{config_name}`: width {config['hidden_dim']}, depth {config['depth']}, "
        f"{config['num_heads']} heads, MLP {config['mlp_dim']}, {config['tokens_type']} token layers."
    )
    return variant(func_name, T2TViT, config, description, default_name=config_name)


T2TViT7 = _variant("T2TViT7", "t2t_vit_7")
T2TViT10 = _variant("T2TViT10", "t2t_vit_10")
T2TViT12 = _variant("T2TViT12", "t2t_vit_12")
T2TViT14 = _variant("T2TViT14", "t2t_vit_14")
T2TViT19 = _variant("T2TViT19", "t2t_vit_19")
T2TViT24 = _variant("T2TViT24", "t2t_vit_24")
T2TViTT14 = _variant("T2TViTT14", "t2t_vit_t_14")
T2TViTT19 = _variant("T2TViTT19", "t2t_vit_t_19")
T2TViTT24 = _variant("T2TViTT24", "t2t_vit_t_24")


# A tiny T2T-ViT for tests (registry `tiny` entries): narrow token layers, 32×32 images.
TINY_T2T = {
    "hidden_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "mlp_dim": 64,
    "token_dim": 8,
    "input_shape": (32, 32, 3),
    "classes": 5,
}


def _register_all():
    for name, config in T2T_CONFIGS.items():
        register_model(name, T2TViT, family="t2t", tiny=TINY_T2T, **config, input_shape=(224, 224, 3))
    # The small models trained from scratch on 32×32 images (CIFAR).
    for size in ("t2t_vit_7", "t2t_vit_10", "t2t_vit_12"):
        register_model(
            f"{size}_cifar_32",
            T2TViT,
            family="t2t",
            tiny=TINY_T2T,
            **T2T_CONFIGS[size],
            soft_splits=CIFAR_SOFT_SPLITS,
            input_shape=(32, 32, 3),
            classes=10,
        )


_register_all()
