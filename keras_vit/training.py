"""Training and evaluation of image classifiers on `keras_vit.data` pipelines.

One recipe trains every image model of the package: `keras-vit train`,
`fit_model` and the KerasTuner hypermodels (`keras_vit.tuning`) all compile
through `compile_model(model, Recipe(...), total_steps=...)`:

- AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR
  2019), with weight decay left out for biases, normalisation scales and
  offsets, class / distillation / register tokens and (relative) position
  embeddings, as DeiT and timm do (`NO_WEIGHT_DECAY`);
- a linear warmup from 0 to the peak learning rate over `warmup_fraction` of
  the steps, then a cosine decay to 0 (Loshchilov & Hutter, "SGDR", ICLR 2017;
  the ViT paper's schedule, Dosovitskiy et al. 2020, App. B.1);
- clipping of the gradients' global norm (ViT clips it at 1, App. B.1);
- sparse categorical cross-entropy on logits or probabilities, whichever the
  model outputs, and accuracy.

`train` is what `keras-vit train` runs: it loads the data, builds a model from
the registry (or loads a `.keras` file), fits it, and writes into its output
folder:

    out_dir/model.keras            the trained model (written atomically)
    out_dir/preprocessing.json     image size, channels, mean/std, class names
    out_dir/checkpoints/           best weights so far (by validation accuracy)
    out_dir/logs/                  TensorBoard logs and history.csv
    out_dir/backup/                BackupAndRestore state while a run is going;
                                   an interrupted run resumes from it

`fit_model` is the reusable core (compile + `model.fit` with those
callbacks) for a model and a `DataBundle` you already have.
"""

import dataclasses
import json
import math
import os
import re

import keras
import numpy as np

from keras_vit import data as data_lib
from keras_vit.utils import save_model_atomic, write_json_atomic

PREPROCESSING_FILE = "preprocessing.json"
MODEL_FILE = "model.keras"

