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

    out_dir/model.keras            the trained model; it starts with `ImagePreprocessing` holding the
                                   data's mean/std, so it takes pixels in [0, 255] and needs no other file
    out_dir/preprocessing.json     image size, channels, mean/std, class names (for reference)
    out_dir/checkpoints/           best weights so far (by validation accuracy)
    out_dir/logs/                  TensorBoard logs, history.csv (one row per epoch) and
                                   curves.png (loss and metrics per epoch, redrawn each epoch)
    out_dir/backup/                the state after the last finished epoch (weights,
                                   optimizer, arguments) while a run is going;
                                   an interrupted run resumes from it
    out_dir/.keras_vit.lock        the pid of the run writing the folder

A run folder belongs to one run: a second training into it is refused while
the first runs (`keras_vit.utils.folder_lock`), and a rerun resumes the
interrupted run only when its arguments are the same (else it says which
differ). Every file is written atomically (`keras_vit.utils.atomic_path`); the
backup is the commit record of an epoch and is removed only once the final
`model.keras` and `preprocessing.json` are on disk, so a kill at any moment
loses at most the epoch under way. A backup that cannot be read is reported
and set aside (`backup.corrupt-<time>`). A non-finite loss stops training
(`keras.callbacks.TerminateOnNaN`) with an error, and no model of non-finite
weights is ever saved.

`fit_model` is the reusable core (compile + `model.fit` with those
callbacks) for a model and a `DataBundle` you already have.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import time

import keras
import numpy as np

