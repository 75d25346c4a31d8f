"""Pretrained weights from the Hugging Face Hub: `weights="hf://ORG/REPO[@REVISION]"`.

Files come through `huggingface_hub.hf_hub_download`, so its cache
(`HF_HUB_CACHE`, `HF_HOME`), its offline mode (`HF_HUB_OFFLINE=1`), its token
(`HF_TOKEN` or `hf auth login`) and its progress bars apply unchanged.

A repo's `config.json` is read before any model is built and decides the
architecture, the number of classes, the input size, the layer-norm epsilon,
the preprocessing (mean/std, interpolation, crop fraction) and the label
names; the weights then go through `keras_vit.convert.load_checkpoint`. Two
kinds of repos are read:

- timm (`hf://timm/vit_base_patch16_224.augreg2_in21k_ft_in1k`): `architecture`
  is a model name of the registry (timm's names), `model_args` (timm's
  constructor arguments, or the factory's own argument names) override its
  configuration, `num_classes`, `global_pool` and `pretrained_cfg`
  (`input_size`, `mean`, `std`, `interpolation`, `crop_pct`) and `label_names`
  follow timm's `save_config_for_hf` format;
- Hugging Face transformers ViT and DeiT (`hf://google/vit-base-patch16-224`):
  `model_type`, `architectures`, `hidden_size`, `num_hidden_layers`,
  `num_attention_heads`, `intermediate_size`, `image_size`, `patch_size`,
  `layer_norm_eps`, `qkv_bias`, `id2label`, plus `preprocessor_config.json`
  (`image_mean`, `image_std`, `size`, `crop_size`, `resample`).

`PRETRAINED_TAGS` lists the timm tags known for the registered models
(`get_model("vit_base_patch16_224.augreg2_in21k_ft_in1k", pretrained=True)`).
"""

import dataclasses
import json
import re

HUB_PREFIX = "hf://"

# Registered model name → timm pretrained tags on the Hub (`hf://timm/<name>.<tag>`), the default first;
# each is a pretrained configuration with a Hugging Face Hub id in timm 1.0.29's model definitions.
PRETRAINED_TAGS = {
    "vit_tiny_patch16_224": ("augreg_in21k_ft_in1k", "augreg_in21k"),
    "vit_tiny_patch16_384": ("augreg_in21k_ft_in1k",),
    "vit_small_patch16_224": ("augreg_in21k_ft_in1k", "augreg_in1k", "augreg_in21k", "dino"),
    "vit_small_patch16_384": ("augreg_in21k_ft_in1k", "augreg_in1k"),
    "vit_small_patch32_224": ("augreg_in21k_ft_in1k", "augreg_in21k"),
    "vit_small_patch32_384": ("augreg_in21k_ft_in1k",),
    "vit_small_patch8_224": ("dino",),
    "vit_base_patch16_224": (
        "augreg2_in21k_ft_in1k",
        "augreg_in21k_ft_in1k",
        "augreg_in1k",
        "augreg_in21k",
        "orig_in21k",
        "dino",
    ),
    "vit_base_patch16_384": ("augreg_in21k_ft_in1k", "augreg_in1k", "orig_in21k_ft_in1k"),
    "vit_base_patch32_224": ("augreg_in21k_ft_in1k", "augreg_in1k", "augreg_in21k"),
    "vit_base_patch32_384": ("augreg_in21k_ft_in1k", "augreg_in1k"),
    "vit_base_patch8_224": ("augreg2_in21k_ft_in1k", "augreg_in21k_ft_in1k", "augreg_in21k", "dino"),
    "vit_large_patch16_224": ("augreg_in21k_ft_in1k", "augreg_in21k"),
    "vit_large_patch16_384": ("augreg_in21k_ft_in1k",),
    "vit_large_patch32_384": ("orig_in21k_ft_in1k",),
    "vit_huge_patch14_224": ("orig_in21k",),
    "deit_tiny_patch16_224": ("fb_in1k",),
    "deit_small_patch16_224": ("fb_in1k",),
    "deit_base_patch16_224": ("fb_in1k",),
    "deit_tiny_distilled_patch16_224": ("fb_in1k",),
    "deit_small_distilled_patch16_224": ("fb_in1k",),
    "deit_base_distilled_patch16_224": ("fb_in1k",),
    "swin_tiny_patch4_window7_224": ("ms_in1k", "ms_in22k_ft_in1k"),
    "swin_small_patch4_window7_224": ("ms_in1k", "ms_in22k_ft_in1k"),
    "swin_base_patch4_window7_224": ("ms_in1k", "ms_in22k_ft_in1k", "ms_in22k"),
    "mvitv2_tiny": ("fb_in1k",),
    "mvitv2_small": ("fb_in1k",),
    "mvitv2_base": ("fb_in1k",),
    "vit_base_r50_s16_224": ("orig_in21k",),
    "vit_base_r50_s16_384": ("orig_in21k_ft_in1k",),
}

