"""ViT and DeiT checkpoints: timm, Hugging Face transformers and the original ViT .npz.

Models built by `VisionTransformer` follow timm's layout (fused `qkv`, a
Conv2D patch projection, a position table that includes the class and
distillation rows), so timm keys map one to one; Hugging Face's separate
query/key/value and the .npz per-head kernels are concatenated into `qkv` in
[q | k | v] order, the head layout of our attention.

Pooling: timm's `global_pool="avg"` model normalises the pooled vector
(`fc_norm`) and has no final `norm`; a checkpoint trained with the class
token has `norm` and no `fc_norm`. timm loads it non-strictly: `fc_norm`
keeps its initialisation (γ = 1, β = 0) and `norm` is not used. `FAMILY.fresh`
declares the same, so `pooling="avg"` accepts a class-token checkpoint.
"""

import logging

import numpy as np

from keras_vit.convert.engine import (
    CONV,
    FLAX,
    FLAX_HEADS_IN,
    FLAX_HEADS_OUT,
    FLAX_NORM,
    LINEAR,
    NORM,
    PARAM,
    Family,
    Layout,
    Rule,
)
from keras_vit.convert.resample import resample_abs_pos_embed, resample_patch_embed
from keras_vit.layers import PatchEncoder, TransformerBlock

logger = logging.getLogger("keras_vit.convert")

_BLOCK = r"(?:encoder\.layer|layers)\.(\d+)"  # Hugging Face files / transformers >= 5 in memory

TIMM_RULES = (
    Rule(r"cls_token", "patch_embed/class_token", PARAM),
    Rule(r"dist_token", "patch_embed/distillation_token", PARAM),
    Rule(r"reg_token", "patch_embed/register_tokens", PARAM),
    Rule(r"pos_embed", "patch_embed/position_embedding", PARAM),
    Rule(r"patch_embed\.proj", "patch_embed/projection", CONV),
    Rule(r"blocks\.(\d+)\.(norm1|norm2)", r"block_\1/\2", NORM),
    Rule(r"blocks\.(\d+)\.attn\.(qkv|proj)", r"block_\1/attention/\2", LINEAR),
    Rule(r"blocks\.(\d+)\.mlp\.(fc1|fc2)", r"block_\1/mlp/\2", LINEAR),
    Rule(r"(norm|fc_norm)", r"\1", NORM),
    Rule(r"(head|head_dist)", r"\1", LINEAR),
)

HF_RULES = (
    Rule(r"embeddings\.cls_token", "patch_embed/class_token", PARAM),
    Rule(r"embeddings\.distillation_token", "patch_embed/distillation_token", PARAM),
    Rule(r"embeddings\.position_embeddings", "patch_embed/position_embedding", PARAM),
    Rule(r"embeddings\.patch_embeddings\.projection", "patch_embed/projection", CONV),
    Rule(_BLOCK + r"\.layernorm_before", r"block_\1/norm1", NORM),
    Rule(_BLOCK + r"\.layernorm_after", r"block_\1/norm2", NORM),
    Rule(
        _BLOCK + r"\.attention\.(?:attention\.)?(?P<part>query|key|value|[qkv]_proj)",
        r"block_\1/attention/qkv",
        LINEAR,
        fuse=("query|q_proj", "key|k_proj", "value|v_proj"),
    ),
    Rule(_BLOCK + r"\.attention\.(?:output\.dense|o_proj)", r"block_\1/attention/proj", LINEAR),
    Rule(_BLOCK + r"\.(?:intermediate\.dense|mlp\.fc1)", r"block_\1/mlp/fc1", LINEAR),
    Rule(_BLOCK + r"\.(?:output\.dense|mlp\.fc2)", r"block_\1/mlp/fc2", LINEAR),
    Rule(r"layernorm", "norm", NORM),
    Rule(r"classifier|cls_classifier", "head", LINEAR),
    Rule(r"distillation_classifier", "head_dist", LINEAR),
)

