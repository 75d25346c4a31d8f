"""Tests of the figures: explanation plots (keras_vit.explain) and learning curves (keras_vit.curves)."""

import csv
import os

import numpy as np
import pytest

from keras_vit import explain
from keras_vit.applications import VisionTransformer
from keras_vit.curves import CURVES_FILE, plot_curves, write_curves
from keras_vit.explain import plotting
from keras_vit.training import HISTORY_FILE, _HistoryWriter

SHAPE = (16, 16, 3)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASS_NAMES = ["cat", "dog", "car", "ship", "frog"]


@pytest.fixture(scope="module")
def model():
    # Logits (no softmax): the figure's probabilities must be the softmax of the outputs.
    return VisionTransformer(
        patch_size=4,
        hidden_dim=16,
        depth=3,
        num_heads=2,
        mlp_dim=32,
        input_shape=SHAPE,
        classes=len(CLASS_NAMES),
        classifier_activation=None,
    )


def images(count=2, seed=1):
    return np.random.default_rng(seed).random((count,) + SHAPE).astype("float32")


def assert_png(fig, path):
    fig.savefig(path, dpi=50)
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC


def colorbars(fig):
    """The figure's colour bars, found through the images they describe."""
    bars = []
    for ax in fig.axes:
        for image in ax.images:
            if image.colorbar is not None and image.colorbar not in bars:
                bars.append(image.colorbar)
    return bars


def panels(fig):
    bar_axes = {bar.ax for bar in colorbars(fig)}
    return [ax for ax in fig.axes if ax not in bar_axes and ax.get_visible() and ax.axison]


def assert_integer_ticks(axis, low, high):
    ticks = [t for t in axis.get_majorticklocs() if low <= t <= high]
    assert ticks, "no ticks in range"
    np.testing.assert_array_equal(ticks, np.round(ticks))


def test_heatmaps(model, tmp_path):
    x = images(2)
    maps = {"legrad": explain.legrad(model, x), "rollout": explain.attention_rollout(model, x)}
    fig = explain.plot_heatmaps(x, maps, titles=["a", "b"])
    assert len(panels(fig)) == 2 * 3
    bars = colorbars(fig)
    assert len(bars) == 2 * 2
    assert {bar.ax.get_ylabel() for bar in bars} == {"relevance (min-max scaled)"}
    overlays = [ax.images[-1] for ax in panels(fig) if len(ax.images) == 2]
    assert len(overlays) == 4
    assert {image.get_cmap().name for image in overlays} == {"inferno"}
    # Min-max scaled for display: each overlay spans [0, 1] exactly.
    for image in overlays:
        data = np.asarray(image.get_array())
        np.testing.assert_allclose([data.min(), data.max()], [0.0, 1.0], atol=1e-6)
    assert_png(fig, str(tmp_path / "heatmaps.png"))


