"""
Title: The ViT variants, each with what it changes: DeiT, Swin, T2T-ViT, DeepViT, MViTv2
Author: keras_vit contributors
Date created: 2026/12/02
Last modified: 2026/12/02
Description: DeiT's distillation gain over the same student, Swin's shifted windows drawn, T2T's soft split against NumPy, DeepViT's cross-layer attention similarity with and without re-attention, MViTv2's pooling attention.
Accelerator: None (a GPU shortens the full mode)
"""

"""
## Introduction

The course closes its ViT part with five papers that each change one thing of the original:

| variant | paper | what it changes |
| --- | --- | --- |
| DeiT | Touvron et al. 2021 | a distillation token that learns from a CNN teacher |
| Swin | Liu et al. 2021 | attention inside local windows, shifted every other block |
| T2T-ViT | Yuan et al. 2021 | overlapping "soft split" patches, re-tokenised in steps |
| DeepViT | Zhou et al. 2021 | re-attention: heads' maps mixed by a learned matrix, against attention collapse |
| MViTv2 | Li et al. 2022 | pooling attention: queries, keys and values pooled to coarser grids |

For each, this example shows the number or the picture that makes the change visible, with the
package's layers and factories. Run: `python examples/vit_variants.py` (CIFAR-10 from
`KERAS_VIT_DATA`); `--quick` trains every model for seconds on 600 images.
"""

"""
## Setup
"""

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from keras_vit import explain, training  # noqa: E402
from keras_vit.applications import DeepViT, VisionTransformer  # noqa: E402
from keras_vit.distillation import DistillationTrainer  # noqa: E402
from keras_vit.layers import PoolingAttention, SoftSplit, shifted_window_mask  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
parser.add_argument("--quick", action="store_true", help="tiny models, seconds of training")
parser.add_argument("--train-seconds", type=float, help="wall-clock budget per model (default: 8 quick, 240 full)")
parser.add_argument("--figures-dir", default=os.environ.get("KERAS_VIT_EXAMPLES_FIGURES"))
parser.add_argument("--data-dir", default=os.environ.get("KERAS_VIT_DATA", os.path.join("..", "shared", "data")))
args, _ = parser.parse_known_args()  # parse_known_args: a notebook kernel passes its own flags
here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else "."
figures_dir = args.figures_dir or os.path.join(here, "figures")
os.makedirs(figures_dir, exist_ok=True)
keras.utils.set_random_seed(0)

cifar = os.path.join(args.data_dir, "cifar10")
if not os.path.isdir(cifar):
    raise SystemExit(f"CIFAR-10 not found at {cifar!r}: set KERAS_VIT_DATA to the folder that holds cifar10/")
train, test = np.load(os.path.join(cifar, "train.npz")), np.load(os.path.join(cifar, "test.npz"))
n_train, n_test, seconds = (600, 100, 8) if args.quick else (10000, 2000, 240)
seconds = args.train_seconds or seconds
x_train, y_train = train["x"][:n_train].astype("float32") / 255.0, train["y"][:n_train].astype("int32")
x_test, y_test = test["x"][:n_test].astype("float32") / 255.0, test["y"][:n_test].astype("int32")
mean, std = x_train.mean(axis=(0, 1, 2)), x_train.std(axis=(0, 1, 2))
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
epochs = 2 if args.quick else 40  # an upper bound: each training also stops at `seconds` of wall-clock time


class TimeLimit(keras.callbacks.Callback):
    """Stops training after `seconds` of wall-clock time (checked after each batch)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.start = seconds, time.time()

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self.start > self.seconds:
            self.model.stop_training = True


def fit(model, **compile_kwargs):
    steps = epochs * int(np.ceil(n_train / 128))
    optimizer = training.make_optimizer(training.Recipe(learning_rate=1e-3), steps, model.trainable_variables)
    model.compile(optimizer=optimizer, **compile_kwargs)
    start = time.time()
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0, callbacks=[TimeLimit(seconds)])
    return time.time() - start


def accuracy(model):
    logits = model.predict(x_test, batch_size=256, verbose=0)
    return float((logits.argmax(-1) == y_test).mean())


"""
## DeiT: distillation through attention

DeiT adds a second learned token beside the class token; its output feeds a second head that
is trained to match a teacher's predictions (hard distillation, DeiT Eq. 3:
L = ½ CE(class head, y) + ½ CE(distillation head, argmax teacher)). At test time the two heads
are averaged. The teacher is a CNN: its inductive bias (locality, translation equivariance) is
what a ViT lacks on small data, and distillation passes it on.

