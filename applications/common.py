"""Argument checks, model inputs and outputs, and named variants shared by the model factories.

Every image factory is wrapped by `pretrained_factory`, which gives it
`weights="hf://ORG/REPO[@REVISION]"` (`keras_vit.hub`) and the
keras.applications (ConvNeXt, EfficientNetV2) `include_preprocessing`
argument; `preprocess_input` and `decode_predictions` are the
keras.applications functions of the same names.
"""

import functools
import inspect
import os

import keras
import numpy as np

# Pooling modes of models that end in tokens (ViT family) and in a feature map (Swin, MViTv2).
TOKEN_POOLINGS = ("token", "avg", "max", None)
MAP_POOLINGS = ("avg", "max", None)


def check_pooling(pooling, include_top, poolings):
    """Checks that `pooling` is one of `poolings`, and set when there is a head."""
    if pooling not in poolings:
        raise ValueError(f"`pooling` must be one of {poolings}. Received: pooling={pooling!r}")
    if include_top and pooling is None:
        raise ValueError("`include_top=True` needs a `pooling` mode. Received: pooling=None")


def check_classes(classes, include_top):
    """Checks that `classes` is a positive integer when there is a head."""
    if include_top and (not isinstance(classes, (int, np.integer)) or classes < 1):
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")


