"""1-D resize matrices in NumPy, with the arithmetic of PyTorch's `F.interpolate`.

One definition of image resizing for the whole package: the converters
resample checkpoints' position tables and patch projections with it (so they
equal timm's `resample_abs_pos_embed` / `resample_patch_embed`), and
`PatchEncoder` resamples its position table on the fly with it (so the same
model gives the same tokens on every backend, as timm's dynamic image size
does). A 2-D resize is separable: `resized = M_h @ grid @ M_wᵀ`.
"""

import numpy as np

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


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
        interpolation: "bicubic", "bilinear" or "nearest".
        antialias: bool.

    Returns:
        float64 array `(out_size, in_size)`; `resized = M @ x`.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"`interpolation` must be one of {INTERPOLATIONS}. Received: interpolation={interpolation!r}")
    scale = in_size / out_size
    mat = np.zeros((out_size, in_size))
    if interpolation == "nearest":  # PyTorch's "nearest": source index floor(i · scale)
        mat[np.arange(out_size), np.minimum(np.floor(np.arange(out_size) * scale).astype(int), in_size - 1)] = 1.0
        return mat
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