def test_explanation_figure_titles(model, tmp_path, monkeypatch):
    x = images(2)
    labels = np.array([1, 3])
    figures = []
    original = plotting.plot_heatmaps

    def spy(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(plotting, "plot_heatmaps", spy)
    path = str(tmp_path / "explanation.png")
    assert explain.save_explanation_figure(model, x, path, labels=labels, class_names=CLASS_NAMES) == path
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    logits = np.asarray(model.predict(x, verbose=0), dtype="float64")
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities = e / e.sum(-1, keepdims=True)
    (fig,) = figures
    for i, ax in enumerate(panels(fig)[::2]):
        c = int(np.argmax(probabilities[i]))
        title = ax.get_title()
        assert f"pred: {CLASS_NAMES[c]} (p={probabilities[i, c]:.2f})" in title
        assert f"true: {CLASS_NAMES[labels[i]]}" in title


def test_attention_heads(model, tmp_path):
    fig = explain.plot_attention_heads(model, images(1)[0])
    assert len(panels(fig)) == 1 + 2
    bars = colorbars(fig)
    assert len(bars) == 2
    assert {bar.ax.get_ylabel() for bar in bars} == {"attention weight"}
    assert {ax.images[-1].get_cmap().name for ax in panels(fig)[1:]} == {"inferno"}
    assert [ax.get_title() for ax in panels(fig)] == ["image", "head 0", "head 1"]
    assert_png(fig, str(tmp_path / "heads.png"))


def test_mean_attention_distance(model, tmp_path):
    distances = explain.mean_attention_distance(model, images(2))
    fig = explain.plot_mean_attention_distance(distances)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "block"
    assert ax.get_ylabel() == "mean attention distance (pixels)"
    fig.canvas.draw()
    assert_integer_ticks(ax.xaxis, -0.5, 2.5)
    # One point per head at each block 0, 1, 2.
    assert len(ax.collections) == 2
    for points in ax.collections:
        np.testing.assert_array_equal(points.get_offsets()[:, 0], [0, 1, 2])
    assert_png(fig, str(tmp_path / "distance.png"))


def test_patch_embedding_filters(model, tmp_path):
    components = explain.patch_embedding_filters(model, 6)[0]
    fig = explain.plot_patch_embedding_filters(components, cols=4)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == [f"PC {k}" for k in range(1, 7)]
    assert_png(fig, str(tmp_path / "filters.png"))


def test_position_embedding_similarity(model, tmp_path):
    fig = explain.plot_position_embedding_similarity(explain.position_embedding_similarity(model))
    assert len(panels(fig)) == 16
    (bar,) = colorbars(fig)
    assert bar.ax.get_ylabel() == "cosine similarity"
    assert (bar.vmin, bar.vmax) == (-1.0, 1.0)
    assert {ax.images[0].get_cmap().name for ax in panels(fig)} == {"viridis"}
    # The outer panels are numbered by patch row and column.
    grid = np.array(panels(fig)).reshape(4, 4)
    assert [ax.get_ylabel() for ax in grid[:, 0]] == ["0", "1", "2", "3"]
    assert [ax.get_xlabel() for ax in grid[-1]] == ["0", "1", "2", "3"]
    assert_png(fig, str(tmp_path / "similarity.png"))


HISTORY = [
    {"epoch": e, "loss": 2.0 / (e + 1), "val_loss": 2.5 / (e + 1), "accuracy": 0.1 * e, "val_accuracy": 0.08 * e}
    for e in range(4)
]


def test_curves():
    fig = plot_curves(HISTORY)
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["loss", "accuracy"]
    for ax, name in zip(shown, ["loss", "accuracy"]):
        assert ax.get_xlabel() == "epoch"
        assert [line.get_label() for line in ax.get_lines()] == ["train", "validation"]
        assert ax.get_legend() is not None
        train, validation = ax.get_lines()
        # Epochs counted from 1, as Keras' progress bar does.
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(train.get_ydata(), [row[name] for row in HISTORY])
        np.testing.assert_allclose(validation.get_ydata(), [row[f"val_{name}"] for row in HISTORY])
    fig.canvas.draw()
    assert_integer_ticks(shown[0].xaxis, 1, 4)
    with pytest.raises(ValueError, match="rows"):
        plot_curves([])


def test_write_curves_from_csv_rows(tmp_path):
    # Rows read back from history.csv hold strings, and an epoch may lack a key.
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "loss", "val_loss"], restval="")
        writer.writeheader()
        writer.writerows([{"epoch": 0, "loss": 1.0, "val_loss": 1.5}, {"epoch": 1, "loss": 0.5}])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = str(tmp_path / "curves.png")
    assert write_curves(rows, out) == out
    with open(out, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "history.csv"]  # no temporary file left
    (ax,) = [ax for ax in plot_curves(rows).axes if ax.axison]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [1.5, np.nan])


