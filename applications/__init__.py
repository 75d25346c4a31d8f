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
from keras_vit.applications.transformer import (
    TRANSFORMER_CONFIGS,
    Seq2SeqTransformer,
    Transformer,
    TransformerBase,
    TransformerBig,
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
    "TRANSFORMER_CONFIGS",
    "Seq2SeqTransformer",
    "Transformer",
    "TransformerBase",
    "TransformerBig",
]
