"""Resampling position tables and patch projections to another grid or patch size, in NumPy.

The arithmetic of PyTorch's `F.interpolate` (`align_corners=False`, with or
without antialiasing), so that a checkpoint resampled here equals one
resampled by timm's `resample_abs_pos_embed` / `resample_patch_embed`.
"""

import numpy as np

from keras_vit.convert.engine import CheckpointError


def _cubic(x, a):
    x = np.abs(x)
    return np.where(
        x < 1.0,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0),
    )


def _triangle(x):
    return np.maximum(0.0, 1.0 - np.abs(x))


def interpolation_matrix(in_size, out_size, interpolation="bicubic", antialias=True):
    """`(out_size, in_size)` matrix of a 1-D resize, as PyTorch's `F.interpolate` computes it.

    `align_corners=False`. With `antialias=True` it is PyTorch's (and PIL's)
    separable filter whose support widens by the scale factor when
    downsampling, with the cubic kernel's a = -0.5 and the weights of each
    output normalised to sum to one. With `antialias=False` it is the plain
    kernel: a = -0.75 for bicubic, indices clamped at the borders.

    Args:
        in_size: int, input length.
        out_size: int, output length.
        interpolation: "bicubic" or "bilinear".
        antialias: bool.

    Returns:
        float64 array `(out_size, in_size)`; `resized = M @ x`.
    """
    if interpolation not in ("bicubic", "bilinear"):
        raise ValueError(f"`interpolation` must be 'bicubic' or 'bilinear'. Received: interpolation={interpolation!r}")
    scale = in_size / out_size
    mat = np.zeros((out_size, in_size))
    if antialias:
        interp_size = 4 if interpolation == "bicubic" else 2
        support = interp_size * 0.5 * scale if scale >= 1.0 else interp_size * 0.5
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(out_size):
            center = scale * (i + 0.5)
            xmin = max(int(center - support + 0.5), 0)
            xmax = min(int(center + support + 0.5), in_size)
            j = np.arange(xmin, xmax)
            arg = (j - center + 0.5) * invscale
            w = _cubic(arg, -0.5) if interpolation == "bicubic" else _triangle(arg)
            total = w.sum()
            mat[i, xmin:xmax] = w / total if total != 0 else w
        return mat
    for i in range(out_size):
        src = scale * (i + 0.5) - 0.5
        if interpolation == "bilinear":
            src = max(src, 0.0)
            x0 = int(np.floor(src))
            lam = src - x0
            mat[i, min(x0, in_size - 1)] += 1.0 - lam
            mat[i, min(x0 + 1, in_size - 1)] += lam
        else:
            x0 = int(np.floor(src))
            t = src - x0
            for k, dist in zip(range(-1, 3), (1.0 + t, t, 1.0 - t, 2.0 - t)):
                mat[i, min(max(x0 + k, 0), in_size - 1)] += _cubic(dist, -0.75)
    return mat


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