We train a small CNN teacher, then the same small ViT student twice, with the same budget:
once on the labels alone, once with `DistillationTrainer`.
"""

teacher = keras.Sequential(
    [keras.Input((32, 32, 3))]
    + [
        layer
        for width in (32, 64, 128)
        for layer in (
            keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
        )
    ]
    + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)],
    name="cnn_teacher",
)
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
teacher_seconds = fit(teacher, loss=loss, metrics=["accuracy"])
teacher_accuracy = accuracy(teacher)
print(
    f"CNN teacher: {teacher.count_params():,} parameters, {teacher_seconds:.0f} s, test accuracy {teacher_accuracy:.4f}"
)

student_size = dict(
    patch_size=4, hidden_dim=64, depth=4, num_heads=4, mlp_dim=128, classes=10, classifier_activation=None
)
keras.utils.set_random_seed(1)
baseline = VisionTransformer(input_shape=(32, 32, 3), distillation=True, **student_size)
baseline_seconds = fit(baseline, loss=loss, metrics=["accuracy"])
baseline_accuracy = accuracy(baseline)
keras.utils.set_random_seed(1)
student = VisionTransformer(input_shape=(32, 32, 3), distillation=True, **student_size)
trainer = DistillationTrainer(student, teacher, alpha=0.5, distillation_type="hard")
student_seconds = fit(trainer, metrics=["accuracy"])
student_accuracy = accuracy(student)
deit_gain = student_accuracy - baseline_accuracy
print(f"ViT student, labels only: {baseline_seconds:.0f} s, test accuracy {baseline_accuracy:.4f}")
print(
    f"ViT student, distilled:   {student_seconds:.0f} s, test accuracy {student_accuracy:.4f}  (gain {deit_gain:+.4f})"
)

"""
Both students are `VisionTransformer(distillation=True)` from the same seed: without a teacher,
Keras trains the averaged output on the labels; with one, the class head learns from the labels
and the distillation head from the CNN.

## Swin: shifted windows

Swin attends inside M×M windows of tokens only (cost linear in the image size instead of
quadratic), and shifts the window grid by M/2 every other block so that information crosses
window borders. The shift is done as a cyclic roll of the feature map; the windows at the
bottom and right then hold tokens from regions that were not adjacent, and
`shifted_window_mask` forbids attention between them. Here an 8×8 token grid (a 32×32 image
with 4×4 patches) with M = 4, shift 2.
"""

grid, window, shift = 8, 4, 2
mask = shifted_window_mask((grid, grid), (window, window), (shift, shift))  # (windows, M², M²)
allowed = mask.mean(axis=(1, 2))
print(
    f"{len(mask)} windows of {window * window} tokens; share of token pairs allowed per shifted window: {np.round(allowed, 3)}"
)
image = (train["x"][7] / 255.0).astype("float32")
patch = 32 // grid
fig, axes = plt.subplots(1, 3, figsize=(12.5, 4.2), layout="constrained")
for ax, offset, title in (
    (axes[0], 0, "block l: W-MSA, 4 windows"),
    (axes[1], shift, "block l+1: SW-MSA, windows shifted by 2 tokens"),
):
    ax.imshow(image, extent=(0, 32, 32, 0))
    edges = sorted(set([0, 32] + [e for e in range(offset * patch, 33, window * patch)]))
    for i, (y0, y1) in enumerate(zip(edges[:-1], edges[1:])):
        for j, (x0, x1) in enumerate(zip(edges[:-1], edges[1:])):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=f"C{(i * 3 + j) % 10}", lw=3))
    for k in range(1, grid):
        ax.axhline(k * patch, color="w", lw=0.3)
        ax.axvline(k * patch, color="w", lw=0.3)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
shown = axes[2].imshow(mask[-1], cmap="gray", interpolation="nearest")
axes[2].set_title("after the cyclic roll: mask of the bottom-right window", fontsize=9)
axes[2].set_xlabel("key token (of 16)")
axes[2].set_ylabel("query token (of 16)")
fig.colorbar(shown, ax=axes[2], ticks=[0, 1], label="attention allowed")
fig.savefig(os.path.join(figures_dir, "variants_swin_windows.png"), dpi=120)
plt.close(fig)

"""
![Swin windows](figures/variants_swin_windows.png)

## T2T-ViT: the soft split