# Hugging Face transformers repos of the same architectures, by the registered name they build.
TRANSFORMERS_REPOS = {
    "google/vit-base-patch16-224": "vit_base_patch16_224",
    "google/vit-base-patch16-224-in21k": "vit_base_patch16_224",
    "google/vit-base-patch16-384": "vit_base_patch16_384",
    "google/vit-base-patch32-384": "vit_base_patch32_384",
    "google/vit-large-patch16-224": "vit_large_patch16_224",
    "facebook/deit-tiny-patch16-224": "deit_tiny_patch16_224",
    "facebook/deit-small-patch16-224": "deit_small_patch16_224",
    "facebook/deit-base-patch16-224": "deit_base_patch16_224",
    "facebook/deit-tiny-distilled-patch16-224": "deit_tiny_distilled_patch16_224",
    "facebook/deit-small-distilled-patch16-224": "deit_small_distilled_patch16_224",
    "facebook/deit-base-distilled-patch16-224": "deit_base_distilled_patch16_224",
}

# Factory arguments a caller may set to another value than the checkpoint's: the head is then
# new (fine-tuning), the position table resampled, the pooling or the output changed.
FREE_ARGUMENTS = (
    "include_top",
    "classes",
    "pooling",
    "classifier_activation",
    "input_shape",
    "input_tensor",
    "name",
    "dropout",
    "attention_dropout",
    "drop_path_rate",
    "weights",
)

# Weight files looked for in a repo, in order.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# timm constructor arguments (`model_args`) → factory arguments; a function maps a value.
_TIMM_ARGS = {
    "img_size": ("input_shape", None),
    "in_chans": (None, None),  # folded into input_shape
    "patch_size": ("patch_size", None),
    "embed_dim": ("hidden_dim", None),
    "depth": ("depth", None),
    "depths": ("depth", tuple),
    "num_heads": ("num_heads", lambda v: tuple(v) if isinstance(v, (list, tuple)) else v),
    "mlp_ratio": ("mlp_ratio", None),
    "qkv_bias": ("qkv_bias", None),
    "class_token": ("class_token", None),
    "reg_tokens": ("num_register_tokens", None),
    "init_values": ("layer_scale_init", None),
    "window_size": ("window_size", None),
    "num_classes": (None, None),  # read with the top-level num_classes
    "global_pool": (None, None),  # read with the top-level global_pool
    "drop_rate": ("dropout", None),
    "attn_drop_rate": ("attention_dropout", None),
    "drop_path_rate": ("drop_path_rate", None),
}

# Factory arguments a repo's `model_args` never set: objects, files, and the call's own choices.
_NOT_FROM_CONFIG = frozenset(
    {"weights", "input_tensor", "stem", "name", "backbone", "backbone_weights", "feature_layer"}
    | {"include_preprocessing", "image_mean", "image_std", "kwargs"}
)

# PIL resample codes in `preprocessor_config.json` → interpolation names.
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos3", 2: "bilinear", 3: "bicubic", 4: "area", 5: "bilinear"}
_TIMM_POOLING = {"token": "token", "avg": "avg", "max": "max", "": None}


class HubError(ValueError):
    """A Hub repo that cannot be read, or holds another model than the one asked for."""


