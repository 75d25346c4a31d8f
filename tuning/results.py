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
    for ax in axes[len(names) + 1 :]:
        ax.axis("off")
    fig.tight_layout()
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