ViT's patches do not overlap, so a patch knows nothing of its neighbours' pixels until the
first attention. T2T's soft split (Yuan et al. 2021, Eq. 3) unfolds k×k windows with a stride
s < k: neighbouring tokens share k − s pixels. We check `SoftSplit` against an unfold written in
NumPy, and count how many tokens cover each pixel.
"""

k, s, p = 7, 4, 2  # the first soft split of T2T-ViT for 224×224 images
split = SoftSplit(k, s, p)
tokens = keras.ops.convert_to_numpy(split(x_test[:2]))
padded = np.pad(x_test[:2], ((0, 0), (p, p), (p, p), (0, 0)))
out = (32 + 2 * p - k) // s + 1
reference = np.stack(
    [
        padded[:, i * s : i * s + k, j * s : j * s + k].transpose(0, 3, 1, 2).reshape(2, -1)
        for i in range(out)
        for j in range(out)
    ],
    axis=1,
)  # (B, tokens, C·k·k), channel-major as nn.Unfold
soft_split_diff = float(np.abs(tokens - reference).max())
coverage = np.zeros((32 + 2 * p, 32 + 2 * p))
for i in range(out):
    for j in range(out):
        coverage[i * s : i * s + k, j * s : j * s + k] += 1
coverage = coverage[p:-p, p:-p]
print(
    f"SoftSplit({k}, {s}, {p}) on 32×32×3: {tokens.shape[1]} tokens of {tokens.shape[2]} numbers; max |layer - NumPy| = {soft_split_diff:.1e}"
)
print(
    f"tokens covering a pixel: min {coverage.min():.0f}, max {coverage.max():.0f}, mean {coverage.mean():.2f} (ViT patches: exactly 1)"
)
assert soft_split_diff < 1e-6
fig, axes = plt.subplots(1, 2, figsize=(9, 4), layout="constrained")
axes[0].imshow(image, extent=(0, 32, 32, 0))
for (i, j), colour in zip(((1, 1), (1, 2), (2, 1)), ("C1", "C2", "C3")):
    axes[0].add_patch(Rectangle((j * s - p, i * s - p), k, k, fill=False, ec=colour, lw=2.5))
axes[0].set_title(f"three neighbouring soft-split windows ({k}×{k}, stride {s})", fontsize=9)
axes[0].set_xlabel("x (pixels)")
axes[0].set_ylabel("y (pixels)")
shown = axes[1].imshow(coverage, cmap="viridis")
axes[1].set_title("number of tokens that contain each pixel", fontsize=9)
axes[1].set_xlabel("x (pixels)")
axes[1].set_ylabel("y (pixels)")
fig.colorbar(shown, ax=axes[1], label="tokens")
fig.savefig(os.path.join(figures_dir, "variants_t2t_soft_split.png"), dpi=120)
plt.close(fig)

"""
![Soft split](figures/variants_t2t_soft_split.png)

## DeepViT: re-attention against attention collapse

Zhou et al. observed that in deep ViTs the attention maps of successive blocks become nearly
identical ("attention collapse"): the extra blocks add little. They measure the cosine
similarity of the attention maps of blocks p and q (per head and query token, averaged), and
propose re-attention, Θᵀ·softmax(QKᵀ/√d) with a learned h×h head-mixing matrix Θ and a norm,
which regenerates diverse maps. We train a ViT and a DeepViT of the same depth and width for
the same time and compute that similarity from `keras_vit.explain.attention_maps`.
"""

deep_size = dict(
    patch_size=4,
    hidden_dim=64,
    depth=3 if args.quick else 12,
    num_heads=4,
    mlp_dim=128,
    classes=10,
    classifier_activation=None,
)
keras.utils.set_random_seed(2)
plain_vit = VisionTransformer(input_shape=(32, 32, 3), qkv_bias=False, **deep_size)
plain_seconds = fit(plain_vit, loss=loss, metrics=["accuracy"])
keras.utils.set_random_seed(2)
deepvit = DeepViT(input_shape=(32, 32, 3), **deep_size)
deepvit_seconds = fit(deepvit, loss=loss, metrics=["accuracy"])


def cross_layer_similarity(model, images):
    """(L, L): cosine similarity of the attention maps of blocks p and q, per head and query, averaged."""
    maps = explain.attention_maps(model, images)
    stacked = np.stack([maps[i] for i in sorted(maps)])  # (L, B, h, T, T)
    unit = stacked / np.linalg.norm(stacked, axis=-1, keepdims=True)
    return np.einsum("pbhts,qbhts->pq", unit, unit) / np.prod(stacked.shape[1:4])


similarities = {}
for name, model, spent in (("ViT", plain_vit, plain_seconds), ("DeepViT (re-attention)", deepvit, deepvit_seconds)):
    sim = cross_layer_similarity(model, x_test[:64])
    similarities[name] = sim
    adjacent = np.diagonal(sim, 1)
    print(
        f"{name}: {spent:.0f} s, test accuracy {accuracy(model):.4f}; similarity of adjacent blocks {np.round(adjacent, 3)}"
    )
    print(f"  mean over the last half of the blocks: {adjacent[len(adjacent) // 2 :].mean():.3f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), layout="constrained")
for ax, (name, sim) in zip(axes, similarities.items()):
    shown = ax.imshow(sim, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_title(f"{name}: similarity of blocks p, q", fontsize=9)
    ax.set_xlabel("block q")
    ax.set_ylabel("block p")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
fig.colorbar(shown, ax=axes[:2], label="cosine similarity of attention maps")
for name, sim in similarities.items():
    axes[2].plot(np.arange(len(sim) - 1), np.diagonal(sim, 1), "o-", label=name)
axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
axes[2].set_xlabel("block p (compared with p + 1)")
axes[2].set_ylabel("cosine similarity")
axes[2].set_ylim(-1.05, 1.05)
axes[2].axhline(0, color="k", lw=0.5)
axes[2].set_title("adjacent blocks", fontsize=9)
axes[2].legend(fontsize=8)
axes[2].grid(alpha=0.3)
fig.savefig(os.path.join(figures_dir, "variants_deepvit_similarity.png"), dpi=120, bbox_inches="tight")
plt.close(fig)

"""
![DeepViT](figures/variants_deepvit_similarity.png)