@dataclasses.dataclass
class HubWeights:
    """What a Hub repo holds, read from its configuration files.

    Attributes:
        uri: the `hf://ORG/REPO[@REVISION]` string.
        repo_id, revision: the repo and its revision (None: the default branch).
        source: "timm" or "transformers".
        architecture: the registered model name of the repo's architecture
            (timm's `architecture`), or None for a transformers repo.
        family: the registry family ("vit", "deit", "swin", ...).
        arguments: factory arguments the repo decides (architecture, classes,
            input shape, pooling, epsilon).
        mean, std: per-channel normalisation on [0, 1] pixels.
        interpolation, crop_pct: how images are resized before the model.
        class_names: list of label names, or None.
        weights_path: the local (cached) weight file, once `fetch_weights` ran.
    """

    uri: str
    repo_id: str
    revision: object
    source: str
    architecture: object
    family: str
    arguments: dict
    mean: tuple
    std: tuple
    interpolation: str = "bicubic"
    crop_pct: object = None
    class_names: object = None
    weights_path: object = None

    def preprocessing(self):
        """`ImagePreprocessing` arguments of this checkpoint."""
        return {"mean": self.mean, "std": self.std, "interpolation": self.interpolation, "crop_pct": self.crop_pct}


def is_hub_uri(value):
    """Whether `value` is an `hf://` string or an already resolved `HubWeights`."""
    return isinstance(value, HubWeights) or (isinstance(value, str) and value.startswith(HUB_PREFIX))


def parse_uri(uri):
    """`(repo_id, revision)` of `hf://ORG/REPO[@REVISION]` (revision None when absent)."""
    if not isinstance(uri, str) or not uri.startswith(HUB_PREFIX):
        raise HubError(f"A Hub reference must look like 'hf://ORG/REPO[@REVISION]'. Received: weights={uri!r}")
    body = uri[len(HUB_PREFIX) :]
    repo_id, _, revision = body.partition("@")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo_id) or "@" in revision or (_ and not revision):
        raise HubError(f"A Hub reference must look like 'hf://ORG/REPO[@REVISION]'. Received: weights={uri!r}")
    return repo_id, revision or None


def pretrained_uri(name):
    """`hf://timm/<name>.<tag>` of a registered `name` or `name.tag`; a clear error when none is known."""
    base, _, tag = name.partition(".")
    tags = PRETRAINED_TAGS.get(base)
    if not tags:
        known = ", ".join(sorted(PRETRAINED_TAGS))
        raise ValueError(
            f"No pretrained weights are known for {base!r}; pass weights='hf://ORG/REPO' for another repo. "
            f"Models with known weights: {known}. Received: name={name!r}"
        )
    if tag and tag not in tags:
        raise ValueError(
            f"Unknown pretrained tag {tag!r} for {base!r}; known tags: {', '.join(tags)}. Received: name={name!r}"
        )
    return f"{HUB_PREFIX}timm/{base}.{tag or tags[0]}"


