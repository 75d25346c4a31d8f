"""Figures: heatmaps over images, attention per head, and Figure 7 of the ViT paper."""

import math

import numpy as np
from keras import ops

from keras_vit.explain.attention import attention_head_maps
from keras_vit.explain.graph import check_images
from keras_vit.explain.heatmaps import METHOD_OPTIONS, METHODS, explain


def _figure(rows, cols, size=2.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cols * size, rows * size), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


# Perceptually uniform (equal steps in value look like equal steps in colour, and it prints in
# grey scale); jet's bright bands invent edges that are not in the data.
HEATMAP_CMAP = "inferno"
SIMILARITY_CMAP = "viridis"


def _colorbar(fig, image, ax, label):
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    # A few ticks: a narrow bar beside every panel has no room for ten labels like 0.01075.
    bar.locator = MaxNLocator(nbins=4)
    bar.formatter = FormatStrFormatter("%.3g")
    bar.update_ticks()
    return bar


def _min_max(values):
    values = np.asarray(values, dtype="float32")
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _luminance(shown):
    """The image in grey (Rec. 601 luma), under a heatmap: its own colours would mix with the colour map's."""
    return shown if shown.ndim == 2 else shown[..., :3] @ np.array([0.299, 0.587, 0.114], dtype="float32")


def _display(image):
    image = np.asarray(image, dtype="float32")
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return image[..., 0] if image.shape[-1] == 1 else image


