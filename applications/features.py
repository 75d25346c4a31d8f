"""Intermediate features of a model as a `keras.Model`: a backbone for dense tasks.

timm gives them with `forward_intermediates` / `features_only`; here
`feature_extractor(model, indices)` returns a model from the same input to
the outputs of chosen blocks (ViT family: ViT, DeiT, the hybrids, T2T-ViT,
DeepViT) or stages (Swin, MViTv2), sharing the original's layers and
weights (training one trains the other).

ViT-family blocks output tokens `(B, P + N, D)` (P prefix tokens: class,
distillation, registers); as maps they are the N = h·w patch tokens in
row-major order (the patch grid of Eq. 1 of Dosovitskiy et al. 2020)
reshaped to `(B, h, w, D)`, the layout dense heads (detection,
segmentation) take. Hierarchical models already output maps
`(B, H_i, W_i, C_i)`; their stage i output is that of its last block.
"""

import re

import keras
import numpy as np

OUTPUTS = ("map", "tokens")

_BLOCK = re.compile(r"^block_(\d+)$")
_STAGE_BLOCK = re.compile(r"^stage_(\d+)_block_(\d+)$")


def _stages(model):
    """`[name of the last block of stage 0, of stage 1, ...]`, or [] for a model without stages."""
    last = {}
    for layer in model.layers:
        match = _STAGE_BLOCK.match(layer.name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            last[stage] = max(last.get(stage, -1), block)
    return [f"stage_{s}_block_{last[s]}" for s in sorted(last)]


def _blocks(model):
    found = sorted((int(m.group(1)), layer.name) for layer in model.layers if (m := _BLOCK.match(layer.name)))
    return [name for _, name in found]


def _patch_layout(model, tokens):
    """`(num_prefix_tokens, (h, w))` of a ViT-family model's token sequence of length `tokens`."""
    from keras_vit.layers import PatchEncoder

    encoders = [layer for layer in model.layers if isinstance(layer, PatchEncoder)]
    if encoders:
        return encoders[0].num_prefix_tokens, tuple(encoders[0].grid_size)
    # DeepViT's own embedding: one class token, square patches on the image.
    height, width = model.input_shape[1:3]
    patches = tokens - 1
    side = (height * width / patches) ** 0.5
    grid = (int(round(height / side)), int(round(width / side)))
    if grid[0] * grid[1] != patches:
        raise ValueError(f"Cannot find the patch grid of {model.name!r}: {tokens} tokens for {(height, width)} images")
    return 1, grid


def _select(names, indices, what):
    if indices is None:
        return list(names)
    if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
        if not 1 <= indices <= len(names):
            raise ValueError(
                f"`indices` as an int takes the last n {what}s, 1 to {len(names)}. Received: indices={indices}"
            )
        return list(names[-int(indices) :])
    chosen = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(names) <= index < len(names):
            raise ValueError(
                f"`indices` must hold {what} indices in [-{len(names)}, {len(names)}). Received: indices={indices!r}"
            )
        chosen.append(names[int(index)])
    return chosen


def feature_extractor(model, indices=None, output="map", norm=False, name=None):
    """A `keras.Model` from `model`'s images to the outputs of chosen blocks or stages.

    Args:
        model: a functional model of this package's image families (a
            factory's, a converted checkpoint's, or loaded from `.keras`).
        indices: which outputs: None (every block, or every stage), an int n
            (the last n), or a sequence of indices (negative from the end),
            counted in blocks for the ViT family and in stages for Swin and
            MViTv2 (timm's `indices` of `forward_intermediates`).
        output: "map" (`(B, h, w, D)` patch-token maps; prefix tokens
            dropped) or "tokens" (`(B, P + N, D)`, all tokens, ViT family
            only).
        norm: bool, apply the model's final LayerNorm ("norm") to every
            block output (ViT family) or to the last stage's (Swin, MViTv2),
            as timm's `norm=True` does; the model must have one (ViT with
            token pooling or `pooling=None`, Swin, MViTv2).
        name: the returned model's name (default: `"<model name>_features"`).

    Returns:
        A `keras.Model` with one output per index, in the order asked (a
        list of outputs when more than one), sharing `model`'s layers.

    Example:
        >>> backbone = feature_extractor(get_model("vit_base_patch16_224"), indices=(3, 5, 7, 11))
        >>> maps = backbone(images)  # four (B, 14, 14, 768) maps
    """
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of {OUTPUTS}. Received: output={output!r}")
    if not isinstance(model, keras.Model) or len(model.inputs or ()) != 1:
        raise ValueError(f"`model` must be a functional keras.Model with one image input. Received: model={model!r}")
    norm_layer = None
    if norm:
        try:
            norm_layer = model.get_layer("norm")
        except ValueError:
            raise ValueError(
                f"`norm=True` needs a final LayerNorm named 'norm', which {model.name!r} has not "
                "(a ViT with pooling 'avg'/'max' normalises after pooling). Received: norm=True"
            ) from None
    stages = _stages(model)
    if stages:
        if output != "map":
            raise ValueError(
                f"{model.name!r} outputs maps at every stage; `output` must be 'map'. Received: output={output!r}"
            )
        layers = _select(stages, indices, "stage")
    else:
        blocks = _blocks(model)
        if not blocks:
            raise ValueError(f"{model.name!r} has neither `block_i` nor `stage_i_block_j` layers to take features from")
        layers = _select(blocks, indices, "block")
    outputs = []
    for layer_name in layers:
        x = model.get_layer(layer_name).output
        # The hierarchical models' final norm has the last stage's width: it applies there only (as in timm).
        if norm_layer is not None and (not stages or layer_name == stages[-1]):
            x = norm_layer(x)
        if not stages and output == "map":
            prefix, grid = _patch_layout(model, x.shape[1])
            if prefix:
                x = keras.layers.Cropping1D((prefix, 0), name=f"{layer_name}_patch_tokens")(x)
            x = keras.layers.Reshape((*grid, x.shape[-1]), name=f"{layer_name}_map")(x)
        outputs.append(x)
    return keras.Model(
        model.inputs, outputs[0] if len(outputs) == 1 else outputs, name=name or f"{model.name}_features"
    )
