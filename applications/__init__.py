"""Model factories in keras.applications style, and the registry of named models."""

from keras_vit.applications.registry import get_model, list_models, model_config, register_model
from keras_vit.applications.vit import (
    VIT_CONFIGS,
    ViTBase8,
    ViTBase16,
    ViTBase32,
    ViTHuge14,
    ViTLarge16,
    ViTLarge32,
    ViTSmall16,
    ViTSmall32,
    ViTTiny16,
    VisionTransformer,
)

__all__ = [
    "VIT_CONFIGS",
    "ViTBase8",
    "ViTBase16",
    "ViTBase32",
    "ViTHuge14",
    "ViTLarge16",
    "ViTLarge32",
    "ViTSmall16",
    "ViTSmall32",
    "ViTTiny16",
    "VisionTransformer",
    "get_model",
    "list_models",
    "model_config",
    "register_model",
]
from keras_vit.applications.swin import SWIN_CONFIGS, SwinBase, SwinSmall, SwinTiny, SwinTransformer  # noqa: E402
from keras_vit.applications.mvitv2 import (  # noqa: E402
    MVITV2_CONFIGS,
    MViTv2,
    MViTv2Base,
    MViTv2Small,
    MViTv2Tiny,
)

__all__ += [
    "SWIN_CONFIGS",
    "SwinBase",
    "SwinSmall",
    "SwinTiny",
    "SwinTransformer",
    "MVITV2_CONFIGS",
    "MViTv2",
    "MViTv2Base",
    "MViTv2Small",
    "MViTv2Tiny",
]
