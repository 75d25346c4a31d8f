"""`keras-vit explain`: a LeGrad, rollout or attention heatmap of an image, as a PNG."""

import os


def register(subparsers):
    parser = subparsers.add_parser(
        "explain",
        help="draw what a saved model looks at in an image (LeGrad, attention rollout or attention)",
    )
    parser.add_argument("--model", required=True, help="a saved .keras model")
    parser.add_argument("--image", required=True, nargs="+", help="image file(s) (PNG, JPEG, ...)")
    parser.add_argument("--method", default="legrad", choices=("legrad", "rollout", "attention"))
    parser.add_argument("--out", required=True, help="output figure, e.g. explanation.png")
    parser.add_argument("--class-index", type=int, default=None, help="class to explain (legrad); default: the predicted one")
    parser.add_argument("--layer", type=int, default=-1, help="block whose attention is shown (attention)")
    parser.add_argument(
        "--legrad-layers",
        nargs="+",
        default=None,
        help="blocks LeGrad sums over: 'all' or block indices (negative from the end); default: the last two",
    )
    parser.add_argument("--head-fusion", default="mean", choices=("mean", "max", "min"), help="(rollout)")
    parser.add_argument("--discard-ratio", type=float, default=0.0, help="(rollout)")
    parser.add_argument(
        "--scale", type=float, default=1.0 / 255.0, help="pixel values are multiplied by this (default 1/255)"
    )
    parser.add_argument(
        "--label", type=int, nargs="+", default=None, help="true class of each image, shown in the titles"
    )
    parser.set_defaults(func=run)


def load_images(paths, input_shape, scale):
    """Reads image files resized to the model's `(H, W, C)`, as a float32 batch."""
    import keras
    import numpy as np

    height, width, channels = input_shape
    if channels not in (1, 3, 4):
        raise ValueError(f"The model takes {channels} channels; only 1, 3 or 4 can be read from an image file.")
    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[channels]
    batch = []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"`--image` file not found. Received: --image={path!r}")
        image = keras.utils.load_img(path, color_mode=mode, target_size=(height, width))
        batch.append(keras.utils.img_to_array(image) * scale)
    return np.stack(batch).astype("float32")


def run(args):
    import keras

    import keras_vit.applications  # noqa: F401 (registers the layers for loading)
    import keras_vit.layers  # noqa: F401
    from keras_vit.explain import save_explanation_figure

    if not os.path.exists(args.model):
        raise FileNotFoundError(f"`--model` file not found. Received: --model={args.model!r}")
    model = keras.saving.load_model(args.model, compile=False)
    input_shape = tuple(model.inputs[0].shape[1:])
    if None in input_shape:
        raise ValueError(f"The model's input size must be fixed to read images for it. Received: {input_shape}")
    import numpy as np

    from keras_vit.training import read_preprocessing

    images = load_images(args.image, input_shape, args.scale)
    # A model trained by `keras-vit train` has its normalisation beside it.
    preprocessing = read_preprocessing(args.model) or {}
    if preprocessing.get("mean") is not None:
        images = (images - np.asarray(preprocessing["mean"], "float32")) / np.asarray(preprocessing["std"], "float32")
    if args.label is not None and len(args.label) != len(args.image):
        raise ValueError(f"`--label` needs one class per image. Received: --label={args.label}")
    kwargs = {"labels": args.label, "class_names": preprocessing.get("class_names")}
    if args.method == "legrad":
        kwargs["class_index"] = args.class_index
        kwargs["layers"] = _legrad_layers(args.legrad_layers)
    elif args.method == "rollout":
        kwargs.update(head_fusion=args.head_fusion, discard_ratio=args.discard_ratio)
    else:
        kwargs["layer"] = args.layer
    save_explanation_figure(model, images, args.out, method=args.method, **kwargs)
    print(f"wrote {args.out}")
    return 0


def _legrad_layers(values):
    """`--legrad-layers` as `legrad`'s `layers`: None, "all" or a list of ints."""
    if values is None or values == ["all"]:
        return None if values is None else "all"
    try:
        return [int(value) for value in values]
    except ValueError:
        raise ValueError(
            f"`--legrad-layers` takes 'all' or block indices. Received: --legrad-layers {' '.join(values)}"
        ) from None
