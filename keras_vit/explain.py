"""Looking inside Vision Transformers: attention maps, rollout, LeGrad and Figure 7 of the ViT paper.

Every function takes a model built by the `keras_vit.applications` factories
(or loaded back from a `.keras` file) and returns NumPy arrays; the `plot_*`
functions turn them into matplotlib figures.

- `attention_maps`: softmax(QKᵀ/√d_k) of each encoder block and head.
- `attention_rollout` / `rollout`: Abnar & Zuidema, "Quantifying Attention
  Flow in Transformers" (2020): the product over layers of
  ½(A_l + I), row-normalised, with heads fused by mean, max or min.
- `legrad`: Bousselham et al., "LeGrad: An Explainability Method for Vision
  Transformers via Feature Formation Sensitivity" (2024): the gradient of the
  class logit with respect to each layer's attention map, ReLU, averaged over
  heads and query tokens, summed over layers, upsampled to the image.
- `mean_attention_distance`: the ViT paper's Figure 7 (right).
- `patch_embedding_filters`: principal components of the embedding filters
  E (Figure 7, left).
- `position_embedding_similarity`: cosine similarity of E_pos (Figure 7,
  centre).

The model's own forward pass is left untouched (the fused attention kernel
stays the default): these functions re-run the model's layers in an
explain-time forward pass that asks each global-attention block for its
scores, and only the blocks that are explained pay for them.
"""

import inspect
import math

import keras
import numpy as np
from keras import ops

from keras_vit.layers.patch_encoder import PatchEncoder
from keras_vit.layers.transformer_block import TransformerBlock

METHODS = ("legrad", "rollout", "attention")
HEAD_FUSIONS = ("mean", "max", "min")
# Class-name fragments of layers that attend in some other way (windows,
# pooled keys, re-attention) and whose maps are not token-to-token over the
# whole image.
_ATTENTION_LIKE = ("attention", "attn", "window", "swin", "mvit", "multiscale")


# --------------------------------------------------------------------------
# Explain-time forward pass.
# --------------------------------------------------------------------------


class _Trace:
    """State of one explain-time forward pass.

    Args:
        select: None (record nothing), "all", or a set of block positions.
        on_scores: callable `(position, scores)` for each selected block.
        deltas: dict position → zero tensor added to that block's attention
            map (LeGrad's handle for gradients w.r.t. the map).
        logits: whether to strip the final softmax/sigmoid.
        stop_after: block position after which blocks pass their input
            through unchanged (the model's head then reads that block's
            output, a "logit lens").
    """

    def __init__(self, select=None, on_scores=None, deltas=None, logits=False, stop_after=None):
        self.stop_after = stop_after
        self.select = select
        self.on_scores = on_scores
        self.deltas = deltas or {}
        self.logits = logits
        self.blocks = []  # (layer, token count, extra call kwargs) in call order.
        self.encoders = []
        self.other_attention = []
        self.final_layer = None

    def wants(self, position):
        if position in self.deltas:
            return True
        return self.select == "all" or (isinstance(self.select, (set, frozenset)) and position in self.select)


def _is_functional(layer):
    return isinstance(layer, keras.Model) and hasattr(layer, "_run_through_graph") and hasattr(
        layer, "_nodes_by_depth"
    )


def _accepts(layer, argument):
    try:
        return argument in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


def _pre_activation(layer, x):
    """The logits under a final softmax/sigmoid (an Activation or a Dense with one)."""
    if isinstance(layer, keras.layers.Activation):
        return x
    out = ops.matmul(x, layer.kernel)
    if layer.use_bias:
        out = out + layer.bias
    return out


def _strips_to_logits(layer):
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "")
    if isinstance(layer, keras.layers.Activation):
        return name in ("softmax", "sigmoid")
    return isinstance(layer, keras.layers.Dense) and name in ("softmax", "sigmoid")