## MViTv2: pooling attention

MViTv2 pools the queries, keys and values with strided depthwise convolutions before the
attention (Li et al. 2022, Sec. 3.1): pooling Q lowers the output resolution (a new stage),
pooling K and V shrinks the attention matrix. On a 16×16 map of 32 channels:
"""

feature_map = np.random.default_rng(0).normal(size=(2, 16, 16, 32)).astype("float32")
rows = []
for stride_q, stride_kv in ((1, 1), (1, 4), (2, 4)):
    layer = PoolingAttention(num_heads=2, stride_q=stride_q, stride_kv=stride_kv)
    output, scores = layer(feature_map, return_attention_scores=True)
    output, scores = keras.ops.convert_to_numpy(output), keras.ops.convert_to_numpy(scores)
    rows.append((stride_q, stride_kv, output.shape[1:3], scores.shape[-2:], int(np.prod(scores.shape[-2:]))))
    print(
        f"stride_q={stride_q}, stride_kv={stride_kv}: output {output.shape}, attention {scores.shape} "
        f"({rows[-1][-1]:,} weights per head, {rows[0][-1] / rows[-1][-1]:.0f}× fewer than unpooled)"
    )

fig, ax = plt.subplots(figsize=(5.5, 3.3), layout="constrained")
labels = [f"Q/{q}, KV/{kv}\n{tuple(o)} out" for q, kv, o, _, _ in rows]
ax.bar(labels, [r[-1] for r in rows], color=["0.6", "C0", "C1"])
ax.set_yscale("log")
ax.set_ylabel("attention weights per head (log)")
ax.set_title("MViTv2 pooling attention on a 16×16 map", fontsize=9)
for i, r in enumerate(rows):
    ax.text(i, r[-1] * 1.15, f"{r[3][0]}×{r[3][1]}", ha="center", fontsize=8)
fig.savefig(os.path.join(figures_dir, "variants_mvitv2_pooling.png"), dpi=120)
plt.close(fig)

"""
![MViTv2](figures/variants_mvitv2_pooling.png)

## Measured

The parts without training give the same numbers in both modes (`python examples/vit_variants.py
--quick` and the full mode):

- Swin, 8×8 tokens, M = 4, shift 2: 4 windows of 16 tokens; after the cyclic roll the share of
  token pairs allowed to attend is 1.0 in the top-left window, 0.5 in the two edge windows and
  0.25 in the bottom-right one (four regions);
- T2T: `SoftSplit(7, 4, 2)` on a 32×32×3 image gives 64 tokens of 147 numbers, equal to the
  NumPy unfold (max abs difference 0.0); each pixel lies in 1 to 4 tokens, 2.74 on average,
  against exactly 1 for ViT's patches;
- MViTv2 on a 16×16 map: 65,536 attention weights per head unpooled, 4,096 with K and V pooled
  by 4 (16× fewer), 1,024 with Q also pooled by 2 (64× fewer, and an 8×8 output: the next
  stage's resolution).

The trained parts, DeiT's distillation gain and DeepViT's cross-layer similarity, need the full
mode (five models, 240 s of training each on 10,000 images); it has not been run yet, so their
numbers are "not run yet" in `examples/README.md`. The quick mode trains each model for
8 seconds on 600 images and its accuracies are at chance level: they say nothing about either
claim.
"""