from keras_vit import data as data_lib
from keras_vit.curves import CURVES_FILE, write_curves
from keras_vit.utils import (
    atomic_write,
    folder_lock,
    remove_temporary_files,
    save_model_atomic,
    save_weights_atomic,
    status_lines,
    write_json_atomic,
)

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
        # `math.isfinite` first: NaN fails every comparison and infinity passes `> 0`.
        if not (_is_number(self.learning_rate) and math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(
                f"`learning_rate` must be a positive finite number. Received: learning_rate={self.learning_rate!r}"
            )
        if not (_is_number(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"`weight_decay` must be a finite number >= 0. Received: weight_decay={self.weight_decay!r}"
            )
        if not (_is_number(self.warmup_fraction) and 0.0 <= self.warmup_fraction < 1.0):
            raise ValueError(f"`warmup_fraction` must be in [0, 1). Received: warmup_fraction={self.warmup_fraction!r}")
        if self.global_clipnorm is not None and not (
            _is_number(self.global_clipnorm) and math.isfinite(self.global_clipnorm) and self.global_clipnorm > 0
        ):
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


def _is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


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


# The settings `compile_model` and `fit_model` choose by themselves ("auto"); each can be turned off.
JIT_COMPILE_SETTINGS = ("auto", True, False)
MIXED_PRECISION_SETTINGS = ("auto", True, False)
DISTRIBUTE_SETTINGS = (None, "mirrored", "multi-worker", "data-parallel")
# Optimizer steps per call of the compiled training function on an accelerator, where the
# per-step dispatch of a small model costs more than its arithmetic. On CPU one step per call
# measured as fast (benchmarks/README.md, "Training speed").
ACCELERATOR_STEPS_PER_EXECUTION = 32
# TensorFlow's XLA pays back its compilation once parameters × optimizer steps reach this (see
# `resolve_jit_compile`): the CIFAR ViT (2.4 M parameters) after a few dozen steps, a tiny test model never.
XLA_MIN_PARAMETER_STEPS = 1e8


def gpu_devices():
    """The GPUs the active Keras backend sees (an empty list without GPUs).

    TensorFlow: its physical GPU devices. JAX: `jax.devices("gpu")`. PyTorch:
    one entry per CUDA device.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return list(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        try:
            return list(jax.devices("gpu"))
        except RuntimeError:  # no GPU platform in this jaxlib
            return []
    if backend == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []


def resolve_jit_compile(model, jit_compile="auto", distribute=None, total_steps=None):
    """The `jit_compile` that `compile_model` passes to Keras.

    "auto" is the package's pick, the fastest measured (benchmarks/README.md,
    "Training speed"), whenever every layer of `model` supports XLA:

    - TensorFlow: XLA, on CPU too (where Keras' own "auto" leaves it off; the
      CIFAR ViT trains about twice as fast with it), once the training is
      long enough for the compilation (seconds to a minute) to pay back:
      parameters × `total_steps` >= `XLA_MIN_PARAMETER_STEPS` (a model of
      a few thousand parameters trained for a few dozen steps, as in a quick
      try, is done before XLA would have compiled it). Off under a
      `tf.distribute` strategy, whose Keras training step runs without XLA.
    - JAX: XLA (`jax.jit`; Keras' JAX trainer has no graph mode without it).
    - PyTorch: off (eager, as Keras does).

    True or False is passed on as given.
    """
    if jit_compile is True or jit_compile is False:
        return jit_compile
    if jit_compile != "auto":
        raise ValueError(f"`jit_compile` must be one of {JIT_COMPILE_SETTINGS}. Received: jit_compile={jit_compile!r}")
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        return False
    if not all(getattr(layer, "supports_jit", True) for layer in model._flatten_layers()):
        return False
    if backend == "jax":
        return True
    if _is_tf_strategy(distribute) or getattr(model, "_distribute_strategy", None):
        return False
    return total_steps is None or model.count_params() * total_steps >= XLA_MIN_PARAMETER_STEPS


def resolve_steps_per_execution(steps_per_execution="auto", steps=None, gpus=None):
    """Optimizer steps per call of the compiled training function.

    "auto": 1 on CPU; `ACCELERATOR_STEPS_PER_EXECUTION` (at most `steps`, the
    steps of an epoch) with a GPU. An int >= 1 is passed on as given.
    """
    if steps_per_execution == "auto":
        gpus = gpu_devices() if gpus is None else gpus
        if not gpus:
            return 1
        return max(1, min(ACCELERATOR_STEPS_PER_EXECUTION, steps or ACCELERATOR_STEPS_PER_EXECUTION))
    if isinstance(steps_per_execution, (int, np.integer)) and not isinstance(steps_per_execution, bool):
        if steps_per_execution >= 1:
            return int(steps_per_execution)
    raise ValueError(
        f"`steps_per_execution` must be 'auto' or an integer >= 1. Received: steps_per_execution={steps_per_execution!r}"
    )


def resolve_mixed_precision(mixed_precision="auto", gpus=None):
    """The dtype policy to build and train in: None (float32) or a mixed policy name.

    "auto": mixed precision with a GPU ("mixed_bfloat16" where the GPU computes
    in bfloat16, compute capability >= 8.0, else "mixed_float16", whose loss
    Keras scales), float32 on CPU. True: the same choice, also without a GPU
    ("mixed_bfloat16" then). False: float32. The models end in a float32
    output layer, as the Keras mixed-precision guide advises.
    """
    if not (isinstance(mixed_precision, bool) or mixed_precision == "auto"):
        raise ValueError(
            f"`mixed_precision` must be one of {MIXED_PRECISION_SETTINGS}. Received: mixed_precision={mixed_precision!r}"
        )
    if mixed_precision is False:
        return None
    gpus = gpu_devices() if gpus is None else gpus
    if not gpus:
        return "mixed_bfloat16" if mixed_precision is True else None
    return "mixed_bfloat16" if _gpu_compute_capability(gpus[0]) >= 8 else "mixed_float16"


def _gpu_compute_capability(gpu):
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))[0]
        if backend == "torch":
            import torch

            return torch.cuda.get_device_capability(int(str(gpu).split(":")[-1]))[0]
        if backend == "jax":
            return int(float(getattr(gpu, "compute_capability", "0")))
    except (ValueError, RuntimeError, TypeError, AttributeError):
        pass
    return 0


def _is_tf_strategy(distribute):
    return distribute is not None and type(distribute).__module__.startswith("tensorflow")


def _is_keras_distribution(distribute):
    # keras.distribution exports its subclasses (DataParallel, ModelParallel), not their base class.
    return type(distribute).__module__.startswith("keras") and hasattr(distribute, "distribute_dataset")


def make_distribution(distribute):
    """The engine object of a `distribute` setting: a `tf.distribute.Strategy`, a `keras.distribution` one, or None.

    - None: one device (the default).
    - "mirrored": TensorFlow's `tf.distribute.MirroredStrategy` over the
      local GPUs (the CPU without one); on JAX, `keras.distribution.DataParallel`
      over the local devices.
    - "multi-worker": on JAX, `keras.distribution.initialize()` (reading
      `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES`,
      `KERAS_DISTRIBUTION_PROCESS_ID`) then `DataParallel` over every
      process's devices, one process per machine. On TensorFlow,
      `tf.distribute.MultiWorkerMirroredStrategy` (cluster in `TF_CONFIG`)
      is refused with an error that says why: Keras 3's `fit` fails under
      it (tensorflow/tensorflow#72388).
    - "data-parallel": `keras.distribution.DataParallel` over the local devices
      (JAX only).
    - a `tf.distribute.Strategy` or `keras.distribution.Distribution`: used as is.

    The model must be built, and trained, inside `distribution_scope(...)` of
    the returned object; `fit_model` and `keras-vit train` do both.
    """
    if distribute is None or _is_tf_strategy(distribute) or _is_keras_distribution(distribute):
        return distribute
    backend = keras.backend.backend()
    if distribute not in DISTRIBUTE_SETTINGS:
        raise ValueError(f"`distribute` must be one of {DISTRIBUTE_SETTINGS}. Received: distribute={distribute!r}")
    if backend == "tensorflow" and distribute in ("mirrored", "multi-worker"):
        import tensorflow as tf

        if distribute == "mirrored":
            return tf.distribute.MirroredStrategy()
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "`distribute='multi-worker'` reads the cluster from the TF_CONFIG environment variable, which is "
                "not set. Received: distribute='multi-worker'"
            )
        # Refused before any work: Keras 3's TensorFlow `fit` reduces every scalar metric along axis 0
        # under this strategy and fails after the first step (tensorflow/tensorflow#72388).
        raise ValueError(
            f"Keras {keras.__version__} cannot `fit` under tf.distribute.MultiWorkerMirroredStrategy (its "
            "TensorFlow trainer fails to reduce the scalar metrics across workers, tensorflow/tensorflow#72388). "
            "Train on several machines with the JAX backend (KERAS_BACKEND=jax, keras.distribution), or on the "
            "GPUs of one machine with distribute='mirrored'. Received: distribute='multi-worker'"
        )
    if backend == "jax":
        if distribute == "multi-worker":
            keras.distribution.initialize()
        return keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    raise ValueError(
        f"`distribute={distribute!r}` runs on TensorFlow (tf.distribute) or JAX (keras.distribution); the "
        f"{backend} backend trains on one device. Received: distribute={distribute!r}"
    )


def distribution_scope(distribution):
    """The context in which to build and train a model for `make_distribution(...)`'s result."""
    if distribution is None:
        return contextlib.nullcontext()
    return distribution.scope()


@contextlib.contextmanager
def build_scope(distribution=None, mixed_precision="auto"):
    """Where to build a model for training: `distribution`'s scope, under the `resolve_mixed_precision` policy."""
    policy = resolve_mixed_precision(mixed_precision)
    previous = keras.config.dtype_policy()
    if policy is not None:
        keras.config.set_dtype_policy(policy)
    try:
        with distribution_scope(distribution):
            yield
    finally:
        keras.config.set_dtype_policy(previous)


def is_chief(distribution):
    """Whether this process writes the run's files: always, but in the non-chief processes of a multi-worker run."""
    if _is_tf_strategy(distribution):
        return bool(distribution.extended.should_checkpoint)
    if _is_keras_distribution(distribution) and keras.backend.backend() == "jax":
        import jax

        return jax.process_index() == 0
    return True


def compile_model(
    model,
    recipe=None,
    *,
    total_steps,
    loss=None,
    metrics=None,
    jit_compile="auto",
    steps_per_execution="auto",
    distribute=None,
    **compile_kwargs,
):
    """Compiles `model` with `make_optimizer(recipe, total_steps, model.trainable_variables)`.

    Args:
        model: a built `keras.Model` (an image classifier).
        recipe: a `Recipe`; None is `Recipe()`.
        total_steps: int, steps per epoch × epochs of the training to come.
        loss: None (sparse categorical cross-entropy, reading logits or
            probabilities depending on whether the model ends in a softmax)
            or a loss for `compile`.
        metrics: None (accuracy) or metrics for `compile`.
        jit_compile: "auto" (the fastest measured: see
            `resolve_jit_compile`), True (XLA) or False.
        steps_per_execution: "auto" (see `resolve_steps_per_execution`) or
            an int >= 1.
        distribute: the distribution the model was built under (from
            `make_distribution`), or None; it decides what "auto" picks.
        **compile_kwargs: more `compile` arguments (`run_eagerly`, ...).

    Returns:
        `model`, compiled.
    """
    recipe = Recipe() if recipe is None else recipe
    if loss is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities(model))
    if metrics is None:
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    jit = (
        False if compile_kwargs.get("run_eagerly") else resolve_jit_compile(model, jit_compile, distribute, total_steps)
    )
    steps = resolve_steps_per_execution(steps_per_execution, total_steps)
    with distribution_scope(distribute if _is_tf_strategy(distribute) else None):
        optimizer = make_optimizer(recipe, total_steps, model.trainable_variables)
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            jit_compile=jit,
            steps_per_execution=steps,
            **compile_kwargs,
        )
    return model


class StatusUntilFirstStep(keras.callbacks.Callback):
    """`text...` when training begins, repeated with the seconds elapsed every 8 s until the first step ends
    (`keras_vit.utils.status_lines`): the first step traces, and maybe compiles, the graph."""

    def __init__(self, text=None):
        super().__init__()
        self.text = text
        self._status = None

    def status_text(self):
        """The line to show, or None for none."""
        return self.text

    def on_train_begin(self, logs=None):
        text = self.status_text()
        if text:
            self._status = status_lines(text, True)
            self._status.__enter__()

    def _done(self):
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None

    def on_train_batch_end(self, batch, logs=None):
        self._done()

    def on_train_end(self, logs=None):
        self._done()


class CompileNotice(StatusUntilFirstStep):
    """Says, before the first training step, that the step is being compiled (and how): it can take a while."""

    def status_text(self):
        model = self.model
        if model.run_eagerly:
            return None
        backend = keras.backend.backend()
        if not model.jit_compile and backend != "tensorflow":
            return None  # eager: nothing to compile
        how = ("torch.compile" if backend == "torch" else "XLA") if model.jit_compile else "tf.function graph"
        per_call = f", {model.steps_per_execution} steps per call" if model.steps_per_execution > 1 else ""
        return f"Compiling the training step ({backend}, {how}{per_call})"


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
    jit_compile="auto",
    steps_per_execution="auto",
    distribute=None,
):
    """Compiles `model` with `recipe` and fits it on `bundle.train` (validating on `bundle.validation`).

    A non-finite loss stops the training (`keras.callbacks.TerminateOnNaN`)
    and raises a `ValueError`. Unless `verbose=0`, a line says that the
    training step is being compiled before the first step.

    On several devices or machines, build the model inside the distribution's
    scope, then pass the same distribution here:

        distribution = training.make_distribution("mirrored")  # or "multi-worker"
        with training.distribution_scope(distribution):
            model = get_model("vit_cifar_patch4_depth8_32")
        training.fit_model(model, bundle, distribute=distribution)

    `bundle`'s batch size is the global batch (split across the replicas),
    so the losses equal a one-device run's on the same batches; but under
    tf.distribute Keras clips each replica's part of the gradient before the
    all-reduce, so a step that `recipe.global_clipnorm` clips differs.

    Args:
        model: a `keras.Model` whose output has `bundle.num_classes` units.
        bundle: a `keras_vit.data.DataBundle`.
        recipe: a `Recipe` (None: `Recipe()`); its schedule spans
            `steps_per_epoch(bundle) × epochs` steps.
        epochs: int, epochs to train.
        out_dir: None, or a run folder for `checkpoints/`, `logs/`
            (TensorBoard and history.csv) and `backup/` (rerunning the same
            call after an interruption resumes after the last finished epoch;
            the backup is removed when the call returns). The folder is
            locked while the call runs.
        callbacks: extra callbacks, run after the built-in ones.
        verbose: passed to `model.fit`.
        jit_compile, steps_per_execution: see `compile_model` ("auto": the
            fastest measured setting for the backend and device).
        distribute: None (one device), "mirrored", "multi-worker",
            "data-parallel" or an engine object (see `make_distribution`);
            `model` must have been built in its `distribution_scope`. In a
            multi-worker run only the chief writes `out_dir`; the other
            workers keep their run files in `out_dir/workers/<index>/`.

    Returns:
        The `keras.callbacks.History` of the epochs this call ran.
    """
    recipe = Recipe() if recipe is None else recipe
    distribution = make_distribution(distribute)
    speed = {"jit_compile": jit_compile, "steps_per_execution": steps_per_execution, "distribute": distribution}
    if out_dir is None:
        return _fit(model, bundle, recipe=recipe, epochs=epochs, callbacks=callbacks, verbose=verbose, **speed)
    out_dir = worker_dir(out_dir, distribution)
    arguments = {"epochs": epochs, "recipe": recipe.to_config()}
    with folder_lock(out_dir, "a training"):
        run = _RunFolder(out_dir, arguments, _data_fingerprint(bundle))
        history = _fit(
            model, bundle, recipe=recipe, epochs=epochs, run=run, callbacks=callbacks, verbose=verbose, **speed
        )
        run.finish()
    return history


