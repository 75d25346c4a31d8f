"""Attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in Transformers", 2020)."""

import numpy as np

from keras_vit.explain.graph import (
    Structure,
    check_images,
    maps_by_block,
    patch_grid,
    scale_to_max,
    token_row,
    upsample_maps,
)

HEAD_FUSIONS = ("mean", "max", "min")


def _fuse_heads(scores, head_fusion):
    if head_fusion == "mean":
        return scores.mean(axis=1)
    if head_fusion == "max":
        return scores.max(axis=1)
    if head_fusion == "min":
        return scores.min(axis=1)
    raise ValueError(f"`head_fusion` must be one of {HEAD_FUSIONS}. Received: head_fusion={head_fusion!r}")


def _check_rollout_args(head_fusion, discard_ratio):
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"`head_fusion` must be one of {HEAD_FUSIONS}. Received: head_fusion={head_fusion!r}")
    if not isinstance(discard_ratio, (int, float, np.floating)) or not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"`discard_ratio` must be in [0, 1). Received: discard_ratio={discard_ratio!r}")


def _rollout_step(result, scores, head_fusion, discard_ratio):
    fused = _fuse_heads(np.asarray(scores, dtype="float64"), head_fusion)  # (B, T, T)
    batch, tokens = fused.shape[0], fused.shape[-1]
    if discard_ratio > 0:
        flat = fused.reshape(batch, -1).copy()
        count = int(flat.shape[1] * discard_ratio)
        if count:
            lowest = np.argsort(flat, axis=1)[:, :count]
            for b in range(batch):
                drop = lowest[b][lowest[b] != 0]  # Keep the class token's self-attention.
                flat[b, drop] = 0.0
        fused = flat.reshape(fused.shape)
    a = 0.5 * (fused + np.eye(tokens)[None])  # The residual connection.
    a = a / a.sum(axis=-1, keepdims=True)
    return a if result is None else a @ result


def rollout(maps, head_fusion="mean", discard_ratio=0.0):
    """Attention rollout (Abnar & Zuidema 2020, Eq. 1) of a list of attention maps.

    Ã_l = norm(½(fuse_h(A_l) + I)) for each layer, with the heads fused by
    their mean, max or min and, optionally, the lowest `discard_ratio` of each
    fused map's entries set to 0; the rollout is Ã_L · … · Ã_1.

    Args:
        maps: sequence of arrays `(B, h, T, T)`, first layer first (or the
            dict returned by `attention_maps`).
        head_fusion: "mean", "max" or "min".
        discard_ratio: float in [0, 1).

    Returns:
        float array `(B, T, T)`; row t is how much each input token flows
        into token t at the output. Rows sum to 1.
    """
    _check_rollout_args(head_fusion, discard_ratio)
    if isinstance(maps, dict):
        maps = [maps[k] for k in sorted(maps)]
    if not len(maps):
        raise ValueError("`maps` must hold at least one attention map. Received: maps=[]")
    result = None
    for scores in maps:
        scores = np.asarray(scores)
        if scores.ndim != 4 or scores.shape[-1] != scores.shape[-2]:
            raise ValueError(f"Each attention map must be (B, h, T, T). Received a map of shape {scores.shape}")
        result = _rollout_step(result, scores, head_fusion, discard_ratio)
    return result


def attention_rollout(
    model, images, head_fusion="mean", discard_ratio=0.0, upsample=True, return_matrix=False, batch_size=32
):
    """Attention rollout heatmap (Abnar & Zuidema 2020) of each image.

    The rollout (see `rollout`) through every global-attention block, then
    the class token's row over the patch tokens (the mean of the patch rows
    for models without a class token), scaled to a maximum of 1.

    Args:
        model: a ViT-family `keras.Model`.
        images: `(B, H, W, C)` or `(H, W, C)`.
        head_fusion: "mean", "max" or "min".
        discard_ratio: float in [0, 1), share of the weakest attention
            entries dropped in each layer.
        upsample: bool, return the map at image size (bilinear) instead of
            on the patch grid.
        return_matrix: bool, return the full rollout `(B, T, T)` instead.
        batch_size: images per forward pass.

    Returns:
        `(B, H, W)` (or `(B, gh, gw)` with `upsample=False`) in [0, 1], or
        `(B, T, T)` with `return_matrix=True`.
    """
    _check_rollout_args(head_fusion, discard_ratio)
    images = check_images(model, images)
    structure = Structure(model, images, "attention_rollout")
    chosen = structure.resolve_layers(None)
    results = []

    def on_batch(batch, found):
        result = None
        for i in chosen:
            result = _rollout_step(result, found.pop(i), head_fusion, discard_ratio)
        results.append(result)

    maps_by_block(model, images, structure, chosen, on_batch, batch_size)
    matrix = np.concatenate(results, axis=0)
    if return_matrix:
        return matrix.astype("float32")
    grid = scale_to_max(patch_grid(structure, token_row(structure, matrix)))
    return upsample_maps(grid, structure.image_size) if upsample else grid.astype("float32")
