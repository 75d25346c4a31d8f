"""Small-data table: every model family trained from scratch on CIFAR-10, one recipe, one budget.

    KERAS_VIT_DATA=../shared/data python benchmarks/cifar_small_data.py [--budget 180] [--families vit,t2t]

Recipe (the same for every model): AdamW (lr 1e-3, weight decay 0.05), batch 128,
cosine decay over the wall-clock budget (the learning rate follows elapsed time),
gradient clipping at norm 1, random crop (4-pixel padding) and horizontal flip, inputs scaled to
[0, 1] and standardised per channel. Each model trains for `--budget` seconds of
wall time after its first (graph-tracing) step, then is scored on the 10,000 test images (`--test-size` scores the first N). Swin and MViTv2, which have no
registered 32×32 model, use the small configurations in `SMALL_32`. The DeiT-distilled student learns from the
ResNet baseline (or `--teacher-family`) trained earlier in the same run (hard
distillation, DeiT Eq. 3).
Writes a Markdown table (and JSON) to `--out`.
"""

import argparse
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN stays on (TensorFlow's default on x86): its convolutions are much faster on CPU.

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_vit.applications import get_model, list_models  # noqa: E402
from keras_vit.distillation import DistillationTrainer  # noqa: E402

# family → glob patterns of registered 32×32 models (the first match is used).
FAMILIES = {
    "resnet": None,  # keras.applications.ResNet50, the baseline
    "vit": ["vit_cifar_patch4_depth8_32"],
    "deit_distilled": ["vit_cifar_patch4_depth8_32"],
    "swin": ["swin*cifar*", "swin*_32"],
    "t2t": ["t2t_vit_7_cifar_32"],
    "deepvit": ["deepvit_cifar*"],
    "mvitv2": ["mvitv2*cifar*", "mvitv2*_32"],
    "cnn_hybrid": ["vit_hybrid_resnet50_cifar*"],
}
# Families with no registered 32×32 model: a small 32×32 configuration of the
# family's factory, about the size of the CIFAR ViT (patch 2 → 16×16 tokens,
# three stages at 16, 8 and 4 tokens a side).
SMALL_32 = {
    "swin": (
        "swin_cifar_p2_w4_32",
        "SwinTransformer",
        {"patch_size": 2, "hidden_dim": 64, "depth": (2, 2, 2), "num_heads": (2, 4, 8), "window_size": 4},
    ),
    "mvitv2": (
        "mvitv2_cifar_p2_32",
        "MViTv2",
        {
            "hidden_dim": 64,
            "depth": (1, 2, 3),
            "num_heads": 1,
            "kv_stride": 4,
            "patch_kernel_size": 3,
            "patch_stride": 2,
        },
    ),
}
MEAN = np.array([0.4914, 0.4822, 0.4465], "float32")
STD = np.array([0.2470, 0.2435, 0.2616], "float32")


def load_cifar(data_dir):
    folder = os.path.join(data_dir, "cifar10")
    if not os.path.isdir(folder):
        raise SystemExit(f"CIFAR-10 not found under {folder!r}; set KERAS_VIT_DATA to the data folder")
    train, test = np.load(os.path.join(folder, "train.npz")), np.load(os.path.join(folder, "test.npz"))
    return (train["x"], train["y"].astype("int32")), (test["x"], test["y"].astype("int32"))


def normalise(x):
    return (tf.cast(x, "float32") / 255.0 - MEAN) / STD


def train_dataset(x, y, batch_size, seed):
    def augment(image, label):
        image = tf.image.random_flip_left_right(image)
        image = tf.image.resize_with_crop_or_pad(image, 40, 40)
        image = tf.image.random_crop(image, (32, 32, 3))
        return normalise(image), label

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.repeat().map(augment, num_parallel_calls=2).batch(batch_size, drop_remainder=True).prefetch(2)


def resolve(family):
    if FAMILIES[family] is None:
        return "resnet50"
    for pattern in FAMILIES[family]:
        names = list_models(pattern)
        if names:
            return names[0]
    if family in SMALL_32:
        return SMALL_32[family][0]
    return None


def build(family, name):
    if family == "resnet":
        return keras.applications.ResNet50(
            weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
        )
    if family == "deit_distilled":
        return get_model(name, classes=10, classifier_activation=None, distillation=True)
    if family in SMALL_32 and name == SMALL_32[family][0]:
        import keras_vit.applications as apps

        _, factory, config = SMALL_32[family]
        return getattr(apps, factory)(
            input_shape=(32, 32, 3), classes=10, classifier_activation=None, name=name, **config
        )
    return get_model(name, classes=10, classifier_activation=None)


def cosine_lr(lr, elapsed, budget):
    """Cosine decay from `lr` to `lr / 100` over the wall-clock budget."""
    progress = min(1.0, elapsed / budget)
    return lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def run_family(family, name, data, args, teacher=None):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(args.seed)
    model = build(family, name)
    params = model.count_params()
    trainable = model if teacher is None else DistillationTrainer(model, teacher, alpha=0.5)
    trainable.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=args.lr, weight_decay=args.weight_decay, clipnorm=1.0),
        loss=None if teacher is not None else keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=args.jit_compile,
    )
    ds = iter(train_dataset(x_train, y_train, args.batch_size, args.seed))
    # The first step traces the train function; the budget and the throughput start after it.
    start = time.perf_counter()
    xb, yb = next(ds)
    trainable.optimizer.learning_rate = args.lr
    trainable.train_on_batch(xb, yb)
    steps, loop_start = 1, time.perf_counter()
    trace_s = loop_start - start
    while True:
        elapsed = time.perf_counter() - loop_start
        if elapsed >= args.budget or (args.max_steps and steps >= args.max_steps):
            break
        trainable.optimizer.learning_rate = cosine_lr(args.lr, elapsed, args.budget)
        xb, yb = next(ds)
        trainable.train_on_batch(xb, yb)
        steps += 1
    train_s = time.perf_counter() - loop_start
    images_per_s = (steps - 1) * args.batch_size / max(1e-9, train_s)
    x_eval, y_eval = x_test[: args.test_size], y_test[: args.test_size]
    logits = model.predict(normalise(x_eval).numpy(), batch_size=250, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == y_eval))
    row = {
        "family": family,
        "model": name,
        "top1": accuracy,
        "test_images": len(y_eval),
        "params": params,
        "train_img_per_s": images_per_s,
        "wall_s": train_s,
        "steps": steps,
        "epochs": steps * args.batch_size / len(x_train),
        "trace_s": trace_s,
    }
    print(json.dumps(row), flush=True)
    return model, row


