"""The results of a search: a table (CSV, Markdown), a plot, and the best trial as a `keras-vit train` run."""

import ast
import csv
import json
import math
import os
import shlex

import numpy as np

from keras_vit.tuning.tuners import PARAMS_METRIC, SECONDS_METRIC
from keras_vit.utils import atomic_path, atomic_write, write_json_atomic


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
    header = [
        objective_name if c == "objective" else {PARAMS_METRIC: "parameters", SECONDS_METRIC: "seconds"}.get(c, c)
        for c in columns
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_results(oracle, out_dir, objective_name="objective"):
    """Writes `results.csv`, `results.md` and `results.png` into `out_dir`; returns their paths."""
    rows = results_rows(oracle)
    columns = _columns(rows)
    csv_path = os.path.join(out_dir, "results.csv")
    with atomic_write(csv_path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c) for c in columns})
    md_path = os.path.join(out_dir, "results.md")
    with atomic_write(md_path) as f:
        f.write(markdown_table(rows, objective_name))
    plot_path = os.path.join(out_dir, "results.png")
    direction = getattr(getattr(oracle, "objective", None), "direction", None)
    plot_results(
        rows,
        plot_path,
        objective_name,
        hyperband=hyperband_schedule(oracle),
        histories=read_histories(out_dir, [row["trial"] for row in rows]),
        direction=direction,
    )
    return csv_path, md_path, plot_path


def hyperband_schedule(oracle):
    """`{trial_id: (bracket, round, initial_epoch, epochs)}` for the trials of a Hyperband search, else {}."""
    schedule = {}
    for trial_id, trial in oracle.trials.items():
        values = trial.hyperparameters.values
        if "tuner/bracket" in values:
            schedule[trial_id] = (
                int(values["tuner/bracket"]),
                int(values["tuner/round"]),
                int(values.get("tuner/initial_epoch", 0)),
                int(values["tuner/epochs"]),
            )
    return schedule


def read_histories(out_dir, trial_ids, file_name="history.csv"):
    """`{trial_id: {metric: [(epoch, value), ...]}}` from the `trial_ID/history.csv` files a search wrote
    (`keras_vit.tuning.search.TrialProgress`); trials without one are left out."""
    histories = {}
    for trial_id in trial_ids:
        path = os.path.join(out_dir, f"trial_{trial_id}", file_name)
        if not os.path.exists(path):
            continue
        curves = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                epoch = int(row.pop("epoch"))
                for name, value in row.items():
                    if value not in ("", None):
                        curves.setdefault(name, []).append((epoch, float(value)))
        if curves:
            histories[trial_id] = curves
    return histories


def _is_integer_axis(values):
    return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values)


def _is_float_axis(values):
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)


def _direction(objective_name, direction):
    if direction in ("min", "max"):
        return direction
    return "min" if "loss" in objective_name else "max"


CURVE_COLUMNS = 6