# Variables AdamW does not decay, by the name of a component of their path
# (`patch_embed/class_token`, `block_0/norm1/gamma`, `position_embedding/embeddings`):
# biases; LayerNorm/BatchNorm scales and offsets (and LayerScale's gamma, a
# per-channel scale too); the class, distillation and register tokens
# (`ClassToken` layers are named `class_token`); learned absolute position
# embeddings; Swin's relative position bias table and MViTv2's relative
# position embeddings (`rel_pos_h`, `rel_pos_w`, ...). These are the
# one-dimensional parameters plus timm's `no_weight_decay()` sets.
NO_WEIGHT_DECAY = (
    "bias",
    "gamma",
    "beta",
    "class_token",
    "distillation_token",
    "register_tokens",
    "position_embedding",
    "relative_position_bias_table",
    r"rel_pos_[^/]+",
)
_NO_WEIGHT_DECAY_PATH = re.compile(r"(^|/)(" + "|".join(NO_WEIGHT_DECAY) + r")(/|$)")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How an image classifier is optimised (see the module docstring).

    Attributes:
        learning_rate: float > 0, the peak learning rate, reached at the end
            of the warmup.
        weight_decay: float >= 0, AdamW's decoupled weight decay (scaled by
            the learning rate, as Keras' AdamW does), for every variable not
            in `NO_WEIGHT_DECAY`.
        warmup_fraction: float in [0, 1), the fraction of the training steps
            spent warming up linearly from 0; `ceil(fraction × steps)` steps.
        global_clipnorm: float > 0 or None, the largest global norm of the
            gradients (all variables together); None disables clipping.
    """

    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    global_clipnorm: float = 1.0

    def __post_init__(self):
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={self.learning_rate!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={self.weight_decay!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"`warmup_fraction` must be in [0, 1). Received: warmup_fraction={self.warmup_fraction!r}")
        if self.global_clipnorm is not None and not self.global_clipnorm > 0:
            raise ValueError(
                f"`global_clipnorm` must be positive or None. Received: global_clipnorm={self.global_clipnorm!r}"
            )

    def to_config(self):
        """The recipe as a JSON-serialisable dict (`Recipe.from_config` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        """The recipe of a `to_config()` dict; unknown keys are an error."""
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise ValueError(f"Unknown recipe keys {unknown}; a recipe has {sorted(fields)}. Received: {config!r}")
        return cls(**config)


def warmup_steps(recipe, total_steps):
    """Number of warmup steps of `recipe` over `total_steps` training steps."""
    total_steps = _check_total_steps(total_steps)
    return min(math.ceil(total_steps * recipe.warmup_fraction), total_steps - 1) if total_steps > 1 else 0


def learning_rate_schedule(recipe, total_steps):
    """The learning rate at optimizer step t (t = 0, 1, ...), with W warmup and T total steps:

        lr(t) = peak · t / W                                    for t < W,
        lr(t) = peak · ½ (1 + cos(π · min(t − W, T − W) / (T − W)))  after,

    so lr(0) = 0 when there is a warmup, lr(W) = peak and lr(T) = 0.
    """
    total_steps = _check_total_steps(total_steps)
    warmup = warmup_steps(recipe, total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else recipe.learning_rate,
        decay_steps=max(total_steps - warmup, 1),
        alpha=0.0,
        warmup_target=recipe.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def no_weight_decay_variables(variables):
    """The variables among `variables` that AdamW leaves undecayed (see `NO_WEIGHT_DECAY`)."""
    return [v for v in variables if _NO_WEIGHT_DECAY_PATH.search(v.path)]


def make_optimizer(recipe, total_steps, variables=()):
    """AdamW with `recipe`'s schedule over `total_steps` steps and global-norm clipping.

    Args:
        recipe: a `Recipe`.
        total_steps: int, the optimizer steps of the whole training
            (steps per epoch × epochs): the schedule ends there.
        variables: the variables the optimizer will train (usually
            `model.trainable_variables`); those of them matching
            `NO_WEIGHT_DECAY` are excluded from weight decay.

    Returns:
        A `keras.optimizers.AdamW`, not yet built.
    """
    if not isinstance(recipe, Recipe):
        raise ValueError(f"`recipe` must be a keras_vit.training.Recipe. Received: recipe={recipe!r}")
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate_schedule(recipe, total_steps),
        weight_decay=recipe.weight_decay,
        global_clipnorm=recipe.global_clipnorm,
    )
    optimizer.exclude_from_weight_decay(var_list=no_weight_decay_variables(variables))
    return optimizer


def compile_model(model, recipe=None, *, total_steps, loss=None, metrics=None, **compile_kwargs):
    """Compiles `model` with `make_optimizer(recipe, total_steps, model.trainable_variables)`.

    Args:
        model: a built `keras.Model` (an image classifier).
        recipe: a `Recipe`; None is `Recipe()`.
        total_steps: int, steps per epoch × epochs of the training to come.
        loss: None (sparse categorical cross-entropy, reading logits or
            probabilities depending on whether the model ends in a softmax)
            or a loss for `compile`.
        metrics: None (accuracy) or metrics for `compile`.
        **compile_kwargs: more `compile` arguments (`jit_compile`,
            `run_eagerly`, ...).

    Returns:
        `model`, compiled.
    """
    recipe = Recipe() if recipe is None else recipe
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model))
    if metrics is None:
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    optimizer = make_optimizer(recipe, total_steps, model.trainable_variables)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **compile_kwargs)
    return model


def steps_per_epoch(bundle):
    """Optimizer steps in one epoch over `bundle.train`."""
    return math.ceil(bundle.num_train / _batch_size(bundle))


def _check_total_steps(total_steps):
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(
            "`total_steps` (steps per epoch × epochs) must be a positive integer. "
            f"Received: total_steps={total_steps!r}"
        )
    return int(total_steps)


def outputs_probabilities(model):
    """True when the model ends in a softmax (its outputs are probabilities, not logits)."""
    layer = model.layers[-1]
    activation = getattr(layer, "activation", None)
    return activation is keras.activations.softmax or getattr(activation, "__name__", "") == "softmax"


