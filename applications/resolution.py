"""A built or loaded model at another input resolution: `set_image_size`.

ViT fine-tuning at a higher resolution than pre-training keeps the patch
size, so the sequence grows, and "2D interpolation of the pre-trained
position embeddings" fills the new grid (Dosovitskiy et al. 2020, Sec. 3.2;
Touvron et al. 2021, DeiT Sec. 6 "Fine-tuning at different resolution").
`set_image_size` does that on a model that already exists (a factory's, a
converted checkpoint's, or a `.keras` file's): it rebuilds the same
architecture for the new input and carries every weight over, resampling
the ones whose shape depends on the input size:

- `PatchEncoder` E_pos: resized as an image with timm's
  `resample_abs_pos_embed` arithmetic (`keras_vit.convert.resample_abs_pos_embed`),
  the class/distillation rows kept apart; with `patch_size=` the patch
  projection too, by FlexiViT's pseudo-inverse resize (Beyer et al. 2023, Eq. 5).
- Swin's relative position bias tables B̂ (Liu et al. 2021, Sec. 3.2), when a
  window changes (`window_size=`, or a stage whose map becomes smaller than
  its window): resized bicubically as a `(2M-1) × (2M-1)` image per head.
- MViTv2's decomposed relative position tables (Li et al. 2022, Eq. 2):
  linearly interpolated to the new length, as the reference implementation
  does when its input size changes.

The rebuilt model is uncompiled and has the layer names of the original.
"""

import copy

import keras
import numpy as np

from keras_vit.interpolation import interpolation_matrix


def _size_pair(value, arg):
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in pair)
    ):
        raise ValueError(f"`{arg}` must be a positive integer or a pair of them. Received: {arg}={value!r}")
    return (int(pair[0]), int(pair[1]))


def _layer_configs(config):
    """Every layer entry of a functional config, nested models included."""
    for entry in config.get("layers", ()):
        yield entry
        inner = entry.get("config", {})
        if isinstance(inner, dict) and "layers" in inner:
            yield from _layer_configs(inner)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _owners(model):
    """`variable.path -> the outermost non-model layer that holds it`."""
    owners = {}
    for layer in _all_layers(model):
        if isinstance(layer, keras.Model):
            continue
        for variable in layer.weights:
            owners.setdefault(variable.path, layer)
    return owners