def worker_dir(out_dir, distribution):
    """`out_dir` for the chief (and single-process runs); `out_dir/workers/<index>` for the other workers."""
    if is_chief(distribution):
        return out_dir
    if _is_tf_strategy(distribution):
        index = distribution.cluster_resolver.task_id
    else:
        import jax

        index = jax.process_index()
    return os.path.join(os.fspath(out_dir), "workers", str(index))


def _fit(
    model,
    bundle,
    *,
    recipe,
    epochs,
    run=None,
    callbacks=(),
    verbose="auto",
    jit_compile="auto",
    steps_per_execution="auto",
    distribute=None,
):
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    if model.output_shape[-1] != bundle.num_classes:
        raise ValueError(
            f"The model has {model.output_shape[-1]} outputs but the data has {bundle.num_classes} classes. "
            f"Received: num_classes={bundle.num_classes}"
        )
    distribution = make_distribution(distribute)
    _check_built_in_scope(model, distribution)
    steps = steps_per_epoch(bundle)
    compile_model(
        model,
        recipe,
        total_steps=steps * epochs,
        jit_compile=jit_compile,
        steps_per_execution=resolve_steps_per_execution(steps_per_execution, steps),
        distribute=distribution,
    )
    guard = _FiniteGuard()
    all_callbacks = [keras.callbacks.TerminateOnNaN(), guard]
    if verbose != 0:
        all_callbacks.append(CompileNotice())
    initial_epoch = 0
    if run is not None:
        # The optimizer state a resume restores belongs in the strategy's scope, as the model does.
        with distribution_scope(distribution if _is_tf_strategy(distribution) else None):
            initial_epoch = run.resume(model, epochs)
        monitor = "val_accuracy" if bundle.validation is not None else "accuracy"
        all_callbacks += run.callbacks(guard, monitor, initial_epoch)
    all_callbacks += list(callbacks)
    # keras.distribution shards the batches only inside its scope; tf.distribute needs no scope here.
    with distribution_scope(None if _is_tf_strategy(distribution) else distribution):
        history = model.fit(
            bundle.train,
            validation_data=bundle.validation,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=all_callbacks,
            shuffle=False,  # the training pipeline shuffles itself
            verbose=verbose,
        )
    if guard.failure is not None or not _weights_finite(model):
        done = resume_epoch(run.out_dir) if run is not None else 0
        kept = f" The state after epoch {done}, the last finite one, is kept in {run.backup!r}." if done else ""
        raise ValueError(
            f"Training diverged: {guard.failure or 'the weights are not finite'}. No model was saved.{kept} "
            f"Train with a lower learning rate (in a new output folder). "
            f"Received: learning_rate={recipe.learning_rate!r}"
        )
    return history


