"""The data a search trains on: arrays, `tf.data` datasets, `keras_vit.data` bundles or source strings,
turned into `fit` arguments, the input shape, the number of classes and the steps per epoch."""

import dataclasses
import math
import os

import numpy as np


@dataclasses.dataclass
class PreparedData:
    """What a search passes to `tuner.search` and needs to know of its data.

    Attributes:
        fit_args: positional `fit` arguments (the training data).
        fit_kwargs: keyword `fit` arguments (`validation_data`, `batch_size`).
        input_shape: `(H, W, C)`, or None when a dataset does not say.
        classes: int, or None when unknown.
        steps_per_epoch: optimizer steps per epoch (None when a dataset's
            cardinality is unknown); with the epochs, the length of the
            learning-rate schedule.
        source: the data source string, when the data came from one (what
            `keras-vit train --data` takes to train on the same data).
        mean, std: per-channel statistics the images were normalised with
            after scaling to [0, 1] (zeros and ones for arrays, which are only
            scaled); None when unknown (a `tf.data.Dataset`).
    """

    fit_args: tuple
    fit_kwargs: dict
    input_shape: tuple
    classes: int
    steps_per_epoch: int = None
    source: str = None
    mean: tuple = None
    std: tuple = None


def _as_float_images(x):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype("float32") / 255.0
    return x.astype("float32")


def _with_channels(x):
    return x[..., None] if x.ndim == 3 else x


def prepare_data(data, validation_data, classes, batch_size, validation_split, image_size, seed, classes_required=True):
    """The `PreparedData` of `run_search`'s data arguments (see `run_search`)."""
    from keras_vit import training

    source = None
    if isinstance(data, (str, os.PathLike)):
        source = os.fspath(data)
        data = _load_source(source, image_size, batch_size, validation_split, seed)
    if image_size is not None and isinstance(data, tuple) and isinstance(data[0], np.ndarray):
        raise ValueError("`image_size` applies to source strings only; resize arrays beforehand.")
    if hasattr(data, "train") and hasattr(data, "validation"):
        if data.validation is None:
            raise ValueError("The data bundle has no validation split; the search needs one.")
        return PreparedData(
            (data.train,),
            {"validation_data": data.validation},
            tuple(data.input_shape),
            int(classes or data.num_classes),
            training.steps_per_epoch(data),
            source,
            tuple(data.mean) if getattr(data, "mean", None) else None,
            tuple(data.std) if getattr(data, "std", None) else None,
        )
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _is_dataset(data[0]):
        x, y = _with_channels(_as_float_images(data[0])), np.asarray(data[1])
        if validation_data is None:
            if not 0 < validation_split < 1:
                raise ValueError(
                    "Without `validation_data`, `validation_split` must be in (0, 1). "
                    f"Received: validation_split={validation_split}"
                )
            order = np.random.default_rng(seed).permutation(len(x))
            n_val = max(1, int(round(len(x) * validation_split)))
            val, train = order[:n_val], order[n_val:]
            validation_data = (x[val], y[val])
            x, y = x[train], y[train]
        else:
            validation_data = (_with_channels(_as_float_images(validation_data[0])), np.asarray(validation_data[1]))
        if classes is None:
            classes = int(max(y.max(), validation_data[1].max())) + 1 if y.ndim == 1 else int(y.shape[-1])
        return PreparedData(
            (x, y),
            {"validation_data": validation_data, "batch_size": batch_size},
            tuple(x.shape[1:]),
            int(classes),
            math.ceil(len(x) / batch_size),
            mean=(0.0,) * int(x.shape[-1]),
            std=(1.0,) * int(x.shape[-1]),
        )
    if _is_dataset(data):
        if validation_data is None:
            raise ValueError("A `tf.data.Dataset` needs `validation_data` (a dataset of the same structure).")
        if classes is None and classes_required:
            raise ValueError("A `tf.data.Dataset` needs `classes` (the number of classes).")
        spec = data.element_spec[0]
        shape = tuple(spec.shape[1:]) if hasattr(spec, "shape") else None
        cardinality = int(data.cardinality())
        return PreparedData(
            (data,), {"validation_data": validation_data}, shape, classes, cardinality if cardinality > 0 else None
        )
    raise ValueError(
        "`data` must be a source string, a keras_vit.data bundle, an (x, y) pair of arrays or a "
        f"batched tf.data.Dataset. Received: data of type {type(data).__name__}"
    )


def _load_source(source, image_size, batch_size, validation_split, seed):
    from keras_vit import data as data_module

    return data_module.load(
        source,
        image_size=image_size,
        batch_size=batch_size,
        validation_split=validation_split,
        seed=seed,
    )


def _is_dataset(obj):
    return type(obj).__module__.startswith("tensorflow") and hasattr(obj, "element_spec")
