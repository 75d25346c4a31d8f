"""timm `SwinTransformer` checkpoints into models built by `keras_vit.applications.SwinTransformer`.

timm ≥ 0.9 puts a stage's patch merging at its start (`layers.1.downsample`),
as our `stage_1_downsample`. The non-persistent buffers
(`relative_position_index`, `attn_mask`) are recomputed by the layers.
"""

from keras_vit.convert.engine import CONV, LINEAR, NORM, PARAM, Family, Layout, Rule
from keras_vit.layers import SwinTransformerBlock

_BLOCK = r"layers\.(\d+)\.blocks\.(\d+)"

RULES = (
    Rule(r"patch_embed\.proj", "patch_embed/projection", CONV),
    Rule(r"patch_embed\.norm", "patch_norm", NORM),
    Rule(r"layers\.(\d+)\.downsample\.norm", r"stage_\1_downsample/norm", NORM),
    Rule(r"layers\.(\d+)\.downsample\.reduction", r"stage_\1_downsample/reduction", LINEAR),
    Rule(_BLOCK + r"\.(norm1|norm2)", r"stage_\1_block_\2/\3", NORM),
    Rule(
        _BLOCK + r"\.attn\.relative_position_bias_table",
        r"stage_\1_block_\2/attention/relative_position_bias_table",
        PARAM,
    ),
    Rule(_BLOCK + r"\.attn\.(qkv|proj)", r"stage_\1_block_\2/attention/attention/\3", LINEAR),
    Rule(_BLOCK + r"\.mlp\.(fc1|fc2)", r"stage_\1_block_\2/mlp/\3", LINEAR),
    Rule(r"norm", "norm", NORM),
    Rule(r"head\.fc|head", "head", LINEAR),
)

FAMILY = Family(
    name="swin",
    layer_types=(SwinTransformerBlock,),
    layouts=(
        Layout(
            "timm", r"layers\.\d+\.blocks\.\d+\..*", RULES, ignore=(r".*\.relative_position_index", r".*\.attn_mask")
        ),
    ),
)
