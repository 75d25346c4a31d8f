"""`keras-vit export`: a `.keras` model → TensorFlow SavedModel, LiteRT `.tflite` or ONNX."""


def register(subparsers):
    from keras_vit.export import FORMATS

    parser = subparsers.add_parser(
        "export",
        help="export a .keras model for inference (SavedModel, LiteRT, ONNX)",
        description="Writes MODEL_FILE as an inference artefact that runs without this package: a TensorFlow "
        "SavedModel folder (signature `serve`), a LiteRT .tflite file, or an ONNX .onnx file (exact GELU as ONNX "
        'Erf). Needs `pip install "keras-vision-transformers[export]"` for ONNX.',
    )
    parser.add_argument("model_file", help="a .keras model (from train, tune, convert or model.save)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="artefact format")
    parser.add_argument("--out", required=True, help="output path: a folder, a .tflite file or a .onnx file")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: the converter's)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the artefact with its own runtime on random images and print the largest difference from Keras",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args):
    import os

    import keras
    import numpy as np

    import keras_vit  # noqa: F401  (registers the layers the file refers to)
    from keras_vit.export import export_model, load_artifact
    from keras_vit.utils import json_dumps

    if not os.path.isfile(args.model_file):
        raise FileNotFoundError(f"No such model file. Received: model_file={args.model_file!r}")
    model = keras.saving.load_model(args.model_file)
    path = export_model(model, args.out, format=args.format, opset=args.opset)
    report = {"path": path, "format": args.format}
    if args.check:
        shape = tuple(model.input_shape[1:])
        if None in shape:
            raise ValueError(f"--check needs a model with a static input shape. Received: input_shape={shape}")
        images = np.random.default_rng(0).uniform(0.0, 1.0, (2, *shape)).astype("float32")
        expected = np.asarray(model.predict(images, verbose=0))
        report["max_abs_diff"] = float(np.max(np.abs(load_artifact(path, args.format)(images) - expected)))
    if args.json:
        print(json_dumps(report))
    else:
        print(f"Saved {path} ({args.format})")
        if args.check:
            print(f"max abs difference from Keras on 2 random images: {report['max_abs_diff']:.3g}")
    return 0
