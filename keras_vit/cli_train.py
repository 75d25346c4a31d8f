"""`keras-vit train`, `keras-vit evaluate` and `keras-vit predict`."""

import ast
import json
import os


def register(subparsers):
    train = subparsers.add_parser(
        "train",
        help="train a model on a dataset",
        description="Train a registered model (or fine-tune a .keras file) with AdamW and a warmup + cosine "
        "schedule. Writes OUT/model.keras, OUT/preprocessing.json, OUT/checkpoints, OUT/logs (TensorBoard); "
        "an interrupted run resumes from OUT/backup when rerun with the same arguments.",
    )
    which = train.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registered model name (see `keras-vit models`)")
    which.add_argument("--model-file", help="a .keras model to fine-tune")
    train.add_argument("--data", default="digits", help="digits, tfds:NAME, a .npz file, a folder (default: digits)")
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    train.add_argument("--weight-decay", type=float, default=0.05)
    train.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps spent warming up")
    train.add_argument("--image-size", type=int, default=None, help="resize images to this side")
    train.add_argument("--channels", type=int, choices=(1, 3), default=None)
    train.add_argument("--augment", action="store_true", help="random crop and flip")
    train.add_argument("--validation-split", type=float, default=0.1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a model argument, e.g. --set patch_size=2 --set depth=4 (repeatable)",
    )
    train.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    train.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("evaluate", help="loss and accuracy of a .keras model on a dataset")
    evaluate.add_argument("--model-file", required=True)
    evaluate.add_argument("--data", default="digits")
    evaluate.add_argument(
        "--split", choices=("test", "validation", "train"), default=None,
        help="which split (default: test, or validation when the source has no test split)",
    )
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--validation-split", type=float, default=0.1)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(func=run_evaluate)

    predict = subparsers.add_parser("predict", help="top-k classes of image files")
    predict.add_argument("--model-file", required=True)
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=run_predict)


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
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_fraction=args.warmup,
        image_size=args.image_size,
        channels=args.channels,
        augment=args.augment,
        validation_split=args.validation_split,
        overrides=parse_overrides(args.set),
        seed=args.seed,
        verbose=0 if args.quiet else "auto",
    )
    report = {"model_path": result["model_path"], **(result["metrics"] or {})}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"Saved {result['model_path']}")
        if result["metrics"]:
            split = "test" if result["bundle"].test is not None else "validation"
            print(f"{split} loss: {report['loss']:.4f}  {split} accuracy: {report['accuracy']:.4f}")
    return 0


def _model_and_preprocessing(model_file):
    import keras

    from keras_vit import training

    if not os.path.isfile(model_file):
        raise FileNotFoundError(f"No such model file. Received: --model-file {model_file!r}")
    return keras.saving.load_model(model_file), training.read_preprocessing(model_file)


def run_evaluate(args):
    from keras_vit import data, training

    model, prep = _model_and_preprocessing(args.model_file)
    height, width, channels = model.input_shape[1:]
    normalize = (prep["mean"], prep["std"]) if prep else True
    bundle = data.load(
        args.data,
        image_size=(height, width),
        channels=channels,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        normalize=normalize,
        seed=args.seed,
    )
    split = args.split or ("test" if bundle.test is not None else "validation")
    dataset = getattr(bundle, split)
    if dataset is None:
        raise ValueError(f"The data has no {split} split. Received: --split {split} --data {args.data!r}")
    if bundle.num_classes != model.output_shape[-1]:
        raise ValueError(
            f"The model has {model.output_shape[-1]} outputs but the data has {bundle.num_classes} classes. "
            f"Received: --data {args.data!r}"
        )
    metrics = training.evaluate_model(model, dataset)
    count = metrics["examples"]
    report = {"split": split, **metrics}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{split} ({count} images): loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f}")
    return 0


def read_image(path, height, width, channels):
    """An image file as float32 `(height, width, channels)` in [0, 1]."""
    import tensorflow as tf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such image file. Received: IMAGE={path!r}")
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (height, width), antialias=True)
    return image.numpy()


def run_predict(args):
    import numpy as np

    from keras_vit import training

    if args.top_k < 1:
        raise ValueError(f"`--top-k` must be positive. Received: --top-k {args.top_k}")
    model, prep = _model_and_preprocessing(args.model_file)
    height, width, channels = model.input_shape[1:]
    images = np.stack([read_image(p, height, width, channels) for p in args.images])
    if prep:
        images = (images - np.asarray(prep["mean"], "float32")) / np.asarray(prep["std"], "float32")
    outputs = np.asarray(model.predict(images, verbose=0), "float64")
    if not training.outputs_probabilities(model):
        outputs = np.exp(outputs - outputs.max(-1, keepdims=True))
        outputs /= outputs.sum(-1, keepdims=True)
    names = prep["class_names"] if prep else [str(i) for i in range(outputs.shape[-1])]
    k = min(args.top_k, outputs.shape[-1])
    results = []
    for path, probs in zip(args.images, outputs):
        top = np.argsort(-probs)[:k]
        results.append({"image": path, "top_k": [{"class": int(i), "name": names[i], "probability": float(probs[i])} for i in top]})
    if args.json:
        print(json.dumps(results))
    else:
        for item in results:
            ranked = ", ".join(f"{t['name']} ({t['probability']:.3f})" for t in item["top_k"])
            print(f"{item['image']}: {ranked}")
    return 0
