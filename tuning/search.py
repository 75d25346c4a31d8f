"""The search runner: `run_search` (and `keras-vit tune`).

Runs a KerasTuner search (random search, Bayesian optimisation or Hyperband)
of a hypermodel on in-memory arrays, `tf.data` datasets, a
`keras_vit.data` bundle or a data source string, with early stopping; uses the
GPUs it finds (MirroredStrategy across several, mixed precision by default);
resumes an interrupted search from its directory; runs KerasTuner's
chief/worker mode when asked; and writes a results table (CSV, Markdown), a
plot of the objective per trial and per hyperparameter, and the best model as
`.keras`.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
import time
import warnings

import keras
import keras_tuner
import numpy as np

from keras_vit.tuning import distributed
from keras_vit.tuning.hypermodels import ViTHyperModel

TUNERS = ("random", "bayesian", "hyperband", "grid")
# Extra metrics each trial reports next to the objective.
SECONDS_METRIC = "trial_seconds"
PARAMS_METRIC = "num_params"


# --------------------------------------------------------------------------- devices


def gpu_devices():
    """The GPUs the active Keras backend sees (an empty list without GPUs).

    TensorFlow: its physical GPU devices. JAX: `jax.devices("gpu")`. PyTorch:
    one entry per CUDA device. Keras places models on the first GPU by itself;
    several GPUs are used together on TensorFlow (see `select_strategy`).
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


def select_strategy(gpus=None):
    """A `tf.distribute` strategy for the GPUs found, or None for the default device.

    Several GPUs: `MirroredStrategy` over all of them (data parallel, one
    replica per GPU) on TensorFlow. One GPU or none, or another backend: None
    (Keras places the model on the first GPU by itself).

    Args:
        gpus: list of physical devices; defaults to `gpu_devices()`.
    """
    gpus = gpu_devices() if gpus is None else list(gpus)
    if len(gpus) < 2 or keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    names = [f"/gpu:{i}" for i in range(len(gpus))]
    return tf.distribute.MirroredStrategy(devices=names)


def resolve_mixed_precision(setting="auto", gpus=None):
    """Whether to train in mixed precision: "auto" means on with a GPU, off on CPU."""
    if setting in ("auto", None):
        gpus = gpu_devices() if gpus is None else gpus
        return len(gpus) > 0
    if isinstance(setting, bool):
        return setting
    if setting in ("on", "off"):
        return setting == "on"
    raise ValueError(f"`mixed_precision` must be 'auto', True or False. Received: mixed_precision={setting!r}")


@contextlib.contextmanager
def _dtype_policy(mixed):
    previous = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def _distributed_env(tuner_id, oracle_address):
    """Sets KerasTuner's `KERASTUNER_*` variables for the duration of the search."""
    keys = (distributed.ENV_TUNER_ID, distributed.ENV_ORACLE_IP, distributed.ENV_ORACLE_PORT)
    saved = {key: os.environ.get(key) for key in keys}
    if oracle_address is not None:
        host, port = distributed.parse_address(oracle_address)
        os.environ[distributed.ENV_ORACLE_IP] = host
        os.environ[distributed.ENV_ORACLE_PORT] = str(port)
    if tuner_id is not None:
        os.environ[distributed.ENV_TUNER_ID] = tuner_id
    missing = [key for key in keys if key not in os.environ]
    if missing:
        raise ValueError(
            "A distributed search needs `tuner_id` and `oracle_address` (or the variables "
            f"{', '.join(keys)}). Missing: {', '.join(missing)}"
        )
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class _Data:
    fit_args: tuple
    fit_kwargs: dict
    input_shape: tuple
    classes: int


def _as_float_images(x):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype("float32") / 255.0
    return x.astype("float32")


def _with_channels(x):
    return x[..., None] if x.ndim == 3 else x


