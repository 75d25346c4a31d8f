"""Argument and call-time checks of `PatchEncoder` (its maths is tested in test_layers.py)."""

import re

import numpy as np
import pytest

from keras_vit.layers import PatchEncoder


@pytest.mark.parametrize("patch_size", [0, -4, 8.0, "8", True, (4, 0), (4, 4, 4), None])
def test_bad_patch_size(patch_size):
    with pytest.raises(
        ValueError, match=r"`patch_size` must be a positive int .*Received: patch_size=" + re.escape(repr(patch_size))
    ):
        PatchEncoder(patch_size, 8)


def test_numpy_and_pair_patch_sizes():
    tokens = PatchEncoder(np.int64(2), 8, class_token=False)(np.zeros((1, 4, 6, 3), "float32"))
    assert tuple(tokens.shape) == (1, 2 * 3, 8)
    tokens = PatchEncoder([2, 3], 8, class_token=False)(np.zeros((1, 4, 6, 3), "float32"))
    assert tuple(tokens.shape) == (1, 2 * 2, 8)


def test_a_size_the_patch_does_not_divide_is_refused_at_call_time():
    # Built for 8×8 images, the encoder serves other sizes by interpolating E_pos (12×12: a
    # 3×3 grid), but a 10×10 image would lose its last 2 rows and columns to the strided
    # projection; timm's PatchEmbed raises for it as well.
    layer = PatchEncoder(4, 8, image_size=(8, 8))
    assert tuple(layer(np.zeros((1, 12, 12, 3), "float32")).shape) == (1, 1 + 9, 8)
    with pytest.raises(ValueError, match=r"must divide the image height. Received: patch_size=4 .*\(1, 10, 12, 3\)"):
        layer(np.zeros((1, 10, 12, 3), "float32"))
    with pytest.raises(ValueError, match=r"must divide the image width. Received: patch_size=4 .*\(1, 12, 10, 3\)"):
        layer(np.zeros((1, 12, 10, 3), "float32"))
