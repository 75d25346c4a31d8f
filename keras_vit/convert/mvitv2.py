"""timm `MultiScaleVit` (MViTv2) checkpoints into models built by `keras_vit.applications.MViTv2`."""

from keras_vit.convert.engine import CONV, DEPTHWISE, LINEAR, NORM, PARAM, Family, Layout, Rule
from keras_vit.layers import MultiScaleBlock

_BLOCK = r"stages\.(\d+)\.blocks\.(\d+)"

RULES = (
    Rule(r"patch_embed\.proj", "patch_embed", CONV),
    Rule(_BLOCK + r"\.(norm1|norm2)", r"stage_\1_block_\2/\3", NORM),
    Rule(_BLOCK + r"\.attn\.(qkv|proj)", r"stage_\1_block_\2/attention/attention/\3", LINEAR),
    Rule(_BLOCK + r"\.attn\.(pool_[qkv])", r"stage_\1_block_\2/attention/\3", DEPTHWISE),
    Rule(_BLOCK + r"\.attn\.(norm_[qkv])", r"stage_\1_block_\2/attention/\3", NORM),
    Rule(_BLOCK + r"\.attn\.(rel_pos_[hw])", r"stage_\1_block_\2/attention/\3", PARAM),
    Rule(_BLOCK + r"\.(shortcut_proj_attn|shortcut_proj_mlp)", r"stage_\1_block_\2/\3", LINEAR),
    Rule(_BLOCK + r"\.mlp\.(fc1|fc2)", r"stage_\1_block_\2/mlp/\3", LINEAR),
    Rule(r"norm", "norm", NORM),
    Rule(r"head\.fc|head", "head", LINEAR),
)

FAMILY = Family(
    name="mvitv2",
    layer_types=(MultiScaleBlock,),
    layouts=(Layout("timm", r"stages\.\d+\.blocks\.\d+\..*", RULES),),
)