def list_pretrained(pattern=None):
    """Sorted `name.tag` entries of the known timm weights (glob `pattern` on them)."""
    import fnmatch

    names = sorted(f"{name}.{tag}" for name, tags in PRETRAINED_TAGS.items() for tag in tags)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def _download(repo_id, revision, filename, uri, required=True):
    """The local path of `filename` in the repo (through the hub cache), or None when absent and not required."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HFValidationError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as error:  # declared in install_requires; guard against broken installs
        raise ImportError("Hub weights need `huggingface_hub` (`pip install huggingface_hub`).") from error

    import keras_vit

    try:
        return hf_hub_download(
            repo_id, filename, revision=revision, library_name="keras_vit", library_version=keras_vit.__version__
        )
    except GatedRepoError as error:
        raise HubError(f"{uri} is gated: accept its terms on the Hub and set HF_TOKEN. ({error})") from error
    except RepositoryNotFoundError as error:
        raise HubError(f"No such Hub repo (or a private one: set HF_TOKEN). Received: weights={uri!r}") from error
    except RevisionNotFoundError as error:
        raise HubError(f"{repo_id} has no revision {revision!r}. Received: weights={uri!r}") from error
    except LocalEntryNotFoundError as error:
        if not required:
            return None
        raise HubError(
            f"{filename} of {uri} is not in the local Hub cache and cannot be downloaded (offline, "
            f"HF_HUB_OFFLINE=1, or the repo lacks it). Received: weights={uri!r}"
        ) from error
    except EntryNotFoundError as error:
        if not required:
            return None
        raise HubError(f"{uri} has no {filename}. Received: weights={uri!r}") from error
    except HFValidationError as error:
        raise HubError(f"Not a valid Hub repo id ({error}). Received: weights={uri!r}") from error


def _read_json(path, uri, filename):
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise HubError(f"{filename} of {uri} is not readable JSON (truncated?): {error}") from error
    if not isinstance(config, dict):
        raise HubError(f"{filename} of {uri} is not a JSON object. Received: {type(config).__name__}")
    return config


def resolve(uri):
    """Reads the configuration of the repo `uri` (no weights yet) into a `HubWeights`.

    Raises:
        HubError: the repo or its `config.json` cannot be read, or it is
            neither a timm model of a registered architecture nor a
            transformers ViT/DeiT.
    """
    if isinstance(uri, HubWeights):
        return uri
    repo_id, revision = parse_uri(uri)
    config = _read_json(_download(repo_id, revision, "config.json", uri), uri, "config.json")
    if "architecture" in config:
        return _timm_weights(uri, repo_id, revision, config)
    if "model_type" in config:
        processor = _download(repo_id, revision, "preprocessor_config.json", uri, required=False)
        processor = _read_json(processor, uri, "preprocessor_config.json") if processor else {}
        return _transformers_weights(uri, repo_id, revision, config, processor)
    raise HubError(
        f"{uri} is not a timm or Hugging Face transformers image model: its config.json has neither "
        f"'architecture' (timm) nor 'model_type' (transformers). Keys found: {sorted(config)[:8]}"
    )


def fetch_weights(spec):
    """Downloads (or finds in the cache) the repo's weight file; returns its local path."""
    if spec.weights_path is None:
        for filename in WEIGHT_FILES:
            path = _download(spec.repo_id, spec.revision, filename, spec.uri, required=False)
            if path is not None:
                spec.weights_path = path
                break
        else:
            raise HubError(
                f"{spec.uri} holds no weights: none of {', '.join(WEIGHT_FILES)} is in the repo "
                "(or in the local cache when offline)."
            )
    return spec.weights_path


def _registry():
    from keras_vit.applications import registry

    return registry


def _timm_weights(uri, repo_id, revision, config):
    registry = _registry()
    pretrained = dict(config.get("pretrained_cfg") or {})
    if "pretrained_cfg" not in config:  # timm's older single-dict format
        pretrained = dict(config)
    architecture = config["architecture"]
    if architecture not in registry.list_models():
        raise HubError(
            f"{uri} holds a timm {architecture!r}, an architecture keras_vit does not have. "
            f"See keras_vit.applications.list_models(). Received: weights={uri!r}"
        )
    family = registry.model_family(architecture)
    arguments = registry.model_config(architecture)
    model_args = dict(config.get("model_args") or {})
    builder = registry.model_builder(architecture)
    arguments.update(_translate_timm_args(model_args, builder, arguments, uri))
    num_classes = config.get("num_classes", pretrained.get("num_classes", model_args.get("num_classes")))
    if num_classes is not None:
        if int(num_classes) > 0:
            arguments.update(include_top=True, classes=int(num_classes))
        else:
            arguments["include_top"] = False
    channels = int(model_args.get("in_chans", 3))
    size = pretrained.get("input_size")
    if size is not None:
        arguments["input_shape"] = (int(size[1]), int(size[2]), int(size[0]))
    elif "img_size" in model_args:
        side = model_args["img_size"]
        h, w = (side, side) if isinstance(side, int) else side
        arguments["input_shape"] = (int(h), int(w), channels)
    pool = config.get("global_pool", model_args.get("global_pool"))
    if pool is not None:
        if pool not in _TIMM_POOLING:
            raise HubError(f"{uri}: timm global_pool={pool!r} has no keras_vit pooling; known: {sorted(_TIMM_POOLING)}")
        arguments["pooling"] = _TIMM_POOLING[pool]
    names = config.get("label_names", pretrained.get("label_names"))
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    descriptions = config.get("label_descriptions", pretrained.get("label_descriptions"))
    if names and isinstance(descriptions, dict):
        names = [descriptions.get(n, n) for n in names]
    interpolation = pretrained.get("interpolation", "bicubic")
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        interpolation = "bicubic"
    return HubWeights(
        uri=uri,
        repo_id=repo_id,
        revision=revision,
        source="timm",
        architecture=architecture,
        family=family,
        arguments=arguments,
        mean=tuple(float(v) for v in pretrained.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in pretrained.get("std", (0.229, 0.224, 0.225))),
        interpolation=interpolation,
        crop_pct=float(pretrained.get("crop_pct") or 0.875),  # timm's DEFAULT_CROP_PCT
        class_names=list(names) if names else None,
    )