def fit_model(
    model,
    bundle,
    *,
    recipe=None,
    epochs=10,
    out_dir=None,
    callbacks=(),
    verbose="auto",
):
    """Compiles `model` with `recipe` and fits it on `bundle.train` (validating on `bundle.validation`).

    Args:
        model: a `keras.Model` whose output has `bundle.num_classes` units.
        bundle: a `keras_vit.data.DataBundle`.
        recipe: a `Recipe` (None: `Recipe()`); its schedule spans
            `steps_per_epoch(bundle) × epochs` steps.
        epochs: int, epochs to train.
        out_dir: None, or a folder for `checkpoints/`, `logs/` (TensorBoard
            and history.csv) and `backup/` (BackupAndRestore: rerunning the
            same call after an interruption resumes at the epoch it stopped).
        callbacks: extra callbacks, run after the built-in ones.
        verbose: passed to `model.fit`.

    Returns:
        The `keras.callbacks.History` of the epochs this call ran.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    if model.output_shape[-1] != bundle.num_classes:
        raise ValueError(
            f"The model has {model.output_shape[-1]} outputs but the data has {bundle.num_classes} classes. "
            f"Received: num_classes={bundle.num_classes}"
        )
    compile_model(model, recipe, total_steps=steps_per_epoch(bundle) * epochs)
    all_callbacks = []
    if out_dir is not None:
        monitor = "val_accuracy" if bundle.validation is not None else "accuracy"
        os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
        os.makedirs(os.path.join(out_dir, "logs"), exist_ok=True)
        backup = os.path.join(out_dir, "backup")
        resumed = resume_epoch(out_dir)
        if resumed and verbose:
            print(f"Resuming an interrupted run at epoch {resumed + 1}/{epochs} from {backup}")
        all_callbacks += [
            keras.callbacks.BackupAndRestore(backup, save_freq="epoch", delete_checkpoint=True),
            keras.callbacks.ModelCheckpoint(
                os.path.join(out_dir, "checkpoints", "best.weights.h5"),
                monitor=monitor,
                mode="max",
                save_best_only=True,
                save_weights_only=True,
            ),
            keras.callbacks.TensorBoard(os.path.join(out_dir, "logs"), write_graph=False, profile_batch=0),
            keras.callbacks.CSVLogger(os.path.join(out_dir, "logs", "history.csv"), append=True),
        ]
    all_callbacks += list(callbacks)
    return model.fit(
        bundle.train,
        validation_data=bundle.validation,
        epochs=epochs,
        callbacks=all_callbacks,
        shuffle=False,  # the training pipeline shuffles itself
        verbose=verbose,
    )


def resume_epoch(out_dir):
    """Number of epochs an interrupted run in `out_dir` completed (0 when there is nothing to resume)."""
    path = os.path.join(out_dir, "backup", "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return int(json.load(f).get("epoch", 0))


def evaluate_model(model, dataset):
    """Mean sparse cross-entropy and accuracy of `model` on a `(images, labels)` dataset.

    Computed batch by batch with `predict_on_batch`, so the model's own
    compilation (optimizer state included) is left as it is.

    Returns:
        A dict of floats: `loss`, `accuracy`, and `examples` (an int).
    """
    probabilities = outputs_probabilities(model)
    total_loss = 0.0
    correct = 0
    count = 0
    for images, labels in dataset:
        outputs = np.asarray(model.predict_on_batch(images), "float64")
        labels = np.asarray(labels).reshape(-1).astype("int64")
        if probabilities:
            log_probs = np.log(np.clip(outputs / outputs.sum(-1, keepdims=True), 1e-7, 1.0))
        else:
            shifted = outputs - outputs.max(-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        total_loss -= log_probs[np.arange(len(labels)), labels].sum()
        correct += int((outputs.argmax(-1) == labels).sum())
        count += len(labels)
    if not count:
        raise ValueError("The dataset to evaluate is empty. Received: examples=0")
    return {"loss": float(total_loss / count), "accuracy": correct / count, "examples": count}


def preprocessing_config(bundle, source=None):
    """What a caller needs to feed new images to a model trained on `bundle`."""
    return {
        "image_size": list(bundle.input_shape[:2]),
        "channels": int(bundle.input_shape[2]),
        "mean": list(bundle.mean),
        "std": list(bundle.std),
        "class_names": list(bundle.class_names),
        "source": None if source is None else os.fspath(source),
    }


def read_preprocessing(model_file):
    """The `preprocessing.json` beside `model_file`, or None when there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_file)), PREPROCESSING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def build_model(*, model=None, model_file=None, input_shape, num_classes, overrides=None):
    """A registered model `model` built for the data, or the model loaded from `model_file`."""
    if (model is None) == (model_file is None):
        raise ValueError(
            f"Give exactly one of `model` (a registered name) or `model_file`. Received: model={model!r}, "
            f"model_file={model_file!r}"
        )
    if model_file is not None:
        if overrides:
            raise ValueError(
                f"Overrides apply to a registered model, not to `model_file`. Received: overrides={overrides!r}"
            )
        if not os.path.isfile(model_file):
            raise FileNotFoundError(f"No such model file. Received: model_file={os.fspath(model_file)!r}")
        return keras.saving.load_model(model_file)
    from keras_vit.applications import get_model

    kwargs = {"input_shape": tuple(input_shape), "classes": num_classes, **(overrides or {})}
    return get_model(model, **kwargs)


