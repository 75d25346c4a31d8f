"""`keras-vit predict`: the top-k classes of image files."""

import sys

from keras_vit.utils import json_dumps


def register(subparsers):
    predict = subparsers.add_parser(
        "predict",
        help="top-k classes of image files",
        description="Prints the top-k classes of each image with their probabilities. Images are resized (and "
        "centre-cropped) as the model's preprocessing records; 1000-class models without class names of their "
        "own are named with the ImageNet-1k classes.",
    )
    predict.add_argument("--model-file", required=True)
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=run_predict)


def class_names(model, preprocessing, classes):
    """Names of the `classes` outputs: `preprocessing.json`'s, else ImageNet-1k's for 1000 outputs, else indices."""
    from keras_vit.applications import imagenet_classes

    names = (preprocessing or {}).get("class_names")
    if names and len(names) == classes:
        return [str(n) for n in names]
    if classes == 1000:
        return [name for _, name in imagenet_classes()]
    return [str(i) for i in range(classes)]


def run_predict(args):
    import numpy as np

    from keras_vit import training
    from keras_vit.applications import model_preprocessing
    from keras_vit.cli.images import load_model_file, model_inputs

    if args.top_k < 1:
        raise ValueError(f"`--top-k` must be positive. Received: --top-k {args.top_k}")
    model = load_model_file(args.model_file)
    prep = training.read_preprocessing(args.model_file)
    images = model_inputs(model, args.images, prep)
    if not prep and model_preprocessing(model) is None:
        print(
            f"keras-vit predict: the model has no preprocessing inside and no {training.PREPROCESSING_FILE} is "
            "beside it: feeding images scaled to [0, 1] without normalisation",
            file=sys.stderr,
        )
    outputs = np.asarray(model.predict(images, verbose=0), "float64")
    if not training.outputs_probabilities(model):
        outputs = np.exp(outputs - outputs.max(-1, keepdims=True))
        outputs /= outputs.sum(-1, keepdims=True)
    names = class_names(model, prep, outputs.shape[-1])
    k = min(args.top_k, outputs.shape[-1])
    results = []
    for path, probs in zip(args.images, outputs):
        top = np.argsort(-probs, kind="stable")[:k]
        results.append(
            {"image": path, "top_k": [{"class": int(i), "name": names[i], "probability": float(probs[i])} for i in top]}
        )
    if args.json:
        print(json_dumps(results))
    else:
        for item in results:
            ranked = ", ".join(f"{t['name']} ({t['probability']:.3f})" for t in item["top_k"])
            print(f"{item['image']}: {ranked}")
    return 0
