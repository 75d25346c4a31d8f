"""`keras-vit explain`: a LeGrad, rollout or attention heatmap of an image, as a PNG."""


def register(subparsers):
    parser = subparsers.add_parser(
        "explain",
        help="draw what a saved model looks at in an image (LeGrad, attention rollout or attention)",
    )
    parser.add_argument("--model-file", required=True, help="a saved .keras model")
    parser.add_argument("--image", required=True, nargs="+", help="image file(s) (PNG, JPEG, ...)")
    parser.add_argument("--method", default="legrad", choices=("legrad", "rollout", "attention"))
    parser.add_argument("--out", required=True, help="output figure, e.g. explanation.png")
    parser.add_argument(
        "--class-index", type=int, default=None, help="class to explain (legrad); default: the predicted one"
    )
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
        "--scale",
        type=float,
        default=1.0 / 255.0,
        help="pixel values are multiplied by this (default 1/255), for models without preprocessing inside",
    )
    parser.add_argument(
        "--label", type=int, nargs="+", default=None, help="true class of each image, shown in the titles"
    )
    parser.set_defaults(func=run)


def run(args):
    from keras_vit import training
    from keras_vit.applications import model_preprocessing
    from keras_vit.cli.images import load_model_file, model_image_shape, model_inputs, normalize, read_images
    from keras_vit.explain import save_explanation_figure

    model = load_model_file(args.model_file)
    preprocessing = training.read_preprocessing(args.model_file) or {}
    if model_preprocessing(model) is not None:
        # The model rescales and normalises inside: it takes the pixels as they are.
        images = model_inputs(model, args.image, preprocessing, option="--image")
    else:
        # Pixels in [0, 255] times --scale, then the normalisation `keras-vit train` wrote beside the model.
        images = read_images(args.image, model_image_shape(model), option="--image") * (255.0 * args.scale)
        images = normalize(images, preprocessing)
    if args.label is not None and len(args.label) != len(args.image):
        raise ValueError(f"`--label` needs one class per image. Received: --label={args.label}")
    # (`--class-index` is checked by the explain functions; a bad label only broke the figure titles.)
    classes = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    bad = [label for label in args.label or [] if classes and not 0 <= label < classes]
    if bad:
        raise ValueError(f"`--label` takes class indices in [0, {classes}) for this model. Received: --label {bad[0]}")
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
