"""The search runner: `run_search` (and `keras-vit tune`).

Runs a KerasTuner search (random search, Bayesian optimisation, Hyperband or
grid search; `keras_vit.tuning.tuners`) of a hypermodel on in-memory arrays,
`tf.data` datasets, a `keras_vit.data` bundle or a data source string
(`keras_vit.tuning.data`), with early stopping; uses the GPUs it finds
(`keras_vit.tuning.devices`: MirroredStrategy across several, mixed precision
by default); resumes an interrupted search from its directory; runs
KerasTuner's chief/worker mode when asked (`keras_vit.tuning.distributed`);
and writes a results table (CSV, Markdown), a plot of the objective per trial
and per hyperparameter, the best trial's recipe and model arguments with the
`keras-vit train` command that trains its model again (`best_trial.json`,
`keras_vit.tuning.results`), and the best model as `.keras`.
"""

import contextlib
import csv
import dataclasses
import math
import os
import warnings

import keras

from keras_vit.tuning import data as data_lib
from keras_vit.tuning import devices, distributed, results
from keras_vit.tuning.hypermodels import ViTHyperModel
from keras_vit.tuning.tuners import make_tuner
from keras_vit.utils import save_model_atomic


@dataclasses.dataclass
class SearchResult:
    """What `run_search` produced.

    Attributes:
        tuner: the KerasTuner tuner (its `oracle` holds every trial).
        best_hyperparameters: dict of the best trial's values (None on a worker).
        best_score: the best objective value (None on a worker).
        rows: the results table as a list of dicts.
        csv_path, markdown_path, plot_path: the written results.
        best_trial: the `best_trial.json` record (see
            `keras_vit.tuning.results.best_trial_record`): the best trial's
            recipe, model arguments and `keras-vit train` command.
        best_trial_path: the path of `best_trial.json`, or None.
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
    best_trial: dict = None
    best_trial_path: str = None
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
            classes, with `search_space`. A hypermodel with a `total_steps`
            attribute left at None (the image hypermodels) gets steps per
            epoch × `epochs`, so that its learning-rate schedule is the one
            `keras-vit train --epochs` runs over the same data.
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

    Raises:
        ValueError: for a non-positive `max_trials` or `epochs`, an objective
            the models do not report, or a search in which no trial completed
            (with the last trial's error); nothing is exported then.
    """
    _check_search_arguments(tuner, max_trials, epochs, objective)
    env = distributed.distributed_env(tuner_id, oracle_address) if distributed_search else contextlib.nullcontext()
    with env:
        role = "single"
        if distributed_search:
            role = "chief" if distributed.is_chief() else "worker"
        total = hyperband_trials(epochs, hyperband_factor) if tuner == "hyperband" else max_trials
        if verbose and role == "single":
            where = os.path.join(os.fspath(directory), project_name)
            print(f"search: {tuner}, at most {total} trials of at most {epochs} epochs, in {where}", flush=True)
        needs_steps = hypermodel is None or getattr(hypermodel, "total_steps", 0) is None
        prepared = None
        if role != "chief" or needs_steps:
            prepared = data_lib.prepare_data(
                data,
                validation_data,
                classes,
                batch_size,
                validation_split,
                image_size,
                seed,
                classes_required=hypermodel is None,
            )
        if hypermodel is None:
            hypermodel = ViTHyperModel(
                prepared.input_shape, prepared.classes, compile_kwargs=compile_kwargs, **(search_space or {})
            )
        elif search_space or compile_kwargs:
            raise ValueError(
                "`search_space` and `compile_kwargs` apply to the default hypermodel; pass them to yours instead."
            )
        if needs_steps:
            if prepared.steps_per_epoch is None:
                raise ValueError(
                    "The learning-rate schedule needs the steps per epoch, and the dataset's cardinality is "
                    "unknown: give the hypermodel `total_steps` (steps per epoch × epochs). "
                    f"Received: total_steps={hypermodel.total_steps!r}"
                )
            hypermodel.total_steps = prepared.steps_per_epoch * epochs
        total_steps = getattr(hypermodel, "total_steps", None)

        gpus = devices.gpu_devices()
        mixed = role != "chief" and devices.resolve_mixed_precision(mixed_precision, gpus)
        if strategy == "auto":
            strategy = devices.select_strategy(gpus) if role != "chief" else None
        with devices.dtype_policy(mixed):
            search_tuner = make_tuner(
                hypermodel,
                tuner,
                objective=objective,
                max_trials=max_trials,
                max_epochs=epochs,
                hyperband_factor=hyperband_factor,
                seed=seed,
                directory=directory,
                project_name=project_name,
                overwrite=overwrite and role != "worker",
                hyperparameters=hyperparameters,
                strategy=strategy,
                executions_per_trial=executions_per_trial,
                lease_seconds=lease_seconds,
                heartbeat_seconds=heartbeat_seconds,
            )
            search_tuner.dtype_policy_name = "mixed_float16" if mixed else None
            fit_callbacks = list(callbacks or [])
            if early_stopping_patience is not None:
                fit_callbacks.append(
                    keras.callbacks.EarlyStopping(
                        monitor=search_tuner.oracle.objective.name,
                        patience=int(early_stopping_patience),
                        mode=search_tuner.oracle.objective.direction,
                    )
                )
            if role == "single":
                fit_callbacks.append(TrialProgress(search_tuner, total, verbose=verbose))
            fit_args = prepared.fit_args if prepared else ()
            fit_kwargs = dict(prepared.fit_kwargs) if prepared else {}
            search_tuner.search(*fit_args, epochs=epochs, callbacks=fit_callbacks, verbose=verbose, **fit_kwargs)

            result = SearchResult(
                tuner=search_tuner,
                strategy=type(strategy).__name__ if strategy is not None else None,
                mixed_precision=bool(mixed),
                role=role,
            )
            if role == "worker":
                return result
            oracle = search_tuner.oracle
            objective_name = oracle.objective.name
            project_dir = search_tuner.project_dir
            result.rows = results.results_rows(oracle)
            result.csv_path, result.markdown_path, result.plot_path = results.write_results(
                oracle, project_dir, objective_name
            )
            # KerasTuner falls back to failed trials when none completed: never report or export one.
            best = [t for t in oracle.get_best_trials(1) if t.status == "COMPLETED"]
            if not best:
                raise ValueError(_no_completed_trial_message(oracle, project_dir))
            result.best_hyperparameters = dict(best[0].hyperparameters.values)
            result.best_score = best[0].score
            result.best_trial = results.best_trial_record(
                hypermodel,
                best[0],
                source=prepared.source if prepared else None,
                epochs=epochs,
                batch_size=batch_size,
                validation_split=validation_split,
                image_size=image_size,
                seed=seed,
                total_steps=total_steps,
                out_dir=os.path.join(project_dir, "best_trial"),
            )
            result.best_trial_path = results.write_best_trial(result.best_trial, project_dir, objective_name)
            if export_path is not None:
                result.model_path = _export_best(search_tuner, best[0], export_path, prepared)
            return result