def _translate_timm_args(model_args, builder, arguments, uri):
    import inspect

    signature = inspect.signature(builder)
    parameters = set(signature.parameters)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        # The hybrid factories forward their other arguments to `VisionTransformer`.
        from keras_vit.applications.vit import VisionTransformer

        parameters |= set(inspect.signature(VisionTransformer).parameters)
    out = {}
    for key, value in model_args.items():
        if key in _TIMM_ARGS:
            target, fn = _TIMM_ARGS[key]
        elif key in parameters and key not in _NOT_FROM_CONFIG:
            target, fn = key, None
        else:
            raise HubError(
                f"{uri}: the timm model argument {key}={value!r} of config.json has no keras_vit equivalent. "
                f"Received: model_args={model_args!r}"
            )
        if target is None:
            continue
        if target == "input_shape":
            h, w = (value, value) if isinstance(value, int) else value
            value = (int(h), int(w), int(model_args.get("in_chans", 3)))
        elif target == "mlp_ratio" and "mlp_ratio" not in parameters:
            target, value = "mlp_dim", None  # resolved below from the final width
        elif target == "layer_scale_init" and "layer_scale_init" not in parameters:
            raise HubError(f"{uri}: init_values (LayerScale) is not an argument of {builder.__name__}")
        elif fn is not None:
            value = fn(value)
        out[target] = value
    given = "mlp_dim" in model_args  # the factory's own argument name: taken as it is
    if "mlp_dim" in parameters and "mlp_dim" in arguments and not given and ("hidden_dim" in out or "mlp_dim" in out):
        # timm gives the MLP width as a ratio of the (possibly overridden) width.
        ratio = model_args.get("mlp_ratio", arguments["mlp_dim"] / arguments["hidden_dim"])
        out["mlp_dim"] = int(out.get("hidden_dim", arguments["hidden_dim"]) * ratio)
    return out


