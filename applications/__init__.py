"""Model factories in keras.applications style, and the registry of named models.

Naming convention, in the papers' words, the same in every factory, table and layer:

- `hidden_dim`: the model width, D of the ViT paper (d_model of the
  Transformer). In hierarchical models (Swin's C, MViTv2) the width of the
  first stage; stage i has `hidden_dim * 2**i`.
- `depth`: the number of encoder blocks L; in hierarchical models a tuple of
  blocks per stage (`depth=(2, 2, 6, 2)` for Swin-T). The seq2seq
  Transformer's `num_layers` is N of its paper, per side.
- `num_heads`: attention heads h; an int, or one per stage.
- `mlp_dim`: the absolute inner width of the MLP (the ViT paper's "MLP size",
  the Transformer's d_ff), also the argument of the `MLP` layer.
  `mlp_ratio` (MLP width / block width) only where the width changes from
  stage to stage (Swin, MViTv2) or in a search space over widths.
- `patch_size`: patch side P; `head_dim`: per-head width where it is not
  `hidden_dim // num_heads`.

The ViT-shaped families (ViT, DeiT, DeepViT, T2T-ViT, both hybrids) are
configurations of one builder, `vit.build_vit`, with an embedding hook and a
block hook. Every registered model carries its family (`model_family`,
`list_models(family=...)`) and a tiny configuration for tests (`tiny_config`).

Pretrained weights: `weights="hf://ORG/REPO"` on every factory with a
converter, `get_model(name, pretrained=True)` and
`list_models(pretrained=True)` (`keras_vit.hub`); with them a model takes
pixels in [0, 255] (`include_preprocessing`). `preprocess_input` and
`decode_predictions` are keras.applications'.
"""

from keras_vit.applications.cnn_hybrid import CNN_BACKBONES, CNNHybridViT, cnn_stem  # noqa: E402
from keras_vit.applications.common import (  # noqa: E402
    decode_predictions,
    imagenet_classes,
    model_preprocessing,
    preprocess_input,
)
from keras_vit.applications.deepvit import DEEPVIT_CONFIGS, DeepViT, DeepViT16B, DeepViT24B, DeepViT32B  # noqa: E402
from keras_vit.applications.registry import (
    FAMILIES,
    get_model,
    list_models,
    model_builder,
    model_config,
    model_family,
    register_model,
    tiny_config,
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
from keras_vit.applications.transformer import (
    TRANSFORMER_CONFIGS,
    Seq2SeqTransformer,
    Transformer,
    TransformerBase,
    TransformerBig,
)
from keras_vit.applications.vit import (
    VIT_CONFIGS,
    VisionTransformer,
    ViTBase8,
    ViTBase16,
    ViTBase32,
    ViTHuge14,
    ViTLarge16,
    ViTLarge32,
    ViTSmall16,
    ViTSmall32,
    ViTTiny16,
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
    "FAMILIES",
    "decode_predictions",
    "imagenet_classes",
    "model_preprocessing",
    "preprocess_input",
    "get_model",
    "model_builder",
    "list_models",
    "model_config",
    "model_family",
    "register_model",
    "tiny_config",
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
    VisionTransformerHybrid,
    ViTBaseR50S16,
    resnetv2_stem,
)

__all__ += ["HYBRID_STEM_CONFIGS", "ViTBaseR50S16", "VisionTransformerHybrid", "resnetv2_stem"]
from keras_vit.applications.mvitv2 import (  # noqa: E402
    MVITV2_CONFIGS,
    MViTv2,
    MViTv2Base,
    MViTv2Small,
    MViTv2Tiny,
)
from keras_vit.applications.swin import SWIN_CONFIGS, SwinBase, SwinSmall, SwinTiny, SwinTransformer  # noqa: E402

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
from keras_vit.applications.features import feature_extractor  # noqa: E402
from keras_vit.applications.resolution import set_image_size  # noqa: E402

__all__ += ["feature_extractor", "set_image_size"]
