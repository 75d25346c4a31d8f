"""KerasTuner tuners that report: per-trial seconds and parameter counts, an event log, the best
epoch's metrics, and a leasing chief in distributed searches (`keras_vit.tuning.distributed`)."""

import json
import os
import time

import keras
import keras_tuner
import numpy as np

from keras_vit.tuning import distributed

TUNERS = ("random", "bayesian", "hyperband", "grid")
# Extra metrics each trial reports next to the objective.
SECONDS_METRIC = "trial_seconds"
PARAMS_METRIC = "num_params"


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
            "event": event,
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "status": str(trial.status),
            "time": time.time(),
            "pid": os.getpid(),
        }
        # One short line appended at once, so processes sharing the directory do not interleave.
        with open(os.path.join(self.project_dir, "events.jsonl"), "a") as log:
            log.write(json.dumps(record) + "\n")


def best_epoch_metrics(histories, objective):
    """The metrics of each run's best epoch (by `objective`), averaged over runs."""
    best = []
    for history in histories:
        logs = history.history
        if objective.name not in logs:
            # The same for every trial: stop the search instead of failing each one.
            raise keras_tuner.errors.FatalValueError(
                f"The objective is not a metric the models report; they report {', '.join(sorted(logs))}. "
                f"Received: objective={objective.name!r}"
            )
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


def make_tuner(
    hypermodel,
    tuner="random",
    *,
    objective="val_accuracy",
    max_trials=10,
    max_epochs=10,
    hyperband_factor=3,
    seed=0,
    directory=os.path.join("runs", "tuning"),
    project_name="search",
    overwrite=False,
    hyperparameters=None,
    strategy=None,
    executions_per_trial=1,
    lease_seconds=60.0,
    heartbeat_seconds=5.0,
):
    """Builds one of `TUNERS` around `hypermodel`."""
    common = dict(
        hypermodel=hypermodel,
        objective=_objective(objective),
        seed=seed,
        hyperparameters=hyperparameters,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        distribution_strategy=strategy,
        executions_per_trial=executions_per_trial,
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