def _transformers_weights(uri, repo_id, revision, config, processor):
    model_type = config.get("model_type")
    if model_type not in ("vit", "deit"):
        raise HubError(
            f"{uri} is a transformers {model_type!r} model; keras_vit reads transformers 'vit' and 'deit' "
            f"repos (and timm repos of its architectures). Received: weights={uri!r}"
        )
    if config.get("hidden_act", "gelu") != "gelu":
        raise HubError(f"{uri}: hidden_act={config['hidden_act']!r}; keras_vit's ViT uses exact GELU.")
    architectures = config.get("architectures") or []
    head = next((a for a in architectures if "ForImageClassification" in a), None)
    if head == "DeiTForImageClassification":
        raise HubError(
            f"{uri}: DeiTForImageClassification (a class-token head on a model with a distillation token) "
            "has no keras_vit counterpart; DeiTForImageClassificationWithTeacher and ViT heads convert."
        )
    hidden = int(config.get("hidden_size", 768))
    image = config.get("image_size", 224)
    patch = config.get("patch_size", 16)
    channels = int(config.get("num_channels", 3))
    arguments = {
        "hidden_dim": hidden,
        "depth": int(config.get("num_hidden_layers", 12)),
        "num_heads": int(config.get("num_attention_heads", 12)),
        "mlp_dim": int(config.get("intermediate_size", 4 * hidden)),
        "patch_size": int(patch) if isinstance(patch, int) else tuple(patch),
        "input_shape": (*((image, image) if isinstance(image, int) else tuple(image)), channels),
        "layer_norm_epsilon": float(config.get("layer_norm_eps", 1e-12)),
        "qkv_bias": bool(config.get("qkv_bias", True)),
        "distillation": model_type == "deit",
        "class_token": True,
        "pooling": "token",
    }
    id2label = config.get("id2label") or {}
    names = [id2label[k] for k in sorted(id2label, key=int)] if id2label else None
    if head:
        arguments.update(include_top=True, classes=len(names) if names else int(config.get("num_labels", 2)))
    else:
        arguments["include_top"] = False
        names = None
    size = processor.get("crop_size") if processor.get("do_center_crop") else processor.get("size")
    side = _processor_side(size)
    resize = _processor_side(processor.get("size"))
    crop_pct = side / resize if processor.get("do_center_crop") and side and resize and side < resize else None
    if side:
        arguments["input_shape"] = (side, side, channels)
    do_normalize = processor.get("do_normalize", True)
    mean = processor.get("image_mean", (0.5, 0.5, 0.5)) if do_normalize else (0.0,)
    std = processor.get("image_std", (0.5, 0.5, 0.5)) if do_normalize else (1.0,)
    return HubWeights(
        uri=uri,
        repo_id=repo_id,
        revision=revision,
        source="transformers",
        architecture=None,
        family="deit" if model_type == "deit" else "vit",
        arguments=arguments,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        interpolation=_PIL_RESAMPLE.get(processor.get("resample", 2), "bilinear"),
        crop_pct=crop_pct,
        class_names=names,
    )


def _processor_side(size):
    if size is None:
        return None
    if isinstance(size, int):
        return size
    if isinstance(size, dict):
        return size.get("height") or size.get("shortest_edge")
    return None


def _same(a, b):
    norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return norm(a) == norm(b)


def merge_arguments(spec, families, factory_name, requested):
    """Factory arguments for the checkpoint `spec`: the repo's, then the caller's.

    Args:
        spec: a `HubWeights`.
        families: the registry families the factory builds.
        factory_name: its name, for the messages.
        requested: the arguments the caller set (not left at their defaults).

    Returns:
        `{**spec.arguments, **requested}`.

    Raises:
        HubError: the repo's family is not one the factory builds, or an
            architecture argument (width, depth, heads, patch, ...) differs
            from the checkpoint's; the message names both.
    """
    described = spec.architecture or f"transformers {spec.family} model"
    if spec.family not in families:
        raise HubError(
            f"weights={spec.uri!r} holds a {described} (family {spec.family!r}), but {factory_name} builds "
            f"{'/'.join(families)} models (model {requested.get('name', factory_name)!r}). Use the factory or "
            f"registry name of the repo's architecture."
        )
    conflicts = [
        f"{key}={requested[key]!r} (checkpoint: {value!r})"
        for key, value in spec.arguments.items()
        if key in requested and key not in FREE_ARGUMENTS and not _same(requested[key], value)
    ]
    if conflicts:
        raise HubError(
            f"weights={spec.uri!r} holds a {described}, another architecture than the model asked for "
            f"({factory_name}, model {requested.get('name', factory_name)!r}): " + ", ".join(conflicts)
        )
    return {**spec.arguments, **requested}


def model_from_hub(uri, **overrides):
    """The model of the repo `uri`, its architecture taken from the repo alone.

    timm repos build their `architecture` (a registered name), transformers
    ViT/DeiT repos a `VisionTransformer`; keyword arguments override the
    repo's values as in the factories (`classes=10` starts a new head).
    """
    spec = resolve(uri)
    registry = _registry()
    if spec.architecture is not None:
        builder = registry.model_builder(spec.architecture)
        name = spec.architecture
    else:
        from keras_vit.applications.vit import VisionTransformer

        builder, name = VisionTransformer, re.sub(r"[^\w]+", "_", spec.repo_id.split("/")[-1])
    overrides.setdefault("name", name)
    return builder(weights=spec, **overrides)
