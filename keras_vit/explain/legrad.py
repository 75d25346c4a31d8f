"""LeGrad (Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via
Feature Formation Sensitivity", 2024): gradients of the class logit with respect to the attention maps."""

import keras
import numpy as np
from keras import ops

from keras_vit.explain.graph import (
    AttentionHooks,
    Structure,
    check_images,
    explained_model,
    model_name,
    patch_grid,
    positive,
    upsample_maps,
)

LEGRAD_LAST_BLOCKS = 2


def attention_gradients(model, batch, structure, one_hot, positions):
    """∂(Σ_b s_b · one_hot_b)/∂A_l for each block position l, as NumPy `(B, h, T, T)` arrays.

    A zero tensor is added to each chosen block's map through the layer's
    `attention_probs_hook` (A' = A + 0) and the gradient is taken with
    respect to it, on every backend and for every attention layer
    (re-attention included: the hook sees the maps that weight V).

    Args:
        model: the model to differentiate, usually `explained_model(...,
            logits=True)`.
        batch: `(B, H, W, C)` images.
        structure: the model's `Structure`.
        one_hot: `(B, classes)` weights of the logits (one-hot targets).
        positions: block positions.
    """
    backend = keras.backend.backend()
    positions = list(positions)
    shapes = {
        p: (len(batch), structure.calls[p][0].attention.num_heads, structure.num_tokens, structure.num_tokens)
        for p in positions
    }
    target = ops.convert_to_tensor(one_hot)

    def value(deltas):
        with AttentionHooks(structure, positions, deltas=deltas):
            logits = model(batch, training=False)
        return ops.sum(ops.cast(logits, "float32") * target)

    if backend == "tensorflow":
        import tensorflow as tf

        deltas = {p: tf.zeros(shapes[p]) for p in positions}
        with tf.GradientTape() as tape:
            for d in deltas.values():
                tape.watch(d)
            total = value(deltas)
        grads = tape.gradient(total, [deltas[p] for p in positions], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        deltas = {p: ops.zeros(shapes[p]).requires_grad_(True) for p in positions}
        grads = torch.autograd.grad(value(deltas), [deltas[p] for p in positions], allow_unused=True)
        return [
            np.zeros(shapes[p], "float32") if g is None else g.detach().cpu().numpy() for p, g in zip(positions, grads)
        ]
    if backend == "jax":
        import jax

        grads = jax.grad(value)({p: jax.numpy.zeros(shapes[p]) for p in positions})
        return [np.asarray(grads[p]) for p in positions]
    raise ValueError(
        f"`legrad` needs gradients, available on the tensorflow, jax and torch backends. Received: backend={backend!r}"
    )


def _last_layer(model):
    while isinstance(model, keras.Model) and model.layers:
        model = model.layers[-1]
    return model


def _class_count(model):
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    head = isinstance(_last_layer(model), (keras.layers.Dense, keras.layers.Activation, keras.layers.Average))
    if not head or shape is None or len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            "`legrad` needs a classifier whose output is (batch, classes) (build it with "
            f"include_top=True). Received: model={model_name(model)!r} with output shape {shape}"
        )
    return int(shape[-1])


def _class_indices(class_index, classes, count):
    if class_index is None:
        return None
    index = np.atleast_1d(np.asarray(class_index))
    if index.dtype.kind not in "iu" or index.ndim != 1 or len(index) not in (1, count):
        raise ValueError(
            f"`class_index` must be None, an int or one int per image. Received: class_index={class_index!r}"
        )
    if index.min() < 0 or index.max() >= classes:
        raise ValueError(
            f"`class_index` must be in [0, {classes}) for this model. Received: class_index={class_index!r}"
        )
    return np.broadcast_to(index, (count,))


def legrad(model, images, class_index=None, layers=None, layer_logits=False, upsample=True, batch_size=16):
    """LeGrad heatmaps (Bousselham et al. 2024) of a classifier.

    For each global-attention block l with map A_l `(B, h, T, T)`:

        E_l = mean over heads and query tokens of ReLU(∂s_c / ∂A_l)

    where s_c is the logit of class c (the input of the final softmax). The
    map is Σ_l E_l over the patch tokens of the chosen blocks, min-max scaled
    to [0, 1] per image and upsampled to the image.

    By default the sum runs over the last `LEGRAD_LAST_BLOCKS` (2) blocks, as
    in the authors' reference code (`layer_index=-2`). The first blocks'
    gradients are far larger and, measured on MNIST with [0, 1] pixels, point
    at the blank background: summed over all blocks the map ranks patches
    whose removal hurts the prediction less than random ones (README,
    "Faithfulness").

    Args:
        model: a ViT-family classifier (`include_top=True`).
        images: `(B, H, W, C)` or `(H, W, C)`.
        class_index: None (each image's predicted class), an int, or a
            sequence of B ints.
        layers: blocks summed over: None (the last two), "all", an index
            (negative counts from the end), a name, or a list of them.
        layer_logits: bool. False: s_c is the model's logit and every E_l
            comes from one backward pass. True: as in the paper, s_c^l is
            the logit the model's head gives for block l's output (the
            later blocks skipped), and E_l = ReLU(∂s_c^l/∂A_l); one pass per
            block.
        upsample: bool, return the map at image size (bilinear) instead of
            on the patch grid.
        batch_size: images per forward/backward pass.

    Returns:
        float32 `(B, H, W)` (or `(B, gh, gw)` with `upsample=False`) in [0, 1].
    """
    images = check_images(model, images)
    structure = Structure(model, images, "legrad")
    indices = structure.resolve_layers(layers)
    if layers is None:
        indices = indices[-LEGRAD_LAST_BLOCKS:]
    chosen = [structure.positions[i] for i in indices]
    classes = _class_count(model)
    class_index = _class_indices(class_index, classes, len(images))
    batch_size = positive(batch_size)
    logits_model = explained_model(model, structure, logits=True)
    if layer_logits:
        per_block = {p: explained_model(model, structure, logits=True, stop_after=p) for p in chosen}
    maps = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        if class_index is None:
            targets = np.argmax(ops.convert_to_numpy(logits_model(batch, training=False)), axis=-1)
        else:
            targets = class_index[start : start + batch_size]
        one_hot = np.eye(classes, dtype="float32")[targets]
        if layer_logits:
            grads = [attention_gradients(per_block[p], batch, structure, one_hot, [p])[0] for p in chosen]
        else:
            grads = attention_gradients(logits_model, batch, structure, one_hot, chosen)
        total = np.zeros((len(batch), structure.num_tokens), "float64")
        for grad in grads:
            total += np.maximum(grad, 0.0).mean(axis=(1, 2))  # ReLU, heads, query tokens.
        grid = patch_grid(structure, total)
        flat = grid.reshape(len(grid), -1)
        low, high = flat.min(axis=1)[:, None, None], flat.max(axis=1)[:, None, None]
        maps.append((grid - low) / np.maximum(high - low, 1e-12))
    grid = np.concatenate(maps, axis=0).astype("float32")
    return upsample_maps(grid, structure.image_size) if upsample else grid
