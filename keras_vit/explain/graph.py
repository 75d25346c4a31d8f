"""Finding a model's attention layers by type and running the model with hooks on them.

Everything here goes through public Keras API: the layers are found by
`isinstance` while walking `keras.Model.layers` (nested models included),
attention maps are read and perturbed through
`MultiHeadSelfAttention.attention_probs_hook`, and the only re-wiring of a
model (its logits under a final softmax, or its head read after an earlier
block) is a `keras.models.clone_model` that shares the original layers.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_vit.layers.multiscale_block import MultiScaleBlock
from keras_vit.layers.patch_encoder import PatchEncoder
from keras_vit.layers.pooling_attention import PoolingAttention
from keras_vit.layers.swin_block import SwinTransformerBlock
from keras_vit.layers.transformer_block import TransformerBlock
from keras_vit.layers.window_attention import WindowAttention

# Layers that attend inside windows or over pooled keys: their maps are not
# token-to-token maps over the whole image. A bare MultiHeadSelfAttention
# (outside a TransformerBlock) has no block to explain either.
OTHER_ATTENTION = (SwinTransformerBlock, WindowAttention, MultiScaleBlock, PoolingAttention, MultiHeadSelfAttention)


def walk_layers(model):
    """Every layer of `model` and of the models nested in it, depth first, in layer order."""
    seen = set()
    stack = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        if isinstance(layer, keras.Model):
            stack.extend(reversed(layer.layers))


def attention_blocks(model):
    """The `TransformerBlock`s (subclasses included) of `model` whose attention can be hooked."""
    return [
        layer
        for layer in walk_layers(model)
        if isinstance(layer, TransformerBlock) and isinstance(getattr(layer, "attention", None), MultiHeadSelfAttention)
    ]


def model_name(model):
    return getattr(model, "name", type(model).__name__)


def check_images(model, images):
    images = np.asarray(images, dtype="float32")
    expected = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if images.ndim == 3 and expected is not None and len(expected) == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(
            f"`images` must be a batch (B, H, W, C) or one image (H, W, C). Received: images of shape {images.shape}"
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


def positive(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    return int(batch_size)


def batches(images, batch_size):
    batch_size = positive(batch_size)
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


class AttentionHooks:
    """A context that sets `attention_probs_hook` on the attention of chosen blocks.

    Positions count the calls of the model's blocks in execution order (see
    `Structure`). Only the blocks with a position in `positions` get a hook,
    so only they leave the fused kernel; the hooks are removed on exit.

    Args:
        structure: the `Structure` of the model.
        positions: block positions to hook.
        on_maps: None or a callable `(position, maps)` given each map A.
        deltas: None or dict position → tensor added to that block's map
            (`A' = A + delta`: with delta = 0 the outputs are unchanged and
            ∂y/∂delta = ∂y/∂A, LeGrad's handle on the gradient).
    """

    def __init__(self, structure, positions, on_maps=None, deltas=None):
        self.structure = structure
        self.positions = set(positions)
        self.on_maps = on_maps
        self.deltas = deltas or {}
        self._blocks = {}
        for position in self.positions:
            block = structure.calls[position][0]
            self._blocks[id(block)] = block

    def _hook(self, block):
        calls = self.structure.positions_of[id(block)]
        count = [0]

        def hook(maps, masked):
            n = count[0]
            count[0] += 1
            position = calls[n] if n < len(calls) else None
            if position not in self.positions:
                return maps
            if position in self.deltas:
                maps = maps + ops.cast(self.deltas[position], maps.dtype)
            if self.on_maps is not None:
                self.on_maps(position, maps)
            return maps

        return hook

    def __enter__(self):
        self._previous = {}
        for key, block in self._blocks.items():
            self._previous[key] = block.attention.attention_probs_hook
            block.attention.attention_probs_hook = self._hook(block)
        return self

    def __exit__(self, *exc):
        for key, block in self._blocks.items():
            block.attention.attention_probs_hook = self._previous[key]
        return False


def _ends_in_softmax(layer):
    """Whether `layer` is a final softmax/sigmoid (an Activation or a Dense with one)."""
    name = getattr(getattr(layer, "activation", None), "__name__", "")
    return isinstance(layer, (keras.layers.Activation, keras.layers.Dense)) and name in ("softmax", "sigmoid")


def _pre_activation(layer, x):
    if isinstance(layer, keras.layers.Activation):
        return x
    out = ops.matmul(x, layer.kernel)
    return out + layer.bias if layer.use_bias else out


def explained_model(model, structure=None, logits=False, stop_after=None):
    """`model`, or a clone sharing its layers that returns logits or reads an earlier block.

    Args:
        model: a functional or Sequential `keras.Model`.
        structure: the model's `Structure` (needed with `stop_after`).
        logits: bool, return the input of a final softmax/sigmoid (the class
            logits) instead of its output.
        stop_after: None or a block position: the blocks called after it
            pass their input through, so the model's head reads that block's
            output (LeGrad's per-layer logits).

    Returns:
        A callable model. It is `model` itself when nothing changes.
    """
    last = model.layers[-1] if getattr(model, "layers", None) else None
    final = last if logits and last is not None and _ends_in_softmax(last) else None
    skipped = set()
    if stop_after is not None:
        skipped = {key for key, calls in structure.positions_of.items() if min(calls) > stop_after}
    if final is None and not skipped:
        return model
    if isinstance(model, keras.Sequential):
        # `call_function` needs a functional graph: the same layers, wired as one.
        model = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
    elif not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise ValueError(
            "`model` must be a functional or Sequential keras.Model, as the keras_vit "
            f"factories build. Received: model of type {type(model).__name__}"
        )

    def call(layer, *args, **kwargs):
        if id(layer) in skipped:
            return args[0]
        if layer is final:
            return _pre_activation(layer, args[0])
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call, recursive=True)


class Structure:
    """The global-attention blocks of a model and the patch grid they act on.

    Found by one forward pass of one image with a recording hook on every
    block's attention: the hooks fire in execution order, which numbers the
    block calls ("positions"), and report each map's token count and whether
    a mask or bias shaped it. The explained blocks are the unmasked ones on
    the final token sequence.
    """

    def __init__(self, model, images, method):
        blocks = attention_blocks(model)
        self.calls = []  # (block, tokens, masked) per block call, in execution order.
        self.positions_of = {}

        def recorder(block):
            def hook(maps, masked):
                self.positions_of.setdefault(id(block), []).append(len(self.calls))
                self.calls.append((block, maps.shape[-1], bool(masked)))
                return maps

            return hook

        try:
            for block in blocks:
                block.attention.attention_probs_hook = recorder(block)
            model(images[:1], training=False)
        finally:
            for block in blocks:
                block.attention.attention_probs_hook = None
        name = model_name(model)
        usable = [(i, b, t) for i, (b, t, masked) in enumerate(self.calls) if not masked]
        if not usable:
            others = [b for b, _, _ in self.calls] + [
                layer for layer in walk_layers(model) if isinstance(layer, OTHER_ATTENTION)
            ]
            if others:
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
        tokens = usable[-1][2]
        self.positions = [i for i, _, t in usable if t == tokens]
        self.blocks = [self.calls[i][0] for i in self.positions]
        self.num_tokens = tokens
        encoders = [layer for layer in walk_layers(model) if isinstance(layer, PatchEncoder)]
        encoder = next(
            (e for e in reversed(encoders) if e.num_prefix_tokens + e.grid_size[0] * e.grid_size[1] == tokens),
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
        """Block indices for `layers` (None or "all", indices, negative allowed, or names)."""
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


def maps_by_block(model, images, structure, chosen, on_batch, batch_size):
    """Runs the model with hooks on the blocks `chosen` (indices), calling `on_batch(batch, {index: maps})`."""
    wanted = {structure.positions[i]: i for i in chosen}
    for batch in batches(images, batch_size):
        found = {}

        def on_maps(position, maps):
            found[wanted[position]] = np.asarray(ops.convert_to_numpy(ops.cast(maps, "float32")))

        with AttentionHooks(structure, wanted, on_maps=on_maps):
            model(batch, training=False)
        on_batch(batch, found)


def upsample_maps(maps, size):
    """(B, h, w) → (B, H, W), bilinear."""
    maps = np.asarray(maps, dtype="float32")
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    out = ops.image.resize(maps[..., None], size, interpolation="bilinear", data_format="channels_last")
    return np.asarray(ops.convert_to_numpy(out))[..., 0]


def patch_grid(structure, values):
    """(B, T) token values → (B, gh, gw) over the patch tokens."""
    patches = values[:, structure.num_prefix_tokens :]
    return patches.reshape((len(values),) + structure.grid_size)


def token_row(structure, matrix):
    """The row of the class token, or the mean row of the patch tokens without one."""
    if structure.class_token:
        return matrix[:, 0]
    return matrix[:, structure.num_prefix_tokens :].mean(axis=1)


def scale_to_max(grid):
    """Each map divided by its maximum."""
    return grid / np.maximum(grid.reshape(len(grid), -1).max(axis=1), 1e-12)[:, None, None]