def _prepare_data(data, validation_data, classes, batch_size, validation_split, image_size, seed,
                  classes_required=True):
    if isinstance(data, (str, os.PathLike)):
        data = _load_source(os.fspath(data), image_size, batch_size, validation_split, seed)
    if image_size is not None and isinstance(data, tuple) and isinstance(data[0], np.ndarray):
        raise ValueError("`image_size` applies to source strings only; resize arrays beforehand.")
    if hasattr(data, "train") and hasattr(data, "validation"):
        if data.validation is None:
            raise ValueError("The data bundle has no validation split; the search needs one.")
        return _Data((data.train,), {"validation_data": data.validation},
                     tuple(data.input_shape), int(classes or data.num_classes))
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _is_dataset(data[0]):
        x, y = _with_channels(_as_float_images(data[0])), np.asarray(data[1])
        if validation_data is None:
            if not 0 < validation_split < 1:
                raise ValueError(
                    "Without `validation_data`, `validation_split` must be in (0, 1). "
                    f"Received: validation_split={validation_split}"
                )
            order = np.random.default_rng(seed).permutation(len(x))
            n_val = max(1, int(round(len(x) * validation_split)))
            val, train = order[:n_val], order[n_val:]
            validation_data = (x[val], y[val])
            x, y = x[train], y[train]
        else:
            validation_data = (_with_channels(_as_float_images(validation_data[0])), np.asarray(validation_data[1]))
        if classes is None:
            classes = int(max(y.max(), validation_data[1].max())) + 1 if y.ndim == 1 else int(y.shape[-1])
        return _Data((x, y), {"validation_data": validation_data, "batch_size": batch_size},
                     tuple(x.shape[1:]), int(classes))
    if _is_dataset(data):
        if validation_data is None:
            raise ValueError("A `tf.data.Dataset` needs `validation_data` (a dataset of the same structure).")
        if classes is None and classes_required:
            raise ValueError("A `tf.data.Dataset` needs `classes` (the number of classes).")
        spec = data.element_spec[0]
        shape = tuple(spec.shape[1:]) if hasattr(spec, "shape") else None
        return _Data((data,), {"validation_data": validation_data}, shape, classes)
    raise ValueError(
        "`data` must be a source string, a keras_vit.data bundle, an (x, y) pair of arrays or a "
        f"batched tf.data.Dataset. Received: data of type {type(data).__name__}"
    )


def _load_source(source, image_size, batch_size, validation_split, seed):
    from keras_vit import data as data_module

    return data_module.load(
        source, image_size=image_size, batch_size=batch_size, validation_split=validation_split, seed=seed,
    )


def _is_dataset(obj):
    return type(obj).__module__.startswith("tensorflow") and hasattr(obj, "element_spec")


# --------------------------------------------------------------------------- tuners


class _ReportingTuner:
    """Mixin: per-trial seconds and parameter counts, an event log, leases and a leasing chief."""

    heartbeat_seconds = 5.0
    lease_seconds = 60.0
    dtype_policy_name = None

    def _build_hypermodel(self, hp):
        # KerasTuner clears the Keras session (and with it the global dtype
        # policy) before each build: set the policy again for every model.
        if self.dtype_policy_name is not None:
            keras.config.set_dtype_policy(self.dtype_policy_name)
        return super()._build_hypermodel(hp)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._trial_start = time.perf_counter()
        self._num_params = float("nan")
        self._heartbeat = None
        if distributed.is_worker():
            self._heartbeat = distributed.Heartbeat(self.oracle, trial.trial_id, self.heartbeat_seconds)
            self._heartbeat.start()
        self._log_event("begin", trial)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        self._num_params = float(model.count_params())
        super().on_epoch_end(trial, model, epoch, logs=logs)

    def run_trial(self, trial, *args, **kwargs):
        histories = super().run_trial(trial, *args, **kwargs)
        metrics = best_epoch_metrics(histories, self.oracle.objective)
        metrics[SECONDS_METRIC] = time.perf_counter() - self._trial_start
        metrics[PARAMS_METRIC] = self._num_params
        return metrics

    def on_trial_end(self, trial):
        if self._heartbeat is not None:
            self._heartbeat.stop()
        super().on_trial_end(trial)
        self._log_event("end", trial)

    def search(self, *fit_args, **fit_kwargs):
        if distributed.is_chief():
            self.save()
            distributed.serve_chief(self.oracle, lease_seconds=self.lease_seconds)
            return
        super().search(*fit_args, **fit_kwargs)

    def _log_event(self, event, trial):
        record = {
            "event": event, "trial_id": trial.trial_id, "tuner_id": self.tuner_id,
            "status": str(trial.status), "time": time.time(), "pid": os.getpid(),
        }
        # One short line appended at once, so processes sharing the directory do not interleave.
        with open(os.path.join(self.project_dir, "events.jsonl"), "a") as log:
            log.write(json.dumps(record) + "\n")


def best_epoch_metrics(histories, objective):
    """The metrics of each run's best epoch (by `objective`), averaged over runs."""
    best = []
    for history in histories:
        logs = history.history
        scores = np.asarray(logs[objective.name], dtype="float64")
        epoch = int(np.nanargmax(scores) if objective.direction == "max" else np.nanargmin(scores))
        best.append({name: float(values[epoch]) for name, values in logs.items()})
    return {name: float(np.mean([run[name] for run in best])) for name in best[0]}


