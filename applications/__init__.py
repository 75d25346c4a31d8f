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
from keras_vit.applications.t2t_vit import (  # noqa: E402
    T2T_CONFIGS,
    T2TViT,
    T2TViT7,
    T2TViT10,
    T2TViT12,
    T2TViT14,
    T2TViT19,
    T2TViT24,
    T2TViTT14,
    T2TViTT19,
    T2TViTT24,
)
from keras_vit.applications.deepvit import DEEPVIT_CONFIGS, DeepViT, DeepViT16B, DeepViT24B, DeepViT32B  # noqa: E402
from keras_vit.applications.cnn_hybrid import CNN_BACKBONES, CNNHybridViT, cnn_stem  # noqa: E402

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
    "T2T_CONFIGS",
    "T2TViT",
    "T2TViT7",
    "T2TViT10",
    "T2TViT12",
    "T2TViT14",
    "T2TViT19",
    "T2TViT24",
    "T2TViTT14",
    "T2TViTT19",
    "T2TViTT24",
    "DEEPVIT_CONFIGS",
    "DeepViT",
    "DeepViT16B",
    "DeepViT24B",
    "DeepViT32B",
    "CNN_BACKBONES",
    "CNNHybridViT",
    "cnn_stem",

    "TRANSFORMER_CONFIGS",
    "Seq2SeqTransformer",
    "Transformer",
    "TransformerBase",
    "TransformerBig",
]
from keras_vit.applications.vit_hybrid import (  # noqa: E402
    HYBRID_STEM_CONFIGS,
    ViTBaseR50S16,
    VisionTransformerHybrid,
    resnetv2_stem,
)

__all__ += ["HYBRID_STEM_CONFIGS", "ViTBaseR50S16", "VisionTransformerHybrid", "resnetv2_stem"]
