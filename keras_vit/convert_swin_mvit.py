"""Converts timm Swin Transformer and MViTv2 state dicts into keras_vit models.

Both functions take a state dict as a mapping of parameter names to NumPy
arrays (as read from a safetensors file or `{k: v.numpy()}` of a PyTorch
state dict) and a model built by `keras_vit.applications.SwinTransformer` /
`MViTv2` with the matching configuration. Every weight of the model must be
set and every tensor of the state dict used (a checkpoint's classifier head
is skipped when the model has none), otherwise a `ValueError` lists the differences.

Layouts: a PyTorch `Linear` weight `(out, in)` is the transposed Keras
`Dense` kernel; a `Conv2d` weight `(out, in, kh, kw)` becomes `(kh, kw, in,
out)`; a depthwise one `(C, 1, kh, kw)` becomes `(kh, kw, C, 1)`.
"""

import re

import numpy as np

_SWIN_RULES = (
    (r"^patch_embed\.proj\.", "patch_embed/projection/"),
    (r"^patch_embed\.norm\.", "patch_norm/"),
    (r"^layers\.(\d+)\.downsample\.", r"stage_\1_downsample/"),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.", r"stage_\1_block_\2/"),
    (r"/attn\.relative_position_bias_table$", "/attention/relative_position_bias_table"),
    (r"/attn\.(qkv|proj)\.", r"/attention/attention/\1/"),
    (r"^head\.fc\.", "head/"),
)

_MVITV2_RULES = (
    (r"^patch_embed\.proj\.", "patch_embed/"),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.", r"stage_\1_block_\2/"),
    (r"/attn\.(qkv|proj)\.", r"/attention/attention/\1/"),
    (r"/attn\.(pool_[qkv]|norm_[qkv]|rel_pos_[hw])", r"/attention/\1"),
    (r"^head\.fc\.", "head/"),
)

_NORM_NAME = re.compile(r"(^|/)(patch_)?norm(\d|_[qkv])?$")
_HEAD_KEYS = re.compile(r"^head(\.|/)")


def _keras_path(key, rules):
    path = key
    for pattern, replacement in rules:
        path = re.sub(pattern, replacement, path)
    parent, _, leaf = path.replace(".", "/").rpartition("/")
    is_norm = bool(_NORM_NAME.search(parent))
    if leaf == "weight":
        leaf = "gamma" if is_norm else "kernel"
    elif leaf == "bias":
        leaf = "beta" if is_norm else "bias"
    return f"{parent}/{leaf}" if parent else leaf


def _to_keras(array, target_shape):
    array = np.asarray(array)
    if array.ndim == 2:  # Linear (out, in) → Dense (in, out).
        return array.T
    if array.ndim == 4:
        if target_shape[-1] == 1 and array.shape[1] == 1 and target_shape[2] == array.shape[0]:
            return array.transpose(2, 3, 0, 1)  # Depthwise (C, 1, kh, kw) → (kh, kw, C, 1).
        return array.transpose(2, 3, 1, 0)  # Conv (out, in, kh, kw) → (kh, kw, in, out).
    return array


def _assign(state_dict, model, rules, family):
    weights = {w.path: w for w in model.weights}
    values = {}
    unused = []
    for key, value in state_dict.items():
        path = _keras_path(key, rules)
        if path not in weights:
            if _HEAD_KEYS.match(key):
                continue  # A checkpoint head on a model built without one.
            unused.append(f"{key} (→ {path})")
            continue
        values[path] = (key, value)
    missing = [p for p in weights if p not in values]
    if unused or missing:
        raise ValueError(
            f"The {family} state dict does not match the model {model.name!r}. "
            f"Unused checkpoint tensors: {unused or 'none'}. Model weights without a value: {missing or 'none'}."
        )
    for path, (key, value) in values.items():
        variable = weights[path]
        is_table = "relative_position_bias_table" in path or "rel_pos_" in path
        array = np.asarray(value) if is_table else _to_keras(value, tuple(variable.shape))
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(
                f"Shape mismatch for {key} → {path}: checkpoint {tuple(np.shape(value))} gives "
                f"{tuple(array.shape)}, model has {tuple(variable.shape)}."
            )
        variable.assign(array.astype(variable.dtype))
    return model


def convert_timm_swin(state_dict, model):
    """Loads a timm `SwinTransformer` state dict into a keras_vit Swin model.

    Args:
        state_dict: mapping of timm parameter names (`layers.0.blocks.1.attn.qkv.weight`, ...)
            to arrays. Non-persistent buffers (`relative_position_index`,
            `attn_mask`) are recomputed by the layers and may be absent or present.
        model: a model from `keras_vit.applications.SwinTransformer` of the same size.

    Returns:
        The model, with its weights set.
    """
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith(("relative_position_index", "attn_mask"))}
    return _assign(state_dict, model, _SWIN_RULES, "Swin")


def convert_timm_mvitv2(state_dict, model):
    """Loads a timm `MultiScaleVit` (MViTv2) state dict into a keras_vit MViTv2 model.

    Args:
        state_dict: mapping of timm parameter names (`stages.1.blocks.0.attn.pool_q.weight`, ...)
            to arrays.
        model: a model from `keras_vit.applications.MViTv2` of the same size.

    Returns:
        The model, with its weights set.
    """
    return _assign(dict(state_dict), model, _MVITV2_RULES, "MViTv2")