def _block_forward(block, x, delta):
    """TransformerBlock.call with an additive `delta` on the attention map.

    The same computation as `TransformerBlock.call` in inference mode, written
    out so the map A can be perturbed: A' = A + delta, with delta = 0, leaves
    the output unchanged and makes ∂y/∂delta = ∂y/∂A.
    """
    attention = block.attention
    h = block.norm1(x) if block.norm_first else x
    q, k, v = attention.project_qkv(h)
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = ops.einsum("bthd,bshd->bhts", q, k) * ops.cast(scale, q.dtype)
    scores = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    scores = scores + ops.cast(delta, scores.dtype)
    out = ops.einsum("bhts,bshd->bthd", ops.cast(scores, v.dtype), v)
    shape = ops.shape(out)
    out = attention.proj(ops.reshape(out, (shape[0], shape[1], shape[2] * shape[3])))
    if block.layer_scale_init is not None:
        out = block.layer_scale1(out)
    y = x + out
    if not block.norm_first:
        y = block.norm1(y)
    mlp = block.mlp(block.norm2(y) if block.norm_first else y, training=False)
    if block.layer_scale_init is not None:
        mlp = block.layer_scale2(mlp)
    y = y + mlp
    if not block.norm_first:
        y = block.norm2(y)
    return y, ops.cast(scores, "float32")


def _call_block(block, trace, x, *args, **kwargs):
    position = len(trace.blocks)
    global_attention = not args and all(
        kwargs.get(key) is None or kwargs.get(key) is False for key in ("attention_mask", "attention_bias", "use_causal_mask")
    )
    trace.blocks.append((block, x.shape[1], global_attention))
    if trace.stop_after is not None and position > trace.stop_after:
        return x
    if not global_attention or not trace.wants(position):
        kwargs["training"] = False
        return block(x, *args, **kwargs)
    if position in trace.deltas and type(block) is TransformerBlock:
        y, scores = _block_forward(block, x, trace.deltas[position])
    else:
        y, scores = block(x, return_attention_scores=True, training=False)
    if trace.on_scores is not None:
        trace.on_scores(position, scores)
    return y


def _operation(layer, trace):
    """What to run for one node of the graph."""
    if isinstance(layer, TransformerBlock) and _accepts(layer, "return_attention_scores"):
        return lambda *args, **kwargs: _call_block(layer, trace, *args, **kwargs)
    if _is_functional(layer):
        return lambda inputs, *args, **kwargs: _run_graph(layer, inputs, trace)
    if isinstance(layer, keras.Sequential):
        return lambda inputs, *args, **kwargs: _run_sequence(layer.layers, inputs, trace)
    if isinstance(layer, PatchEncoder):
        trace.encoders.append(layer)
    elif any(key in type(layer).__name__.lower() for key in _ATTENTION_LIKE):
        trace.other_attention.append(layer)
    if trace.logits and layer is trace.final_layer:
        return lambda x, *args, **kwargs: _pre_activation(layer, x)

    def call(*args, **kwargs):
        if _accepts(layer, "training"):
            kwargs["training"] = False
        return layer(*args, **kwargs)

    return call


def _run_graph(model, inputs, trace):
    outputs = model._run_through_graph(inputs, operation_fn=lambda layer: _operation(layer, trace))
    return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs


def _run_sequence(layers, x, trace):
    for layer in layers:
        x = _operation(layer, trace)(x)
    return x


def _forward(model, images, trace):
    if trace.logits:
        last = model.layers[-1] if getattr(model, "layers", None) else None
        trace.final_layer = last if last is not None and _strips_to_logits(last) else None
    if _is_functional(model):
        return _run_graph(model, images, trace)
    if isinstance(model, keras.Sequential):
        return _run_sequence(model.layers, images, trace)
    raise ValueError(
        "`model` must be a functional or Sequential keras.Model, as the keras_vit "
        f"factories build. Received: model of type {type(model).__name__}"
    )


# --------------------------------------------------------------------------
# Inputs and model structure.
# --------------------------------------------------------------------------


def _model_name(model):
    return getattr(model, "name", type(model).__name__)


def _check_images(model, images):
    images = np.asarray(images, dtype="float32")
    expected = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if images.ndim == 3 and expected is not None and len(expected) == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(
            "`images` must be a batch (B, H, W, C) or one image (H, W, C). "
            f"Received: images of shape {images.shape}"
        )
    if expected is not None:
        for got, want in zip(images.shape[1:], expected):
            if want is not None and got != want:
                raise ValueError(
                    f"`images` must match the model's input shape {tuple(expected)}. "
                    f"Received: images of shape {images.shape}"
                )
    if not len(images):
        raise ValueError(f"`images` is empty. Received: images of shape {images.shape}")
    return images