def plot_heatmaps(images, heatmaps, titles=None, alpha=0.5, cmap=HEATMAP_CMAP):
    """Each image beside its heatmap(s) overlaid on it.

    Args:
        images: `(B, H, W, C)`.
        heatmaps: `(B, H, W)` (e.g. from `legrad` or `attention_rollout`), or
            a dict name → `(B, H, W)` for one column per method.
        titles: optional list of B strings, shown over each image.
        alpha: float, opacity of the heatmap.
        cmap: matplotlib colour map of the heatmap (default perceptually uniform).

    Each map is min-max scaled to [0, 1] for display and has its colour bar.

    Returns:
        A `matplotlib.figure.Figure` with B rows and 1 + (number of maps)
        columns, plus one colour bar per heatmap panel.
    """
    images = np.asarray(images)
    columns = dict(heatmaps) if isinstance(heatmaps, dict) else {"heatmap": heatmaps}
    if images.ndim == 3:
        images = images[None]
        columns = {k: np.asarray(v).reshape((1,) + np.shape(v)[-2:]) for k, v in columns.items()}
    for name, maps in columns.items():
        maps = np.asarray(maps)
        if maps.shape != (len(images),) + images.shape[1:3]:
            raise ValueError(
                "`heatmaps` must be (B, H, W) for `images` (B, H, W, C). Received: images of shape "
                f"{images.shape}, heatmaps {name!r} of shape {maps.shape}"
            )
    fig, axes = _figure(len(images), 1 + len(columns))
    for i, image in enumerate(images):
        shown = _display(image)
        gray = "gray" if shown.ndim == 2 else None
        axes[i, 0].imshow(shown, cmap=gray)
        if titles is not None:
            axes[i, 0].set_title(str(titles[i]), fontsize=8)
        for j, (name, maps) in enumerate(columns.items(), start=1):
            axes[i, j].imshow(_luminance(shown), cmap="gray", vmin=0.0, vmax=1.0)
            overlay = axes[i, j].imshow(_min_max(maps[i]), cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
            _colorbar(fig, overlay, axes[i, j], "relevance (min-max scaled)")
            if i == 0:
                axes[i, j].set_title(name, fontsize=8)
    return fig


def plot_attention_heads(model, image, layer=-1, alpha=0.6):
    """A grid with one panel per head: the image and the head's attention (see `attention_head_maps`).

    Each head has its own colour bar in attention weights (heads differ in how
    peaked they are, so a shared scale would flatten most of them).

    Returns:
        A `matplotlib.figure.Figure`: the image, one panel per head, and one
        colour bar per head.
    """
    images = check_images(model, image)[:1]
    maps = attention_head_maps(model, images, layer)
    cols = min(len(maps) + 1, 6)
    rows = math.ceil((len(maps) + 1) / cols)
    fig, axes = _figure(rows, cols, size=2.6)
    shown = _display(images[0])
    axes.flat[0].imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    axes.flat[0].set_title("image", fontsize=8)
    for h, heat in enumerate(maps):
        ax = axes.flat[h + 1]
        ax.imshow(_luminance(shown), cmap="gray", vmin=0.0, vmax=1.0)
        overlay = ax.imshow(heat, cmap=HEATMAP_CMAP, alpha=alpha)
        _colorbar(fig, overlay, ax, "attention weight")
        ax.set_title(f"head {h}", fontsize=8)
    for ax in list(axes.flat)[len(maps) + 1 :]:
        ax.axis("off")
    return fig


def plot_mean_attention_distance(distances):
    """Mean attention distance vs network depth, one point per head (ViT paper, Fig. 7 right).

    Args:
        distances: `(L, h)` from `mean_attention_distance`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    from matplotlib.figure import Figure

    distances = np.asarray(distances)
    if distances.ndim != 2:
        raise ValueError(f"`distances` must be (layers, heads). Received: distances of shape {distances.shape}")
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(4.5, 3.5), layout="constrained")
    ax = fig.subplots()
    for h in range(distances.shape[1]):
        ax.scatter(np.arange(len(distances)), distances[:, h], s=14, label=f"head {h}")
    ax.set_xlabel("block")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_title("mean attention distance per head", fontsize=9)
    # Blocks are counted, not measured: integer ticks only, numbered as the `layer` arguments are.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.5, len(distances) - 0.5)
    # From zero (a distance), with headroom so the top points are not clipped by the frame.
    top = float(np.nanmax(distances)) if np.isfinite(distances).any() else 1.0
    ax.set_ylim(0.0, 1.1 * top if top > 0 else 1.0)
    ax.grid(True, alpha=0.3)
    if distances.shape[1] <= 16:
        ax.legend(fontsize=6, ncol=2)
    return fig


def plot_patch_embedding_filters(components, cols=7):
    """Principal components of the embedding filters as small images (Fig. 7 left).

    Args:
        components: `(n, P, P, C)` from `patch_embedding_filters`.
        cols: panels per row.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    components = np.asarray(components)
    rows = math.ceil(len(components) / cols)
    fig, axes = _figure(rows, cols, size=1.1)
    fig.suptitle("patch-embedding filters: principal components", fontsize=9)
    for k, (ax, comp) in enumerate(zip(axes.flat, components)):
        shown = _display(comp)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        ax.set_title(f"PC {k + 1}", fontsize=7)
    for ax in list(axes.flat)[len(components) :]:
        ax.axis("off")
    return fig


def plot_position_embedding_similarity(similarity):
    """For each patch, its position embedding's similarity to all others (Fig. 7 centre).

    Args:
        similarity: `(gh, gw, gh, gw)` from `position_embedding_similarity`.

    Panel (i, j) is the cosine similarity of patch (row i, column j)'s
    embedding to every patch's; one colour bar, on the fixed scale [-1, 1],
    serves all panels.

    Returns:
        A `matplotlib.figure.Figure`: gh × gw panels and one colour bar.
    """
    similarity = np.asarray(similarity)
    if similarity.ndim != 4:
        raise ValueError(f"`similarity` must be (gh, gw, gh, gw). Received: similarity of shape {similarity.shape}")
    gh, gw = similarity.shape[:2]
    fig, axes = _figure(gh, gw, size=0.6 if max(gh, gw) > 8 else 0.9)
    for i in range(gh):
        for j in range(gw):
            image = axes[i, j].imshow(similarity[i, j], vmin=-1.0, vmax=1.0, cmap=SIMILARITY_CMAP)
    # Patch rows and columns are integers: each panel's row/column number on the outer panels.
    for i in range(gh):
        axes[i, 0].set_ylabel(str(i), fontsize=6, rotation=0, labelpad=6, va="center")
    for j in range(gw):
        axes[-1, j].set_xlabel(str(j), fontsize=6)
    fig.supylabel("input patch row", fontsize=8)
    fig.supxlabel("input patch column", fontsize=8)
    fig.suptitle("position embedding similarity", fontsize=9)
    _colorbar(fig, image, axes, "cosine similarity")
    return fig


def save_explanation_figure(model, images, path, method="legrad", labels=None, class_names=None, **kwargs):
    """Writes a figure of `images` and their heatmaps (see `explain`) to `path`.

    One row per image: the image, titled with its predicted class and its
    probability (softmax of the outputs when the model ends in logits), and
    the true label when given, then one heatmap overlay per method, each with
    its colour bar.

    Args:
        model: a ViT-family `keras.Model`.
        images: `(B, H, W, C)` or `(H, W, C)`; keep B small (one row each).
        path: output file (.png, .pdf, ...).
        method: "legrad", "rollout" or "attention", or a list of them.
        labels: optional `(B,)` true classes.
        class_names: optional list of class names.
        **kwargs: passed to `explain` (`class_index`, `layer`, ...).

    Returns:
        `path`.
    """
    methods = [method] if isinstance(method, str) else list(method)
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS} or a list of them. Received: method={method!r}")
    known = {option for options in METHOD_OPTIONS.values() for option in options}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"Unknown options {unknown}; the methods take {sorted(known)}. Received: {kwargs}")
    images = check_images(model, images)
    heatmaps = {}
    for name in methods:
        options = {k: v for k, v in kwargs.items() if k in METHOD_OPTIONS[name]}
        heatmaps[name] = explain(model, images, method=name, **options)
    titles = None
    if getattr(model, "outputs", None) and len(model.outputs[0].shape) == 2:

        def name_of(c):
            return str(class_names[c]) if class_names is not None else str(int(c))

        from keras_vit.training import outputs_probabilities

        outputs = model(images, training=False)
        if not outputs_probabilities(model):
            outputs = ops.softmax(outputs, axis=-1)
        probabilities = ops.convert_to_numpy(outputs).astype("float64")
        predicted = np.argmax(probabilities, axis=-1)
        titles = [f"pred: {name_of(c)} (p={probabilities[i, c]:.2f})" for i, c in enumerate(predicted)]
        if labels is not None:
            titles = [f"{title}\ntrue: {name_of(t)}" for t, title in zip(np.asarray(labels).reshape(-1), titles)]
    fig = plot_heatmaps(images, heatmaps, titles=titles)
    fig.savefig(path, dpi=100)
    return path
