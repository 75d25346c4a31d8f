"""Faithfulness by deletion: remove the patches an explanation ranks highest and watch the prediction."""

import numpy as np
from keras import ops

from keras_vit.explain.graph import batches, check_images, explained_model


def remove_patches(images, scores, fraction=0.2, value=0.0):
    """Sets the `fraction` of patches with the highest `scores` to `value`.

    Args:
        images: `(B, H, W, C)`.
        scores: `(B, gh, gw)` patch rankings (e.g. `legrad(..., upsample=False)`);
            H and W must be multiples of gh and gw.
        fraction: float in (0, 1], share of the patches removed.
        value: the value removed pixels take.

    Returns:
        `(images with the patches removed, boolean (B, gh, gw) mask of them)`.
    """
    images, scores = np.array(images, dtype="float32"), np.asarray(scores)
    if scores.ndim != 3 or len(scores) != len(images):
        raise ValueError(f"`scores` must be (B, gh, gw) for B images. Received: scores of shape {scores.shape}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"`fraction` must be in (0, 1]. Received: fraction={fraction!r}")
    batch, gh, gw = scores.shape
    ph, pw = images.shape[1] // gh, images.shape[2] // gw
    if ph * gh != images.shape[1] or pw * gw != images.shape[2]:
        raise ValueError(
            f"The patch grid {(gh, gw)} must divide the image size {images.shape[1:3]}. "
            f"Received: scores of shape {scores.shape}"
        )
    count = max(1, int(round(fraction * gh * gw)))
    top = np.argsort(-scores.reshape(batch, -1), axis=1, kind="stable")[:, :count]
    mask = np.zeros((batch, gh * gw), bool)
    np.put_along_axis(mask, top, True, axis=1)
    mask = mask.reshape(batch, gh, gw)
    pixels = np.repeat(np.repeat(mask, ph, axis=1), pw, axis=2)
    images[pixels] = value
    return images, mask


def class_probabilities(model, images, batch_size=256):
    """softmax of the model's logits, `(B, classes)` (the final softmax is taken off and redone in float64)."""
    images = check_images(model, images)
    logits_model = explained_model(model, logits=True)
    out = []
    for batch in batches(images, batch_size):
        logits = np.asarray(ops.convert_to_numpy(logits_model(batch, training=False)), "float64")
        logits = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        out.append(e / e.sum(axis=-1, keepdims=True))
    return np.concatenate(out, axis=0)


def deletion_test(model, images, labels, scores, fraction=0.2, value=0.0):
    """Faithfulness by deletion: how much the true-class probability drops when the top patches go.

    The `fraction` of patches that `scores` ranks highest is set to `value`
    (see `remove_patches`); a faithful explanation removes the evidence and
    the probability falls further than when as many random patches go.

    Args:
        model: a classifier.
        images: `(B, H, W, C)`.
        labels: `(B,)` true classes.
        scores: `(B, gh, gw)` patch rankings.
        fraction: share of patches removed.
        value: the value of removed pixels.

    Returns:
        float64 `(B,)`: p(true class | image) − p(true class | image with the
        patches removed).
    """
    images = check_images(model, images)
    labels = np.asarray(labels).astype(int).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"`labels` must hold one class per image. Received: labels of shape {np.shape(labels)}")
    removed, _ = remove_patches(images, scores, fraction, value)
    rows = np.arange(len(images))
    return class_probabilities(model, images)[rows, labels] - class_probabilities(model, removed)[rows, labels]