class _Structure:
    """The global-attention blocks of a model and the patch grid they act on."""

    def __init__(self, model, images, method):
        trace = _Trace()
        _forward(model, images[:1], trace)
        name = _model_name(model)
        usable = [(i, b, t) for i, (b, t, g) in enumerate(trace.blocks) if g]
        if not usable:
            if trace.blocks or trace.other_attention:
                others = [b for b, _, _ in trace.blocks] + trace.other_attention
                listed = ", ".join(f"'{layer.name}' ({type(layer).__name__})" for layer in others[:3])
                raise ValueError(
                    f"`{method}` needs global self-attention over the patch tokens, and "
                    f"model={name!r} has windowed, pooled or masked attention instead "
                    f"(e.g. {listed}): its attention maps are not token-to-token maps over "
                    "the whole image, so this method does not apply to it."
                )
            raise ValueError(
                f"`{method}` needs a model with attention layers (TransformerBlock). "
                f"Received: model={name!r}, which has none."
            )
        # The explained blocks: those on the final token sequence.
        tokens = usable[-1][2]
        self.positions = [i for i, _, t in usable if t == tokens]
        self.blocks = [trace.blocks[i][0] for i in self.positions]
        self.num_tokens = tokens
        encoder = next(
            (e for e in reversed(trace.encoders) if e.num_prefix_tokens + e.grid_size[0] * e.grid_size[1] == tokens),
            None,
        )
        if encoder is not None:
            self.num_prefix_tokens = encoder.num_prefix_tokens
            self.grid_size = tuple(encoder.grid_size)
            self.class_token = bool(encoder.class_token)
        else:
            side = int(math.isqrt(tokens))
            if side * side == tokens - 1 or (side - 1) ** 2 == tokens - 1:
                side = int(math.isqrt(tokens - 1))
            self.num_prefix_tokens = tokens - side * side
            self.grid_size = (side, side)
            self.class_token = self.num_prefix_tokens > 0
        self.image_size = tuple(images.shape[1:3])
        self.pixels_per_token = (
            self.image_size[0] / self.grid_size[0],
            self.image_size[1] / self.grid_size[1],
        )

    def resolve_layers(self, layers):
        """Block positions for `layers` (None or "all", indices, negative allowed, or names)."""
        count = len(self.blocks)
        names = [b.name for b in self.blocks]
        if layers is None or (isinstance(layers, str) and layers == "all" and "all" not in names):
            return list(range(count))
        if isinstance(layers, (int, np.integer, str)):
            layers = [layers]
        chosen = []
        for layer in layers:
            if isinstance(layer, str):
                if layer not in names:
                    raise ValueError(
                        f"`layers` names a layer the model does not explain. Received: "
                        f"layers={layers!r}; attention blocks: {names}"
                    )
                chosen.append(names.index(layer))
            elif isinstance(layer, (int, np.integer)) and -count <= layer < count:
                chosen.append(int(layer) % count)
            else:
                raise ValueError(
                    f"`layers` must hold block indices in [-{count}, {count}) or block names. "
                    f"Received: layers={layers!r}"
                )
        return sorted(set(chosen))


def _batches(images, batch_size):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


def _scores_by_block(model, images, structure, chosen, on_batch, batch_size):
    """Runs the explain forward pass, calling `on_batch(batch, {index: scores})`."""
    wanted = {structure.positions[i]: i for i in chosen}
    for batch in _batches(images, batch_size):
        found = {}
        trace = _Trace(
            select=set(wanted),
            on_scores=lambda position, scores: found.__setitem__(wanted[position], np.asarray(ops.convert_to_numpy(scores))),
        )
        _forward(model, batch, trace)
        on_batch(batch, found)


def _upsample(maps, size):
    """(B, h, w) → (B, H, W), bilinear."""
    maps = np.asarray(maps, dtype="float32")
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    out = ops.image.resize(maps[..., None], size, interpolation="bilinear", data_format="channels_last")
    return np.asarray(ops.convert_to_numpy(out))[..., 0]


def _patch_grid(structure, values):
    """(B, T) token values → (B, gh, gw) over the patch tokens."""
    patches = values[:, structure.num_prefix_tokens :]
    return patches.reshape((len(values),) + structure.grid_size)


# --------------------------------------------------------------------------
# Attention maps and rollout.
# --------------------------------------------------------------------------


