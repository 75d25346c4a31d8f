"""Patch size × depth on CIFAR-10: does patch 4 beat patch 8, and 8 layers beat 12?

A KerasTuner grid search over patch ∈ {4, 8} × depth ∈ {8, 12}, with width,
heads, MLP ratio, learning rate, weight decay, dropout and stochastic depth
fixed, on a subset of the CIFAR-10 training images under a fixed CPU budget
(a few epochs per trial). Each trial's best checkpoint is then scored on
held-out CIFAR-10 test images. Writes `results.{csv,md,png}` and
`summary.md` into the output folder.

    KERAS_VIT_DATA=../shared/data python benchmarks/tune_cifar10_patch_depth.py

The defaults are the configuration whose results the README reports.
"""

import argparse
import json
import os
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_vit.tuning import gpu_devices, run_search  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("KERAS_VIT_DATA", os.path.join("..", "shared", "data")))
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "tune_cifar10_patch_depth"))
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--patch-sizes", default="4,8", help="comma-separated; a subset splits the grid over processes")
    parser.add_argument("--depths", default="8,12")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    cifar = os.path.join(args.data, "cifar10")
    if not os.path.isdir(cifar):
        raise SystemExit(f"CIFAR-10 not found under {args.data!r}; set KERAS_VIT_DATA")
    with np.load(os.path.join(cifar, "train.npz")) as train, np.load(os.path.join(cifar, "test.npz")) as test:
        # The rows are shuffled already: the first rows are a class-balanced-enough subset.
        x, y = train["x"], train["y"].astype("int32")
        x_train, y_train = x[: args.train_size], y[: args.train_size]
        x_val = x[args.train_size : args.train_size + args.val_size]
        y_val = y[args.train_size : args.train_size + args.val_size]
        x_test, y_test = test["x"][: args.test_size], test["y"][: args.test_size].astype("int32")

    space = {
        "patch_size": [int(v) for v in args.patch_sizes.split(",")],
        "depth": [int(v) for v in args.depths.split(",")],
        "hidden_dim": args.hidden_dim,
        "num_heads": args.num_heads,
        "mlp_ratio": 2.0,
        "dropout": 0.0,
        "drop_path_rate": 0.1,
        "learning_rate": args.learning_rate,
        "weight_decay": 0.05,
    }
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    result = run_search(
        (x_train, y_train),
        validation_data=(x_val, y_val),
        tuner="grid",
        max_trials=len(space["patch_size"]) * len(space["depth"]),
        epochs=args.epochs,
        batch_size=args.batch_size,
        early_stopping_patience=None,
        search_space=space,
        directory=args.out,
        project_name="search",
        overwrite=args.overwrite,
        export_path=None,
        seed=0,
        verbose=2,
    )
    search_seconds = time.perf_counter() - start

    tuner = result.tuner
    gpus = gpu_devices()
    device = f"{len(gpus)} GPU ({_gpu_name()})" if gpus else f"CPU only ({os.cpu_count()} cores)"
    x_test = x_test.astype("float32") / 255.0
    lines = [
        "| patch | depth | tokens | parameters | val accuracy (best epoch) | test accuracy | seconds per trial |",
        "|---|---|---|---|---|---|---|",
    ]
    records = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        if str(trial.status) != "COMPLETED":
            continue
        values = trial.hyperparameters.values
        model = tuner.load_model(trial)
        logits = model.predict(x_test, batch_size=256, verbose=0)
        test_accuracy = float(np.mean(np.argmax(logits, axis=-1) == y_test))
        record = {
            "trial": trial_id,
            "patch_size": values["vit/patch_size"],
            "depth": values["vit/depth"],
            "val_accuracy": trial.score,
            "test_accuracy": test_accuracy,
            "num_params": trial.metrics.get_last_value("num_params"),
            "seconds": trial.metrics.get_last_value("trial_seconds"),
        }
        records.append(record)
        tokens = (32 // record["patch_size"]) ** 2
        lines.append(
            f"| {record['patch_size']} | {record['depth']} | {tokens} | {int(record['num_params']):,} | "
            f"{record['val_accuracy']:.3f} | {test_accuracy:.3f} | {record['seconds']:.0f} |"
        )
    setup = (
        f"CIFAR-10 subset: {len(x_train)} training, {len(x_val)} validation (from train.npz), "
        f"{len(x_test)} test images (test.npz); {args.epochs} epochs per trial, batch {args.batch_size}; "
        f"fixed: hidden {args.hidden_dim}, {args.num_heads} heads (width {args.hidden_dim // args.num_heads}), "
        f"MLP ratio 2, AdamW lr {args.learning_rate:g}, weight decay 0.05, dropout 0, stochastic depth 0.1; "
        f"Keras backend {keras.backend.backend()}, {device}, mixed precision {'on' if result.mixed_precision else 'off'}; "
        f"search wall time {search_seconds:.0f} s."
    )
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(setup + "\n\n" + "\n".join(lines) + "\n")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"setup": setup, "trials": records}, f, indent=2)
    print(setup)
    print("\n".join(lines))


def _gpu_name():
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
