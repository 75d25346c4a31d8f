"""`keras-vit convert`: a local checkpoint or a Hub repo (`hf://ORG/REPO`) → Keras `.weights.h5` / `.keras`.

A `.keras` file converted from a Hub repo starts with the repo's preprocessing
(`ImagePreprocessing`: it takes pixels in [0, 255]); a `preprocessing.json`
beside it records the same statistics and the label names, as `keras-vit train`
writes it.
"""

import json
import os


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
        "src",
        help="checkpoint file (timm / Hugging Face / vit-pytorch / T2T-ViT state dict, original ViT .npz), "
        "or a Hub repo hf://ORG/REPO[@REVISION] (timm or transformers ViT/DeiT)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="registered model name, e.g. swin_tiny_patch4_window7_224 (required for a file; "
        "for hf:// the repo's architecture by default)",
    )
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
    parser.add_argument(
        "--image-mean",
        type=float,
        nargs="+",
        default=None,
        help="per-channel mean (on [0, 1] pixels) the checkpoint was trained with: the model then normalises "
        "inside and takes pixels in [0, 255] (default for hf://: the repo's)",
    )
    parser.add_argument("--image-std", type=float, nargs="+", default=None, help="per-channel std, with --image-mean")
    parser.set_defaults(func=run)


# Registry families whose checkpoints convert with another family's converter.
_CONVERTER_OF = {"deit": "vit"}


def run(args):
    from keras_vit import convert, hub
    from keras_vit.applications import get_model, model_family
    from keras_vit.utils import save_model_atomic, save_weights_atomic

    if not (args.out.endswith(".weights.h5") or args.out.endswith(".keras")):
        raise ValueError(f"`--out` must end in .weights.h5 or .keras. Received: --out={args.out!r}")
    if args.classes is not None and args.classes < 1:
        raise ValueError(f"`--classes` must be a positive integer. Received: --classes {args.classes}")
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"`--image-size` must be a positive integer. Received: --image-size {args.image_size}")
    if args.src.startswith(hub.HUB_PREFIX):
        return _run_hub(args)
    if args.model is None:
        raise ValueError(f"`--model` is needed to convert a checkpoint file. Received: {args.src!r} without --model")
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
    overrides.update(_statistics(args))
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
    takes = "pixels in [0, 255]" if "image_mean" in overrides else "normalised images (no --image-mean)"
    print(
        f"{args.src} -> {args.out}: {args.model} ({family}), {model.count_params():,} parameters, {head}, "
        f"input {tuple(model.input_shape[1:])}, {takes}"
    )
    return 0


def _statistics(args):
    """`include_preprocessing` arguments of `--image-mean` / `--image-std`."""
    if (args.image_mean is None) != (args.image_std is None):
        raise ValueError(
            f"Give both `--image-mean` and `--image-std`, or neither. Received: --image-mean {args.image_mean}, "
            f"--image-std {args.image_std}"
        )
    if args.image_mean is None:
        return {}
    return {"include_preprocessing": True, "image_mean": tuple(args.image_mean), "image_std": tuple(args.image_std)}


def _overrides(args):
    overrides = json.loads(args.config) if args.config else {}
    if not isinstance(overrides, dict):
        raise ValueError(f"`--config` must be a JSON object. Received: --config={args.config!r}")
    if "input_shape" in overrides:
        overrides["input_shape"] = tuple(overrides["input_shape"])
    if args.image_size:
        overrides["input_shape"] = (args.image_size, args.image_size, 3)
    if args.classes:
        overrides["classes"] = args.classes
    overrides.update(_statistics(args))
    return overrides


def _run_hub(args):
    """`convert hf://ORG/REPO`: the repo's configuration builds the model, its preprocessing inside."""
    from keras_vit import hub, training
    from keras_vit.applications import get_model, model_preprocessing
    from keras_vit.utils import save_model_atomic, save_weights_atomic, write_json_atomic

    if args.layout != "auto":
        raise ValueError(
            f"`--layout` applies to checkpoint files; a Hub repo's is detected. Received: --layout {args.layout}"
        )
    overrides = _overrides(args)
    spec = hub.resolve(args.src)
    if args.model is not None:
        model = get_model(args.model, weights=spec, **overrides)
    else:
        model = hub.model_from_hub(spec, **overrides)
    layer = model_preprocessing(model)
    if args.out.endswith(".keras"):
        save_model_atomic(model, args.out)
        classes = model.output_shape[-1] if any(part.name == "head" for part in model.layers) else None
        names = spec.class_names if spec.class_names and len(spec.class_names) == classes else None
        prep = {
            "image_size": list(model.input_shape[1:3]),
            "channels": int(model.input_shape[3]),
            "mean": list(layer.mean if layer else spec.mean),
            "std": list(layer.std if layer else spec.std),
            "interpolation": spec.interpolation,
            "crop_pct": spec.crop_pct,
            "class_names": names,
            "source": args.src,
            "value_range": [0, 255] if layer else [0, 1],
        }
        path = os.path.join(os.path.dirname(os.path.abspath(args.out)), training.PREPROCESSING_FILE)
        previous = training.read_preprocessing(args.out) if os.path.isfile(path) else None
        # Never over another model's file (a training run's): only a fresh one, or one convert wrote.
        if previous is None or str(previous.get("source") or "").startswith(hub.HUB_PREFIX):
            write_json_atomic(prep, path)
    else:
        save_weights_atomic(model, args.out)
    print(
        f"{args.src} -> {args.out}: {model.name} ({spec.family}, {spec.source}), {model.count_params():,} parameters, "
        f"output {tuple(model.output_shape[1:])}, input {tuple(model.input_shape[1:])}, "
        + (f"pixels in [0, 255], mean {list(layer.mean)}, std {list(layer.std)}" if layer else "normalised images")
    )
    return 0
