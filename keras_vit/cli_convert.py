"""`keras-vit convert`: a timm / Hugging Face / ViT .npz checkpoint → Keras `.weights.h5`."""

import json


def register(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="convert a local checkpoint (.safetensors, .pth, .bin, .npz) to Keras weights",
        description="Builds the registered model NAME, converts the checkpoint SRC into it (checking every key "
        "and shape, resampling the position embeddings to the model's input size) and saves its weights.",
    )
    parser.add_argument("src", help="checkpoint file: timm or Hugging Face state dict, or original ViT .npz")
    parser.add_argument("--model", required=True, help="registered model name, e.g. vit_base_patch16_224")
    parser.add_argument("--out", required=True, help="output path, ending in .weights.h5 (or .keras for a whole model)")
    parser.add_argument("--format", default="auto", choices=["auto", "timm", "hf", "npz"],
                        help="checkpoint layout (default: detected from the key names)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="build the model for this input size; the position embeddings are resampled")
    parser.add_argument("--classes", type=int, default=None,
                        help="head size (default: the checkpoint's; another size starts a new head)")
    parser.add_argument("--config", default=None,
                        help='JSON object of factory overrides, e.g. \'{"layer_norm_epsilon": 1e-12}\'')
    parser.set_defaults(func=run)


def run(args):
    from keras_vit import convert
    from keras_vit.applications import get_model

    if not (args.out.endswith(".weights.h5") or args.out.endswith(".keras")):
        raise ValueError(f"`--out` must end in .weights.h5 or .keras. Received: --out={args.out!r}")
    overrides = json.loads(args.config) if args.config else {}
    if not isinstance(overrides, dict):
        raise ValueError(f"`--config` must be a JSON object. Received: --config={args.config!r}")
    if "input_shape" in overrides:
        overrides["input_shape"] = tuple(overrides["input_shape"])
    if args.image_size:
        overrides["input_shape"] = (args.image_size, args.image_size, 3)
    try:
        state_dict = convert.read_checkpoint(args.src)
    except ImportError as error:  # a .pth/.bin without PyTorch installed
        raise ValueError(str(error)) from error
    classes = args.classes or convert.checkpoint_classes(state_dict, args.format)
    if classes:
        overrides["classes"] = classes
    elif "classes" not in overrides:
        overrides["include_top"] = False
        overrides.setdefault("pooling", "token")
    model = get_model(args.model, **overrides)
    weights = convert.convert_state_dict(model, state_dict, args.format)
    for variable in model.weights:
        if variable.path in weights:
            variable.assign(weights[variable.path].astype(variable.dtype))
    if args.out.endswith(".keras"):
        model.save(args.out)
    else:
        model.save_weights(args.out)
    head = f"classes={classes}" if classes else "no head"
    print(f"{args.src} -> {args.out}: {args.model}, {model.count_params():,} parameters, {head}, "
          f"input {tuple(model.input_shape[1:])}")
    return 0