def attention_maps(model, images, layers=None, batch_size=32):
    """Attention maps softmax(QKᵀ/√d_k) of each global-attention block and head.

    Eq. (1) of Vaswani et al. (2017), as used by the MSA of Dosovitskiy et
    al. (2020), Eq. (2). Only the blocks in `layers` compute their scores
    (the others keep the fused kernel), so memory grows with the number of
    chosen layers: B·len(layers)·h·T² floats.

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
    images = _check_images(model, images)
    structure = _Structure(model, images, "attention_maps")
    chosen = structure.resolve_layers(layers)
    collected = {i: [] for i in chosen}

    def on_batch(batch, found):
        for i in chosen:
            collected[i].append(found[i])

    _scores_by_block(model, images, structure, chosen, on_batch, batch_size)
    return {i: np.concatenate(parts, axis=0) for i, parts in collected.items()}


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


def _token_row(structure, matrix):
    """The row of the class token, or the mean row of the patch tokens without one."""
    if structure.class_token:
        return matrix[:, 0]
    return matrix[:, structure.num_prefix_tokens :].mean(axis=1)


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
    images = _check_images(model, images)
    structure = _Structure(model, images, "attention_rollout")
    chosen = structure.resolve_layers(None)
    results = []

    def on_batch(batch, found):
        result = None
        for i in chosen:
            result = _rollout_step(result, found.pop(i), head_fusion, discard_ratio)
        results.append(result)

    _scores_by_block(model, images, structure, chosen, on_batch, batch_size)
    matrix = np.concatenate(results, axis=0)
    if return_matrix:
        return matrix.astype("float32")
    grid = _patch_grid(structure, _token_row(structure, matrix))
    grid = grid / np.maximum(grid.reshape(len(grid), -1).max(axis=1), 1e-12)[:, None, None]
    return _upsample(grid, structure.image_size) if upsample else grid.astype("float32")


# --------------------------------------------------------------------------
# LeGrad.
# --------------------------------------------------------------------------


def _attention_gradients(model, batch, structure, one_hot, positions=None, stop_after=None):
    """∂(Σ_b s_b · one_hot_b)/∂A_l for each explained block l, as NumPy `(B, h, T, T)` arrays.

    Plain `TransformerBlock`s get a zero tensor added to their map (see
    `_block_forward`) and the gradient is taken with respect to it, on every
    backend. Subclasses (e.g. DeepViT's `ReAttentionBlock`) are called with
    `return_attention_scores=True` and the gradient is taken with respect to
    the returned map itself, which the tensorflow and torch backends allow
    for intermediate tensors.
    """
    backend = keras.backend.backend()
    blocks = dict(zip(structure.positions, structure.blocks))
    positions = list(structure.positions if positions is None else positions)
    exact = {p for p in positions if type(blocks[p]) is TransformerBlock}
    shapes = {p: (len(batch), blocks[p].attention.num_heads, structure.num_tokens, structure.num_tokens) for p in positions}
    target = ops.convert_to_tensor(one_hot)

    def run(deltas):
        scores = {}
        trace = _Trace(
            select=set(positions), deltas=deltas, logits=True, on_scores=scores.__setitem__, stop_after=stop_after
        )
        logits = _forward(model, batch, trace)
        return ops.sum(ops.cast(logits, "float32") * target), scores

    if backend == "tensorflow":
        import tensorflow as tf

        deltas = {p: tf.zeros(shapes[p]) for p in exact}
        with tf.GradientTape() as tape:
            for d in deltas.values():
                tape.watch(d)
            value, scores = run(deltas)
        sources = [deltas[p] if p in exact else scores[p] for p in positions]
        grads = tape.gradient(value, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        deltas = {p: ops.zeros(shapes[p]).requires_grad_(True) for p in exact}
        value, scores = run(deltas)
        sources = [deltas[p] if p in exact else scores[p] for p in positions]
        grads = torch.autograd.grad(value, sources, allow_unused=True)
        return [np.zeros(shapes[p], "float32") if g is None else g.detach().cpu().numpy() for p, g in zip(positions, grads)]
    if backend == "jax":
        import jax

        others = [blocks[p] for p in positions if type(blocks[p]) is not TransformerBlock]
        if others:
            raise ValueError(
                "`legrad` on the jax backend needs plain TransformerBlocks (jax cannot differentiate "
                f"with respect to an intermediate tensor); model has {type(others[0]).__name__} "
                f"'{others[0].name}'. Use the tensorflow or torch backend for it."
            )
        grads = jax.grad(lambda d: run(d)[0])({p: jax.numpy.zeros(shapes[p]) for p in positions})
        return [np.asarray(grads[p]) for p in positions]
    raise ValueError(
        "`legrad` needs gradients, available on the tensorflow, jax and torch backends. "
        f"Received: backend={backend!r}"
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
            f"include_top=True). Received: model={_model_name(model)!r} with output shape {shape}"
        )
    return int(shape[-1])


LEGRAD_LAST_BLOCKS = 2


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
    images = _check_images(model, images)
    structure = _Structure(model, images, "legrad")
    indices = structure.resolve_layers(layers)
    if layers is None:
        indices = indices[-LEGRAD_LAST_BLOCKS:]
    chosen = [structure.positions[i] for i in indices]
    classes = _class_count(model)
    if class_index is not None:
        index = np.atleast_1d(np.asarray(class_index))
        if index.dtype.kind not in "iu" or index.ndim != 1 or len(index) not in (1, len(images)):
            raise ValueError(
                "`class_index` must be None, an int or one int per image. "
                f"Received: class_index={class_index!r}"
            )
        if index.min() < 0 or index.max() >= classes:
            raise ValueError(
                f"`class_index` must be in [0, {classes}) for this model. Received: class_index={class_index!r}"
            )
        class_index = np.broadcast_to(index, (len(images),))
    tokens = structure.num_tokens
    maps = []
    for start in range(0, len(images), _positive(batch_size)):
        batch = images[start : start + batch_size]
        if class_index is None:
            logits = _forward(model, batch, _Trace(logits=True))
            targets = np.argmax(ops.convert_to_numpy(logits), axis=-1)
        else:
            targets = class_index[start : start + batch_size]
        one_hot = np.eye(classes, dtype="float32")[targets]
        if layer_logits:
            grads = [
                _attention_gradients(model, batch, structure, one_hot, positions=[p], stop_after=p)[0]
                for p in chosen
            ]
        else:
            grads = _attention_gradients(model, batch, structure, one_hot, positions=chosen)
        total = np.zeros((len(batch), tokens), "float64")
        for grad in grads:
            total += np.maximum(grad, 0.0).mean(axis=(1, 2))  # ReLU, heads, query tokens.
        grid = _patch_grid(structure, total)
        flat = grid.reshape(len(grid), -1)
        low, high = flat.min(axis=1)[:, None, None], flat.max(axis=1)[:, None, None]
        maps.append((grid - low) / np.maximum(high - low, 1e-12))
    grid = np.concatenate(maps, axis=0).astype("float32")
    return _upsample(grid, structure.image_size) if upsample else grid


def _positive(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    return int(batch_size)


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
    """softmax of the model's logits, `(B, classes)` (the final softmax is taken off and redone)."""
    images = _check_images(model, images)
    out = []
    for batch in _batches(images, batch_size):
        logits = np.asarray(ops.convert_to_numpy(_forward(model, batch, _Trace(logits=True))), "float64")
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
    images = _check_images(model, images)
    labels = np.asarray(labels).astype(int).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"`labels` must hold one class per image. Received: labels of shape {np.shape(labels)}")
    removed, _ = remove_patches(images, scores, fraction, value)
    rows = np.arange(len(images))
    return class_probabilities(model, images)[rows, labels] - class_probabilities(model, removed)[rows, labels]