def _rewrite_config(config, old_size, new_size, patch_size, window_size):
    """The functional `config` of the model rebuilt at `new_size` (a modified deep copy)."""
    config = copy.deepcopy(config)
    entries = list(_layer_configs(config))
    for entry in entries:
        # Each layer is built again by the functional graph, on the new shapes, not on the recorded ones.
        entry.pop("build_config", None)
    patch = None
    for entry in entries:
        if entry["class_name"] == "PatchEncoder":
            if patch_size is not None:
                entry["config"]["patch_size"] = list(patch_size)
            entry["config"]["image_size"] = None
            patch = entry["config"]["patch_size"]
    if patch_size is not None and patch is None:
        raise ValueError(f"`patch_size` applies to models with a `PatchEncoder`. Received: patch_size={patch_size!r}")
    for entry in entries:
        kind, layer_config, name = entry["class_name"], entry["config"], entry["config"].get("name")
        if kind == "InputLayer":
            shape = layer_config.get("batch_shape") or layer_config.get("batch_input_shape")
            if shape is not None and len(shape) == 4 and tuple(shape[1:3]) == tuple(old_size):
                layer_config["batch_shape"] = [shape[0], new_size[0], new_size[1], shape[3]]
                layer_config.pop("batch_input_shape", None)
        elif kind == "Reshape" and name == "patch_grid" and patch is not None:
            # Swin's token sequence → (H/P, W/P, C) map.
            p_h, p_w = (patch, patch) if isinstance(patch, int) else tuple(patch)
            for axis, extent, p in zip(("height", "width"), new_size, (p_h, p_w)):
                if extent % p:
                    raise ValueError(
                        f"The patch size must divide the image {axis}. Received: image_size={tuple(new_size)}, "
                        f"patch_size={(p_h, p_w)}"
                    )
            layer_config["target_shape"] = [new_size[0] // p_h, new_size[1] // p_w, layer_config["target_shape"][-1]]
        elif kind in ("Reshape", "PositionalEncoding", "SoftSplit"):
            raise ValueError(
                f"set_image_size cannot resize this model: its layer {name!r} ({kind}) fixes the input size in its "
                "configuration (T2T-ViT, DeepViT). Build it again at the new size instead, e.g. "
                "`get_model(name, input_shape=(H, W, 3), weights=checkpoint)`, which resamples the position "
                f"embeddings on load. Received: image_size={tuple(new_size)}"
            )
        elif kind == "SwinTransformerBlock" and window_size is not None:
            shifted = layer_config["shift_size"] not in (0, [0, 0], (0, 0))
            layer_config["window_size"] = list(window_size)
            layer_config["shift_size"] = [w // 2 for w in window_size] if shifted else 0
    if window_size is not None and not any(e["class_name"] == "SwinTransformerBlock" for e in entries):
        raise ValueError(f"`window_size` applies to Swin models. Received: window_size={window_size!r}")
    return config


def _resize_grid(array, new_hw, interpolation, antialias):
    mh = interpolation_matrix(array.shape[0], new_hw[0], interpolation, antialias)
    mw = interpolation_matrix(array.shape[1], new_hw[1], interpolation, antialias)
    return np.einsum("ih,jw,hw...->ij...", mh, mw, array.astype(np.float64))


def _resample(value, old_layer, new_layer, new_shape, path):
    """`value` (of `old_layer`) resampled to `new_shape` (of `new_layer`), or a ValueError naming it."""
    from keras_vit.convert.resample import resample_abs_pos_embed, resample_patch_embed
    from keras_vit.layers import PatchEncoder

    leaf = path.rsplit("/", 1)[-1]
    kind = type(old_layer).__name__
    if isinstance(old_layer, PatchEncoder) and leaf == "position_embedding":
        return resample_abs_pos_embed(
            value,
            new_layer.grid_size,
            old_layer.grid_size,
            num_prefix_tokens=old_layer.num_embedded_prefix_tokens,
            interpolation=old_layer.interpolation,
        )
    if isinstance(old_layer, PatchEncoder) and leaf == "kernel" and value.ndim == 4:
        return resample_patch_embed(value, new_shape[:2])
    if kind == "SwinTransformerBlock" and leaf == "relative_position_bias_table":
        (old_h, old_w), (new_h, new_w) = old_layer.resolved_window, new_layer.resolved_window
        table = value.reshape(2 * old_h - 1, 2 * old_w - 1, -1)
        table = _resize_grid(table, (2 * new_h - 1, 2 * new_w - 1), "bicubic", False)
        return table.reshape(new_shape).astype(value.dtype)
    if kind == "MultiScaleBlock" and leaf in ("rel_pos_h", "rel_pos_w"):
        matrix = interpolation_matrix(value.shape[0], new_shape[0], "bilinear", antialias=False)
        return (matrix @ value.astype(np.float64)).astype(value.dtype)
    raise ValueError(
        f"set_image_size has no rule to resample the weight {path!r} of layer {old_layer.name!r} ({kind}) "
        f"from shape {tuple(value.shape)} to {tuple(new_shape)}"
    )


def set_image_size(model, image_size, *, patch_size=None, window_size=None):
    """The same model for another input size, its size-dependent weights resampled.

    Fine-tune the result at the new size (`model.fit` after `compile`), or
    use it directly: a ViT whose E_pos was resampled already classifies at
    the new size nearly as at the old one. `keras-vit train --model-file
    m.keras --image-size S` calls this.

    Args:
        model: a functional `keras.Model` of a factory of this package (ViT,
            DeiT, the hybrids, Swin, MViTv2), built or loaded from `.keras`.
        image_size: int or `(H, W)`, the new input height and width. Swin
            needs sides divisible by its patch size times 2 per later stage,
            MViTv2 square sides divisible by its total stride.
        patch_size: optional int or pair, a new patch size for a model with a
            `PatchEncoder` (FlexiViT resize of the projection E).
        window_size: optional int or pair, a new Swin window (as Swin's 384 px
            models use 12 instead of 7); the shifted blocks shift by half.

    Returns:
        A new uncompiled `keras.Model`, or `model` itself when nothing changes.

    Raises:
        ValueError: a bad `image_size`, `patch_size` or `window_size`; an
            architecture that fixes its size in a layer's configuration
            (T2T-ViT, DeepViT); a size the architecture cannot take.

    Example:
        >>> model = keras_vit.applications.get_model("vit_tiny_patch16_224", weights="vit.safetensors")
        >>> model_384 = keras_vit.applications.set_image_size(model, 384)
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "get_config") or len(model.inputs or ()) != 1:
        raise ValueError(f"`model` must be a functional keras.Model with one image input. Received: model={model!r}")
    old_shape = tuple(model.input_shape)
    if len(old_shape) != 4 or None in old_shape[1:3]:
        raise ValueError(
            f"`model` must take images (batch, height, width, channels) of a known size. "
            f"Received: input_shape={old_shape}"
        )
    new_size = _size_pair(image_size, "image_size")
    patch_size = None if patch_size is None else _size_pair(patch_size, "patch_size")
    window_size = None if window_size is None else _size_pair(window_size, "window_size")
    old_size = tuple(old_shape[1:3])
    if new_size == old_size and patch_size is None and window_size is None:
        return model
    config = _rewrite_config(model.get_config(), old_size, new_size, patch_size, window_size)
    try:
        rebuilt = model.__class__.from_config(config)
    except ValueError as error:
        raise ValueError(
            f"{model.name!r} cannot be built at image_size={new_size}"
            + ("" if patch_size is None else f", patch_size={patch_size}")
            + ("" if window_size is None else f", window_size={window_size}")
            + f": {error}"
        ) from error
    old_owners, new_owners = _owners(model), _owners(rebuilt)
    old_vars = {v.path: v for v in model.weights}
    new_vars = {v.path: v for v in rebuilt.weights}
    if set(old_vars) != set(new_vars):
        missing = sorted(set(old_vars) ^ set(new_vars))[:5]
        raise ValueError(f"The rebuilt {model.name!r} does not hold the same weights (e.g. {missing})")
    for path, old in old_vars.items():
        new = new_vars[path]
        value = keras.ops.convert_to_numpy(old.value)
        if tuple(value.shape) != tuple(new.shape):
            value = _resample(value, old_owners[path], new_owners[path], tuple(new.shape), path)
        new.assign(value.astype(new.dtype) if hasattr(value, "astype") else value)
    return rebuilt