class RandomSearch(_ReportingTuner, keras_tuner.RandomSearch):
    pass


class BayesianOptimization(_ReportingTuner, keras_tuner.BayesianOptimization):
    pass


class Hyperband(_ReportingTuner, keras_tuner.Hyperband):
    pass


class GridSearch(_ReportingTuner, keras_tuner.GridSearch):
    pass


def _objective(objective):
    # KerasTuner infers directions only for the metrics it knows; any
    # "...accuracy" (e.g. "val_masked_accuracy") is maximised, a "...loss" minimised.
    if isinstance(objective, str) and objective.endswith("accuracy"):
        return keras_tuner.Objective(objective, "max")
    if isinstance(objective, str) and objective.endswith("loss"):
        return keras_tuner.Objective(objective, "min")
    return objective


def make_tuner(hypermodel, tuner="random", *, objective="val_accuracy", max_trials=10, max_epochs=10,
               hyperband_factor=3, seed=0, directory=os.path.join("runs", "tuning"), project_name="search",
               overwrite=False, hyperparameters=None, strategy=None, executions_per_trial=1, lease_seconds=60.0,
               heartbeat_seconds=5.0):
    """Builds one of `TUNERS` around `hypermodel`."""
    common = dict(
        hypermodel=hypermodel, objective=_objective(objective), seed=seed, hyperparameters=hyperparameters,
        directory=directory, project_name=project_name, overwrite=overwrite,
        distribution_strategy=strategy, executions_per_trial=executions_per_trial,
    )
    if tuner == "random":
        made = RandomSearch(max_trials=max_trials, **common)
    elif tuner == "bayesian":
        made = BayesianOptimization(max_trials=max_trials, **common)
    elif tuner == "grid":
        made = GridSearch(max_trials=max_trials, **common)
    elif tuner == "hyperband":
        made = Hyperband(max_epochs=max_epochs, factor=hyperband_factor, **common)
    else:
        raise ValueError(f"`tuner` must be one of {TUNERS}. Received: tuner={tuner!r}")
    made.lease_seconds = float(lease_seconds)
    made.heartbeat_seconds = float(heartbeat_seconds)
    return made


# --------------------------------------------------------------------------- results


def results_rows(oracle):
    """One dict per trial: trial id, status, hyperparameters, objective, parameters, seconds."""
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        row = {"trial": trial_id, "status": str(trial.status)}
        for name, value in trial.hyperparameters.values.items():
            if name.startswith("tuner/") and name != "tuner/epochs":
                continue
            row[name] = value
        row["objective"] = trial.score
        for metric in (PARAMS_METRIC, SECONDS_METRIC):
            row[metric] = trial.metrics.get_last_value(metric) if trial.metrics.exists(metric) else None
        rows.append(row)
    return rows


def _columns(rows):
    columns = []
    for row in rows:
        for key in row:
            if key not in columns and key not in ("objective", PARAMS_METRIC, SECONDS_METRIC):
                columns.append(key)
    return columns + ["objective", PARAMS_METRIC, SECONDS_METRIC]