# --------------------------------------------------------------------------
# Figure 7 of the ViT paper.
# --------------------------------------------------------------------------


def _token_distances(structure):
    """(N, N) pixel distances between patch centres."""
    gh, gw = structure.grid_size
    ph, pw = structure.pixels_per_token
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    y, x = rows.reshape(-1) * ph, cols.reshape(-1) * pw
    return np.sqrt((y[:, None] - y[None]) ** 2 + (x[:, None] - x[None]) ** 2)


def mean_attention_distance(model, images, batch_size=32):
    """Mean attention distance per block and head, in pixels (ViT paper, Fig. 7 right).

    For each patch token, the distance in image space to every other patch,
    weighted by the attention weights over the patch tokens (renormalised to
    sum to 1 without the prefix tokens), averaged over the patch tokens and
    the images. Like a receptive field size: small for local heads, large
    for global ones.

    Args:
        model: a ViT-family `keras.Model`.
        images: `(B, H, W, C)` or `(H, W, C)`.
        batch_size: images per forward pass.

    Returns:
        float32 array `(L, h)`: block × head, in pixels of the input image.
    """
    images = _check_images(model, images)
    structure = _Structure(model, images, "mean_attention_distance")
    chosen = structure.resolve_layers(None)
    heads = {b.attention.num_heads for b in structure.blocks}
    if len(heads) != 1:
        raise ValueError(f"`mean_attention_distance` needs the same number of heads in every block. Received: {sorted(heads)}")
    distances = _token_distances(structure)
    p = structure.num_prefix_tokens
    total = np.zeros((len(chosen), heads.pop()), "float64")

    def on_batch(batch, found):
        for i in chosen:
            a = found.pop(i)[:, :, p:, p:].astype("float64")  # (B, h, N, N)
            a = a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-12)
            total[i] += (a * distances).sum(axis=-1).mean(axis=-1).sum(axis=0)

    _scores_by_block(model, images, structure, chosen, on_batch, batch_size)
    return (total / len(images)).astype("float32")