_NPZ_BLOCK = r"Transformer/encoderblock_(\d+)"
NPZ_RULES = (
    Rule(r"embedding", "patch_embed/projection", FLAX),
    Rule(r"cls", "patch_embed/class_token", PARAM),
    Rule(r"Transformer/posembed_input/pos_embedding", "patch_embed/position_embedding", PARAM),
    Rule(_NPZ_BLOCK + r"/LayerNorm_0", r"block_\1/norm1", FLAX_NORM),
    Rule(_NPZ_BLOCK + r"/LayerNorm_2", r"block_\1/norm2", FLAX_NORM),
    Rule(
        _NPZ_BLOCK + r"/MultiHeadDotProductAttention_1/(?P<part>query|key|value)",
        r"block_\1/attention/qkv",
        FLAX_HEADS_IN,
        fuse=("query", "key", "value"),
    ),
    Rule(_NPZ_BLOCK + r"/MultiHeadDotProductAttention_1/out", r"block_\1/attention/proj", FLAX_HEADS_OUT),
    Rule(_NPZ_BLOCK + r"/MlpBlock_3/Dense_0", r"block_\1/mlp/fc1", FLAX),
    Rule(_NPZ_BLOCK + r"/MlpBlock_3/Dense_1", r"block_\1/mlp/fc2", FLAX),
    Rule(r"Transformer/encoder_norm", "norm", FLAX_NORM),
    Rule(r"head", "head", FLAX),
)

# vit-pytorch's `Transformer` (lucidrains/vit-pytorch), shared by its T2T-ViT and
# DeepViT: `layers.N.0` is the pre-norm attention, `layers.N.1` the pre-norm MLP.
_VP_BLOCK = r"transformer\.layers\.(\d+)"
VIT_PYTORCH_BLOCK_RULES = (
    Rule(_VP_BLOCK + r"\.0\.norm", r"block_\1/norm1", NORM),
    Rule(_VP_BLOCK + r"\.0\.to_qkv", r"block_\1/attention/qkv", LINEAR),
    Rule(_VP_BLOCK + r"\.0\.to_out\.0", r"block_\1/attention/proj", LINEAR),
    Rule(_VP_BLOCK + r"\.1\.net\.0", r"block_\1/norm2", NORM),
    Rule(_VP_BLOCK + r"\.1\.net\.1", r"block_\1/mlp/fc1", LINEAR),
    Rule(_VP_BLOCK + r"\.1\.net\.4", r"block_\1/mlp/fc2", LINEAR),
)

# The representation ("pre_logits") layer of in21k checkpoints is not part of
# the model (timm drops it too); nor are ViTModel's pooler (Dense + tanh on the
# class token, unused by the classification heads) and the masked-image-modelling
# mask token.
TIMM_IGNORE = (r"pre_logits\..*",)
HF_IGNORE = (r"pooler\..*", r"embeddings\.mask_token")
NPZ_IGNORE = (r"pre_logits/.*",)
HF_PREFIX = r"^(?:vit|deit)\."
NPZ_PREFIX = r"^(?:opt/target/|params/)"
TIMM_DETECT = r"patch_embed\.proj\..*|pos_embed"
HF_DETECT = r"(?:(?:vit|deit)\.)?embeddings\.patch_embeddings\..*"
NPZ_DETECT = r"(?:opt/target/|params/)?(?:embedding/kernel|Transformer/.*)"


def _patch_encoder(model):
    return next((layer for layer in model.layers if isinstance(layer, PatchEncoder)), None)


def fit_position_table(array, target, model):
    """Resamples a `(1, P + H*W, D)` position table to the model's grid, as timm's `checkpoint_filter_fn`."""
    encoder = _patch_encoder(model)
    if encoder is None or array.ndim != 3 or array.shape[-1] != target[-1]:
        return array
    prefix = encoder.num_embedded_prefix_tokens
    n = array.shape[1] - prefix
    side = int(round(np.sqrt(max(n, 0))))
    if n <= 0 or side * side != n:
        return array
    logger.info("Resampling the position table from %dx%d to %s.", side, side, encoder.grid_size)
    return resample_abs_pos_embed(array, encoder.grid_size, (side, side), prefix)


def fit_patch_kernel(array, target, model):
    """Resamples a patch projection `(P, P, C, D)` to the model's patch size (FlexiViT's pseudo-inverse)."""
    if array.ndim != 4 or tuple(array.shape[2:]) != tuple(target[2:]):
        return array
    logger.info("Resampling the patch projection from %s to %s.", array.shape[:2], target[:2])
    return resample_patch_embed(array, target[:2])


RESIZE = (
    (r"patch_embed/position_embedding", fit_position_table),
    (r"patch_embed/projection/kernel", fit_patch_kernel),
)

FAMILY = Family(
    name="vit",
    layer_types=(PatchEncoder, TransformerBlock),
    layouts=(
        Layout("npz", NPZ_DETECT, NPZ_RULES, NPZ_IGNORE, NPZ_PREFIX),
        Layout("hf", HF_DETECT, HF_RULES, HF_IGNORE, HF_PREFIX),
        Layout("timm", TIMM_DETECT, TIMM_RULES, TIMM_IGNORE),
    ),
    resize=RESIZE,
    fresh=(("fc_norm/", "norm/"),),
)