def results_figure(rows, objective_name="objective", hyperband=None, histories=None, direction=None):
    """The figure of `plot_results` (a matplotlib `Figure`).

    Top: the objective per trial, with the best so far as a step line (it changes only when a trial beats
    it), and for Hyperband each trial coloured by its bracket and labelled with its budget in epochs; then
    the objective against each searched hyperparameter: integers on an axis with a tick at each value
    tried, learning rates and weight decays on a log axis, other values as categories. Below: one small
    panel per trial with its learning curves (the objective and the matching training metric per epoch).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator

    hyperband = hyperband or {}
    histories = histories or {}
    done = [r for r in rows if r.get("objective") is not None]
    names = [c for c in _columns(rows) if c not in ("trial", "status", "objective", PARAMS_METRIC, SECONDS_METRIC)]
    if hyperband:
        names = [n for n in names if n != "tuner/epochs"]  # shown as the budgets of the first panel
    names = [n for n in names if len({str(r.get(n)) for r in done}) > 1] or names[:1]
    curve_ids = [r["trial"] for r in rows if r["trial"] in histories]
    cols = min(4, len(names) + 1)
    top_rows = math.ceil((len(names) + 1) / cols)
    curve_rows = math.ceil(len(curve_ids) / CURVE_COLUMNS)
    width = max(3.4 * cols, 2.2 * min(CURVE_COLUMNS, max(len(curve_ids), 1)))
    fig = plt.figure(figsize=(width, 3.0 * top_rows + 1.9 * curve_rows + 0.3), layout="constrained")
    if curve_rows:
        top, bottom = fig.subfigures(2, 1, height_ratios=[3.0 * top_rows, 1.9 * curve_rows + 0.3])
    else:
        top, bottom = fig, None
    axes = np.atleast_1d(top.subplots(top_rows, cols, squeeze=False).ravel())
    best_fn = np.minimum.accumulate if _direction(objective_name, direction) == "min" else np.maximum.accumulate

    ax = axes[0]
    if done:
        xs = np.arange(len(done))
        ys = np.asarray([r["objective"] for r in done], dtype="float64")
        brackets = sorted({hyperband[r["trial"]][0] for r in done if r["trial"] in hyperband}, reverse=True)
        if brackets:
            colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(brackets)))
            for bracket, colour in zip(brackets, colours):
                mine = [i for i, r in enumerate(done) if hyperband.get(r["trial"], (None,))[0] == bracket]
                ax.plot(xs[mine], ys[mine], "o", color=colour, label=f"bracket {bracket}")
            for i, r in enumerate(done):
                if r["trial"] in hyperband:
                    epochs = hyperband[r["trial"]][3]
                    ax.annotate(
                        f"{epochs}e", (xs[i], ys[i]), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=6
                    )
            ax.set_title("objective per trial (label: epochs)", fontsize=9)
        else:
            ax.plot(xs, ys, "o", label="trial")
            ax.set_title("objective per trial", fontsize=9)
        ax.plot(xs, best_fn(ys), drawstyle="steps-post", color="black", linewidth=1.2, label="best so far")
        ax.set_xticks(
            xs,
            [str(int(r["trial"])) if str(r["trial"]).isdigit() else str(r["trial"]) for r in done],
            rotation=90 if len(xs) > 8 else 0,
        )
        ax.legend(fontsize=6)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective_name)

    for ax, name in zip(axes[1:], names):
        values = [r.get(name) for r in done]
        objective = [r["objective"] for r in done]
        if values and _is_integer_axis(values):
            ax.plot(values, objective, "o")
            distinct = sorted(set(int(v) for v in values))
            if len(distinct) <= 12:
                ax.set_xticks(distinct)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            pad = max(0.5, 0.08 * (distinct[-1] - distinct[0]))
            ax.set_xlim(distinct[0] - pad, distinct[-1] + pad)
        elif values and _is_float_axis(values):
            ax.plot(values, objective, "o")
            if name.endswith(("learning_rate", "weight_decay")) and min(values) > 0:
                ax.set_xscale("log")
                low, high = min(values), max(values)
                if high / low < 10:  # no decade inside: three labelled ticks across the values tried
                    ticks = np.geomspace(low, high, 3)
                    ax.set_xticks(ticks, [f"{t:.2g}" for t in ticks])
                    ax.xaxis.set_minor_locator(NullLocator())
                else:
                    ax.xaxis.set_minor_formatter(NullFormatter())  # labelled decades only: none overlap
        else:
            labels = sorted({str(v) for v in values})
            ax.plot([labels.index(str(v)) for v in values], objective, "o")
            ax.set_xticks(range(len(labels)), labels)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xlabel(name.split("/")[-1])
        ax.set_ylabel(objective_name)
        ax.set_title(name, fontsize=8)
    for ax in axes[len(names) + 1 :]:
        ax.axis("off")

    if bottom is not None:
        train_name = objective_name[4:] if objective_name.startswith("val_") else None
        shown = (objective_name, train_name)
        legend = f"{objective_name} (o-)" + (f" and {train_name} (x--)" if train_name else "")
        bottom.suptitle(f"learning curve of each trial: {legend} per epoch", fontsize=9)
        curve_axes = bottom.subplots(curve_rows, CURVE_COLUMNS, squeeze=False, sharey=True).ravel()
        for ax, trial_id in zip(curve_axes, curve_ids):
            curves = histories[trial_id]
            epochs_seen = []
            for metric, style in zip(shown, ("o-", "x--")):
                if metric in curves:
                    epochs, values = zip(*curves[metric])
                    ax.plot(epochs, values, style, markersize=3, linewidth=1)
                    epochs_seen += epochs
            if epochs_seen:
                low, high = min(epochs_seen), max(epochs_seen)
                ax.set_xlim(low - 0.5, high + 0.5)
                ax.set_xticks(
                    range(low, high + 1) if high - low < 10 else MaxNLocator(integer=True).tick_values(low, high)
                )
            title = f"trial {trial_id}"
            if trial_id in hyperband:
                bracket, round_, _, _ = hyperband[trial_id]
                title += f" (bracket {bracket}, round {round_})"
            ax.set_title(title, fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_xlabel("epoch", fontsize=6)
        for ax in curve_axes[len(curve_ids) :]:
            ax.axis("off")
    return fig


def plot_results(rows, path, objective_name="objective", hyperband=None, histories=None, direction=None):
    """Writes `results_figure(...)` to `path` as a PNG; returns `path`."""
    import matplotlib.pyplot as plt

    fig = results_figure(rows, objective_name, hyperband=hyperband, histories=histories, direction=direction)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


BEST_TRIAL_FILE = "best_trial.json"


def best_trial_record(
    hypermodel,
    trial,
    *,
    source=None,
    epochs,
    batch_size,
    validation_split=0.1,
    image_size=None,
    seed=0,
    total_steps=None,
    out_dir="best_trial",
):
    """What training the best trial's model again takes, as a JSON-serialisable dict.

    For a hypermodel that compiles with `keras_vit.training`'s recipe
    (`trial_recipe`, `trial_model_arguments`, `registry_name`: the image
    hypermodels) the record holds the trial's `recipe` (a `Recipe.to_config()`
    dict), the registered `model` and its `model_arguments`, and, when the
    search read a data source string and every setting has a `keras-vit
    train` flag, the `command` that trains that model with that recipe over
    the same schedule (same data, split, batch size and epochs, hence the
    same `total_steps`):

        keras-vit train --model NAME --data SOURCE --out OUT --epochs E --batch-size B
            --validation-split V --seed S [--image-size N] --lr LR --weight-decay WD --warmup W
            --set key=value ...

    Training is not bit-for-bit that of the trial (the initial weights are
    drawn anew, and a search on a GPU trains in mixed precision), and early
    stopping may have ended the trial before its last epoch.

    Args:
        hypermodel: the search's hypermodel.
        trial: the best `keras_tuner` trial.
        source: the data source string, or None (arrays, datasets, bundles:
            no command).
        epochs, batch_size, validation_split, image_size, seed: the search's.
        total_steps: the schedule's length in the search.
        out_dir: the `--out` folder of the command.

    Returns:
        A dict with `trial_id`, `score`, `hyperparameters`, `epochs`,
        `batch_size`, `total_steps`, `recipe`, `model`, `model_arguments`
        and `command` (the last four None where they do not apply).
    """
    hp = trial.hyperparameters
    record = {
        "trial_id": trial.trial_id,
        "score": trial.score,
        "hyperparameters": dict(hp.values),
        "epochs": epochs,
        "batch_size": batch_size,
        "total_steps": total_steps,
        "recipe": None,
        "model": None,
        "model_arguments": None,
        "command": None,
    }
    if not hasattr(hypermodel, "trial_recipe"):  # e.g. the seq2seq Transformer's own recipe
        return record
    recipe = hypermodel.trial_recipe(hp)
    arguments = hypermodel.trial_model_arguments(hp)
    record.update(recipe=recipe.to_config(), model=hypermodel.registry_name, model_arguments=_jsonable(arguments))
    record["command"] = train_command(
        model=hypermodel.registry_name,
        recipe=recipe,
        model_arguments=arguments,
        source=source,
        out_dir=out_dir,
        epochs=epochs,
        batch_size=batch_size,
        validation_split=validation_split,
        image_size=image_size,
        seed=seed,
    )
    return record


def train_command(
    *, model, recipe, model_arguments, source, out_dir, epochs, batch_size, validation_split, image_size, seed
):
    """The `keras-vit train` command line (a str) of `best_trial_record`, or None when there is none."""
    from keras_vit.training import Recipe

    if model is None or source is None:
        return None
    # `keras-vit train` sets the peak rate, decay and warmup; the rest of its recipe is the default.
    if recipe.global_clipnorm != Recipe().global_clipnorm:
        return None
    if image_size is not None and not isinstance(image_size, int):
        sides = set(image_size)
        if len(sides) != 1:
            return None
        image_size = sides.pop()
    argv = [
        "keras-vit",
        "train",
        "--model",
        model,
        "--data",
        source,
        "--out",
        out_dir,
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
        "--validation-split",
        repr(float(validation_split)),
        "--seed",
        str(seed),
    ]
    if image_size is not None:
        argv += ["--image-size", str(int(image_size))]
    argv += [
        "--lr",
        repr(recipe.learning_rate),
        "--weight-decay",
        repr(recipe.weight_decay),
        "--warmup",
        repr(recipe.warmup_fraction),
    ]
    for key, value in model_arguments.items():
        text = repr(value)  # `--set` reads values as Python literals
        try:
            if ast.literal_eval(text) != value:
                return None
        except (ValueError, SyntaxError):  # an object with no literal, e.g. a function
            return None
        argv += ["--set", f"{key}={text}"]
    return shlex.join(argv)


def _jsonable(arguments):
    return {
        key: value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)
        for key, value in arguments.items()
    }


def write_best_trial(record, out_dir, objective_name="objective"):
    """Writes `record` to `best_trial.json` and its command to the end of `results.md`; returns the JSON's path."""
    path = os.path.join(out_dir, BEST_TRIAL_FILE)
    write_json_atomic(record, path)
    lines = [f"\n## Best trial: {record['trial_id']} ({objective_name} {_format(record['score'])})\n"]
    if record["command"]:
        lines.append(f"\nTrain its model again, with its recipe over the same schedule:\n\n    {record['command']}\n")
    if record["recipe"]:
        lines.append(f"\nRecipe: {json.dumps(record['recipe'])}; model arguments: {BEST_TRIAL_FILE}.\n")
    md_path = os.path.join(out_dir, "results.md")
    with open(md_path, encoding="utf-8") as f:
        table = f.read()
    with atomic_write(md_path) as f:
        f.write(table + "".join(lines))
    return path