def train(
    *,
    model=None,
    model_file=None,
    data="digits",
    out_dir,
    epochs=10,
    batch_size=64,
    recipe=None,
    image_size=None,
    channels=None,
    augment=False,
    validation_split=0.1,
    overrides=None,
    seed=0,
    callbacks=(),
    verbose="auto",
):
    """Trains a model on `data` and writes it with its logs into `out_dir`.

    Args:
        model: a registered model name (`keras_vit.applications.list_models()`),
            built with the data's `input_shape` and number of classes, then
            `overrides` (e.g. `{"patch_size": 2, "depth": 4}`).
        model_file: instead of `model`, a `.keras` file to fine-tune; the data
            is resized to its input size.
        data: a `keras_vit.data.load` source.
        out_dir: output folder (see the module docstring for its contents).
        epochs, batch_size: the length of the training and its batches.
        recipe: a `Recipe` (None: `Recipe()`), see `fit_model`.
        image_size, channels, augment, validation_split, seed: passed to
            `keras_vit.data.load`.
        callbacks: extra Keras callbacks.
        verbose: passed to `model.fit`.

    Returns:
        A dict: `model`, `bundle`, `history` (this call's epochs), `metrics`
        (loss/accuracy on the test split, else the validation split, else
        None), `model_path`.
    """
    keras.utils.set_random_seed(seed)
    if model_file is not None:
        if not os.path.isfile(model_file):
            raise FileNotFoundError(f"No such model file. Received: model_file={os.fspath(model_file)!r}")
        net = keras.saving.load_model(model_file)
        h, w, c = net.input_shape[1:]
        image_size = image_size or (h, w)
        channels = channels or c
    bundle = data_lib.load(
        data,
        image_size=image_size,
        batch_size=batch_size,
        validation_split=validation_split,
        augment=augment,
        seed=seed,
        channels=channels,
    )
    if model_file is None:
        net = build_model(
            model=model, input_shape=bundle.input_shape, num_classes=bundle.num_classes, overrides=overrides
        )
    elif overrides:
        raise ValueError(
            f"Overrides apply to a registered model, not to `model_file`. Received: overrides={overrides!r}"
        )
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(preprocessing_config(bundle, data), os.path.join(out_dir, PREPROCESSING_FILE))
    history = fit_model(
        net,
        bundle,
        recipe=recipe,
        epochs=epochs,
        out_dir=out_dir,
        callbacks=callbacks,
        verbose=verbose,
    )
    model_path = save_model_atomic(net, os.path.join(out_dir, MODEL_FILE))
    held_out = bundle.test if bundle.test is not None else bundle.validation
    metrics = evaluate_model(net, held_out) if held_out is not None else None
    return {"model": net, "bundle": bundle, "history": history, "metrics": metrics, "model_path": model_path}


def _batch_size(bundle):
    if bundle.batch_size:
        return bundle.batch_size
    for images, _ in bundle.train.take(1):
        return int(images.shape[0])
    raise ValueError("The training dataset is empty. Received: num_train=0")
