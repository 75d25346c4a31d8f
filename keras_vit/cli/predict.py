"""`keras-vit predict`: the top-k classes of image files."""

import sys

from keras_vit.utils import json_dumps


def register(subparsers):
    predict = subparsers.add_parser("predict", help="top-k classes of image files")
    predict.add_argument("--model-file", required=True)
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=run_predict)


def run_predict(args):
    import numpy as np

    from keras_vit import training
    from keras_vit.cli.images import load_model_file, model_image_shape, normalize, read_images

    if args.top_k < 1:
        raise ValueError(f"`--top-k` must be positive. Received: --top-k {args.top_k}")
    model = load_model_file(args.model_file)
    prep = training.read_preprocessing(args.model_file)
    images = normalize(read_images(args.images, model_image_shape(model)), prep)
    if not prep:
        print(
            f"keras-vit predict: no {training.PREPROCESSING_FILE} beside the model: "
            "feeding images scaled to [0, 1] without normalisation",
            file=sys.stderr,
        )
    outputs = np.asarray(model.predict(images, verbose=0), "float64")
    if not training.outputs_probabilities(model):
        outputs = np.exp(outputs - outputs.max(-1, keepdims=True))
        outputs /= outputs.sum(-1, keepdims=True)
    names = prep["class_names"] if prep else [str(i) for i in range(outputs.shape[-1])]
    k = min(args.top_k, outputs.shape[-1])
    results = []
    for path, probs in zip(args.images, outputs):
        top = np.argsort(-probs)[:k]
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