def _format(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1:
            return f"{int(value):,}" if abs(value) >= 1000 else str(int(value))
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows, objective_name="objective"):
    """The results as a Markdown table."""
    columns = _columns(rows)
    header = [objective_name if c == "objective" else {PARAMS_METRIC: "parameters", SECONDS_METRIC: "seconds"}.get(c, c)
              for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_results(oracle, out_dir, objective_name="objective"):
    """Writes `results.csv`, `results.md` and `results.png` into `out_dir`; returns their paths."""
    rows = results_rows(oracle)
    columns = _columns(rows)
    csv_path = os.path.join(out_dir, "results.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c) for c in columns})
    md_path = os.path.join(out_dir, "results.md")
    with open(md_path, "w") as f:
        f.write(markdown_table(rows, objective_name))
    plot_path = os.path.join(out_dir, "results.png")
    plot_results(rows, plot_path, objective_name)
    return csv_path, md_path, plot_path


def plot_results(rows, path, objective_name="objective"):
    """Objective per trial (with the best so far) and objective against each searched hyperparameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("objective") is not None]
    names = [c for c in _columns(rows) if c not in ("trial", "status", "objective", PARAMS_METRIC, SECONDS_METRIC)]
    names = [n for n in names if len({str(r.get(n)) for r in done}) > 1] or names[:1]
    cols = min(4, len(names) + 1)
    nrows = math.ceil((len(names) + 1) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.8 * nrows), squeeze=False)
    axes = axes.ravel()
    ax = axes[0]
    if done:
        xs = list(range(len(done)))
        ys = [r["objective"] for r in done]
        ax.plot(xs, ys, "o", label="trial")
        best = np.maximum.accumulate(ys) if "loss" not in objective_name else np.minimum.accumulate(ys)
        ax.plot(xs, best, "-", label="best so far")
        ax.set_xticks(xs, [str(r["trial"]) for r in done], rotation=90 if len(xs) > 8 else 0)
        ax.legend(fontsize=7)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective_name)
    for ax, name in zip(axes[1:], names):
        values = [r.get(name) for r in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and values:
            ax.plot(values, [r["objective"] for r in done], "o")
            if name.endswith(("learning_rate", "weight_decay")):
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            ax.plot([labels.index(str(v)) for v in values], [r["objective"] for r in done], "o")
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
        ax.set_ylabel(objective_name)
    for ax in axes[len(names) + 1:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- runner


@dataclasses.dataclass
class SearchResult:
    """What `run_search` produced.

    Attributes:
        tuner: the KerasTuner tuner (its `oracle` holds every trial).
        best_hyperparameters: dict of the best trial's values (None on a worker).
        best_score: the best objective value (None on a worker).
        rows: the results table as a list of dicts.
        csv_path, markdown_path, plot_path: the written results.
        model_path: the exported best model (`.keras`), or None.
        strategy: name of the tf.distribute strategy used, or None.
        mixed_precision: bool.
        role: "single", "chief" or "worker".
    """

    tuner: object
    best_hyperparameters: dict = None
    best_score: float = None
    rows: list = None
    csv_path: str = None
    markdown_path: str = None
    plot_path: str = None
    model_path: str = None
    strategy: str = None
    mixed_precision: bool = False
    role: str = "single"


def run_search(
    data,
    hypermodel=None,
    *,
    validation_data=None,
    classes=None,
    tuner="random",
    objective="val_accuracy",
    max_trials=10,
    epochs=10,
    batch_size=64,
    validation_split=0.1,
    image_size=None,
    early_stopping_patience=3,
    hyperparameters=None,
    search_space=None,
    compile_kwargs=None,
    directory=os.path.join("runs", "tuning"),
    project_name="search",
    overwrite=False,
    export_path="auto",
    mixed_precision="auto",
    strategy="auto",
    distributed_search=False,
    tuner_id=None,
    oracle_address=None,
    lease_seconds=60.0,
    heartbeat_seconds=5.0,
    hyperband_factor=3,
    executions_per_trial=1,
    callbacks=None,
    seed=0,
    verbose=1,
):
    """Searches a hypermodel's hyperparameters and reports the results.

    Args:
        data: a source string for `keras_vit.data.load` ("tfds:cifar10", a
            folder, an `.npz` file), a `keras_vit.data` bundle (with `train`,
            `validation`, `num_classes`, `input_shape`), an `(x, y)` pair of
            arrays (uint8 images are scaled to [0, 1]), or a batched
            `tf.data.Dataset` of `(images, labels)`.
        hypermodel: a `keras_tuner.HyperModel` (`ViTHyperModel`,
            `CNNHybridViTHyperModel`, `TransformerHyperModel`, your own);
            defaults to a `ViTHyperModel` for the data's image shape and
            classes, with `search_space`.
        validation_data: arrays or a dataset for the objective; for arrays it
            defaults to a `validation_split` hold-out of `data`.
        classes: number of classes (inferred from arrays and bundles).
        tuner: "random", "bayesian", "hyperband" or "grid" (every
            combination of the choices, up to `max_trials`).
        objective: the metric to optimise, e.g. "val_accuracy".
        max_trials: trials for random search and Bayesian optimisation.
        epochs: epochs per trial (Hyperband: the most epochs of any model).
        batch_size: batch size for arrays (and for `data.load`).
        validation_split: hold-out fraction when no `validation_data`.
        image_size: resize for source strings.
        early_stopping_patience: epochs without improvement before a trial
            stops; None disables early stopping.
        hyperparameters: a `keras_tuner.HyperParameters` with values to fix
            (`hp.Fixed("vit/patch_size", 4)`) or ranges to override.
        search_space: dict of search-space entries for the default
            `ViTHyperModel` (see `keras_vit.tuning.hypermodels.SPEC_FORMS`).
        compile_kwargs: extra `compile` arguments for the default hypermodel
            (`{"run_eagerly": True}` for tiny data).
        directory, project_name: where the search lives; running again with
            the same ones resumes it (completed trials are kept, an
            interrupted one is run again).
        overwrite: bool, start afresh instead of resuming.
        export_path: where the best model is saved; "auto" puts
            `best_model.keras` in the project folder; None skips it.
        mixed_precision: "auto" (on with a GPU, off on CPU), True or False.
        strategy: "auto" (MirroredStrategy over several GPUs), None, or a
            `tf.distribute.Strategy`.
        distributed_search: bool, run KerasTuner's chief/worker mode: the
            process whose `tuner_id` contains "chief" serves the oracle and
            writes the results; the others run trials.
        tuner_id: this process's id (default: `$KERASTUNER_TUNER_ID`).
        oracle_address: "host:port" of the chief (default:
            `$KERASTUNER_ORACLE_IP`/`$KERASTUNER_ORACLE_PORT`).
        lease_seconds: the chief gives a trial to another worker after its
            worker has been silent this long.
        heartbeat_seconds: how often a worker tells the chief it is alive.
        hyperband_factor: Hyperband's reduction factor.
        executions_per_trial: models trained per trial (scores averaged).
        callbacks: extra Keras callbacks for every trial.
        seed: int, for the oracle and the validation split.
        verbose: Keras verbosity.

    Returns:
        A `SearchResult`.
    """
    env = _distributed_env(tuner_id, oracle_address) if distributed_search else contextlib.nullcontext()
    with env:
        role = "single"
        if distributed_search:
            role = "chief" if distributed.is_chief() else "worker"
        prepared = None
        if role != "chief" or hypermodel is None:
            prepared = _prepare_data(data, validation_data, classes, batch_size, validation_split, image_size, seed,
                                     classes_required=hypermodel is None)
        if hypermodel is None:
            hypermodel = ViTHyperModel(prepared.input_shape, prepared.classes, compile_kwargs=compile_kwargs,
                                       **(search_space or {}))
        elif search_space or compile_kwargs:
            raise ValueError(
                "`search_space` and `compile_kwargs` apply to the default hypermodel; pass them to yours instead."
            )

        gpus = gpu_devices()
        mixed = role != "chief" and resolve_mixed_precision(mixed_precision, gpus)
        if strategy == "auto":
            strategy = select_strategy(gpus) if role != "chief" else None
        with _dtype_policy(mixed):
            search_tuner = make_tuner(
                hypermodel, tuner, objective=objective, max_trials=max_trials, max_epochs=epochs,
                hyperband_factor=hyperband_factor, seed=seed, directory=directory, project_name=project_name,
                overwrite=overwrite and role != "worker", hyperparameters=hyperparameters, strategy=strategy,
                executions_per_trial=executions_per_trial, lease_seconds=lease_seconds,
                heartbeat_seconds=heartbeat_seconds,
            )
            search_tuner.dtype_policy_name = "mixed_float16" if mixed else None
            fit_callbacks = list(callbacks or [])
            if early_stopping_patience is not None:
                fit_callbacks.append(keras.callbacks.EarlyStopping(
                    monitor=search_tuner.oracle.objective.name, patience=int(early_stopping_patience),
                    mode=search_tuner.oracle.objective.direction,
                ))
            fit_args = prepared.fit_args if prepared else ()
            fit_kwargs = dict(prepared.fit_kwargs) if prepared else {}
            search_tuner.search(*fit_args, epochs=epochs, callbacks=fit_callbacks, verbose=verbose, **fit_kwargs)

            result = SearchResult(
                tuner=search_tuner, strategy=type(strategy).__name__ if strategy is not None else None,
                mixed_precision=bool(mixed), role=role,
            )
            if role == "worker":
                return result
            oracle = search_tuner.oracle
            objective_name = oracle.objective.name
            result.rows = results_rows(oracle)
            result.csv_path, result.markdown_path, result.plot_path = write_results(
                oracle, search_tuner.project_dir, objective_name)
            best = oracle.get_best_trials(1)
            if best:
                result.best_hyperparameters = dict(best[0].hyperparameters.values)
                result.best_score = best[0].score
                if export_path is not None:
                    result.model_path = _export_best(search_tuner, best[0], export_path)
            return result


def _export_best(search_tuner, trial, export_path):
    if export_path == "auto":
        path = os.path.join(search_tuner.project_dir, "best_model.keras")
    else:
        path = os.fspath(export_path)
    try:
        with warnings.catch_warnings():
            # The checkpoint holds the optimizer state; the export needs only the weights.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = search_tuner.load_model(trial)
    except (OSError, FileNotFoundError, ValueError) as error:
        # A chief on another machine than the worker that ran the best trial
        # has no checkpoint of it.
        print(f"Best model not exported: no checkpoint of trial {trial.trial_id} here ({error})")
        return None
    model.save(path)
    return path
