"""The demo behind `make demo`: a small Vision Transformer on scikit-learn's digits.

Runs offline in about two minutes on two CPU cores:

1. loads the 1,797 8×8 digits (`keras_vit.data.load("digits")`: a fixed,
   stratified 80/20 train/test split, seed 0);
2. builds a ViT from the factory (`keras_vit.applications.VisionTransformer`:
   2×2 patches → 16 tokens + class token, width 64, 4 blocks of 4 heads);
3. trains it with `model.fit` (AdamW, warmup + cosine schedule);
4. prints the accuracy on the 360 held-out test images;
5. saves `demo_out/vit_digits.keras` (atomically), reloads it and checks the
   reloaded model predicts the same;
6. draws LeGrad and attention-rollout heatmaps of 8 test digits with
   `keras_vit.explain` into `demo_out/explanation.png`.

    python -m keras_vit.demo [--out demo_out] [--epochs N]
"""

import argparse
import os
import time

import keras
import numpy as np

from keras_vit import data, training
from keras_vit.applications import VisionTransformer
from keras_vit.utils import save_model_atomic, write_json_atomic

# The demo's settings; `tests/test_demo.py` runs the demo with exactly these.
DEMO_CONFIG = {
    "model": {
        "input_shape": (8, 8, 1),
        "patch_size": 2,
        "hidden_dim": 64,
        "depth": 4,
        "num_heads": 4,
        "mlp_dim": 128,
        "dropout": 0.1,
        "classes": 10,
    },
    "data": {"batch_size": 64, "validation_split": 0.0, "augment": False, "seed": 0},
    "fit": {"epochs": 25, "recipe": training.Recipe(learning_rate=3e-3, weight_decay=0.05, warmup_fraction=0.1)},
}
TARGET_ACCURACY = 0.95


def build_demo_model(**overrides):
    """The demo's ViT (uncompiled), from the `VisionTransformer` factory."""
    return VisionTransformer(**{**DEMO_CONFIG["model"], "name": "vit_digits", **overrides})


def write_explanation_figure(model, images, labels, class_names, out_dir):
    """Writes `explanation.png`: LeGrad and attention-rollout heatmaps of a few test digits.

    Called after training with the reloaded model and a few normalised test
    images `(N, 8, 8, 1)` with their labels (see `keras_vit.explain`).
    Returns the path of the figure.
    """
    from keras_vit.explain import save_explanation_figure

    path = os.path.join(out_dir, "explanation.png")
    return save_explanation_figure(
        model, images, path, method=["legrad", "rollout"], labels=labels, class_names=class_names
    )


def run_demo(out_dir="demo_out", epochs=None, verbose="auto"):
    """Trains, evaluates, saves and reloads the demo model.

    Args:
        out_dir: folder for `vit_digits.keras`, `preprocessing.json` and
            `metrics.json`.
        epochs: None (the demo's setting) or a number of epochs.
        verbose: `model.fit` verbosity ("auto" shows a progress bar).

    Returns:
        A dict: `test_accuracy`, `test_loss`, `train_seconds` (wall clock),
        `train_cpu_seconds`, `total_seconds`, `max_reload_diff`, `model_path`, `num_params`.
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(DEMO_CONFIG["data"]["seed"])
    bundle = data.load("digits", **DEMO_CONFIG["data"])
    model = build_demo_model()
    fit_args = dict(DEMO_CONFIG["fit"], epochs=epochs or DEMO_CONFIG["fit"]["epochs"])
    print(
        f"Training a ViT ({model.count_params():,} parameters) on {bundle.num_train} digits; "
        f"{bundle.num_test} held-out digits test it."
    )
    fit_start, fit_cpu_start = time.perf_counter(), time.process_time()
    training.fit_model(model, bundle, verbose=verbose, **fit_args)
    train_seconds = time.perf_counter() - fit_start
    train_cpu_seconds = time.process_time() - fit_cpu_start

    metrics = training.evaluate_model(model, bundle.test)
    print(f"Held-out test accuracy: {metrics['accuracy']:.4f} ({bundle.num_test} images), loss {metrics['loss']:.4f}")

    os.makedirs(out_dir, exist_ok=True)
    model_path = save_model_atomic(model, os.path.join(out_dir, "vit_digits.keras"))
    write_json_atomic(
        training.preprocessing_config(bundle, "digits"), os.path.join(out_dir, training.PREPROCESSING_FILE)
    )
    reloaded = keras.saving.load_model(model_path)
    images = np.concatenate([x.numpy() for x, _ in bundle.test])
    labels = np.concatenate([y.numpy() for _, y in bundle.test])
    before = model.predict(images, verbose=0)
    after = reloaded.predict(images, verbose=0)
    max_diff = float(np.max(np.abs(before - after)))
    print(f"Saved {model_path}; reloaded model max |difference| of predictions: {max_diff:.2e}")
    if not max_diff < 1e-5:
        raise RuntimeError(f"The reloaded model predicts differently: max |difference| {max_diff:.3e}")

    figure = write_explanation_figure(reloaded, images[:8], labels[:8], bundle.class_names, out_dir)
    if figure:
        print(f"Explanation figure: {figure}")

    result = {
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "total_seconds": time.perf_counter() - start,
        "max_reload_diff": max_diff,
        "model_path": model_path,
        "num_params": int(model.count_params()),
    }
    write_json_atomic(result, os.path.join(out_dir, "metrics.json"))
    print(
        f"Training took {train_seconds:.0f} s ({train_cpu_seconds:.0f} s of CPU time), "
        f"the whole demo {result['total_seconds']:.0f} s."
    )
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_vit.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--epochs", type=int, default=None, help=f"default: {DEMO_CONFIG['fit']['epochs']}")
    args = parser.parse_args(argv)
    result = run_demo(args.out, epochs=args.epochs)
    if result["test_accuracy"] < TARGET_ACCURACY:
        print(f"Test accuracy {result['test_accuracy']:.4f} is below the target {TARGET_ACCURACY}.")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