def check_positive_ints(**values):
    """Checks that every keyword argument is a positive integer (Python or NumPy)."""
    for arg, value in values.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{arg}` must be a positive integer. Received: {arg}={value!r}")


def check_heads(hidden_dim, num_heads):
    """Checks that `num_heads` divides `hidden_dim`."""
    if hidden_dim % num_heads:
        raise ValueError(
            f"`hidden_dim` must be divisible by `num_heads`. Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
        )


def stage_values(value, num_stages, arg, doubling=True):
    """One value per stage: a sequence is checked, an int doubles from stage to stage."""
    if isinstance(value, (int, np.integer)):
        values = tuple(int(value) * (2**i if doubling else 1) for i in range(num_stages))
    else:
        values = tuple(value)
    if len(values) != num_stages or not all(isinstance(v, (int, np.integer)) and v > 0 for v in values):
        raise ValueError(
            f"`{arg}` must be a positive integer or {num_stages} positive integers, one per stage. "
            f"Received: {arg}={value!r}"
        )
    return tuple(int(v) for v in values)


def check_stages(hidden_dim, depth, num_heads):
    """Checks the stages of a hierarchical model whose width doubles at every stage.

    Args:
        hidden_dim: int, width of the first stage.
        depth: sequence, blocks per stage.
        num_heads: int (first stage, doubled at every stage) or one per stage.

    Returns:
        `(depth, heads, widths)`, one int per stage in each.
    """
    if not isinstance(depth, (list, tuple)) or not depth:
        raise ValueError(f"`depth` must be a non-empty sequence of blocks per stage. Received: depth={depth!r}")
    num_stages = len(depth)
    depth = stage_values(depth, num_stages, "depth")
    heads = stage_values(num_heads, num_stages, "num_heads")
    check_positive_ints(hidden_dim=hidden_dim)
    widths = [int(hidden_dim) * 2**i for i in range(num_stages)]
    for i, (width, h) in enumerate(zip(widths, heads)):
        if width % h:
            raise ValueError(
                f"Each stage width must be divisible by its heads. Received: hidden_dim={hidden_dim}, "
                f"num_heads={num_heads} (stage {i}: width {width}, {h} heads)"
            )
    return depth, heads, widths


def check_weights(weights):
    """Checks that `weights` is None or an existing Keras weights file or checkpoint, before a model is built."""
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"`weights` must be None, a file path or 'hf://ORG/REPO'. Received: weights={weights!r}")
    if os.fspath(weights).startswith("hf://"):
        raise ValueError(
            "This factory has no Hub weights (no checkpoint converter for its family); pass None or a file path. "
            f"Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise FileNotFoundError(f"`weights` file not found. Received: weights={path!r}")
    _weights_kind(path)


def _weights_kind(path):
    from keras_vit import convert

    if path.endswith((".weights.h5", ".keras")):
        return "keras"
    if convert.is_checkpoint_path(path):
        return "checkpoint"
    raise ValueError(
        "`weights` must be a Keras `.weights.h5` or `.keras` file, or a checkpoint "
        f"({', '.join(convert.CHECKPOINT_EXTENSIONS)}). Received: weights={path!r}"
    )


def load_weights_file(model, weights):
    """Loads a Keras `.weights.h5`/`.keras` file, or converts a checkpoint, into `model`.

    Checkpoints (`.safetensors`, `.pth`/`.pt`/`.bin`, `.npz`) of every family
    with a converter (ViT/DeiT, R50 hybrid, Swin, MViTv2, T2T-ViT, DeepViT) go
    through `keras_vit.convert.load_checkpoint`, which finds the family from
    the model's layers and the checkpoint's layout from its key names.
    """
    from keras_vit import convert

    path = os.fspath(weights)
    if _weights_kind(path) == "keras":
        model.load_weights(path)
        return model
    return convert.load_checkpoint(model, path)


def resolve_input_shape(input_tensor, input_shape, default_shape=(224, 224, 3)):
    """The image shape a model will take: `input_shape`, else `input_tensor`'s, else `default_shape`."""
    if input_shape is not None:
        return input_shape
    if input_tensor is not None:
        return tuple(input_tensor.shape[1:])
    return default_shape


def image_inputs(input_tensor, input_shape, default_shape=(224, 224, 3), require_size=False):
    """The model input, from `input_tensor` or `input_shape` (keras.applications rules).

    Args:
        input_tensor: optional tensor to build the model on.
        input_shape: `(H, W, C)`, or None for the tensor's shape or `default_shape`.
        default_shape: `(H, W, C)` without a tensor or `input_shape`.
        require_size: bool, whether H and W must be known (not None).

    Returns:
        `(inputs, input_shape)`: the Keras tensor the model starts from and its
        `(H, W, C)` shape.
    """
    if input_tensor is not None:
        inputs = input_tensor if keras.backend.is_keras_tensor(input_tensor) else keras.Input(tensor=input_tensor)
        return inputs, tuple(inputs.shape[1:]) if input_shape is None else tuple(input_shape)
    input_shape = tuple(input_shape) if input_shape is not None else tuple(default_shape)
    if len(input_shape) != 3 or (require_size and None in input_shape[:2]):
        requirement = " with a known height and width" if require_size else ""
        raise ValueError(
            f"`input_shape` must be (height, width, channels){requirement}. Received: input_shape={input_shape}"
        )
    return keras.Input(shape=input_shape, name="images"), input_shape


def classifier(x, include_top, pooling, classes, classifier_activation, dropout):
    """Global pooling of a `(B, H, W, C)` map, then the optional dense head."""
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    elif pooling is not None:
        raise ValueError(f"`pooling` must be one of {MAP_POOLINGS}. Received: pooling={pooling!r}")
    if include_top:
        x = keras.layers.Dropout(dropout, name="head_drop")(x)
        x = keras.layers.Dense(classes, name="head")(x)
        if classifier_activation is not None:
            # float32 probabilities under mixed precision, as the Keras mixed-precision guide advises.
            x = keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
    return x


def build_model(inputs, outputs, input_tensor, weights, name):
    """The `keras.Model` from `inputs` to `outputs`, with `weights` loaded when given.

    With an `input_tensor`, the model starts from the inputs that tensor comes from.
    """
    if input_tensor is None:
        source = inputs
    else:
        sources = keras.utils.get_source_inputs(inputs)
        source = sources[0] if len(sources) == 1 else sources
    model = keras.Model(source, outputs, name=name)
    if weights is not None:
        load_weights_file(model, weights)
    return model


def variant(
    func_name, builder, config, description, default_pooling="token", default_name=None, default_input_shape=None
):
    """A keras.applications-style constructor of one configuration of `builder`.

    Args:
        func_name: the constructor's name (`"ViTBase16"`).
        builder: the generic factory (`VisionTransformer`).
        config: dict, the `builder` arguments of this configuration;
            keyword arguments of a call override them.
        description: first line of the constructor's docstring.
        default_pooling: default `pooling`.
        default_name: default model name; `func_name.lower()` when None.
        default_input_shape: `input_shape` when none is given; None leaves
            `builder`'s default.

    Returns:
        A function with the arguments of `keras.applications` constructors.
    """

    def build(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=default_pooling,
        classes=1000,
        classifier_activation="softmax",
        name=default_name or func_name.lower(),
        **kwargs,
    ):
        if default_input_shape is not None:
            input_shape = input_shape or default_input_shape
        arguments = {
            "include_top": include_top,
            "weights": weights,
            "input_tensor": input_tensor,
            "input_shape": input_shape,
            "pooling": pooling,
            "classes": classes,
            "classifier_activation": classifier_activation,
            "name": name,
        }
        if is_hub_uri(weights):
            # Hub weights decide what a call leaves at its default (classes, pooling, ...).
            defaults = inspect.signature(build).parameters
            arguments = {k: v for k, v in arguments.items() if k in ("weights", "name") or v is not defaults[k].default}
            if input_shape is default_input_shape:
                arguments.pop("input_shape", None)
        return builder(**arguments, **{**config, **kwargs})

    build.__name__ = build.__qualname__ = func_name
    build.__module__ = builder.__module__
    build.__doc__ = f"""{description}

    See `{builder.__name__}` for the arguments; other keyword arguments
    (`drop_path_rate`, ...) override the configuration.
    """
    return build


def is_hub_uri(weights):
    """Whether `weights` names Hub weights (`"hf://ORG/REPO"` or a resolved `keras_vit.hub.HubWeights`)."""
    from keras_vit import hub

    return hub.is_hub_uri(weights)


def _requested_arguments(signature, args, kwargs):
    """The arguments a call set (those left out keep their defaults, or take a Hub checkpoint's values)."""
    bound = signature.bind(*args, **kwargs)
    requested = {}
    for key, value in bound.arguments.items():
        if signature.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
            requested.update(value)
        else:
            requested[key] = value
    return requested


_PRETRAINED_NOTE = """

    Pretrained weights and preprocessing (every image factory):
        weights: also `"hf://ORG/REPO[@REVISION]"`, a timm or Hugging Face
            transformers repo (`keras_vit.hub`): its configuration decides
            the arguments this call leaves unset, and an architecture argument
            set to another value than the checkpoint's is an error.
        include_preprocessing: None (on with Hub weights), True or False.
            On: the model starts with `ImagePreprocessing` and takes pixels
            in [0, 255].
        image_mean, image_std: its per-channel statistics on [0, 1] pixels
            (default: the checkpoint's, else ImageNet's).
    """


def pretrained_factory(*families):
    """Gives an image factory Hub weights and `include_preprocessing`.

    The wrapped factory takes, besides its own arguments:

    - `weights="hf://ORG/REPO[@REVISION]"` (families with a converter): the
      repo's configuration is read first and decides every argument the call
      leaves unset (architecture, classes, input size, pooling, epsilon);
      an architecture argument set to another value than the checkpoint's
      raises an error naming both; the weights are then converted in.
    - `include_preprocessing`: None (on with Hub weights, off otherwise),
      True or False. When on, the model takes pixels in [0, 255] and starts
      with an `ImagePreprocessing` layer holding the mean/std: `image_mean`,
      `image_std` when given, else the checkpoint's, else ImageNet's.
    - `image_mean`, `image_std`: per-channel statistics on [0, 1] pixels.

    Args:
        *families: the registry families the factory builds.
    """
    from keras_vit import convert, hub
    from keras_vit.layers import ImagePreprocessing
    from keras_vit.layers.image_preprocessing import IMAGENET_MEAN, IMAGENET_STD

    def decorate(factory):
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def build(*args, include_preprocessing=None, image_mean=None, image_std=None, **kwargs):
            requested = _requested_arguments(signature, args, kwargs)
            spec = None
            if hub.is_hub_uri(requested.get("weights")):
                if not set(families) & (set(convert.FAMILIES) | {"deit"}):
                    raise ValueError(
                        f"{factory.__name__} has no checkpoint converter, so no Hub weights. "
                        f"Received: weights={requested['weights']!r}"
                    )
                spec = hub.resolve(requested["weights"])
                requested = hub.merge_arguments(spec, families, factory.__name__, requested)
                requested["weights"] = hub.fetch_weights(spec)
            if include_preprocessing is None:
                include_preprocessing = spec is not None
            if not isinstance(include_preprocessing, bool):
                raise ValueError(
                    f"`include_preprocessing` must be None, True or False. Received: include_preprocessing={include_preprocessing!r}"
                )
            if include_preprocessing:
                input_tensor = requested.get("input_tensor")
                input_shape = tuple(resolve_input_shape(input_tensor, requested.get("input_shape")))
                channels = input_shape[-1]
                stats = spec.preprocessing() if spec is not None else {}
                if image_mean is None and "mean" not in stats and channels != 3:
                    raise ValueError(
                        f"`image_mean` and `image_std` are needed for {channels}-channel images (the default is "
                        f"ImageNet's RGB statistics). Received: input_shape={input_shape}"
                    )
                stats["mean"] = stats.get("mean", IMAGENET_MEAN) if image_mean is None else image_mean
                stats["std"] = stats.get("std", IMAGENET_STD) if image_std is None else image_std
                layer = ImagePreprocessing(**stats, name="preprocessing")
                if input_tensor is None:
                    raw = keras.Input(shape=input_shape, name="images")
                elif keras.backend.is_keras_tensor(input_tensor):
                    raw = input_tensor
                else:
                    raw = keras.Input(tensor=input_tensor)
                requested["input_tensor"] = layer(raw)
                requested["input_shape"] = input_shape
            elif image_mean is not None or image_std is not None:
                raise ValueError(
                    "`image_mean` and `image_std` take effect with `include_preprocessing=True`. "
                    f"Received: include_preprocessing={include_preprocessing}, image_mean={image_mean!r}"
                )
            try:
                return factory(**requested)
            except convert.CheckpointError as error:
                if spec is None:
                    raise
                raise convert.CheckpointError(f"weights={spec.uri!r}: {error}") from error

        parameters = list(signature.parameters.values())
        extra = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
            for n in ("include_preprocessing", "image_mean", "image_std")
        ]
        cut = next((i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD), len(parameters))
        build.__signature__ = signature.replace(parameters=parameters[:cut] + extra + parameters[cut:])
        build.__doc__ = (factory.__doc__ or "").rstrip() + _PRETRAINED_NOTE
        build.families = tuple(families)
        return build

    return decorate


def model_preprocessing(model):
    """The `ImagePreprocessing` layer a model starts with, or None (the model takes normalised images)."""
    from keras_vit.layers import ImagePreprocessing

    for layer in model.layers:
        if isinstance(layer, ImagePreprocessing):
            return layer
    return None


def preprocess_input(x, data_format=None, mean=None, std=None):
    """Images for a model: unchanged for models with preprocessing inside, else normalised.

    As keras.applications' ConvNeXt: a model built with
    `include_preprocessing=True` (the default with Hub weights) takes pixels
    in [0, 255] and this function returns them unchanged. For a model without
    it, pass its training `mean` and `std` (per channel, on [0, 1] pixels):
    the result is `(x / 255 - mean) / std`.

    Args:
        x: images `(..., H, W, C)` (or `(..., C, H, W)` with
            `data_format="channels_first"`), pixels in [0, 255].
        data_format: None (Keras' image data format), "channels_last" or "channels_first".
        mean, std: None (unchanged), or floats / per-channel sequences.

    Returns:
        A float32 NumPy array.
    """
    data_format = keras.backend.image_data_format() if data_format is None else data_format
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"`data_format` must be 'channels_last' or 'channels_first'. Received: data_format={data_format!r}"
        )
    x = np.asarray(keras.ops.convert_to_numpy(x) if not isinstance(x, np.ndarray) else x, "float32")
    if (mean is None) != (std is None):
        raise ValueError(f"Give both `mean` and `std`, or neither. Received: mean={mean!r}, std={std!r}")
    if mean is None:
        return x
    mean, std = np.asarray(mean, "float32"), np.asarray(std, "float32")
    if np.any(std <= 0):
        raise ValueError(f"`std` must be positive. Received: std={std.tolist()}")
    if data_format == "channels_first":
        mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
    return (x / 255.0 - mean) / std


IMAGENET_CLASSES_FILE = "imagenet_1k_classes.tsv"


@functools.lru_cache(maxsize=1)
def imagenet_classes():
    """`[(synset id, name), ...]` of the 1,000 ImageNet-1k classes, in the order of their class index.

    The names are the first WordNet lemma of each synset (the full lemma
    list is in the data file shipped with the package).
    """
    from importlib import resources

    text = resources.files("keras_vit").joinpath(IMAGENET_CLASSES_FILE).read_text(encoding="utf-8")
    rows = [line.split("\t", 1) for line in text.splitlines() if line.strip()]
    return [(synset, lemmas.split(",")[0].strip()) for synset, lemmas in rows]


def decode_predictions(preds, top=5, class_names=None):
    """The `top` classes of each prediction, as keras.applications' `decode_predictions`.

    Args:
        preds: `(B, classes)` probabilities or logits.
        top: int, how many classes per image.
        class_names: None (ImageNet-1k: `preds` must have 1000 columns) or
            a list of names, one per column.

    Returns:
        A list (one per image) of `(class id, name, score)` tuples, best
        first; the class id is the WordNet synset for ImageNet, else the
        column index as a string.
    """
    preds = np.asarray(keras.ops.convert_to_numpy(preds) if not isinstance(preds, np.ndarray) else preds)
    if preds.ndim != 2:
        raise ValueError(f"`preds` must be a batch of predictions (B, classes). Received: shape={preds.shape}")
    if not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"`top` must be a positive integer. Received: top={top!r}")
    if class_names is None:
        if preds.shape[1] != 1000:
            raise ValueError(
                "Without `class_names`, `decode_predictions` expects ImageNet-1k predictions (1000 classes). "
                f"Received: shape={preds.shape}"
            )
        entries = imagenet_classes()
    else:
        if len(class_names) != preds.shape[1]:
            raise ValueError(
                f"`class_names` must have one name per class ({preds.shape[1]}). Received: {len(class_names)} names"
            )
        entries = [(str(i), str(n)) for i, n in enumerate(class_names)]
    results = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(entries[i][0], entries[i][1], float(row[i])) for i in best])
    return results


def _rewire(node, old, new):
    """`node` (a functional config fragment) with every tensor taken from layer `old` taken from `new`."""
    if isinstance(node, dict):
        out = {k: _rewire(v, old, new) for k, v in node.items()}
        history = out.get("keras_history")
        if isinstance(history, list) and history and history[0] == old:
            out["keras_history"] = [new, *history[1:]]
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(_rewire(v, old, new) for v in node)
    return node


def add_preprocessing(model, mean, std, interpolation="bilinear", crop_pct=None):
    """`model` taking pixels in [0, 255]: the same layers and weights behind an `ImagePreprocessing` layer.

    For a model that takes normalised images (built without
    `include_preprocessing`, or loaded from an older `.keras` file). The graph
    stays flat (the layer is inserted after the input, not wrapped around the
    model), so layer names, `get_layer` and the explain functions see the
    same model. A model that already starts with `ImagePreprocessing` is
    returned as it is.

    Args:
        model: a functional `keras.Model` with one image input.
        mean, std: the statistics its inputs were normalised with, on [0, 1] pixels.
        interpolation, crop_pct: see `ImagePreprocessing`.

    Returns:
        A new `keras.Model` (weights copied), or `model`.
    """
    from keras_vit.layers import ImagePreprocessing

    if model_preprocessing(model) is not None:
        return model
    if len(model.inputs) != 1:
        raise ValueError(
            f"`add_preprocessing` needs a model with one image input. Received: {len(model.inputs)} inputs"
        )
    config = model.get_config()
    inputs = config.get("input_layers") if isinstance(config, dict) else None
    if not inputs or "layers" not in config:
        raise ValueError(f"`add_preprocessing` needs a functional model. Received: {type(model).__name__}")
    source = inputs[0] if isinstance(inputs[0], str) else inputs[0][0]
    layer = ImagePreprocessing(mean, std, interpolation=interpolation, crop_pct=crop_pct, name="preprocessing")
    layer_config = keras.saving.serialize_keras_object(layer)
    shape = list(model.input_shape)
    layer_config["name"] = layer.name
    layer_config["inbound_nodes"] = [
        {
            "args": [
                {
                    "class_name": "__keras_tensor__",
                    "config": {"shape": shape, "dtype": model.inputs[0].dtype, "keras_history": [source, 0, 0]},
                }
            ],
            "kwargs": {},
        }
    ]
    layers = config["layers"]
    cut = next(i for i, entry in enumerate(layers) if entry["name"] == source) + 1
    config["layers"] = layers[:cut] + [layer_config] + [_rewire(entry, source, layer.name) for entry in layers[cut:]]
    config["output_layers"] = _rewire(config["output_layers"], source, layer.name)
    rebuilt = model.__class__.from_config(config)
    for old in model.layers:
        if old.weights:
            rebuilt.get_layer(old.name).set_weights(old.get_weights())
    if getattr(model, "compiled", False) and model.get_compile_config():
        rebuilt.compile_from_config(model.get_compile_config())  # the same loss, metrics and optimizer settings
    return rebuilt
