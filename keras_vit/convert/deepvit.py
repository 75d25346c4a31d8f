"""DeepViT checkpoints: vit-pytorch's `vit_pytorch.deepvit.DeepViT`.

Into a `keras_vit.applications.DeepViT` built with `patch_norm=True` (the
vit-pytorch patch embedding: LayerNorm, Linear, LayerNorm). Re-attention adds
the head-mixing matrix Θ (`reattn_weights`) and the Norm over heads
(`reattn_norm.1`) to vit-pytorch's block layout.
"""

from keras_vit.convert import vit
from keras_vit.convert.engine import LINEAR, NORM, PARAM, Family, Layout, Rule
from keras_vit.layers import ReAttentionBlock

_BLOCK = r"transformer\.layers\.(\d+)"

RULES = (
    Rule(r"to_patch_embedding\.1", "patch_norm_in", NORM),
    Rule(r"to_patch_embedding\.2", "patch_projection", LINEAR),
    Rule(r"to_patch_embedding\.3", "patch_norm_out", NORM),
    Rule(r"cls_token", "class_token/tokens", PARAM),
    Rule(r"pos_embedding", "position_embedding/embeddings", PARAM),
    Rule(_BLOCK + r"\.0\.reattn_weights", r"block_\1/attention/mixing", PARAM),
    Rule(_BLOCK + r"\.0\.reattn_norm\.1", r"block_\1/attention/head_norm", NORM),
    Rule(r"mlp_head\.0", "norm", NORM),
    Rule(r"mlp_head\.1", "head", LINEAR),
) + vit.VIT_PYTORCH_BLOCK_RULES

FAMILY = Family(
    name="deepvit",
    layer_types=(ReAttentionBlock,),
    layouts=(Layout("vit_pytorch", r"to_patch_embedding\..*|transformer\.layers\..*", RULES),),
)
