"""Argument checks, model inputs and outputs, and named variants shared by the model factories."""

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
        raise ValueError(f"`weights` must be None or a file path. Received: weights={weights!r}")
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
        return builder(
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            **{**config, **kwargs},
        )

    build.__name__ = build.__qualname__ = func_name
    build.__module__ = builder.__module__
    build.__doc__ = f"""{description}

    See `{builder.__name__}` for the arguments; other keyword arguments
    (`drop_path_rate`, ...) override the configuration.
    """
    return build
