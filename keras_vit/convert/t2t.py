"""T2T-ViT checkpoints: the official code's `T2T_ViT` and vit-pytorch's `T2TViT`.

Layouts: "official" (github.com/yitu-opensource/T2T-ViT, both token types:
`tokens_to_token.attentionN` is a `Token_performer` or a `Token_transformer`,
the backbone is timm-like) and "vit_pytorch" (`vit_pytorch.t2t.T2TViT`,
built here with `tokens_type="transformer", token_dim=None`), whose
`to_patch_embedding` holds four modules per soft split (the token
transformer of split i at index 4i + 3) and then the projection. The T2T
projection is a `Linear` on the unfolded tokens; here it is the 1×1 patch
projection of the ViT backbone.
"""

from keras_vit.convert import vit
from keras_vit.convert.engine import LINEAR, LINEAR_AS_CONV, NORM, PARAM, Family, Layout, Rule
from keras_vit.layers import SoftSplit

_OFFICIAL = r"tokens_to_token\.attention(\d+)"

OFFICIAL_RULES = (
    Rule(_OFFICIAL + r"\.(norm1|norm2)", r"t2t_attention\1/\2", NORM),
    Rule(_OFFICIAL + r"\.(kqv|proj)", r"t2t_attention\1/\2", LINEAR),  # Token_performer
    Rule(_OFFICIAL + r"\.mlp\.0", r"t2t_attention\1/mlp/fc1", LINEAR),
    Rule(_OFFICIAL + r"\.mlp\.2", r"t2t_attention\1/mlp/fc2", LINEAR),
    Rule(_OFFICIAL + r"\.w", r"t2t_attention\1/random_features", PARAM),
    Rule(_OFFICIAL + r"\.attn\.(qkv|proj)", r"t2t_attention\1/\2", LINEAR),  # Token_transformer
    Rule(_OFFICIAL + r"\.mlp\.(fc1|fc2)", r"t2t_attention\1/mlp/\2", LINEAR),
    Rule(r"tokens_to_token\.project", "patch_embed/projection", LINEAR_AS_CONV),
) + vit.TIMM_RULES


def _token_layer(match, sublayer):
    return f"t2t_attention{(int(match[1]) - 3) // 4 + 1}/{sublayer}"


_SPLIT = r"to_patch_embedding\.(\d+)"
VIT_PYTORCH_RULES = (
    Rule(r"cls_token", "patch_embed/class_token", PARAM),
    Rule(r"pos_embedding", "patch_embed/position_embedding", PARAM),
    Rule(_SPLIT + r"\.norm", lambda m: _token_layer(m, "norm3"), NORM),
    Rule(_SPLIT + r"\.layers\.0\.0\.norm", lambda m: _token_layer(m, "norm1"), NORM),
    Rule(_SPLIT + r"\.layers\.0\.0\.to_qkv", lambda m: _token_layer(m, "qkv"), LINEAR),
    Rule(_SPLIT + r"\.layers\.0\.1\.net\.0", lambda m: _token_layer(m, "norm2"), NORM),
    Rule(_SPLIT + r"\.layers\.0\.1\.net\.1", lambda m: _token_layer(m, "mlp/fc1"), LINEAR),
    Rule(_SPLIT + r"\.layers\.0\.1\.net\.4", lambda m: _token_layer(m, "mlp/fc2"), LINEAR),
    Rule(_SPLIT, "patch_embed/projection", LINEAR_AS_CONV),
    Rule(r"transformer\.norm", "norm", NORM),
    Rule(r"mlp_head", "head", LINEAR),
) + vit.VIT_PYTORCH_BLOCK_RULES

FAMILY = Family(
    name="t2t",
    layer_types=(SoftSplit,),
    layouts=(
        Layout("official", r"tokens_to_token\..*", OFFICIAL_RULES),
        Layout("vit_pytorch", r"to_patch_embedding\..*", VIT_PYTORCH_RULES),
    ),
    resize=vit.RESIZE[:1],  # the position table; the projection is 1×1
)