def markdown(rows, args):
    lines = [
        f"| family | model | top-1 ({rows[0]['test_images'] if rows else 0:,} test images) | parameters | train img/s | train wall time (s) | epochs | first step (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | `{r['model']}` | {100 * r['top1']:.2f}% | {r['params']:,} | "
            f"{r['train_img_per_s']:.0f} | {r['wall_s']:.0f} | {r['epochs']:.2f} | {r['trace_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KERAS_VIT_DATA", os.path.join("..", "shared", "data")))
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated, from: " + ", ".join(FAMILIES))
    parser.add_argument("--budget", type=float, default=180.0, help="training wall-clock seconds per model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--teacher-family", default="resnet", help="family whose model teaches deit_distilled")
    parser.add_argument(
        "--jit-compile", action="store_true", help="XLA-compile the train step (slow to compile on CPU)"
    )
    parser.add_argument("--max-steps", type=int, default=0, help="stop earlier after this many steps (0: budget only)")
    parser.add_argument("--test-size", type=int, default=10000, help="test images scored (the first N)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "cifar_small_data"))
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    for family in families:
        if family not in FAMILIES:
            raise SystemExit(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    data = load_cifar(args.data)
    rows, teacher = [], None
    # The teacher trains first so that the distilled student can use it.
    order = sorted(families, key=lambda f: (f != args.teacher_family, f == "deit_distilled"))
    for family in order:
        name = resolve(family)
        if name is None:
            print(f"skip {family}: no registered model matches {FAMILIES[family]}", flush=True)
            continue
        if family == "deit_distilled" and teacher is None:
            print(
                f"skip deit_distilled: needs the {args.teacher_family} family in the same run as its teacher",
                flush=True,
            )
            continue
        model, row = run_family(family, name, data, args, teacher if family == "deit_distilled" else None)
        if family == args.teacher_family:
            teacher = model
        rows.append(row)
    rows.sort(key=lambda r: list(FAMILIES).index(r["family"]))
    table = markdown(rows, args)
    print(table)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(table)
    with open(args.out + ".json", "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
