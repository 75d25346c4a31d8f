"""`keras-vit convert`: a local checkpoint of any family with a converter → Keras `.weights.h5` / `.keras`."""

import json


def register(subparsers):
    from keras_vit import convert

    layouts = sorted({layout.name for family in convert.FAMILIES.values() for layout in family.layouts})
    parser = subparsers.add_parser(
        "convert",
        help="convert a local checkpoint (.safetensors, .pth, .bin, .npz) to Keras weights",
        description="Builds the registered model NAME (its architecture from the registry), converts the "
        "checkpoint SRC into it with the converter of the model's family (ViT/DeiT, R50 hybrid, Swin, MViTv2, "
        "T2T-ViT, DeepViT), checking every key and shape and resampling position embeddings to the model's "
        "input size, and saves its weights.",
    )
    parser.add_argument(
        "src", help="checkpoint file: timm / Hugging Face / vit-pytorch / T2T-ViT state dict, or original ViT .npz"
    )
    parser.add_argument("--model", required=True, help="registered model name, e.g. swin_tiny_patch4_window7_224")
    parser.add_argument("--out", required=True, help="output path, ending in .weights.h5 (or .keras for a whole model)")
    parser.add_argument(
        "--layout",
        default="auto",
        choices=["auto", *layouts],
        help="checkpoint layout (default: detected from the key names)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="build the model for this input size; the position embeddings are resampled",
    )
    parser.add_argument(
        "--classes",
        type=int,
        default=None,
        help="head size (default: the checkpoint's; another size starts a new head)",
    )
    parser.add_argument(
        "--config", default=None, help="JSON object of factory overrides, e.g. '{\"layer_norm_epsilon\": 1e-12}'"
    )
    parser.set_defaults(func=run)


# Registry families whose checkpoints convert with another family's converter.
_CONVERTER_OF = {"deit": "vit"}


def run(args):
    from keras_vit import convert
    from keras_vit.applications import get_model, model_family
    from keras_vit.utils import save_model_atomic, save_weights_atomic

    if not (args.out.endswith(".weights.h5") or args.out.endswith(".keras")):
        raise ValueError(f"`--out` must end in .weights.h5 or .keras. Received: --out={args.out!r}")
    if args.classes is not None and args.classes < 1:
        raise ValueError(f"`--classes` must be a positive integer. Received: --classes {args.classes}")
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"`--image-size` must be a positive integer. Received: --image-size {args.image_size}")
    family = _CONVERTER_OF.get(model_family(args.model), model_family(args.model))
    if family not in convert.FAMILIES:
        raise ValueError(
            f"No checkpoint converter for {args.model!r} (family {family!r}); converters: "
            f"{', '.join(convert.FAMILIES)}. Received: --model={args.model!r}"
        )
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
    classes = args.classes or convert.checkpoint_classes(state_dict, family, args.layout)
    if classes:
        overrides["classes"] = classes
    elif "classes" not in overrides:
        # A checkpoint without a head: the features model, with the family's own default pooling.
        overrides["include_top"] = False
    model = get_model(args.model, **overrides)
    convert.load_checkpoint(model, state_dict, family=family, layout=args.layout)
    # Atomic: a kill or a full disk leaves any earlier file at --out as it was.
    if args.out.endswith(".keras"):
        save_model_atomic(model, args.out)
    else:
        save_weights_atomic(model, args.out)
    head = f"classes={classes}" if classes else "no head"
    print(
        f"{args.src} -> {args.out}: {args.model} ({family}), {model.count_params():,} parameters, {head}, "
        f"input {tuple(model.input_shape[1:])}"
    )
    return 0