def _check_built_in_scope(model, distribution):
    if _is_tf_strategy(distribution):
        outside = [v.path for v in model.weights if not distribution.extended.variable_created_in_scope(v.value)]
        if outside:
            raise ValueError(
                f"The model was built outside the scope of {type(distribution).__name__}: build it inside "
                f"`keras_vit.training.distribution_scope(distribution)`. Received: variables outside it: {outside[:3]}"
            )


def _weights_finite(model):
    return all(np.isfinite(np.asarray(keras.ops.convert_to_numpy(v))).all() for v in model.weights)


class _FiniteGuard(keras.callbacks.Callback):
    """Records the first non-finite loss or weights; the run's writers skip a failed epoch."""

    def __init__(self):
        super().__init__()
        self.failure = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.failure is None and loss is not None and not math.isfinite(float(loss)):
            self.failure = f"the loss became {float(loss)} at batch {batch + 1} of epoch {self._epoch + 1}"

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.failure is None and not _weights_finite(self.model):
            self.failure = f"the weights are not finite after epoch {epoch + 1}"

    @property
    def ok(self):
        return self.failure is None


BACKUP_STATE = "state.json"
HISTORY_FILE = "history.csv"


class _RunFolder:
    """The files of one run in `out_dir` (see the module docstring); the caller holds its lock."""

    def __init__(self, out_dir, arguments, data_fingerprint):
        self.out_dir = os.fspath(out_dir)
        self.backup = os.path.join(self.out_dir, "backup")
        self.arguments = json.loads(json.dumps(arguments))  # as it reads back from state.json
        self.data = json.loads(json.dumps(data_fingerprint))
        self.best = None
        for sub in ("", "checkpoints", "logs", "backup"):
            remove_temporary_files(os.path.join(self.out_dir, sub))  # left by a killed writer

    def _set_aside(self, reason):
        aside = f"{self.backup}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        while os.path.exists(aside):
            aside += "-1"
        os.replace(self.backup, aside)
        print(
            f"keras-vit: warning: the backup {self.backup!r} cannot be resumed ({reason}); moved it to {aside!r} "
            "and training from the first epoch.",
            file=sys.stderr,
        )

    def resume(self, model, epochs):
        """Restores the interrupted run's weights and optimizer state; returns the epochs it finished."""
        if not os.path.isdir(self.backup):
            return 0
        state_path = os.path.join(self.backup, BACKUP_STATE)
        if not os.path.isfile(state_path):
            if os.listdir(self.backup):
                self._set_aside(f"no {BACKUP_STATE}: not a backup of keras_vit's training")
            else:
                os.rmdir(self.backup)
            return 0
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
            epoch = int(state["epoch"])
            weights = os.path.join(self.backup, os.path.basename(state["weights"]))
            previous, previous_data = state["arguments"], state["data"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            self._set_aside(f"unreadable {BACKUP_STATE}: {error}")
            return 0
        changed = [
            f"{key}: {previous.get(key)!r} then, {self.arguments.get(key)!r} now"
            for key in sorted(set(previous) | set(self.arguments))
            if previous.get(key) != self.arguments.get(key)
        ] + [
            f"data {key}: {previous_data.get(key)!r} then, {self.data.get(key)!r} now"
            for key in sorted(set(previous_data) | set(self.data))
            if previous_data.get(key) != self.data.get(key)
        ]
        if changed:
            raise ValueError(
                f"{self.out_dir!r} holds an interrupted run (after epoch {epoch}) with other arguments: "
                + "; ".join(changed)
                + ". Rerun with the arguments of that run to resume it, or train into another folder "
                f"(or delete {self.backup!r}) to start a new run. Received: out_dir={self.out_dir!r}"
            )
        # A failed load can leave some variables overwritten: restore them, then start afresh.
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        variables = list(model.variables) + list(model.optimizer.variables if model.optimizer else [])
        snapshot = [keras.ops.convert_to_numpy(v) for v in variables]
        try:
            model.load_weights(weights)
        except Exception as error:  # noqa: BLE001 - h5py, Keras and OS errors alike mean "unusable"
            for variable, value in zip(variables, snapshot):
                variable.assign(value)
            self._set_aside(f"{os.path.basename(weights)} does not load: {type(error).__name__}: {error}")
            return 0
        self.best = state.get("best")
        # Said even with verbose=0: what was resumed is not progress output.
        if epoch >= epochs:
            print(f"The interrupted run had finished its {epochs} epochs; writing its model from {self.backup}")
        else:
            print(f"Resuming an interrupted run at epoch {epoch + 1}/{epochs} from {self.backup}")
        return epoch

    def callbacks(self, guard, monitor, initial_epoch):
        """The run's writers, in commit order: history, best checkpoint, then the backup (the commit record)."""
        best = _BestWeights(os.path.join(self.out_dir, "checkpoints", "best.weights.h5"), monitor, self.best, guard)
        return [
            keras.callbacks.TensorBoard(os.path.join(self.out_dir, "logs"), write_graph=False, profile_batch=0),
            _HistoryWriter(os.path.join(self.out_dir, "logs", HISTORY_FILE), initial_epoch, guard),
            best,
            _Backup(self, best, guard),
        ]

    def commit(self, model, epoch, best):
        """Writes the state after `epoch` epochs: weights first, then state.json (the commit), then cleans up."""
        name = f"epoch-{epoch:04d}.weights.h5"
        save_weights_atomic(model, os.path.join(self.backup, name))
        state = {"epoch": epoch, "weights": name, "best": best, "arguments": self.arguments, "data": self.data}
        write_json_atomic(state, os.path.join(self.backup, BACKUP_STATE))
        for other in os.listdir(self.backup):
            if other.endswith(".weights.h5") and other != name:
                os.remove(os.path.join(self.backup, other))

    def finish(self):
        """Removes the backup: call it once the run's results are safely on disk."""
        if os.path.isdir(self.backup):
            shutil.rmtree(self.backup)


class _Backup(keras.callbacks.Callback):
    def __init__(self, run, best, guard):
        super().__init__()
        self.run, self.best, self.guard = run, best, guard

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.ok:
            self.run.commit(self.model, epoch + 1, self.best.best)


class _BestWeights(keras.callbacks.Callback):
    """`ModelCheckpoint(save_best_only=True, mode="max", save_weights_only=True)`, written atomically."""

    def __init__(self, path, monitor, best, guard):
        super().__init__()
        self.path, self.monitor, self.best, self.guard = path, monitor, best, guard

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if not self.guard.ok or value is None or not math.isfinite(float(value)):
            return
        if self.best is None or float(value) > self.best:
            save_weights_atomic(self.model, self.path)
            self.best = float(value)


class _HistoryWriter(keras.callbacks.Callback):
    """`history.csv`, one row per epoch, rewritten atomically; a resumed run drops the rows it will redo."""

    def __init__(self, path, initial_epoch, guard):
        super().__init__()
        self.path, self.guard = path, guard
        self.rows = []
        if os.path.isfile(path):
            try:
                with open(path, newline="", encoding="utf-8") as f:
                    self.rows = [row for row in csv.DictReader(f) if int(row["epoch"]) < initial_epoch]
            except (ValueError, KeyError, TypeError, csv.Error):
                self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{key: float(value) for key, value in (logs or {}).items()}}
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        keys = ["epoch"] + sorted({key for r in self.rows for key in r} - {"epoch"})
        with atomic_write(self.path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        # Redrawn every epoch, so an interrupted run has its curves up to the last finished epoch.
        write_curves(self.rows, os.path.join(os.path.dirname(self.path), CURVES_FILE))


def _data_fingerprint(bundle):
    return {
        "num_train": int(bundle.num_train),
        "input_shape": list(bundle.input_shape),
        "class_names": list(bundle.class_names),
        "mean": list(bundle.mean),
        "std": list(bundle.std),
    }


def resume_epoch(out_dir):
    """Number of epochs an interrupted run in `out_dir` completed (0 when there is nothing to resume)."""
    path = os.path.join(out_dir, "backup", BACKUP_STATE)
    if not os.path.isfile(path):
        return 0
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


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
        # NumPy in: a model laid out by keras.distribution (JAX) takes no TensorFlow tensors.
        outputs = np.asarray(model.predict_on_batch(np.asarray(images)), "float64")
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


def preprocessing_config(bundle, source=None, model=None):
    """What a caller needs to feed new images to a model trained on `bundle`.

    With a `model` that starts with `ImagePreprocessing` (every model `train`
    saves), `mean`/`std` are that layer's and `value_range` is `[0, 255]`:
    the model takes pixels and normalises them itself, so they are recorded
    here for reference only. Without one, the images are to be scaled to
    [0, 1] and normalised with `mean`/`std` (`value_range` `[0, 1]`).
    """
    from keras_vit.applications import model_preprocessing

    layer = None if model is None else model_preprocessing(model)
    return {
        "image_size": list(bundle.input_shape[:2]),
        "channels": int(bundle.input_shape[2]),
        "mean": list(bundle.mean) if layer is None else list(layer.mean),
        "std": list(bundle.std) if layer is None else list(layer.std),
        "class_names": list(bundle.class_names),
        "source": None if source is None else os.fspath(source),
        "value_range": [0, 1] if layer is None else [0, round(1.0 / layer.scale, 6)],
    }


def pixel_bundle(bundle):
    """`bundle` with its splits as pixels in [0, 255] (its normalisation undone), for a model with preprocessing inside."""
    import tensorflow as tf

    mean = tf.constant(np.asarray(bundle.mean, "float32") * 255.0)
    std = tf.constant(np.asarray(bundle.std, "float32") * 255.0)

    def pixels(split):
        if split is None:
            return None
        return split.map(lambda x, y: (x * std + mean, y), num_parallel_calls=tf.data.AUTOTUNE)

    return dataclasses.replace(
        bundle, train=pixels(bundle.train), validation=pixels(bundle.validation), test=pixels(bundle.test)
    )


def read_preprocessing(model_file):
    """The `preprocessing.json` beside `model_file`, or None when there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_file)), PREPROCESSING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def build_model(*, model=None, model_file=None, input_shape, num_classes, overrides=None, mean=None, std=None):
    """A registered model `model` built for the data, or the model loaded from `model_file`.

    With the data's `mean` and `std`, a registered model is built with them
    inside (`include_preprocessing=True`, unless `overrides` say otherwise;
    with `hf://` weights the checkpoint's statistics are kept): it then takes
    pixels in [0, 255].
    """
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
    from keras_vit import hub
    from keras_vit.applications import get_model

    kwargs = {"input_shape": tuple(input_shape), "classes": num_classes, **(overrides or {})}
    if mean is not None:
        kwargs.setdefault("include_preprocessing", True)
        if kwargs["include_preprocessing"] and not hub.is_hub_uri(kwargs.get("weights")):
            kwargs.setdefault("image_mean", tuple(mean))
            kwargs.setdefault("image_std", tuple(std))
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
    jit_compile="auto",
    steps_per_execution="auto",
    mixed_precision="auto",
    distribute=None,
):
    """Trains a model on `data` and writes it with its logs into `out_dir`.

    Args:
        model: a registered model name (`keras_vit.applications.list_models()`),
            built with the data's `input_shape` and number of classes, then
            `overrides` (e.g. `{"patch_size": 2, "depth": 4}`).
        model_file: instead of `model`, a `.keras` file to fine-tune; the data
            is resized to its input size, or with `image_size` the model is
            rebuilt for that size (`keras_vit.applications.set_image_size`).
        data: a `keras_vit.data.load` source.
        out_dir: output folder (see the module docstring for its contents).
        epochs, batch_size: the length of the training and its batches.
        recipe: a `Recipe` (None: `Recipe()`), see `fit_model`.
        image_size, channels, augment, validation_split, seed: passed to
            `keras_vit.data.load`.
        callbacks: extra Keras callbacks.
        verbose: passed to `model.fit`.
        jit_compile, steps_per_execution: see `compile_model` ("auto": the
            fastest measured setting for the backend and device).
        mixed_precision: "auto" (on with a GPU), True or False: the dtype
            policy the registered model is built in (`resolve_mixed_precision`).
        distribute: None, "mirrored", "multi-worker" or "data-parallel" (see
            `make_distribution`); the model is built in its scope. In a
            multi-worker run only the chief writes `out_dir`; the other
            workers write `out_dir/workers/<index>/`.

    Returns:
        A dict: `model`, `bundle`, `history` (this call's epochs), `metrics`
        (loss/accuracy on the test split, else the validation split, else
        None), `model_path`.

    Raises:
        ValueError: `out_dir` is being written by another run (its lock is
            held by a live process); `out_dir` holds an interrupted run
            whose arguments differ (the message names each one); the loss
            or the weights became non-finite (no model is saved then).
    """
    recipe = Recipe() if recipe is None else recipe
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    arguments = {
        "model": model,
        "model_file": None if model_file is None else os.path.abspath(model_file),
        "data": os.path.abspath(data) if isinstance(data, (str, os.PathLike)) and os.path.exists(data) else data,
        "epochs": epochs,
        "batch_size": batch_size,
        "recipe": recipe.to_config(),
        "image_size": image_size,
        "channels": channels,
        "augment": augment,
        "validation_split": validation_split,
        "overrides": overrides or {},
        "seed": seed,
    }
    distribution = make_distribution(distribute)
    out_dir = worker_dir(out_dir, distribution)
    with folder_lock(out_dir, "a training"), build_scope(distribution, mixed_precision):
        keras.utils.set_random_seed(seed)
        if model_file is not None:
            if not os.path.isfile(model_file):
                raise FileNotFoundError(f"No such model file. Received: model_file={os.fspath(model_file)!r}")
            net = keras.saving.load_model(model_file)
            h, w, c = net.input_shape[1:]
            if image_size is not None:
                from keras_vit.applications import set_image_size

                # Fine-tuning at another resolution: the same model with its position tables resampled.
                net = set_image_size(net, image_size)
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
                model=model,
                input_shape=bundle.input_shape,
                num_classes=bundle.num_classes,
                overrides=overrides,
                mean=bundle.mean,
                std=bundle.std,
            )
        elif overrides:
            raise ValueError(
                f"Overrides apply to a registered model, not to `model_file`. Received: overrides={overrides!r}"
            )
        else:
            net = _with_preprocessing(net, bundle)
        run = _RunFolder(out_dir, arguments, _data_fingerprint(bundle))
        from keras_vit.applications import model_preprocessing

        if model_preprocessing(net) is not None:
            # The model normalises inside (its own statistics: the data's, or a checkpoint's): feed it pixels.
            bundle = pixel_bundle(bundle)
        history = _fit(
            net,
            bundle,
            recipe=recipe,
            epochs=epochs,
            run=run,
            callbacks=callbacks,
            verbose=verbose,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            distribute=distribution,
        )
        # The model, then its preprocessing, then (only once both are on disk) the backup goes.
        model_path = save_model_atomic(net, os.path.join(out_dir, MODEL_FILE))
        write_json_atomic(preprocessing_config(bundle, data, net), os.path.join(out_dir, PREPROCESSING_FILE))
        run.finish()
    held_out = bundle.test if bundle.test is not None else bundle.validation
    metrics = evaluate_model(net, held_out) if held_out is not None else None
    return {"model": net, "bundle": bundle, "history": history, "metrics": metrics, "model_path": model_path}


def _with_preprocessing(net, bundle):
    """A loaded model that takes normalised images, given the data's statistics inside (older `.keras` files)."""
    from keras_vit.applications.common import add_preprocessing

    try:
        return add_preprocessing(net, bundle.mean, bundle.std)
    except ValueError:  # not a one-input functional model: it keeps taking normalised images
        return net


def _batch_size(bundle):
    if bundle.batch_size:
        return bundle.batch_size
    for images, _ in bundle.train.take(1):
        return int(images.shape[0])
    raise ValueError("The training dataset is empty. Received: num_train=0")
