"""KerasTuner hypermodels that hand the architecture to the application factories.

A hypermodel declares a search space and, for each sampled point, calls a
factory (`keras_vit.applications.VisionTransformer`) and compiles the model
with the package's one training recipe (`keras_vit.training.compile_model`:
AdamW, linear warmup + cosine decay, global-norm clipping, no weight decay on
norms, biases, tokens and position embeddings), exactly as `keras-vit train`
and `keras_vit.training.fit_model` do. The searched `learning_rate` and
`weight_decay` go into that `Recipe`; the schedule needs the number of
training steps, `total_steps` = steps per epoch × epochs, which `run_search`
gives the hypermodel (pass it yourself when you drive a KerasTuner tuner).
Every hyperparameter has a default range, and each can be replaced through the
constructor by a fixed value, a list of choices or a range (see `SPEC_FORMS`),
or fixed from outside with `hp.Fixed("vit/<name>", value)`: all names live
under the hypermodel's `name` scope, so several hypermodels compose in one
search without collisions.
"""

import dataclasses
import math

import keras
import keras_tuner
import numpy as np

from keras_vit import training
from keras_vit.applications import CNNHybridViT, Transformer, VisionTransformer, cnn_stem

SPEC_FORMS = """A search-space entry is one of:
    None                      the hypermodel's default range;
    a scalar (4, 1e-3)        fixed (`hp.Fixed`);
    a list or tuple [4, 8]    choices (`hp.Choice`, default: the package default if listed, else the first);
    {"values": [...], "default": v}
                              choices with an explicit default;
    {"min_value": a, "max_value": b, "step": s, "sampling": "linear"|"log", "default": v}
                              a range (`hp.Int` for integer hyperparameters, `hp.Float` otherwise)."""

# The ViT search space. Widths are the paper's names: hidden size D
# (`hidden_dim`), heads h (`num_heads`, so a head is D/h wide) and the MLP size
# as a ratio of D (`mlp_ratio`, MLP size = mlp_ratio * D). `patch_size` has no
# fixed default: it is derived from the image size (`patch_size_choices`).
VIT_SEARCH_SPACE = {
    "patch_size": None,
    "depth": {"min_value": 2, "max_value": 12, "step": 2, "default": 6},
    "num_heads": {"values": [2, 4, 8], "default": 4},
    "hidden_dim": {"values": [64, 128, 192, 256], "default": 128},
    "mlp_ratio": {"values": [2.0, 4.0], "default": 2.0},
    "dropout": {"min_value": 0.0, "max_value": 0.3, "step": 0.1, "default": 0.0},
    "drop_path_rate": {"min_value": 0.0, "max_value": 0.2, "step": 0.1, "default": 0.1},
    "learning_rate": {"min_value": 1e-4, "max_value": 3e-3, "sampling": "log", "default": 1e-3},
    "weight_decay": {"min_value": 1e-4, "max_value": 1e-1, "sampling": "log", "default": 0.05},
}
# The seq2seq Transformer (Vaswani et al. 2017): layers N, d_model, heads h,
# d_ff as a ratio of d_model, P_drop, and the paper's learning-rate schedule
# (Eq. 3) through its warm-up and a scale.
TRANSFORMER_SEARCH_SPACE = {
    "num_layers": {"min_value": 1, "max_value": 6, "step": 1, "default": 3},
    "num_heads": {"values": [2, 4, 8], "default": 4},
    "hidden_dim": {"values": [128, 256, 512], "default": 256},
    "mlp_ratio": {"values": [2.0, 4.0], "default": 4.0},
    "dropout": {"min_value": 0.0, "max_value": 0.3, "step": 0.1, "default": 0.1},
    "label_smoothing": {"values": [0.0, 0.1], "default": 0.1},
    "warmup_steps": {"values": [1000, 4000], "default": 4000},
    "learning_rate_scale": {"min_value": 0.25, "max_value": 2.0, "sampling": "log", "default": 1.0},
}
_INTEGER_HPS = ("patch_size", "depth", "num_heads", "hidden_dim", "num_layers", "warmup_steps")
# The searched hyperparameters that are fields of `keras_vit.training.Recipe`.
_RECIPE_HPS = ("learning_rate", "weight_decay")


