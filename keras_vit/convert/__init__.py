"""Pretrained weights from local checkpoint files, for every family with a converter.

`load_checkpoint(model, path_or_state_dict)` reads a checkpoint (`readers`:
safetensors, PyTorch state dicts with `weights_only=True`, the original ViT
.npz; never arbitrary pickles), finds the model's family from the layer types
it contains (so it also works on a model loaded from a `.keras` file),
detects the checkpoint's layout from its key names, converts it with that
family's key rules (one module per family, one shared engine), resamples
position tables and patch projections to the model (`resample`), checks every
key and shape, and assigns the weights.

Families and layouts:

- `vit`: ViT / DeiT from timm, Hugging Face transformers, the ViT .npz.
- `hybrid`: R50+ViT from timm and the .npz.
- `swin`, `mvitv2`: timm.
- `t2t`: the official T2T-ViT code and vit-pytorch.
- `deepvit`: vit-pytorch.
"""

import os

from keras_vit.convert import deepvit, engine, hybrid, mvitv2, swin, t2t, vit
from keras_vit.convert.engine import CheckpointError, Family, Kind, Layout, Rule
from keras_vit.convert.readers import (
    CHECKPOINT_EXTENSIONS,
    is_checkpoint_path,
    read_checkpoint,
    read_npz,
    read_safetensors,
    read_torch_state_dict,
)
from keras_vit.convert.resample import interpolation_matrix, resample_abs_pos_embed, resample_patch_embed

# In the order they are tried: a family whose layer types include another's
# (T2T-ViT and the hybrid are ViTs with a stem) comes first.
FAMILIES = {f.name: f for f in (t2t.FAMILY, deepvit.FAMILY, swin.FAMILY, mvitv2.FAMILY, hybrid.FAMILY, vit.FAMILY)}


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model (the hybrid's CNN stem)
            yield from _layers(layer)


def detect_family(model):
    """The name of the converter family of `model`, from the layer types it contains.

    Raises:
        ValueError: when no family's layers are all in the model.
    """
    present = {type(layer) for layer in _layers(model)}
    for family in FAMILIES.values():
        if all(any(issubclass(t, required) for t in present) for required in family.layer_types):
            return family.name
    raise ValueError(
        f"No checkpoint converter for model {model.name!r}: it has none of the layer sets of "
        f"{', '.join(FAMILIES)}. Received: model={model.name!r}"
    )


def _family(model, family):
    name = detect_family(model) if family is None else family
    if name not in FAMILIES:
        raise ValueError(f"`family` must be None or one of {tuple(FAMILIES)}. Received: family={family!r}")
    return FAMILIES[name]


def _state_dict(path_or_state_dict):
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        return read_checkpoint(path_or_state_dict)
    if not hasattr(path_or_state_dict, "items"):
        raise ValueError(
            "`path_or_state_dict` must be a checkpoint path or a mapping of names to arrays. "
            f"Received: path_or_state_dict={type(path_or_state_dict).__name__}"
        )
    return dict(path_or_state_dict)


def checkpoint_classes(path_or_state_dict, family, layout="auto"):
    """Number of classes of a checkpoint's head for a model `family` ("vit", "swin", ...), or None."""
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {tuple(FAMILIES)}. Received: family={family!r}")
    _, converted, _ = engine.map_state_dict(FAMILIES[family], _state_dict(path_or_state_dict), layout)
    bias = converted.get("head/bias")
    return None if bias is None else int(bias[1].shape[-1])


def convert_state_dict(model, path_or_state_dict, family=None, layout="auto", skip_mismatched_head=True):
    """`{variable_path: array}` of a checkpoint, converted for and checked against `model`.

    See `load_checkpoint` for the arguments; `engine.convert_state_dict` for the checks.
    """
    return engine.convert_state_dict(
        model, _state_dict(path_or_state_dict), _family(model, family), layout, skip_mismatched_head
    )


def load_checkpoint(model, path_or_state_dict, family=None, layout="auto", skip_mismatched_head=True):
    """Loads a checkpoint into `model`, converting it for the model's family.

    Args:
        model: a model of a family with a converter (built by a factory, or
            loaded from a `.keras` file) whose architecture matches the checkpoint's.
        path_or_state_dict: a `.safetensors`, `.pth`/`.pt`/`.bin` (PyTorch
            state dict, read with `weights_only=True`) or `.npz` file, or a
            mapping of checkpoint names to arrays.
        family: None (from the model's layer types) or one of `FAMILIES`.
        layout: "auto" (from the key names) or the name of one of the
            family's layouts ("timm", "hf", "npz", "official", "vit_pytorch").
        skip_mismatched_head: keep a freshly initialised head when the
            checkpoint's head has another number of classes (fine-tuning).

    Returns:
        `model`, with its weights set.

    Raises:
        CheckpointError: the checkpoint cannot be read or does not fit; the
            message names the first missing, unexpected and mis-shaped keys.
    """
    return engine.assign(model, convert_state_dict(model, path_or_state_dict, family, layout, skip_mismatched_head))


__all__ = [
    "CHECKPOINT_EXTENSIONS",
    "FAMILIES",
    "CheckpointError",
    "Family",
    "Kind",
    "Layout",
    "Rule",
    "checkpoint_classes",
    "convert_state_dict",
    "detect_family",
    "interpolation_matrix",
    "is_checkpoint_path",
    "load_checkpoint",
    "read_checkpoint",
    "read_npz",
    "read_safetensors",
    "read_torch_state_dict",
    "resample_abs_pos_embed",
    "resample_patch_embed",
]
