"""
Title: A ViT on CIFAR-10 in 60 minutes of 2 CPU cores
Author: keras_vit contributors
Date created: 2026/12/02
Last modified: 2026/12/02
Description: A Vision Transformer trained from scratch on the CIFAR-10 training file (all its images) within a fixed wall-clock budget, the epochs planned from its own measured speed, with the learning curve on the 10,000 test images.
Accelerator: None (2 CPU cores; a GPU does the same budget in minutes)
"""

"""
## Introduction

The course's experiments train ViTs on 32×32 images and find them data-hungry: without the
convolution's inductive bias, a ViT has to learn locality from the data (Dosovitskiy et al.
2021, Sec. 4.2 and Fig. 3). This example asks how far a ViT gets on CIFAR-10 when the budget is
not epochs but time: **60 minutes of training on 2 CPU cores, scored on all 10,000 test
images**, with the goal of 65 % top-1.

Run: `python examples/cifar10_in_an_hour.py` (CIFAR-10 from `KERAS_VIT_DATA`; 60 minutes) or
`--quick` (300 images, a 12-second budget: it runs the machinery, its numbers mean nothing).
`--minutes` sets another budget.
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

from keras_vit import training  # noqa: E402
from keras_vit.applications import VisionTransformer  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
parser.add_argument("--quick", action="store_true", help="300 images and a 12-second budget")
parser.add_argument("--minutes", type=float, default=None, help="the training budget (0.2 quick, 60 full)")
parser.add_argument("--figures-dir", default=os.environ.get("KERAS_VIT_EXAMPLES_FIGURES"))
parser.add_argument("--data-dir", default=os.environ.get("KERAS_VIT_DATA", os.path.join("..", "shared", "data")))
args, _ = parser.parse_known_args()  # parse_known_args: a notebook kernel passes its own flags
here = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else "."
figures_dir = args.figures_dir or os.path.join(here, "figures")
os.makedirs(figures_dir, exist_ok=True)
minutes = args.minutes if args.minutes is not None else (0.2 if args.quick else 60.0)

cifar = os.path.join(args.data_dir, "cifar10")
if not os.path.isdir(cifar):
    raise SystemExit(f"CIFAR-10 not found at {cifar!r}: set KERAS_VIT_DATA to the folder that holds cifar10/")
train, test = np.load(os.path.join(cifar, "train.npz")), np.load(os.path.join(cifar, "test.npz"))
n_train, n_test = (300, 200) if args.quick else (len(train["y"]), len(test["y"]))
x_train, y_train = train["x"][:n_train].astype("float32") / 255.0, train["y"][:n_train].astype("int32")
x_test, y_test = test["x"][:n_test].astype("float32") / 255.0, test["y"][:n_test].astype("int32")
print(f"{n_train} training images, {n_test} test images, a {minutes:g}-minute budget")

"""
## The recipe, and why

- **Patch 4**: 64 tokens per image. The course's first claim (and the package's patch × depth
  search in benchmarks/README.md: 0.346 against 0.290 for patch 8) says small patches win at 32×32.
- **A narrow, shallow model** (width 192, 6 blocks, 3 heads, MLP 384, 1.8 M parameters): in a
  fixed time, epochs matter more than capacity, so the model is the size that gives a dozen or
  more passes over the training images in an hour on two cores.
- **Random 4-pixel-padded crops and horizontal flips**: a ViT has no translation equivariance of
  its own; augmentation supplies some.
- **Label smoothing 0.1** and **no stochastic depth**: the run is short, so it is far from
  over-fitting and a regulariser that slows learning costs more than it gives.
- **AdamW** (peak 1e-3, weight decay 0.05, global-norm clipping at 1), warm-up over the first 10 %
  of the steps then cosine decay to 0 at the end of the budget: the package's `Recipe`.