def test_history_writer_draws_curves_each_epoch(tmp_path):
    logs = tmp_path / "logs"
    writer = _HistoryWriter(str(logs / HISTORY_FILE), initial_epoch=0, guard=None)
    writer.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.2, "accuracy": 0.4, "val_accuracy": 0.3})
    curves = logs / CURVES_FILE
    with open(curves, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    first = curves.read_bytes()
    writer.on_epoch_end(1, {"loss": 0.8, "val_loss": 1.0, "accuracy": 0.5, "val_accuracy": 0.45})
    assert curves.read_bytes() != first  # redrawn with the second epoch


@pytest.fixture(scope="module")
def hyperband_search(tmp_path_factory):
    """A real Hyperband search, tiny: 8×8 images, one block, 3 epochs at most (2 brackets, 6 trials)."""
    from keras_vit.tuning import run_search

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40).astype("int32")
    x = rng.integers(0, 128, (40, 8, 8, 1))
    x[y == 1, :4] += 120
    space = {"depth": 1, "hidden_dim": 8, "num_heads": [1, 2], "patch_size": [2, 4], "mlp_ratio": 2.0}
    space["learning_rate"] = {"min_value": 1e-3, "max_value": 1e-2, "sampling": "log"}
    return run_search(
        (x.astype("uint8"), y),
        tuner="hyperband",
        epochs=3,
        batch_size=40,
        search_space=space,
        compile_kwargs={"run_eagerly": True},
        directory=str(tmp_path_factory.mktemp("search")),
        export_path=None,
        early_stopping_patience=None,
        verbose=0,
    )


def test_search_results_figure(hyperband_search):
    from keras_vit.tuning import results
    from keras_vit.tuning.search import hyperband_trials

    oracle = hyperband_search.tuner.oracle
    project = hyperband_search.tuner.project_dir
    rows = hyperband_search.rows
    # Hyperband(max_epochs=3, factor=3): bracket 1 trains 3 models 1 epoch and the best 2 more; bracket 0, 2 models.
    assert len(rows) == hyperband_trials(3, 3) == 6
    schedule = results.hyperband_schedule(oracle)
    histories = results.read_histories(project, [row["trial"] for row in rows])
    assert sorted(histories) == sorted(schedule) == sorted(row["trial"] for row in rows)
    fig = results.results_figure(rows, "val_accuracy", hyperband=schedule, histories=histories, direction="max")

    first = fig.axes[0]
    (best,) = [line for line in first.get_lines() if line.get_label() == "best so far"]
    assert best.get_drawstyle() == "steps-post"
    objective = np.array([row["objective"] for row in rows])
    np.testing.assert_allclose(best.get_ydata(), np.maximum.accumulate(objective))
    labels = {line.get_label() for line in first.get_lines()}
    assert labels == {"bracket 1", "bracket 0", "best so far"}
    budgets = [text.get_text() for text in first.texts]
    assert budgets == [f"{oracle.trials[row['trial']].hyperparameters.get('tuner/epochs')}e" for row in rows]

    # Integer hyperparameters: a tick at each value tried, and no other.
    (patch,) = [ax for ax in fig.axes if ax.get_title() == "vit/patch_size"]
    fig.canvas.draw()
    tried = sorted({row["vit/patch_size"] for row in rows})
    np.testing.assert_array_equal(patch.get_xticks(), tried)
    assert [label.get_text() for label in patch.get_xticklabels()] == [str(v) for v in tried]
    (rate,) = [ax for ax in fig.axes if ax.get_title() == "vit/learning_rate"]
    assert rate.get_xscale() == "log"

    # One learning-curve panel per trial, over the epochs KerasTuner gave it (a promoted trial goes on where its
    # parent stopped), peaking at the trial's score.
    curves = [ax for ax in fig.axes if ax.get_title().startswith("trial ")]
    assert len(curves) == len(rows)
    for ax, row in zip(curves, rows):
        hp = oracle.trials[row["trial"]].hyperparameters
        assert (
            ax.get_title() == f"trial {row['trial']} (bracket {hp.get('tuner/bracket')}, round {hp.get('tuner/round')})"
        )
        line = ax.get_lines()[0]
        start, stop = hp.get("tuner/initial_epoch"), hp.get("tuner/epochs")
        np.testing.assert_array_equal(line.get_xdata(), np.arange(start + 1, stop + 1))
        assert max(line.get_ydata()) == pytest.approx(row["objective"])
        ticks = [t for t in ax.get_xticks() if start + 1 <= t <= stop]
        np.testing.assert_array_equal(ticks, np.round(ticks))
    assert any(hp_start > 0 for hp_start in (s[2] for s in schedule.values()))  # a promoted trial was drawn

    with open(hyperband_search.plot_path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
