"""Resampling position tables and patch projections to another grid or patch size, in NumPy.

The arithmetic of PyTorch's `F.interpolate` (`align_corners=False`, with or
without antialiasing), so that a checkpoint resampled here equals one
resampled by timm's `resample_abs_pos_embed` / `resample_patch_embed`.
"""

import numpy as np

from keras_vit.convert.engine import CheckpointError
from keras_vit.interpolation import interpolation_matrix


def resize_2d(array, new_size, interpolation="bicubic", antialias=True):
    """Resizes axes 0 and 1 of `array` `(H, W, ...)` to `new_size`, as `F.interpolate` does."""
    mh = interpolation_matrix(array.shape[0], new_size[0], interpolation, antialias)
    mw = interpolation_matrix(array.shape[1], new_size[1], interpolation, antialias)
    return np.einsum("ih,jw,hw...->ij...", mh, mw, array.astype(np.float64))


def resample_abs_pos_embed(
    posemb, new_size, old_size=None, num_prefix_tokens=1, interpolation="bicubic", antialias=True
):
    """Resamples a `(1, P + H*W, D)` position table to a new grid, in NumPy.

    The P prefix rows (class, distillation) are kept apart and unchanged; the
    grid rows are resized as an image with `F.interpolate`'s arithmetic
    (`align_corners=False`, antialiased), matching timm's
    `resample_abs_pos_embed`. Returns the input unchanged if the grids match.

    Args:
        posemb: array `(1, P + H*W, D)`.
        new_size: `(new_H, new_W)`.
        old_size: `(H, W)`; inferred as square when None.
        num_prefix_tokens: int P.
        interpolation: "bicubic" or "bilinear".
        antialias: bool.

    Returns:
        array `(1, P + new_H*new_W, D)` of the input's dtype.
    """
    posemb = np.asarray(posemb)
    n = posemb.shape[1] - num_prefix_tokens
    if old_size is None:
        side = int(round(np.sqrt(n)))
        if side * side != n:
            raise CheckpointError(
                f"Cannot infer a square grid from {n} position rows (table shape {posemb.shape}, "
                f"{num_prefix_tokens} prefix tokens)"
            )
        old_size = (side, side)
    old_size, new_size = tuple(int(s) for s in old_size), tuple(int(s) for s in new_size)
    if old_size == new_size:
        return posemb
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[0, num_prefix_tokens:]
    grid = grid.reshape(old_size[0], old_size[1], -1)
    grid = resize_2d(grid, new_size, interpolation, antialias).reshape(1, -1, posemb.shape[-1])
    return np.concatenate([prefix, grid.astype(posemb.dtype)], axis=1)


def resample_patch_embed(kernel, new_size, interpolation="bicubic", antialias=True):
    """Resamples a Keras patch-projection kernel `(P, P, C, D)` to another patch size.

    FlexiViT's pseudo-inverse resize (Beyer et al. 2023, Eq. 5), as timm's
    `resample_patch_embed`: with B the matrix that resizes a patch, the new
    kernel is pinv(B)ᵀ applied to the old one, so that ⟨x, w⟩ = ⟨Bx, ŵ⟩.

    Args:
        kernel: array `(P_h, P_w, C, D)`.
        new_size: `(new_P_h, new_P_w)`.

    Returns:
        array `(new_P_h, new_P_w, C, D)`.
    """
    kernel = np.asarray(kernel)
    old_size = kernel.shape[:2]
    if tuple(old_size) == tuple(new_size):
        return kernel
    mh = interpolation_matrix(old_size[0], new_size[0], interpolation, antialias)
    mw = interpolation_matrix(old_size[1], new_size[1], interpolation, antialias)
    resize = np.kron(mh, mw)  # (new_h*new_w, old_h*old_w) on row-major flattened patches.
    pinv = np.linalg.pinv(resize)  # (old, new)
    flat = kernel.reshape(old_size[0] * old_size[1], -1).astype(np.float64)
    out = pinv.T @ flat
    return out.reshape(new_size[0], new_size[1], *kernel.shape[2:]).astype(kernel.dtype)
