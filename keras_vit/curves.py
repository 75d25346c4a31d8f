"""Learning curves: loss and each metric per epoch, train and validation (`curves.png` of `keras-vit train`)."""

import math
import os

from keras_vit.utils import atomic_path

CURVES_FILE = "curves.png"


def _series(rows):
    """Epoch numbers (1-based, as Keras' progress bar counts) and name → list of values per epoch."""
    rows = sorted(rows, key=lambda row: int(row["epoch"]))
    epochs = [int(row["epoch"]) + 1 for row in rows]
    names = sorted({key for row in rows for key in row} - {"epoch"})
    series = {}
    for name in names:
        values = []
        for row in rows:
            value = row.get(name, "")
            # A resumed run reads its rows back from history.csv as strings; a key a row lacks is "".
            values.append(float(value) if value not in ("", None) else math.nan)
        series[name] = values
    return epochs, series


def plot_curves(rows):
    """One panel per quantity (loss first, then each metric), train and validation on the same axes.

    Args:
        rows: list of dicts, one per epoch, with an "epoch" key (0-based, as
            Keras' `on_epoch_end` gives it) and the epoch's logs, e.g.
            `{"epoch": 0, "loss": 1.2, "val_loss": 1.3, "accuracy": 0.5}`;
            the rows of `history.csv` (values as strings) also do.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not rows:
        raise ValueError(f"`rows` must hold at least one epoch. Received: rows={rows!r}")
    epochs, series = _series(rows)
    bases = sorted({name[4:] if name.startswith("val_") else name for name in series})
    # Loss is what training minimises: it comes first; the rest in name order.
    bases = sorted(bases, key=lambda name: (name != "loss", name))
    cols = min(len(bases), 3)
    rows_count = math.ceil(len(bases) / cols)
    fig = Figure(figsize=(4.0 * cols, 3.0 * rows_count), layout="constrained")
    axes = fig.subplots(rows_count, cols, squeeze=False)
    # A single epoch is a point, not a line: markers keep it visible.
    marker = "o" if len(epochs) <= 30 else None
    for ax, base in zip(axes.flat, bases):
        if base in series:
            ax.plot(epochs, series[base], marker=marker, markersize=3, label="train")
        if f"val_{base}" in series:
            ax.plot(epochs, series[f"val_{base}"], marker=marker, markersize=3, label="validation")
        ax.set_title(base.replace("_", " "), fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(base.replace("_", " "))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(bases) :]:
        ax.axis("off")
    return fig


def write_curves(rows, path):
    """Writes `plot_curves(rows)` to `path` atomically (`keras_vit.utils.atomic_path`).

    Returns:
        `path`.
    """
    path = os.fspath(path)
    fig = plot_curves(rows)
    extension = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        # The format is named, not guessed from the temporary file's name.
        fig.savefig(tmp, dpi=100, format=extension)
    return path