def hyperband_trials(max_epochs, factor=3):
    """The trials of one Hyperband iteration (Li et al. 2018) as KerasTuner schedules them: brackets
    `s = s_max, ..., 0` with `s_max = floor(log_factor(max_epochs))`, bracket `s` training
    `ceil(ceil(1 + log_factor(max_epochs)) / (s + 1) * factor**(s - r))` models in its round `r = 0..s`
    (each round's survivors count again: KerasTuner gives every round its own trial). An upper bound: a small
    search space can run out of new values first."""
    brackets, budget = 0, float(max_epochs)
    while budget >= 1:
        budget /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    return sum(
        math.ceil(end_size / (bracket + 1) * factor ** (bracket - round_))
        for bracket in range(brackets)
        for round_ in range(bracket + 1)
    )


HISTORY_FILE = "history.csv"


class TrialProgress(keras.callbacks.Callback):
    """Per trial: one line as it starts (its number of the most the search runs, Hyperband's bracket, round
    and epochs, the best objective so far) and its per-epoch metrics in `trial_ID/history.csv`, which
    `results.png` draws as the trial's learning curve.

    KerasTuner deep-copies the callbacks of every trial; copies share the tuner.
    """

    def __init__(self, search_tuner, total, verbose=1, _started=None):
        super().__init__()
        self._tuner = search_tuner
        self._total = total
        self._verbose = verbose
        # Trials begun in this process, shared by the copies (one per execution of a trial).
        self._started = set() if _started is None else _started
        self._path = None

    def __deepcopy__(self, memo):
        return TrialProgress(self._tuner, self._total, self._verbose, self._started)

    def _current_trial(self):
        oracle = self._tuner.oracle
        trial = getattr(oracle, "ongoing_trials", {}).get(self._tuner.tuner_id)
        if trial is None:
            running = [t for t in oracle.trials.values() if str(t.status) == "RUNNING"]
            trial = running[-1] if running else None
        return trial

    def on_train_begin(self, logs=None):
        trial = self._current_trial()
        if trial is None:
            return
        first_fit = trial.trial_id not in self._started  # executions_per_trial > 1 fit again
        self._started.add(trial.trial_id)
        self._path = os.path.join(self._tuner.get_trial_dir(trial.trial_id), HISTORY_FILE)
        if first_fit and os.path.exists(self._path):
            os.remove(self._path)  # a trial run again after an interruption starts its history afresh
        if self._verbose and first_fit:
            print(self._describe(trial), flush=True)

    def _describe(self, trial):
        oracle = self._tuner.oracle
        values = trial.hyperparameters.values
        number = len(oracle.trials)
        text = f"trial {number} of at most {self._total} (id {trial.trial_id})"
        if "tuner/bracket" in values:
            start, stop = values.get("tuner/initial_epoch", 0), values.get("tuner/epochs")
            text += f", Hyperband bracket {values['tuner/bracket']} round {values['tuner/round']}, "
            text += f"epochs {start + 1}-{stop}" if start else f"{stop} epochs"
        best = [t for t in oracle.get_best_trials(1) if str(t.status) == "COMPLETED"]
        name = oracle.objective.name
        text += f"; best {name} so far {best[0].score:.4g} (trial {best[0].trial_id})" if best else "; no result yet"
        searched = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        return text + ": " + ", ".join(f"{k.split('/')[-1]}={v}" for k, v in searched.items())

    def on_epoch_end(self, epoch, logs=None):
        if self._path is None:
            return
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        new = not os.path.exists(self._path)
        with open(self._path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _export_best(search_tuner, trial, export_path, prepared=None):
    """Saves the best trial's model; with its data's statistics inside when they are known (pixels in [0, 255])."""
    from keras_vit.applications.common import add_preprocessing

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
    if prepared is not None and prepared.mean is not None:
        try:
            model = add_preprocessing(model, prepared.mean, prepared.std)
        except ValueError:  # a hypermodel of another kind than a one-input functional model
            pass
    save_model_atomic(model, path)
    return path


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def _check_search_arguments(tuner, max_trials, epochs, objective):
    # KerasTuner reads max_trials=0 as "no limit" and fails every trial of epochs=0 one by one.
    if tuner != "hyperband":
        _positive_int("max_trials", max_trials)
    _positive_int("epochs", epochs)
    if tuner == "hyperband" and epochs < 2:
        raise ValueError(
            f"Hyperband needs `epochs` >= 2 (its brackets train 1 to `epochs` epochs). Received: epochs={epochs}"
        )
    if isinstance(objective, str) and not objective.strip():
        raise ValueError(f"`objective` must name a metric, e.g. 'val_accuracy'. Received: objective={objective!r}")


def _no_completed_trial_message(oracle, project_dir):
    """Why the search has no result: the last line of the last failed trial's error."""
    trials = list(oracle.trials.values())
    if not trials:
        return f"The search ran no trial (the search space may be empty). Received: directory={project_dir!r}"
    reasons = [t.message.strip().splitlines()[-1] for t in trials if getattr(t, "message", None)]
    reason = reasons[-1] if reasons else "unknown"
    return (
        f"No trial completed ({len(trials)} ran; the last error: {reason}); nothing was exported. "
        f"Received: directory={project_dir!r}"
    )