def _find_encoder(model, method):
    stack, seen = [model], set()
    found = None
    while stack:
        layer = stack.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, PatchEncoder):
            found = layer
        stack.extend(getattr(layer, "layers", []) if isinstance(layer, keras.Model) else [])
    if found is None:
        raise ValueError(
            f"`{method}` needs a model with a patch embedding (PatchEncoder). "
            f"Received: model={_model_name(model)!r}, which has none."
        )
    return found


def patch_embedding_filters(model, num_components=28):
    """Principal components of the patch-embedding filters E (ViT paper, Fig. 7 left).

    The projection E maps a flattened P×P×C patch to D dimensions; its D
    filters are P·P·C vectors. Their principal components (SVD of the
    centred filters) show which patch structures the embedding picks up.

    Args:
        model: a model with a `PatchEncoder`.
        num_components: int, components to return (at most min(D, P·P·C)).

    Returns:
        `(components, explained_variance_ratio)`: float32 `(n, P, P, C)`,
        each component scaled to unit norm, and float32 `(n,)`.
    """
    encoder = _find_encoder(model, "patch_embedding_filters")
    kernel = np.asarray(ops.convert_to_numpy(encoder.projection.kernel), dtype="float64")  # (P, P, C, D)
    filters = kernel.reshape(-1, kernel.shape[-1]).T  # (D, P·P·C)
    limit = min(filters.shape)
    if not isinstance(num_components, (int, np.integer)) or not 1 <= num_components <= limit:
        raise ValueError(
            f"`num_components` must be an integer in [1, {limit}] for this model. "
            f"Received: num_components={num_components!r}"
        )
    centred = filters - filters.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    ratio = variance / max(variance.sum(), 1e-12)
    components = vt[:num_components].reshape((num_components,) + kernel.shape[:3])
    return components.astype("float32"), ratio[:num_components].astype("float32")


def position_embedding_similarity(model):
    """Cosine similarity between the position embeddings of the patches (ViT paper, Fig. 7 centre).

    Args:
        model: a model with a `PatchEncoder` that has position embeddings.

    Returns:
        float32 `(gh, gw, gh, gw)`: entry [i, j] is the `(gh, gw)` map of the
        similarity of patch (i, j)'s embedding to every patch's.
    """
    encoder = _find_encoder(model, "position_embedding_similarity")
    table = encoder.position_table()
    if table is None:
        raise ValueError(
            "`position_embedding_similarity` needs position embeddings. Received: model="
            f"{_model_name(model)!r} with position_embedding={encoder.position_embedding!r}"
        )
    table = np.asarray(ops.convert_to_numpy(table), dtype="float64")[0, encoder.num_embedded_prefix_tokens :]
    unit = table / np.maximum(np.linalg.norm(table, axis=-1, keepdims=True), 1e-12)
    gh, gw = encoder.grid_size
    return (unit @ unit.T).reshape(gh, gw, gh, gw).astype("float32")


# --------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------


def _figure(rows, cols, size=2.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * size, rows * size), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _display(image):
    image = np.asarray(image, dtype="float32")
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return image[..., 0] if image.shape[-1] == 1 else image