def patch_size_choices(image_size, min_tokens=4, max_tokens=256):
    """Patch sizes that divide the image and give `min_tokens..max_tokens` patches.

    Args:
        image_size: int or `(height, width)`.
        min_tokens: int, fewest patches allowed.
        max_tokens: int, most patches allowed (self-attention costs grow with
            the square of this).

    Returns:
        A sorted list of ints; every one divides both height and width.
    """
    height, width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    common = math.gcd(int(height), int(width))
    sizes = [p for p in range(1, common + 1) if common % p == 0]
    chosen = [p for p in sizes if min_tokens <= (height // p) * (width // p) <= max_tokens]
    return chosen or sizes


def _default_patch_size(image_size, choices):
    # The patch whose grid is closest to 8×8 = 64 tokens, a good size for small data.
    height, width = image_size
    return min(choices, key=lambda p: (abs(math.log((height // p) * (width // p) / 64.0)), p))


def _spec_values(name, spec, integer):
    """All values a spec can take, or None for a continuous range."""
    if isinstance(spec, dict) and "values" in spec:
        return list(spec["values"])
    if isinstance(spec, dict):
        low, high = spec["min_value"], spec["max_value"]
        step, sampling = spec.get("step"), spec.get("sampling", "linear")
        if not integer and step is None:
            return None
        if sampling == "log":
            factor = step or 2
            values, value = [], low
            while value <= high:
                values.append(value)
                value *= factor
            return values
        if sampling != "linear":
            raise ValueError(f"`sampling` of {name!r} must be 'linear' or 'log'. Received: sampling={sampling!r}")
        step = step or 1
        count = int(round((high - low) / step)) + 1
        return [low + i * step for i in range(count)]
    if isinstance(spec, (list, tuple)):
        return list(spec)
    return [spec]


def _check_spec(name, spec):
    if spec is None or np.isscalar(spec) or isinstance(spec, (list, tuple)):
        if isinstance(spec, (list, tuple)) and not spec:
            raise ValueError(f"The choices of {name!r} must not be empty. Received: {name}={spec!r}")
        return
    if isinstance(spec, dict):
        allowed = (
            {"values", "default"} if "values" in spec else {"min_value", "max_value", "step", "sampling", "default"}
        )
        unknown = set(spec) - allowed
        missing = {"min_value", "max_value"} - set(spec) if "values" not in spec else set()
        if unknown or missing:
            raise ValueError(
                f"Bad search-space entry for {name!r}: unknown keys {sorted(unknown)}, "
                f"missing keys {sorted(missing)}. Received: {name}={spec!r}\n{SPEC_FORMS}"
            )
        return
    raise ValueError(f"Bad search-space entry for {name!r}. Received: {name}={spec!r}\n{SPEC_FORMS}")


def declare(hp, name, spec, default=None, integer=False):
    """Declares `name` in `hp` from a search-space `spec` (see `SPEC_FORMS`).

    Args:
        hp: `keras_tuner.HyperParameters`.
        name: str, the hyperparameter's name (inside the current name scope).
        spec: a search-space entry.
        default: the default used when `spec` is a plain list containing it.
        integer: bool, whether a range is `hp.Int` (else `hp.Float`).

    Returns:
        The value for the current trial.
    """
    if isinstance(spec, dict) and "values" in spec:
        values = list(spec["values"])
        return hp.Choice(name, values, default=spec.get("default", values[0]))
    if isinstance(spec, dict):
        kwargs = {k: spec[k] for k in ("step", "sampling", "default") if k in spec}
        if integer:
            return hp.Int(name, int(spec["min_value"]), int(spec["max_value"]), **kwargs)
        return hp.Float(name, float(spec["min_value"]), float(spec["max_value"]), **kwargs)
    if isinstance(spec, (list, tuple)):
        values = list(spec)
        return hp.Choice(name, values, default=default if default in values else values[0])
    return hp.Fixed(name, spec)


class ViTHyperModel(keras_tuner.HyperModel):
    """Searches Vision Transformers built by `keras_vit.applications.VisionTransformer`.

    Searched (with their default ranges in `VIT_SEARCH_SPACE`): `patch_size`
    (only sizes that divide the image), `depth`, `num_heads`, `hidden_dim`
    (every hidden size is divisible by every head count, checked when the
    hypermodel is made, so no sampled point is invalid), `mlp_ratio` (MLP size
    = mlp_ratio × hidden_dim), `dropout`, `drop_path_rate` (stochastic depth),
    `learning_rate` and `weight_decay` (AdamW). The names are scoped:
    `"vit/patch_size"` etc. for `name="vit"`.

    Each model is compiled by `keras_vit.training.compile_model` with
    `recipe`, its `learning_rate` and `weight_decay` replaced by the trial's,
    over `total_steps` steps: the same optimizer, schedule, clipping and
    weight-decay exclusions as `keras-vit train`. `trial_recipe(hp)` and
    `trial_model_arguments(hp)` say what `keras-vit train --model
    <registry_name>` needs to train a trial's model again.

    Args:
        input_shape: `(H, W, C)` of the images.
        classes: int, number of classes.
        name: str, the name scope of the hyperparameters (and the model name).
        loss: loss for `compile`; defaults to sparse categorical
            cross-entropy on logits (the model's head has no softmax, which
            keeps mixed precision numerically safe).
        metrics: metrics for `compile`; defaults to `["accuracy"]`.
        model_kwargs: dict of fixed factory arguments (`pooling`,
            `position_embedding`, ...).
        compile_kwargs: dict of extra `compile_model` arguments
            (`jit_compile`, `steps_per_execution`, `run_eagerly`, ...); by
            default each trial trains on the package's fastest measured path
            (`keras_vit.training.resolve_jit_compile`: XLA on TensorFlow and
            JAX; without XLA under a tf.distribute strategy, whose Keras
            training step runs without it).
        recipe: a `keras_vit.training.Recipe` (None: `Recipe()`) for the
            settings that are not searched (`warmup_fraction`,
            `global_clipnorm`); the searched `learning_rate` and
            `weight_decay` replace its own (fix them in the search space to
            keep them).
        total_steps: int, optimizer steps per trial (steps per epoch ×
            epochs), the length of the learning-rate schedule. `run_search`
            sets it from its data and `epochs` when it is None (for
            Hyperband: `epochs` is the most epochs a model trains, and every
            trial's schedule spans that many).
        **search_space: one entry per searched hyperparameter, overriding its
            default range: a fixed value, a list of choices, or a range dict
            (see `SPEC_FORMS`).

    Example:
        >>> hypermodel = ViTHyperModel((32, 32, 3), 10, patch_size=[4, 8], depth=[8, 12])
    """

    search_space_defaults = VIT_SEARCH_SPACE
    # The registered model whose factory this hypermodel calls; every
    # architecture argument of a trial overrides its configuration.
    registry_name = "vit_tiny_patch16_224"
    _grid_name = "image"

    def __init__(
        self,
        input_shape,
        classes,
        name="vit",
        loss=None,
        metrics=None,
        model_kwargs=None,
        compile_kwargs=None,
        recipe=None,
        total_steps=None,
        **search_space,
    ):
        super().__init__(name=name, tunable=True)
        input_shape = tuple(int(d) for d in input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"`input_shape` must be (height, width, channels). Received: input_shape={input_shape}")
        if not isinstance(classes, (int, np.integer)) or classes < 1:
            raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")
        unknown = set(search_space) - set(self.search_space_defaults)
        if unknown:
            raise ValueError(
                f"Unknown hyperparameters {sorted(unknown)}; searchable: "
                f"{sorted(self.search_space_defaults)}. Received: {search_space}"
            )
        self.input_shape = input_shape
        self.classes = int(classes)
        self.loss = loss
        self.metrics = metrics
        self.model_kwargs = dict(model_kwargs or {})
        self.compile_kwargs = dict(compile_kwargs or {})
        if recipe is not None and not isinstance(recipe, training.Recipe):
            raise ValueError(f"`recipe` must be a keras_vit.training.Recipe. Received: recipe={recipe!r}")
        self.recipe = training.Recipe() if recipe is None else recipe
        self.total_steps = total_steps
        self.search_space = {**self.search_space_defaults, **search_space}
        for key, spec in self.search_space.items():
            _check_spec(key, spec)
        image = self._patch_grid()
        self._patch_choices = patch_size_choices(image)
        if self.search_space["patch_size"] is None:
            self.search_space["patch_size"] = {
                "values": self._patch_choices,
                "default": _default_patch_size(image, self._patch_choices),
            }
        self._check_space()
        self._defaults = {
            key: spec.get("default") for key, spec in self.search_space_defaults.items() if isinstance(spec, dict)
        }
        self._defaults["patch_size"] = _default_patch_size(image, self._patch_choices)

    def _patch_grid(self):
        """The `(H, W)` that patches tile: the image for a plain ViT."""
        return self.input_shape[:2]

    def _values(self, key):
        return _spec_values(key, self.search_space[key], key in _INTEGER_HPS)

    def _check_space(self):
        height, width = self._patch_grid()
        bad = [p for p in self._values("patch_size") if height % p or width % p]
        if bad:
            raise ValueError(
                f"Every `patch_size` must divide the {self._grid_name} size {height}×{width} "
                f"(sizes that do: {patch_size_choices((height, width), 1, height * width)}). "
                f"Received: patch_size={self.search_space['patch_size']!r}"
            )
        hidden, heads = self._values("hidden_dim"), self._values("num_heads")
        bad = [(d, h) for d in hidden for h in heads if d % h]
        if bad:
            raise ValueError(
                "Every `hidden_dim` must be divisible by every `num_heads` so that no sampled "
                f"configuration is invalid; these pairs are not: {bad[:5]}. Received: "
                f"hidden_dim={self.search_space['hidden_dim']!r}, num_heads={self.search_space['num_heads']!r}"
            )

    def declare_space(self, hp):
        """Declares every hyperparameter in `hp`'s `self.name` scope; returns their values."""
        values = {}
        with hp.name_scope(self.name):
            for key, spec in self.search_space.items():
                values[key] = declare(hp, key, spec, default=self._defaults.get(key), integer=key in _INTEGER_HPS)
        return values

    def trial_model_arguments(self, hp):
        """The factory arguments of `hp`'s model, but `input_shape`, `classes` (which the data sets) and `name`.

        `keras_vit.applications.get_model(self.registry_name, input_shape=...,
        classes=..., **arguments)` builds the same architecture (under the
        registered name); these are what `keras-vit train --model
        <registry_name> --set key=value` takes.
        """
        arguments = self._model_arguments(self.declare_space(hp.copy()))
        arguments.pop("name")
        return arguments

    def trial_recipe(self, hp):
        """The `keras_vit.training.Recipe` that `hp`'s model is compiled with."""
        return self._recipe(self.declare_space(hp.copy()))

    def _recipe(self, values):
        return dataclasses.replace(self.recipe, **{key: float(values[key]) for key in _RECIPE_HPS})

    def _model_arguments(self, values):
        hidden_dim, num_heads = int(values["hidden_dim"]), int(values["num_heads"])
        if hidden_dim % num_heads:
            raise ValueError(
                "`hidden_dim` must be divisible by `num_heads`. "
                f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        return {
            "patch_size": int(values["patch_size"]),
            "hidden_dim": hidden_dim,
            "depth": int(values["depth"]),
            "num_heads": num_heads,
            "mlp_dim": int(round(float(values["mlp_ratio"]) * hidden_dim)),
            "dropout": float(values["dropout"]),
            "drop_path_rate": float(values["drop_path_rate"]),
            "classifier_activation": None,
            "name": self.name,
            **self.model_kwargs,
        }

    def build(self, hp):
        if self.total_steps is None:
            raise ValueError(
                "The learning-rate schedule needs `total_steps` (steps per epoch × epochs): pass it to the "
                "hypermodel, or search with `keras_vit.tuning.run_search`, which sets it. "
                f"Received: total_steps={self.total_steps!r}"
            )
        values = self.declare_space(hp)
        model = self._factory(input_shape=self.input_shape, classes=self.classes, **self._model_arguments(values))
        training.compile_model(
            model,
            self._recipe(values),
            total_steps=self.total_steps,
            loss=self.loss,
            metrics=self.metrics,
            **self.compile_kwargs,
        )
        return model

    def _factory(self, **kwargs):
        return VisionTransformer(**kwargs)


class CNNHybridViTHyperModel(ViTHyperModel):
    """Searches CNN-hybrid ViTs built by `keras_vit.applications.CNNHybridViT`.

    The ViT of Dosovitskiy et al. (2020, Sec. 3.1) over a CNN's feature map:
    the same search space as `ViTHyperModel`, except that `patch_size` counts
    feature-map cells and its default choices are the sizes that divide the
    feature map (1 included where the map is small enough). The backbone and
    its stage are fixed per hypermodel (they set the feature-map size).

    Args:
        input_shape, classes, name, loss, metrics, model_kwargs,
            compile_kwargs, **search_space: as for `ViTHyperModel`.
        backbone: a name in `keras_vit.applications.CNN_BACKBONES`, or a
            function returning a fresh `keras.Model` (each trial needs its own
            weights, so a model instance is refused).
        stage: int, the backbone stage whose output is patchified.
        feature_layer: str, a layer name overriding `stage`.
        backbone_weights: weights of a named backbone (None, "imagenet" or a
            file path).
    """

    registry_name = "vit_hybrid_resnet50_cifar_s4_32"
    _grid_name = "feature-map"

    def __init__(
        self,
        input_shape,
        classes,
        backbone="resnet50",
        stage=2,
        feature_layer=None,
        backbone_weights=None,
        name="hybrid",
        **kwargs,
    ):
        if isinstance(backbone, keras.Model) or not (isinstance(backbone, str) or callable(backbone)):
            raise ValueError(
                "`backbone` must be a backbone name or a function returning a new keras.Model "
                f"(a model instance would share its weights between trials). Received: backbone={backbone!r}"
            )
        self.backbone = backbone
        self.stage = stage
        self.feature_layer = feature_layer
        self.backbone_weights = backbone_weights
        if not isinstance(backbone, str):  # no registered model calls a backbone function
            self.registry_name = None
        stem = cnn_stem(self._backbone(), stage, feature_layer, None, tuple(input_shape))
        self._grid = tuple(int(d) for d in stem.output.shape[1:3])
        super().__init__(input_shape, classes, name=name, **kwargs)

    def _backbone(self):
        return self.backbone if isinstance(self.backbone, str) else self.backbone()

    def _patch_grid(self):
        return self._grid

    def _model_arguments(self, values):
        # A backbone function is called per trial, in `_factory`; a named one
        # is an argument like any other (and one `keras-vit train` can take).
        named = {"backbone": self.backbone} if isinstance(self.backbone, str) else {}
        return {
            **named,
            "stage": self.stage,
            "feature_layer": self.feature_layer,
            "backbone_weights": self.backbone_weights,
            **super()._model_arguments(values),
        }

    def _factory(self, **kwargs):
        return CNNHybridViT(**{"backbone": self._backbone(), **kwargs})


class TransformerHyperModel(keras_tuner.HyperModel):
    """Searches seq2seq Transformers built by `keras_vit.applications.Transformer`.

    Searched (defaults in `TRANSFORMER_SEARCH_SPACE`): `num_layers` (N),
    `num_heads` (h), `hidden_dim` (d_model, divisible by every head count),
    `mlp_ratio` (d_ff = ratio × d_model), `dropout` (P_drop),
    `label_smoothing`, `warmup_steps` and `learning_rate_scale` of the
    schedule of Vaswani et al. (2017, Eq. 3). Compiled with
    `keras_vit.translation.compile_translator`, the recipe of the paper that
    `keras_vit.translation.train_translator` (`keras-vit translate`) trains
    with too (the image recipe of `keras_vit.training` is not the
    Transformer's); the objective to use is
    "val_masked_accuracy" (or "val_loss"). Names live under `name`.

    Args:
        vocabulary_size: int, (shared) source vocabulary size.
        target_vocabulary_size: int or None.
        name: str, the name scope (and model name).
        model_kwargs: dict of fixed `Transformer` arguments (`norm_first`,
            `share_embeddings`, ...).
        run_eagerly: bool, train without graph compilation (tiny data).
        **search_space: entries overriding the default ranges (see `SPEC_FORMS`).
    """

    search_space_defaults = TRANSFORMER_SEARCH_SPACE

    def __init__(
        self,
        vocabulary_size,
        target_vocabulary_size=None,
        name="transformer",
        model_kwargs=None,
        run_eagerly=False,
        **search_space,
    ):
        super().__init__(name=name, tunable=True)
        if not isinstance(vocabulary_size, (int, np.integer)) or vocabulary_size < 2:
            raise ValueError(
                f"`vocabulary_size` must be an integer >= 2. Received: vocabulary_size={vocabulary_size!r}"
            )
        unknown = set(search_space) - set(self.search_space_defaults)
        if unknown:
            raise ValueError(
                f"Unknown hyperparameters {sorted(unknown)}; searchable: "
                f"{sorted(self.search_space_defaults)}. Received: {search_space}"
            )
        self.vocabulary_size = int(vocabulary_size)
        self.target_vocabulary_size = target_vocabulary_size
        self.model_kwargs = dict(model_kwargs or {})
        self.run_eagerly = bool(run_eagerly)
        self.search_space = {**self.search_space_defaults, **search_space}
        for key, spec in self.search_space.items():
            _check_spec(key, spec)
        hidden = _spec_values("hidden_dim", self.search_space["hidden_dim"], True)
        heads = _spec_values("num_heads", self.search_space["num_heads"], True)
        bad = [(d, h) for d in hidden for h in heads if d % h]
        if bad:
            raise ValueError(
                "Every `hidden_dim` must be divisible by every `num_heads` so that no sampled configuration "
                f"is invalid; these pairs are not: {bad[:5]}. Received: hidden_dim="
                f"{self.search_space['hidden_dim']!r}, num_heads={self.search_space['num_heads']!r}"
            )

    def declare_space(self, hp):
        """Declares every hyperparameter in `hp`'s `self.name` scope; returns their values."""
        values = {}
        with hp.name_scope(self.name):
            for key, spec in self.search_space.items():
                default = self.search_space_defaults[key].get("default")
                values[key] = declare(hp, key, spec, default=default, integer=key in _INTEGER_HPS)
        return values

    def build(self, hp):
        from keras_vit.translation import compile_translator

        values = self.declare_space(hp)
        hidden_dim = int(values["hidden_dim"])
        model = Transformer(
            vocabulary_size=self.vocabulary_size,
            target_vocabulary_size=self.target_vocabulary_size,
            num_layers=int(values["num_layers"]),
            hidden_dim=hidden_dim,
            num_heads=int(values["num_heads"]),
            mlp_dim=int(round(float(values["mlp_ratio"]) * hidden_dim)),
            dropout=float(values["dropout"]),
            **{"name": self.name, **self.model_kwargs},
        )
        compile_translator(
            model,
            warmup_steps=int(values["warmup_steps"]),
            learning_rate_scale=float(values["learning_rate_scale"]),
            label_smoothing=float(values["label_smoothing"]),
        )
        model.run_eagerly = self.run_eagerly
        return model
