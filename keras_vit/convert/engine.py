"""The one conversion engine: key rules declared as data, then checked and assigned.

Every family module (`vit`, `hybrid`, `swin`, `mvitv2`, `t2t`, `deepvit`)
declares a `Family`: the layer types that identify its models, and one
`Layout` per checkpoint source (timm, Hugging Face, the ViT .npz, ...), each a
tuple of `Rule`s mapping a checkpoint key (a regular expression) to a Keras
weight path, with the `Kind` of layout change the tensor needs (a PyTorch
`Linear` weight `(out, in)` is the transposed Keras kernel, a `Conv2d` weight
`(out, in, kh, kw)` becomes `(kh, kw, in, out)`, ...). `convert_state_dict`
applies the rules of a family to a checkpoint, resamples what the family
allows to be resampled, checks every key and shape against the model and
reports all differences in one `CheckpointError`.
"""

import logging
import re
import time
from typing import Callable, NamedTuple, Union

import numpy as np

logger = logging.getLogger("keras_vit.convert")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the model.

    The message names the first missing, unexpected and mis-shaped keys, with
    their shapes.
    """


def _same(array, leaf):
    return array


def _linear(array, leaf):
    # torch Linear (out, in) -> Keras Dense (in, out).
    return np.ascontiguousarray(array.T) if leaf == "kernel" else array


def _conv(array, leaf):
    # torch Conv2d (out, in, kh, kw) -> Keras Conv2D (kh, kw, in, out).
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0)) if leaf == "kernel" else array


def _depthwise(array, leaf):
    # torch depthwise Conv2d (C, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, C, 1).
    return np.ascontiguousarray(array.transpose(2, 3, 0, 1)) if leaf == "kernel" else array


def _flax_heads_in(array, leaf):
    # Flax per-head query/key/value: kernel (D, heads, head_dim), bias (heads, head_dim).
    return array.reshape(array.shape[0], -1) if leaf == "kernel" else array.reshape(-1)


def _flax_heads_out(array, leaf):
    # Flax per-head output projection: kernel (heads, head_dim, D).
    return array.reshape(-1, array.shape[-1]) if leaf == "kernel" else array


class Kind(NamedTuple):
    """How one checkpoint tensor becomes a Keras weight.

    Attributes:
        leaves: `{checkpoint parameter name: Keras variable name}` of a layer
            (`{"weight": "kernel", "bias": "bias"}`); None when the rule names
            a whole key (a token, a table).
        transform: `f(array, keras_leaf) -> array` in the Keras layout.
        reshape: whether the array is reshaped to the model weight's shape
            when the sizes agree (a `(1, N, D)` table into an `(N, D)` weight).
    """

    leaves: Union[dict, None]
    transform: Callable = _same
    reshape: bool = False


_TORCH_LAYER = {"weight": "kernel", "bias": "bias"}
_FLAX_LAYER = {"kernel": "kernel", "bias": "bias"}

LINEAR = Kind(_TORCH_LAYER, _linear)
LINEAR_AS_CONV = Kind(_TORCH_LAYER, _linear, reshape=True)  # a Linear into a 1x1 Conv2D
CONV = Kind(_TORCH_LAYER, _conv)
DEPTHWISE = Kind(_TORCH_LAYER, _depthwise)
NORM = Kind({"weight": "gamma", "bias": "beta"})
PARAM = Kind(None, reshape=True)
FLAX = Kind(_FLAX_LAYER)
FLAX_NORM = Kind({"scale": "gamma", "bias": "beta"})
FLAX_HEADS_IN = Kind(_FLAX_LAYER, _flax_heads_in)
FLAX_HEADS_OUT = Kind(_FLAX_LAYER, _flax_heads_out)


class Rule(NamedTuple):
    """One checkpoint key pattern → one Keras weight path.

    Attributes:
        source: regular expression matched in full against the key's module
            part (without the `.weight` / `/kernel` leaf), or the whole key
            when `kind.leaves` is None.
        target: the Keras path (without the leaf), a `re.Match.expand`
            template (`r"block_\\1/mlp/\\2"`) or a function of the match.
        kind: the `Kind` of layout change.
        fuse: for several checkpoint tensors that make one Keras weight
            (separate query, key, value into a fused `qkv`): one regular
            expression per part, in the order of concatenation along the last
            axis; the `source` pattern captures the part as `(?P<part>...)`.
    """

    source: str
    target: Union[str, Callable]
    kind: Kind
    fuse: tuple = ()


class Layout(NamedTuple):
    """The key names and tensor layouts of one checkpoint source.

    Attributes:
        name: e.g. "timm", "hf", "npz".
        detect: regular expression; a checkpoint has this layout when one of
            its keys matches it in full.
        rules: tuple of `Rule`, tried in order.
        ignore: regular expressions of keys with no counterpart by design
            (recomputed buffers, a representation layer no model uses).
        prefix: regular expression removed from the front of every key.
    """

    name: str
    detect: str
    rules: tuple
    ignore: tuple = ()
    prefix: str = ""


class Family(NamedTuple):
    """A model family that checkpoints convert into.

    Attributes:
        name: e.g. "vit", "swin".
        layer_types: layer classes whose presence in a model identifies the family.
        layouts: tuple of `Layout`, one per checkpoint source.
        head: regular expression of the Keras paths of classification heads.
        resize: `(path regex, f(array, target_shape, model) -> array)` pairs,
            applied when a weight's shape differs from the model's.
        fresh: `(layer prefix, replaced prefix)` pairs: a model layer that a
            checkpoint may lack because it holds the replaced layer instead;
            the layer then starts as the identity and the replaced one is
            dropped (see `vit.FAMILY`).
    """

    name: str
    layer_types: tuple
    layouts: tuple
    head: str = r"head(_dist)?/"
    resize: tuple = ()
    fresh: tuple = ()


def _shape(array):
    return tuple(int(s) for s in np.shape(array))


def find_layout(family, state_dict, layout="auto"):
    """The `Layout` of `family` that `state_dict` is in (detected from its keys when "auto")."""
    names = tuple(item.name for item in family.layouts)
    if layout != "auto":
        for item in family.layouts:
            if item.name == layout:
                return item
        raise ValueError(
            f"`layout` must be 'auto' or one of {names} for {family.name} models. Received: layout={layout!r}"
        )
    for item in family.layouts:
        pattern = re.compile(item.detect)
        if any(pattern.fullmatch(key) for key in state_dict):
            return item
    sample = ", ".join(repr(k) for k in list(state_dict)[:5])
    raise CheckpointError(
        f"Unrecognised checkpoint layout for a {family.name} model: no key in the form of "
        + ", ".join(f"{item.name} ({item.detect!r})" for item in family.layouts)
        + f". First keys: {sample or 'none'}"
    )


def _split_leaf(key):
    cut = max(key.rfind("."), key.rfind("/"))
    return (key[:cut], key[cut + 1 :]) if cut >= 0 else ("", key)


def _apply_rules(layout, key, array):
    """`(keras_path, array, rule, part)` for one key, or None when no rule matches."""
    module, leaf = _split_leaf(key)
    for rule in layout.rules:
        kind = rule.kind
        if kind.leaves is None:
            match = re.fullmatch(rule.source, key)
            keras_leaf = None
        else:
            match = re.fullmatch(rule.source, module) if leaf in kind.leaves else None
            keras_leaf = kind.leaves.get(leaf)
        if not match:
            continue
        path = rule.target(match) if callable(rule.target) else match.expand(rule.target)
        if keras_leaf is not None:
            path = f"{path}/{keras_leaf}"
        return path, kind.transform(np.asarray(array), keras_leaf), rule, match.groupdict().get("part")
    return None


def map_state_dict(family, state_dict, layout="auto"):
    """Applies the rules of `family` to a checkpoint, without a model.

    Returns:
        `(layout, converted, unmatched)`: the `Layout` used,
        `{keras_path: (source_key, array, reshape)}` (`reshape`: whether the
        rule's `Kind` allows reshaping) and the keys no rule matched.
    """
    layout = find_layout(family, state_dict, layout)
    ignored = [re.compile(pattern) for pattern in layout.ignore]
    converted, unmatched, parts = {}, [], {}
    for key, array in state_dict.items():
        name = re.sub(layout.prefix, "", key) if layout.prefix else key
        if any(pattern.fullmatch(name) for pattern in ignored):
            continue
        mapped = _apply_rules(layout, name, array)
        if mapped is None:
            unmatched.append(key)
            continue
        path, value, rule, part = mapped
        if rule.fuse:
            index = next((i for i, p in enumerate(rule.fuse) if re.fullmatch(p, part or "")), None)
            parts.setdefault(path, (rule, {}))[1][index] = (key, value)
        else:
            converted[path] = (key, value, rule.kind.reshape)
    for path, (rule, found) in parts.items():
        missing = [p for i, p in enumerate(rule.fuse) if i not in found]
        if missing:
            keys = ", ".join(repr(found[i][0]) for i in sorted(found))
            raise CheckpointError(
                f"The checkpoint has no `{missing[0]}` part of {path!r} (found {keys}); "
                f"{len(rule.fuse)} parts are concatenated into it"
            )
        arrays = [found[i][1] for i in range(len(rule.fuse))]
        converted[path] = (found[0][0], np.concatenate(arrays, axis=-1), False)
    return layout, converted, unmatched


def _summary(label, items):
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return f"{len(items)} {label}: " + "; ".join(items[:3]) + more


def convert_state_dict(model, state_dict, family, layout="auto", skip_mismatched_head=True):
    """Converts a checkpoint to `{variable_path: array}`, fitted and checked against `model`.

    Weights whose shape differs are resampled where `family.resize` allows it
    (position tables, patch projections). When the model has no head the
    checkpoint's heads are dropped; when its head has another number of
    classes and `skip_mismatched_head`, the head keeps its initialisation
    (fine-tuning). Any other missing, unexpected or mis-shaped key raises
    `CheckpointError` naming the first ones of each and their shapes.

    Returns:
        `{variable.path: np.ndarray}` covering every weight of `model`.
    """
    layout, converted, unmatched = map_state_dict(family, state_dict, layout)
    variables = {v.path: v for v in model.weights}
    head = re.compile(family.head)
    has_head = any(head.match(path) for path in variables)
    result, seen, mismatched = {}, set(), []
    unexpected = [f"{key!r} (shape {_shape(state_dict[key])})" for key in unmatched]
    extra = {}
    for path, (source, array, reshape) in converted.items():
        if not has_head and head.match(path):
            continue
        if path not in variables:
            extra[path] = (source, array)
            continue
        seen.add(path)
        target = _shape(variables[path])
        if _shape(array) != target and reshape and array.size == int(np.prod(target)):
            array = array.reshape(target)
        if _shape(array) != target:
            for pattern, fit in family.resize:
                if re.fullmatch(pattern, path):
                    array = fit(array, target, model)
        if _shape(array) != target:
            if head.match(path) and skip_mismatched_head and array.shape[:-1] == target[:-1]:
                logger.warning(
                    "Keeping the new %s: the checkpoint has %d classes, the model %d.",
                    path,
                    array.shape[-1],
                    target[-1],
                )
                result[path] = None
                continue
            mismatched.append(
                f"{source!r}: checkpoint shape {_shape(state_dict[source])} (as Keras layout {_shape(array)}) "
                f"vs model weight {path!r} shape {target}"
            )
            continue
        result[path] = array
    missing = [p for p in variables if p not in result and p not in seen]
    for prefix, replaced in family.fresh:
        fresh = [p for p in missing if p.startswith(prefix)]
        dropped = [p for p in extra if p.startswith(replaced)]
        if fresh and dropped and not any(p.startswith(replaced) for p in variables):
            logger.warning(
                "The checkpoint has %s and no %s: %s starts as the identity and %s is not used "
                "(as timm loads it non-strictly).",
                replaced,
                prefix,
                prefix,
                replaced,
            )
            for p in fresh:
                result[p] = (np.ones if p.endswith("/gamma") else np.zeros)(_shape(variables[p]), "float32")
                missing.remove(p)
            for p in dropped:
                del extra[p]
    unexpected += [
        f"{source!r} (shape {_shape(state_dict[source])}, as Keras weight {path!r})"
        for path, (source, _) in extra.items()
    ]
    missing = [f"{p!r} (shape {_shape(variables[p])})" for p in missing]
    if unexpected or missing or mismatched:
        parts = [
            _summary(label, items)
            for label, items in (
                ("mis-shaped", mismatched),
                ("missing from the checkpoint", missing),
                ("unexpected in the checkpoint", unexpected),
            )
            if items
        ]
        raise CheckpointError(
            f"The {layout.name} checkpoint does not fit the {family.name} model {model.name!r} "
            "(another architecture or size?). " + " | ".join(parts)
        )
    return {p: a for p, a in result.items() if a is not None}


class _LazyProgbar:
    """A Keras progress bar over `total` items that appears only once the work has run `after` seconds,
    so that a small checkpoint converts silently and a large one shows how far it is."""

    def __init__(self, total, unit_name, after=1.0):
        self.total, self.unit_name, self.after = total, unit_name, after
        self.start = time.monotonic()
        self.bar = None

    def update(self, done):
        if self.bar is None and time.monotonic() - self.start >= self.after:
            import keras

            self.bar = keras.utils.Progbar(self.total, unit_name=self.unit_name)
        if self.bar is not None:
            self.bar.update(done, finalize=done >= self.total)


def assign(model, weights):
    """Sets every variable of `model` named in `{variable_path: array}` (with a progress bar over the tensors
    when that takes more than a second)."""
    variables = [v for v in model.weights if v.path in weights]
    progress = _LazyProgbar(len(variables), "tensor")
    for done, variable in enumerate(variables, 1):
        variable.assign(np.asarray(weights[variable.path]).astype(variable.dtype))
        progress.update(done)
    return model