def plot_heatmaps(images, heatmaps, titles=None, alpha=0.5, cmap="jet"):
    """Each image beside its heatmap(s) overlaid on it.

    Args:
        images: `(B, H, W, C)`.
        heatmaps: `(B, H, W)` (e.g. from `legrad` or `attention_rollout`), or
            a dict name → `(B, H, W)` for one column per method.
        titles: optional list of B strings, shown over each image.
        alpha: float, opacity of the heatmap.
        cmap: matplotlib colour map of the heatmap.

    Returns:
        A `matplotlib.figure.Figure` with B rows and 1 + (number of maps) columns.
    """
    images = np.asarray(images)
    columns = dict(heatmaps) if isinstance(heatmaps, dict) else {"heatmap": heatmaps}
    if images.ndim == 3:
        images = images[None]
        columns = {k: np.asarray(v).reshape((1,) + np.shape(v)[-2:]) for k, v in columns.items()}
    for name, maps in columns.items():
        maps = np.asarray(maps)
        if maps.shape != (len(images),) + images.shape[1:3]:
            raise ValueError(
                "`heatmaps` must be (B, H, W) for `images` (B, H, W, C). Received: images of shape "
                f"{images.shape}, heatmaps {name!r} of shape {maps.shape}"
            )
    fig, axes = _figure(len(images), 1 + len(columns))
    for i, image in enumerate(images):
        shown = _display(image)
        gray = "gray" if shown.ndim == 2 else None
        axes[i, 0].imshow(shown, cmap=gray)
        if titles is not None:
            axes[i, 0].set_title(str(titles[i]), fontsize=8)
        for j, (name, maps) in enumerate(columns.items(), start=1):
            heat = np.asarray(maps[i])
            axes[i, j].imshow(shown, cmap=gray)
            axes[i, j].imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=max(float(heat.max()), 1e-12))
            if i == 0:
                axes[i, j].set_title(name, fontsize=8)
    return fig


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
    images = _check_images(model, image)[:1]
    structure = _Structure(model, images, "attention_head_maps")
    (index,) = structure.resolve_layers(layer)
    scores = attention_maps(model, images, layers=[index])[index][0]  # (h, T, T)
    rows = _token_row(structure, scores)  # (h, T)
    return _upsample(_patch_grid(structure, rows), structure.image_size)