- The training step is compiled with XLA (`training.compile_model`'s default on TensorFlow), about
  twice the steps per second of TensorFlow's graph mode on CPU.

The cosine schedule needs the number of steps in advance, so the budget is turned into epochs
by measurement: the clock starts, the model is built and compiled, twenty steps are timed,
and the epochs that fit in what is left (with the time of one test-set evaluation per epoch) are
planned. Those timed steps are training steps of the model itself, inside the budget.
"""

start = time.time()
keras.utils.set_random_seed(0)
size = (
    dict(hidden_dim=32, depth=2, num_heads=2, mlp_dim=64)
    if args.quick
    else dict(hidden_dim=192, depth=6, num_heads=3, mlp_dim=384)
)
batch_size = 128
steps_per_epoch = int(np.ceil(n_train / batch_size))


def augment(x, rng):
    """Random 4-pixel-padded (reflected) crops and horizontal flips, in NumPy."""
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    out = np.empty_like(x)
    for i, (dy, dx) in enumerate(rng.integers(0, 9, size=(len(x), 2))):
        out[i] = padded[i, dy : dy + 32, dx : dx + 32]
    flip = rng.random(len(x)) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def build(total_steps):
    model = VisionTransformer(
        input_shape=(32, 32, 3), patch_size=4, classes=10, classifier_activation=None, drop_path_rate=0.0, **size
    )
    return training.compile_model(
        model,
        training.Recipe(learning_rate=1e-3, weight_decay=0.05),
        total_steps=total_steps,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


class TimeLimit(keras.callbacks.Callback):
    """Stops training once `seconds` have passed since `start`."""

    def __init__(self, seconds, start):
        super().__init__()
        self.seconds, self.start = seconds, start

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self.start > self.seconds:
            self.model.stop_training = True


"""
## Planning the epochs from the measured speed

A probe model, built like the real one, compiles its step and trains for a few steps; the
time per step and of one evaluation of the test set give the number of epochs that fit.
"""

rng = np.random.default_rng(0)
probe = build(total_steps=1000)
probe_steps = 4 if args.quick else 20
x_probe = augment(x_train[: probe_steps * batch_size], rng)
y_probe = keras.utils.to_categorical(y_train[: probe_steps * batch_size], 10)
probe.fit(x_probe[:batch_size], y_probe[:batch_size], batch_size=batch_size, epochs=1, verbose=0)  # compiles
t0 = time.time()
probe.fit(x_probe, y_probe, batch_size=batch_size, epochs=1, verbose=0)
step_seconds = (time.time() - t0) / (len(x_probe) // batch_size)
probe.predict(x_test[:500], batch_size=500, verbose=0)  # compiles
t0 = time.time()
probe.predict(x_test, batch_size=500, verbose=0)
eval_seconds = time.time() - t0
del probe
left = minutes * 60 - (time.time() - start)
epoch_seconds = steps_per_epoch * step_seconds + eval_seconds
planned_epochs = max(1, int(left // (epoch_seconds * 1.05)))  # 5 % for the first epoch's compilation
print(
    f"{step_seconds * 1000:.0f} ms per step of {batch_size} ({batch_size / step_seconds:.0f} img/s), "
    f"{eval_seconds:.1f} s per test-set evaluation: {planned_epochs} epoch(s) planned in the {left:.0f} s left"
)

"""
## Training within the budget

One `fit` call per epoch on freshly augmented images; after each, the accuracy on the test
images is the learning curve. Training stops at the budget whatever the plan said.
"""

model = build(total_steps=planned_epochs * steps_per_epoch)
limit, curve = TimeLimit(minutes * 60, start), []
for epoch in range(planned_epochs):
    order = rng.permutation(n_train)
    history = model.fit(
        augment(x_train[order], rng),
        keras.utils.to_categorical(y_train[order], 10),
        batch_size=batch_size,
        epochs=1,
        verbose=0,
        callbacks=[limit],
    )
    accuracy = float((model.predict(x_test, batch_size=500, verbose=0).argmax(-1) == y_test).mean())
    curve.append((time.time() - start, history.history["accuracy"][-1], accuracy))
    print(
        f"epoch {epoch + 1}/{planned_epochs}: {curve[-1][0]:.0f} s, train accuracy (augmented) "
        f"{curve[-1][1]:.4f}, test accuracy {accuracy:.4f}"
    )
    if model.stop_training:
        break
final = curve[-1][2]
print(
    f"goal ({minutes:g} min): {final:.4f} on {n_test} test images after {curve[-1][0]:.0f} s "
    f"and {len(curve)} epoch(s); {'met' if final >= 0.65 else 'not met'} (goal 0.65)"
)

fig, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
ax.plot([t / 60 for t, _, _ in curve], [a for _, _, a in curve], "o-", label=f"test ({n_test} images)")
ax.plot([t / 60 for t, _, _ in curve], [a for _, a, _ in curve], "s--", label="train (augmented)")
ax.axhline(0.65, color="r", ls=":", label="goal 65 %")
ax.set_xlabel("wall-clock time since the start (minutes)")
ax.set_ylabel("top-1 accuracy")
ax.set_ylim(0, 1)
ax.set_title(
    f"ViT P=4, D={size['hidden_dim']}, {size['depth']} blocks, {n_train} images, {len(curve)} epochs", fontsize=9
)
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
fig.savefig(os.path.join(figures_dir, "cifar10_in_an_hour.png"), dpi=120)
plt.close(fig)

"""
![Learning curve](figures/cifar10_in_an_hour.png)

## Measured

`python examples/cifar10_in_an_hour.py` on an otherwise idle 2-core CPU (TensorFlow, oneDNN on):
the shared CIFAR-10 training file holds 25,000 images; the probe measured 759 ms per step of 128
(169 img/s) and 22.5 s per test-set evaluation and planned 19 epochs. Epochs took about 225 s
instead of the ~170 s planned (per-epoch augmentation and input set-up the probe does not see),
so the budget stopped training in epoch 17, with the cosine schedule at about 85 % of its
length. **Test accuracy on all 10,000 images: 60.93 % after 3,635 s: the 65 % goal is not met.**
The curve: 34.8 % after epoch 1, 48.1 % (4), 51.1 % (7), 57.0 % (12), 60.5 % (15), 61.0 % (16),
still rising, with train accuracy (on augmented images) at the level of the test accuracy: the
model is under-trained, not over-fitted. What would close the gap: planning the epochs from a
timed whole epoch, so that the schedule anneals within the budget, and more images per second.
"""
