"""R50+ViT hybrid checkpoints (timm `vit_base_r50_s16_224`, the original R50+ViT .npz).

The ViT part converts with the rules of `vit`; the ResNetV2 stem's layers are
named after timm's modules with `_` for `.` (`stages_0_blocks_0_conv1`), see
`keras_vit.applications.vit_hybrid.resnetv2_stem`.
"""

from keras_vit.convert import vit
from keras_vit.convert.engine import CONV, FLAX, FLAX_NORM, NORM, Layout, Rule
from keras_vit.layers import PatchEncoder, StdConv2D

_STEM_MODULE = r"patch_embed\.backbone\.((?:stem|stages\.\d+\.blocks\.\d+)\.(?:downsample\.)?"


def _timm_stem_name(match):
    return match[1].replace(".", "_")


def _npz_stem_name(match):
    # `block1/unit1/gn_proj` -> `stages_0_blocks_0_downsample_norm`.
    layer = {"conv": "conv", "gn": "norm"}[match[3]] + match[4]
    layer = layer.replace("conv_proj", "downsample_conv").replace("norm_proj", "downsample_norm")
    return f"stages_{int(match[1]) - 1}_blocks_{int(match[2]) - 1}_{layer}"


TIMM_RULES = (
    Rule(_STEM_MODULE + r"conv\d?)", _timm_stem_name, CONV),
    Rule(_STEM_MODULE + r"norm\d?)", _timm_stem_name, NORM),
) + vit.TIMM_RULES

NPZ_RULES = (
    Rule(r"conv_root", "stem_conv", FLAX),
    Rule(r"gn_root", "stem_norm", FLAX_NORM),
    Rule(r"block(\d+)/unit(\d+)/(conv)(1|2|3|_proj)", _npz_stem_name, FLAX),
    Rule(r"block(\d+)/unit(\d+)/(gn)(1|2|3|_proj)", _npz_stem_name, FLAX_NORM),
) + vit.NPZ_RULES

FAMILY = vit.FAMILY._replace(
    name="hybrid",
    layer_types=(PatchEncoder, StdConv2D),
    layouts=(
        Layout("npz", vit.NPZ_DETECT, NPZ_RULES, vit.NPZ_IGNORE, vit.NPZ_PREFIX),
        Layout("timm", vit.TIMM_DETECT, TIMM_RULES, vit.TIMM_IGNORE),
    ),
)
