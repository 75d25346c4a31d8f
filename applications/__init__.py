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
from keras_vit.applications.vit_hybrid import (  # noqa: E402
    HYBRID_STEM_CONFIGS,
    ViTBaseR50S16,
    VisionTransformerHybrid,
    resnetv2_stem,
)

__all__ += ["HYBRID_STEM_CONFIGS", "ViTBaseR50S16", "VisionTransformerHybrid", "resnetv2_stem"]
