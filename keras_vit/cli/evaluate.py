"""`keras-vit evaluate`: loss and accuracy of a `.keras` model on a dataset."""

from keras_vit.utils import json_dumps


def register(subparsers):
    evaluate = subparsers.add_parser("evaluate", help="loss and accuracy of a .keras model on a dataset")
    evaluate.add_argument("--model-file", required=True)
    evaluate.add_argument("--data", default="digits")
    evaluate.add_argument(
        "--split",
        choices=("test", "validation", "train"),
        default=None,
        help="which split (default: test, or validation when the source has no test split)",
    )
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--validation-split", type=float, default=0.1)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(func=run_evaluate)


def run_evaluate(args):
    from keras_vit import data, training
    from keras_vit.cli.images import dataset_normalization, load_model_file

    model = load_model_file(args.model_file)
    prep = training.read_preprocessing(args.model_file)
    height, width, channels = model.input_shape[1:]
    # [0, 255] pixels for a model with its preprocessing inside, else the statistics beside it.
    normalize = dataset_normalization(model, prep)
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
    metrics = training.evaluate_model(model, _batches_with_progress(dataset, split, args.quiet))
    count = metrics["examples"]
    report = {"split": split, **metrics}
    if args.json:
        print(json_dumps(report))
    else:
        print(f"{split} ({count} images): loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f}")
    return 0


def _batches_with_progress(dataset, split, quiet):
    """The batches of `dataset`, with a bar on stderr (stdout keeps the result, e.g. the JSON)."""
    import sys

    from tqdm import tqdm

    batches = int(dataset.cardinality()) if hasattr(dataset, "cardinality") else None
    total = batches if batches is not None and batches > 0 else None
    yield from tqdm(dataset, total=total, desc=f"evaluating ({split})", unit="batch", file=sys.stderr, disable=quiet)
