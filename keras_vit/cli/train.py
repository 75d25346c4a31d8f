"""`keras-vit train`: train a registered model, or fine-tune a `.keras` file, on a dataset."""

import argparse
import ast
import math

from keras_vit.utils import json_dumps


def register(subparsers):
    train = subparsers.add_parser(
        "train",
        help="train a model on a dataset",
        description="Train a registered model (or fine-tune a .keras file) with AdamW and a warmup + cosine "
        "schedule. Writes OUT/model.keras, OUT/preprocessing.json, OUT/checkpoints, OUT/logs (TensorBoard, history.csv, curves.png); "
        "an interrupted run resumes from OUT/backup when rerun with the same arguments (other arguments are refused, "
        "naming those that differ). One training at a time writes into OUT (OUT/.keras_vit.lock).",
    )
    which = train.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registered model name (see `keras-vit models`)")
    which.add_argument("--model-file", help="a .keras model to fine-tune")
    train.add_argument("--data", default="digits", help="digits, tfds:NAME, a .npz file, a folder (default: digits)")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--epochs", type=positive_int, default=10)
    train.add_argument("--batch-size", type=positive_int, default=64)
    train.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    train.add_argument("--weight-decay", type=non_negative_float, default=0.05)
    train.add_argument("--warmup", type=fraction, default=0.1, help="fraction of the steps spent warming up, in [0, 1)")
    train.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="resize images to this side; with --model-file, the model is rebuilt for it (position tables resampled)",
    )
    train.add_argument("--channels", type=int, choices=(1, 3), default=None)
    train.add_argument("--augment", action="store_true", help="random crop and flip")
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model argument, e.g. --set patch_size=2 --set depth=4 (repeatable)",
    )
    train.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    speed = train.add_argument_group(
        "speed and devices", "The defaults are the fastest measured settings for the backend and device."
    )
    add_jit_arguments(speed)
    speed.add_argument(
        "--steps-per-execution",
        type=_auto_or_positive_int,
        default="auto",
        help="optimizer steps per call of the compiled step: auto (1 on CPU, 32 on a GPU) or an integer >= 1",
    )
    speed.add_argument(
        "--mixed-precision",
        type=_choice_of("auto", "on", "off"),
        default="auto",
        help="bfloat16/float16 compute with a float32 head: auto (on with a GPU), on or off",
    )
    speed.add_argument(
        "--distribute",
        choices=("mirrored", "multi-worker", "data-parallel"),
        default=None,
        help="train on several devices: mirrored (tf.distribute.MirroredStrategy over the local GPUs; "
        "keras.distribution.DataParallel on JAX), multi-worker (one process per machine, cluster in TF_CONFIG "
        "on TensorFlow, KERAS_DISTRIBUTION_* on JAX), data-parallel (JAX's local devices)",
    )
    train.set_defaults(func=run_train)


def add_jit_arguments(parser):
    """`--jit-compile auto|true|false` and `--no-jit`; `jit_compile_of(args)` reads them."""
    jit = parser.add_mutually_exclusive_group()
    jit.add_argument(
        "--jit-compile",
        type=_choice_of("auto", "true", "false"),
        default="auto",
        help="XLA-compile the training step: auto (on with TensorFlow and JAX, off with PyTorch), true or false",
    )
    jit.add_argument("--no-jit", dest="jit_compile", action="store_const", const="false", help="--jit-compile false")


def jit_compile_of(args):
    return {"auto": "auto", "true": True, "false": False}[args.jit_compile]


def _choice_of(*choices):
    def parse(text):
        if text.lower() not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}. Received: {text!r}")
        return text.lower()

    return parse


def _auto_or_positive_int(text):
    """argparse type: "auto" or an int >= 1."""
    return "auto" if text == "auto" else positive_int(text)


def _finite(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number. Received: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number. Received: {text!r}")
    return value


def positive_float(text):
    """argparse type: a finite float > 0 (argparse names the flag in its error)."""
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive. Received: {text!r}")
    return value


def non_negative_float(text):
    """argparse type: a finite float >= 0."""
    value = _finite(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0. Received: {text!r}")
    return value


def fraction(text):
    """argparse type: a float in [0, 1)."""
    value = _finite(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1). Received: {text!r}")
    return value


def positive_int(text):
    """argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer. Received: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer. Received: {text!r}")
    return value


def parse_overrides(pairs):
    """`["depth=4", "name=x"]` → `{"depth": 4, "name": "x"}` (values read as Python literals when they are)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"`--set` takes KEY=VALUE. Received: --set {pair!r}")
        try:
            overrides[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value
    return overrides


def run_train(args):
    from keras_vit import training

    result = training.train(
        model=args.model,
        model_file=args.model_file,
        data=args.data,
        out_dir=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        recipe=training.Recipe(learning_rate=args.lr, weight_decay=args.weight_decay, warmup_fraction=args.warmup),
        image_size=args.image_size,
        channels=args.channels,
        augment=args.augment,
        validation_split=args.validation_split,
        overrides=parse_overrides(args.set),
        seed=args.seed,
        verbose=0 if args.quiet else "auto",
        jit_compile=jit_compile_of(args),
        steps_per_execution=args.steps_per_execution,
        mixed_precision={"auto": "auto", "on": True, "off": False}[args.mixed_precision],
        distribute=args.distribute,
    )
    report = {"model_path": result["model_path"], **(result["metrics"] or {})}
    if args.json:
        print(json_dumps(report))
    else:
        print(f"Saved {result['model_path']}")
        if result["metrics"]:
            split = "test" if result["bundle"].test is not None else "validation"
            print(f"{split} loss: {report['loss']:.4f}  {split} accuracy: {report['accuracy']:.4f}")
    return 0
