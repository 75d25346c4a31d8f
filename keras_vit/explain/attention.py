"""Attention maps softmax(QKᵀ/√d_k) per block and head, and the class token's map per head."""

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


def attention_maps(model, images, layers=None, batch_size=32):
    """Attention maps softmax(QKᵀ/√d_k) of each global-attention block and head.

    Eq. (1) of Vaswani et al. (2017), as used by the MSA of Dosovitskiy et
    al. (2020), Eq. (2). Only the blocks in `layers` compute their scores
    (the others keep the fused kernel), so memory grows with the number of
    chosen layers: B·len(layers)·h·T² floats. For DeepViT's re-attention the
    maps are the re-mixed ones that weight V.

    Args:
        model: a ViT-family `keras.Model` from the factories (or loaded from
            `.keras`).
        images: `(B, H, W, C)` or `(H, W, C)`, as the model takes them.
        layers: None (all blocks), a block index (negative counts from the
            end), a block name, or a list of them.
        batch_size: images per forward pass.

    Returns:
        dict block index → float32 array `(B, h, T, T)`; row t holds the
        weights with which token t attends to every token (rows sum to 1).
        Tokens are ordered as the model's: prefix tokens (class,
        distillation, registers) first, then the patches row by row.
    """
    images = check_images(model, images)
    structure = Structure(model, images, "attention_maps")
    chosen = structure.resolve_layers(layers)
    collected = {i: [] for i in chosen}

    def on_batch(batch, found):
        for i in chosen:
            collected[i].append(found[i])

    maps_by_block(model, images, structure, chosen, on_batch, batch_size)
    return {i: np.concatenate(parts, axis=0) for i, parts in collected.items()}


def attention_heatmap(model, images, layer=-1, upsample=True):
    """The class token's attention at block `layer`, averaged over heads, scaled to a maximum of 1.

    Without a class token, the mean attention the patches get.

    Returns:
        float32 `(B, H, W)`, or `(B, gh, gw)` with `upsample=False`.
    """
    images = check_images(model, images)
    structure = Structure(model, images, "attention")
    (index,) = structure.resolve_layers(layer)
    scores = attention_maps(model, images, layers=[index])[index].mean(axis=1)
    grid = scale_to_max(patch_grid(structure, token_row(structure, scores)))
    return upsample_maps(grid, structure.image_size) if upsample else grid.astype("float32")


def attention_head_maps(model, image, layer=-1):
    """The class token's attention over the patches, per head, at one block.

    Without a class token, the mean attention the patches receive.

    Args:
        model: a ViT-family `keras.Model`.
        image: `(H, W, C)` or `(1, H, W, C)`.
        layer: block index or name.

    Returns:
        float32 `(h, H, W)`, each head's map upsampled to the image.
    """
    images = check_images(model, image)[:1]
    structure = Structure(model, images, "attention_head_maps")
    (index,) = structure.resolve_layers(layer)
    scores = attention_maps(model, images, layers=[index])[index][0]  # (h, T, T)
    rows = token_row(structure, scores)  # (h, T)
    return upsample_maps(patch_grid(structure, rows), structure.image_size)