def plot_attention_heads(model, image, layer=-1, alpha=0.6):
    """A grid with one panel per head: the image and the head's attention (see `attention_head_maps`).

    Returns:
        A `matplotlib.figure.Figure`.
    """
    images = _check_images(model, image)[:1]
    maps = attention_head_maps(model, images, layer)
    cols = min(len(maps) + 1, 6)
    rows = math.ceil((len(maps) + 1) / cols)
    fig, axes = _figure(rows, cols)
    shown = _display(images[0])
    axes.flat[0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    axes.flat[0].set_title("image", fontsize=8)
    for h, heat in enumerate(maps):
        ax = axes.flat[h + 1]
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        ax.imshow(heat, cmap="jet", alpha=alpha)
        ax.set_title(f"head {h}", fontsize=8)
    for ax in list(axes.flat)[len(maps) + 1 :]:
        ax.axis("off")
    return fig


def plot_mean_attention_distance(distances):
    """Mean attention distance vs network depth, one point per head (ViT paper, Fig. 7 right).

    Args:
        distances: `(L, h)` from `mean_attention_distance`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    distances = np.asarray(distances)
    if distances.ndim != 2:
        raise ValueError(f"`distances` must be (layers, heads). Received: distances of shape {distances.shape}")
    fig = Figure(figsize=(4.5, 3.5), layout="constrained")
    ax = fig.subplots()
    for h in range(distances.shape[1]):
        ax.scatter(np.arange(len(distances)), distances[:, h], s=14, label=f"head {h}")
    ax.set_xlabel("network depth (block)")
    ax.set_ylabel("mean attention distance (pixels)")
    if distances.shape[1] <= 16:
        ax.legend(fontsize=6, ncol=2)
    return fig


def plot_patch_embedding_filters(components, cols=7):
    """Principal components of the embedding filters as small images (Fig. 7 left).

    Args:
        components: `(n, P, P, C)` from `patch_embedding_filters`.
        cols: panels per row.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    components = np.asarray(components)
    rows = math.ceil(len(components) / cols)
    fig, axes = _figure(rows, cols, size=1.0)
    for ax, comp in zip(axes.flat, components):
        shown = _display(comp)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    for ax in list(axes.flat)[len(components) :]:
        ax.axis("off")
    return fig


def plot_position_embedding_similarity(similarity):
    """For each patch, its position embedding's similarity to all others (Fig. 7 centre).

    Args:
        similarity: `(gh, gw, gh, gw)` from `position_embedding_similarity`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    similarity = np.asarray(similarity)
    if similarity.ndim != 4:
        raise ValueError(f"`similarity` must be (gh, gw, gh, gw). Received: similarity of shape {similarity.shape}")
    gh, gw = similarity.shape[:2]
    fig, axes = _figure(gh, gw, size=0.6)
    for i in range(gh):
        for j in range(gw):
            axes[i, j].imshow(similarity[i, j], vmin=-1.0, vmax=1.0, cmap="viridis")
    return fig


def explain(
    model,
    images,
    method="legrad",
    class_index=None,
    layer=-1,
    head_fusion="mean",
    discard_ratio=0.0,
    upsample=True,
    layers=None,
):
    """One heatmap per image by `method`: "legrad", "rollout" or "attention".

    "legrad" sums over the blocks `layers` (see `legrad`). "attention" is the
    class token's attention at block `layer`, averaged over heads (without a
    class token, the mean attention the patches get).

    Returns:
        float32 `(B, H, W)` in [0, 1], or `(B, gh, gw)` with `upsample=False`.
    """
    if method == "legrad":
        return legrad(model, images, class_index=class_index, layers=layers, upsample=upsample)
    if method == "rollout":
        return attention_rollout(
            model, images, head_fusion=head_fusion, discard_ratio=discard_ratio, upsample=upsample
        )
    if method == "attention":
        images = _check_images(model, images)
        structure = _Structure(model, images, "attention")
        (index,) = structure.resolve_layers(layer)
        scores = attention_maps(model, images, layers=[index])[index].mean(axis=1)
        grid = _patch_grid(structure, _token_row(structure, scores))
        grid = grid / np.maximum(grid.reshape(len(grid), -1).max(axis=1), 1e-12)[:, None, None]
        return _upsample(grid, structure.image_size) if upsample else grid.astype("float32")
    raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")


def save_explanation_figure(model, images, path, method="legrad", labels=None, class_names=None, **kwargs):
    """Writes a figure of `images` and their heatmaps (see `explain`) to `path`.

    One row per image: the image, titled with its predicted class (and true
    label when given), then one heatmap overlay per method.

    Args:
        model: a ViT-family `keras.Model`.
        images: `(B, H, W, C)` or `(H, W, C)`; keep B small (one row each).
        path: output file (.png, .pdf, ...).
        method: "legrad", "rollout" or "attention", or a list of them.
        labels: optional `(B,)` true classes.
        class_names: optional list of class names.
        **kwargs: passed to `explain` (`class_index`, `layer`, ...).

    Returns:
        `path`.
    """
    methods = [method] if isinstance(method, str) else list(method)
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS} or a list of them. Received: method={method!r}")
    known = {option for options in _METHOD_OPTIONS.values() for option in options}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"Unknown options {unknown}; the methods take {sorted(known)}. Received: {kwargs}")
    images = _check_images(model, images)
    heatmaps = {}
    for name in methods:
        options = {k: v for k, v in kwargs.items() if k in _METHOD_OPTIONS[name]}
        heatmaps[name] = explain(model, images, method=name, **options)
    titles = None
    if getattr(model, "outputs", None) and len(model.outputs[0].shape) == 2:

        def name_of(c):
            return str(class_names[c]) if class_names is not None else str(int(c))

        predicted = np.argmax(ops.convert_to_numpy(_forward(model, images, _Trace())), axis=-1)
        titles = [f"predicted {name_of(p)}" for p in predicted]
        if labels is not None:
            titles = [f"label {name_of(t)}, {title}" for t, title in zip(np.asarray(labels).reshape(-1), titles)]
    fig = plot_heatmaps(images, heatmaps, titles=titles)
    fig.savefig(path, dpi=100)
    return path


_METHOD_OPTIONS = {
    "legrad": ("class_index", "layers"),
    "rollout": ("head_fusion", "discard_ratio"),
    "attention": ("layer",),
}


__all__ = [
    "METHODS",
    "attention_head_maps",
    "attention_maps",
    "attention_rollout",
    "class_probabilities",
    "deletion_test",
    "explain",
    "legrad",
    "mean_attention_distance",
    "patch_embedding_filters",
    "plot_attention_heads",
    "plot_heatmaps",
    "plot_mean_attention_distance",
    "plot_patch_embedding_filters",
    "plot_position_embedding_similarity",
    "position_embedding_similarity",
    "remove_patches",
    "rollout",
    "save_explanation_figure",
]
