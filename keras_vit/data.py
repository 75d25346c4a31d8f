"""Input pipelines: datasets → batched, resized, normalised, augmented `tf.data`.

Sources:

- `"digits"`: scikit-learn's `load_digits` (1,797 8×8 grayscale digits, 10
  classes). It ships inside the scikit-learn wheel, so it works offline; it is
  the embedded default of the demo and the tests. A fixed stratified 80/20
  split (seed 0) gives its train and test sets.
- a `.npz` file with arrays `x`, `y` and optionally `x_test`, `y_test` and
  `class_names`;
- a folder holding `train.npz` and `test.npz` (each with `x`, `y`), the layout
  of the MNIST and CIFAR-10 copies used by the benchmarks;
- an image folder with one sub-folder per class (`root/cat/1.png`), or with
  `train/` and `test/` folders each laid out that way;
- `"tfds:<name>"`, a TensorFlow Datasets dataset (`"tfds:mnist"`), read with
  `as_supervised=True`; its `train` split trains and its `test` split (if any)
  tests.

Everything after reading runs inside `tf.data`: scaling to [0, 1], channel
conversion, resizing, augmentation (random crop after zero padding, and
horizontal flip) and normalisation by a per-channel mean and standard
deviation (computed from the training images, or given).

Every source is validated once, at load, before anything trains, and a
`ValueError` names the array (or file) and what was found:

- images: finite values only; their scale follows from the dtype: uint8 is
  [0, 255]; float images are taken as already in [0, 1] (values up to 0.5
  outside are tolerated), and a float array with values beyond that, a
  uint16 array or another integer array with values outside [0, 255] is an
  error unless `value_range=(low, high)` declares the scale;
- labels: integer class ids 0..K-1 of shape `(N,)` (or `(N, 1)`); negative,
  non-integer or 2-D (one-hot) labels are errors, so are ids with gaps
  ({0, 1000}) when no `class_names` declare K, and test ids the training set
  lacks; at least 2 classes; no empty split; `x_test` only with `y_test`;
- image folders: every file is decoded once before training, and the files
  that cannot be read are named; a class folder without images is an error.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Examples read to estimate the per-channel mean and std of a large training set.
_MAX_STAT_EXAMPLES = 20000
_SHUFFLE_BUFFER = 20000
# Float images are taken as scaled to [0, 1]; this much slack (resampling overshoot, noise) is
# tolerated before the values are taken as being on another scale, such as [0, 255].
_FLOAT_SLACK = 0.5
# Bad image files named in an error; the rest are counted.
_MAX_NAMED_FILES = 5


@dataclasses.dataclass
class DataBundle:
    """What `load` returns.

    Attributes:
        train: `tf.data.Dataset` of `(images, labels)` batches, images float32
            `(B, H, W, C)`, labels int32 `(B,)`; shuffled (and augmented when
            asked) every epoch.
        validation: the same for the validation split, or None when
            `validation_split=0` and the source has none.
        test: the same for the test split, or None when the source has none.
        num_classes: int.
        input_shape: `(H, W, C)` of the images after resizing.
        class_names: list of str, index = label.
        num_train: number of training examples.
        num_validation: number of validation examples.
        num_test: number of test examples.
        mean: per-channel mean subtracted from the [0, 1]-scaled images
            (a tuple of C floats; zeros when `normalize=False`).
        std: per-channel std the images are divided by (ones when
            `normalize=False`).
        batch_size: the batch size of the splits.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple
    class_names: list
    num_train: int
    num_validation: int = 0
    num_test: int = 0
    mean: tuple = ()
    std: tuple = ()
    batch_size: int = 0


@dataclasses.dataclass
class _Split:
    """An unbatched dataset of raw `(image, label)` pairs and its size."""

    dataset: tf.data.Dataset
    size: int


def load(
    source,
    *,
    image_size=None,
    batch_size=64,
    validation_split=0.1,
    augment=False,
    normalize=True,
    seed=0,
    channels=None,
    flip=None,
    value_range=None,
):
    """Loads `source` as batched `tf.data` pipelines.

    Args:
        source: `"digits"`, `"tfds:<name>"`, a `.npz` path, a folder with
            `train.npz`/`test.npz`, or an image folder (see the module doc).
        image_size: None (keep the source's size), an int (square) or
            `(height, width)`; images are resized (bilinear) to it.
        batch_size: int, batch size of every split.
        validation_split: float in [0, 1), the fraction of the training set
            held out (stratified by class for in-memory sources) as
            validation set. A tfds `validation` split is used instead when the
            dataset has one.
        augment: bool, random crop (after zero padding by 1/8 of the side)
            and horizontal flip of the training images.
        normalize: True (subtract the training set's per-channel mean and
            divide by its std, after scaling to [0, 1]), False (only scale to
            [0, 1]) or a `(mean, std)` pair of floats or per-channel sequences.
        seed: int, seed of the validation split, shuffling and augmentation.
        channels: None (keep), 1 (convert to grayscale) or 3 (convert to RGB).
        flip: whether `augment` flips horizontally. None (default) flips
            natively three-channel images only: digits and other grayscale
            characters are not mirror-symmetric.
        value_range: None (the scale follows from the dtype: uint8 is
            [0, 255], float is [0, 1]) or a `(low, high)` pair declaring the
            scale of array or tfds images, mapped linearly to [0, 1] (e.g.
            `(0, 255)` for float pixels, `(0, 65535)` for uint16). Image
            files are always 8-bit and take None.

    Returns:
        A `DataBundle`.

    Raises:
        ValueError: for invalid arguments and for data that fails the checks
            of the module doc (non-finite or out-of-scale images, bad labels,
            empty splits, unreadable image files).
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    if not 0.0 <= float(validation_split) < 1.0:
        raise ValueError(f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"`channels` must be None, 1 or 3. Received: channels={channels!r}")
    image_size = _check_image_size(image_size)
    value_range = _check_value_range(value_range)

    kind, target = _resolve(source)
    if kind == "tfds":
        splits, class_names, native_shape = _tfds_splits(target, validation_split, seed)
        scale = _dtype_range(splits["train"].dataset.element_spec[0].dtype, source, value_range)
    elif kind == "folder":
        if value_range is not None:
            raise ValueError(
                "Image files are decoded as 8-bit pixels; `value_range` applies to array and tfds sources. "
                f"Received: value_range={value_range!r} for the image folder source={source!r}"
            )
        splits, class_names, native_shape = _folder_splits(target, image_size, channels, validation_split, seed)
        scale = (0.0, 255.0)
    else:
        (x, y), (x_test, y_test), class_names, scale = _load_arrays(source, value_range)
        native_shape = x.shape[1:] if x.ndim == 4 else (*x.shape[1:], 1)
        (x, y), (x_val, y_val) = _split_arrays(x, y, validation_split, seed)
        splits = {
            "train": _array_split(x, y),
            "validation": _array_split(x_val, y_val) if len(x_val) else None,
            "test": _array_split(x_test, y_test) if x_test is not None else None,
        }

    native_channels = int(native_shape[-1])
    out_channels = channels or native_channels
    if image_size is None:
        if native_shape[0] is None or native_shape[1] is None:
            raise ValueError(
                f"The images of source={source!r} vary in size: pass `image_size`. Received: image_size=None"
            )
        image_size = (int(native_shape[0]), int(native_shape[1]))
    input_shape = (image_size[0], image_size[1], out_channels)
    if flip is None:
        flip = native_channels == 3
    low, high = scale

    def prepare(images, labels):
        images = (tf.cast(images, tf.float32) - low) / (high - low)
        if images.shape.rank == 3:  # (B, H, W) grayscale arrays
            images = images[..., None]
        if images.shape[-1] != out_channels:
            images = tf.image.rgb_to_grayscale(images) if out_channels == 1 else tf.image.grayscale_to_rgb(images)
        if tuple(images.shape[1:3]) != image_size:
            images = tf.image.resize(images, image_size, antialias=True)
        images = tf.ensure_shape(images, (None,) + input_shape)
        return images, tf.cast(labels, tf.int32)

    mean, std = _normalization(normalize, splits["train"], prepare, out_channels)
    mean_t = tf.constant(mean, tf.float32)
    std_t = tf.constant(std, tf.float32)
    pad = max(1, image_size[0] // 8), max(1, image_size[1] // 8)

    def make(split, training):
        if split is None:
            return None
        ds = split.dataset
        if training:
            ds = ds.shuffle(min(split.size, _SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        if training and augment:
            ds = ds.map(lambda x, y: (_augment_batch(x, pad, flip), y), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(lambda x, y: ((x - mean_t) / std_t, y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    return DataBundle(
        train=make(splits["train"], True),
        validation=make(splits["validation"], False),
        test=make(splits["test"], False),
        num_classes=len(class_names),
        input_shape=input_shape,
        class_names=list(class_names),
        num_train=splits["train"].size,
        num_validation=splits["validation"].size if splits["validation"] else 0,
        num_test=splits["test"].size if splits["test"] else 0,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        batch_size=int(batch_size),
    )


def load_arrays(source, value_range=None):
    """Loads an in-memory source as NumPy arrays, validated as `load` does.

    Args:
        source: `"digits"`, a `.npz` path or a folder with `train.npz` and
            `test.npz`.
        value_range: None or the `(low, high)` scale of the images; see
            `load`.

    Returns:
        `(x_train, y_train), (x_test, y_test), class_names`; images as
        stored (uint8 `(N, H, W)` or `(N, H, W, C)` for the .npz files,
        float32 in [0, 1] `(N, 8, 8, 1)` for digits), labels int32;
        `x_test`/`y_test` are None when the source has no test set.

    Raises:
        ValueError: for arrays that fail the checks of the module doc.
    """
    arrays, test, names, _ = _load_arrays(source, _check_value_range(value_range))
    return arrays, test, names


def _load_arrays(source, value_range):
    """`load_arrays`, plus the `(low, high)` image scale that maps to [0, 1]."""
    kind, target = _resolve(source)
    if kind == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = (digits.images / 16.0).astype("float32")[..., None]
        y = digits.target.astype("int32")
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
        return (x_train, y_train), (x_test, y_test), [str(i) for i in range(10)], (0.0, 1.0)
    if kind == "npz":
        arrays = _read_npz(target)
        x, y = _require(arrays, ("x", "y"), target)
        x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
        if (x_test is None) != (y_test is None):
            given, lacking = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
            raise ValueError(
                f"{target!r} has `{given}` but no `{lacking}`: a test set needs both. Received: source={target!r}"
            )
        names = arrays.get("class_names")
    elif kind == "npz_pair":
        arrays = {split: _read_npz(os.path.join(target, f"{split}.npz")) for split in ("train", "test")}
        x, y = _require(arrays["train"], ("x", "y"), os.path.join(target, "train.npz"))
        x_test, y_test = _require(arrays["test"], ("x", "y"), os.path.join(target, "test.npz"))
        names = arrays["train"].get("class_names")
    else:
        raise ValueError(
            "`load_arrays` reads in-memory sources only (digits, .npz). "
            f"Received: source={source!r}, a {kind} source; use `load`."
        )
    if x.ndim not in (3, 4):
        raise ValueError(
            f"`x` must have shape (N, H, W) or (N, H, W, C). Received: x.shape={x.shape} in source={source!r}"
        )
    if x_test is not None and x_test.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"`x_test` must have the image shape of `x`, {x.shape[1:]}. "
            f"Received: x_test.shape={x_test.shape} in source={source!r}"
        )
    scale = _image_range(x, "x", source, value_range)
    if x_test is not None and _image_range(x_test, "x_test", source, value_range) != scale:
        raise ValueError(
            f"`x` and `x_test` must be on one scale; store both as uint8 or both as floats in [0, 1]. "
            f"Received: x.dtype={x.dtype}, x_test.dtype={x_test.dtype} in source={source!r}"
        )
    y = _check_labels(y, "y", len(x), source)
    if names is None:
        present = np.unique(y)
        num_classes = int(present[-1]) + 1
        if len(present) != num_classes:
            missing = np.setdiff1d(np.arange(min(num_classes, len(present) + _MAX_NAMED_FILES)), present)
            raise ValueError(
                f"The labels `y` must be the class ids 0..K-1, each present in the training set; "
                f"{num_classes - len(present)} ids are missing (first: {missing[:_MAX_NAMED_FILES].tolist()}). "
                "Remap them with `classes, y = np.unique(y, return_inverse=True)`, or store `class_names` "
                f"to declare the classes. Received: {len(present)} distinct ids from {int(present[0])} "
                f"to {int(present[-1])} in source={source!r}"
            )
        names = [str(i) for i in range(num_classes)]
    else:
        names = np.asarray(names).reshape(-1)
        num_classes = len(names)
        if y.max() >= num_classes:
            raise ValueError(
                f"The labels `y` must be class ids below the {num_classes} `class_names`. "
                f"Received: a label {int(y.max())} in source={source!r}"
            )
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: {num_classes} class in source={source!r}")
    if y_test is not None:
        y_test = _check_labels(y_test, "y_test", len(x_test), source)
        if y_test.max() >= num_classes:
            raise ValueError(
                f"The labels `y_test` must be class ids of the training set, 0..{num_classes - 1}. "
                f"Received: a label {int(y_test.max())} in source={source!r}"
            )
    return (x, y), (x_test, y_test), [str(n) for n in names], scale


def _read_npz(path):
    """The arrays of a .npz file; a corrupt, truncated or foreign file is a ValueError naming it."""
    import zipfile

    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not a .npz archive")
        with data:
            return {key: data[key] for key in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        # Object arrays (which would unpickle code) are refused by `allow_pickle=False` here too.
        raise ValueError(f"Cannot read the .npz archive ({error}). Received: source={os.fspath(path)!r}") from None


def _check_value_range(value_range):
    if value_range is None:
        return None
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(
            f"`value_range` must be None or a (low, high) pair of finite numbers with low < high. "
            f"Received: value_range={value_range!r}"
        )
    return (low, high)


def _image_range(x, name, source, value_range):
    """The `(low, high)` scale of the images `x`, mapped to [0, 1] by `load`.

    Images must be finite and on the scale their dtype declares (uint8:
    [0, 255], float: [0, 1]) or `value_range` gives; anything else is an
    error rather than a guess, since a wrong scale trains without a warning
    and predicts the same class for every image.
    """
    if len(x) == 0:
        raise ValueError(f"`{name}` holds no images. Received: {name}.shape={x.shape} in source={source!r}")
    if x.dtype.kind not in "uif":
        raise ValueError(f"`{name}` must hold numeric pixels. Received: {name}.dtype={x.dtype} in source={source!r}")
    if x.dtype.kind == "f":
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise ValueError(
                f"`{name}` holds {bad} non-finite values (NaN or inf) in {x.size} pixels; fix or drop those "
                f"images. Received: {name} with {bad} non-finite values in source={source!r}"
            )
    lo, hi = float(x.min()), float(x.max())
    found = f"Received: {name}.dtype={x.dtype} with values in [{lo:g}, {hi:g}] in source={source!r}"
    if value_range is not None:
        if lo < value_range[0] or hi > value_range[1]:
            raise ValueError(f"`{name}` has values outside value_range={value_range}. {found}")
        return value_range
    if x.dtype == np.uint8:
        return (0.0, 255.0)
    if x.dtype.kind == "f":
        if lo >= -_FLOAT_SLACK and hi <= 1.0 + _FLOAT_SLACK:
            return (0.0, 1.0)
        raise ValueError(
            f"Float images are taken as scaled to [0, 1], but `{name}` is not: divide 8-bit pixels by 255 "
            f"(or store them as uint8), or pass value_range=(low, high) to declare their scale. {found}"
        )
    if x.dtype != np.uint16 and lo >= 0 and hi <= 255:
        return (0.0, 255.0)  # 8-bit pixels in a wider integer type, as np.array of Python ints gives
    raise ValueError(
        f"Integer images are taken as 8-bit, [0, 255], but `{name}` is not: convert them to uint8 "
        f"(e.g. `x >> 8` for 16-bit pixels), or pass value_range=(low, high), e.g. (0, 65535), to declare "
        f"their scale. {found}"
    )


def _dtype_range(dtype, source, value_range):
    """The image scale of a source known only by its dtype (tfds): uint8 or float, or declared."""
    dtype = tf.as_dtype(dtype)
    if value_range is not None:
        return value_range
    if dtype == tf.uint8:
        return (0.0, 255.0)
    if dtype.is_floating:
        return (0.0, 1.0)
    raise ValueError(
        f"Only uint8 or float images have a known scale; pass value_range=(low, high) for {dtype.name} images. "
        f"Received: image dtype {dtype.name} in source={source!r}"
    )


def _check_labels(y, name, count, source):
    """Integer class ids `(N,)` as int32, or a ValueError saying what is wrong with them."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = " If they are one-hot, store `y.argmax(axis=1)`." if y.ndim == 2 else ""
        raise ValueError(
            f"`{name}` must be integer class ids of shape (N,).{hint} Received: {name}.shape={y.shape} "
            f"in source={source!r}"
        )
    if len(y) != count:
        raise ValueError(
            f"`{name}` must hold one label per image ({count}). Received: {len(y)} labels in source={source!r}"
        )
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise ValueError(
                f"`{name}` must be integer class ids. Received: {int(bad.sum())} non-integer labels "
                f"(first: {y[bad][0].item()!r}) in source={source!r}"
            )
    elif y.dtype.kind not in "uib":
        raise ValueError(
            f"`{name}` must be integer class ids; map names to ids 0..K-1 and store them in `class_names`. "
            f"Received: {name}.dtype={y.dtype} in source={source!r}"
        )
    if y.min() < 0:
        raise ValueError(
            f"`{name}` must be class ids 0..K-1. Received: a negative label {y.min().item()!r} in source={source!r}"
        )
    if y.max() > np.iinfo(np.int32).max:
        raise ValueError(
            f"`{name}` holds a class id too large for int32. Received: {y.max().item()!r} in source={source!r}"
        )
    return y.astype("int32")


def _require(arrays, keys, path):
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"{path!r} lacks the arrays {missing}; it has {sorted(arrays)}. Received: source={path!r}")
    return tuple(arrays[k] for k in keys)


def _resolve(source):
    """Returns `(kind, target)`: digits, tfds, npz, npz_pair or folder."""
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"`source` must be a string or path. Received: source={source!r}")
    text = os.fspath(source)
    if text == "digits":
        return "digits", None
    if text.startswith("tfds:"):
        name = text[len("tfds:") :]
        if not name:
            raise ValueError(f"`source` needs a dataset name after 'tfds:'. Received: source={text!r}")
        return "tfds", name
    if os.path.isfile(text):
        if text.endswith(".npz"):
            return "npz", text
        raise ValueError(f"A file `source` must be a .npz archive. Received: source={text!r}")
    if os.path.isdir(text):
        if os.path.isfile(os.path.join(text, "train.npz")) and os.path.isfile(os.path.join(text, "test.npz")):
            return "npz_pair", text
        return "folder", text
    if text.endswith(".npz") or os.sep in text or text.startswith("."):
        raise FileNotFoundError(f"No such file or folder. Received: source={text!r}")
    raise ValueError(
        "Unknown data source. Expected 'digits', 'tfds:<name>', a .npz file, a folder with train.npz and "
        f"test.npz, or an image folder with one sub-folder per class. Received: source={text!r}"
    )


def _check_image_size(image_size):
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise ValueError(
            f"`image_size` must be None, a positive int or (height, width). Received: image_size={image_size!r}"
        )
    return tuple(int(s) for s in size)


def _array_split(x, y):
    return _Split(tf.data.Dataset.from_tensor_slices((x, y)), len(x))


def _split_arrays(x, y, validation_split, seed):
    """Holds out `validation_split` of (x, y), stratified by class where every class allows it."""
    n_val = int(round(len(x) * validation_split))
    if n_val >= len(x):
        raise ValueError(
            f"`validation_split` leaves no training examples of {len(x)}. Received: validation_split={validation_split!r}"
        )
    if n_val == 0:
        return (x, y), (x[:0], y[:0])
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() >= 2 and n_val >= len(classes):
        from sklearn.model_selection import train_test_split

        idx_train, idx_val = train_test_split(np.arange(len(x)), test_size=n_val, stratify=y, random_state=seed)
    else:
        order = rng.permutation(len(x))
        idx_val, idx_train = order[:n_val], order[n_val:]
    idx_train, idx_val = np.sort(idx_train), np.sort(idx_val)
    return (x[idx_train], y[idx_train]), (x[idx_val], y[idx_val])


def _normalization(normalize, train_split, prepare, channels):
    """The per-channel (mean, std) as float lists."""
    if normalize is False or normalize is None:
        return [0.0] * channels, [1.0] * channels
    if normalize is True:
        count = min(train_split.size, _MAX_STAT_EXAMPLES)
        total = np.zeros(channels)
        total_sq = np.zeros(channels)
        pixels = 0
        for images, _ in train_split.dataset.take(count).batch(1024).map(prepare):
            images = images.numpy().astype("float64").reshape(-1, channels)
            total += images.sum(0)
            total_sq += (images**2).sum(0)
            pixels += len(images)
        mean = total / pixels
        if not np.all(np.isfinite(total_sq)):
            # Sources checked only by dtype (tfds) can still hold NaN or inf pixels; the
            # statistics would then turn every normalised image into NaN.
            raise ValueError(
                f"The training images hold non-finite values (NaN or inf): their mean is {mean.tolist()}. "
                "Fix or drop those images."
            )
        std = np.sqrt(np.maximum(total_sq / pixels - mean**2, 0.0))
        return mean.tolist(), np.maximum(std, 1e-6).tolist()
    try:
        mean, std = normalize
        mean = np.broadcast_to(np.asarray(mean, "float64"), (channels,))
        std = np.broadcast_to(np.asarray(std, "float64"), (channels,))
    except (TypeError, ValueError):
        raise ValueError(
            "`normalize` must be True, False or a (mean, std) pair of floats or per-channel sequences "
            f"of length {channels}. Received: normalize={normalize!r}"
        ) from None
    if np.any(std <= 0):
        raise ValueError(f"The std of `normalize` must be positive. Received: normalize={normalize!r}")
    return mean.tolist(), std.tolist()


def _augment_batch(images, pad, flip):
    """Random crop of each image after zero padding by `pad`, and optional horizontal flip.

    Vectorised over the batch: each image gets its own offsets, gathered
    with `batch_dims=1`.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [pad[0], pad[0]], [pad[1], pad[1]], [0, 0]])
    dy = tf.random.uniform((batch,), 0, 2 * pad[0] + 1, dtype=tf.int32)
    dx = tf.random.uniform((batch,), 0, 2 * pad[1] + 1, dtype=tf.int32)
    rows = dy[:, None] + tf.range(height)[None, :]
    cols = dx[:, None] + tf.range(width)[None, :]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    if flip:
        mirror = tf.random.uniform((batch, 1, 1, 1)) < 0.5
        out = tf.where(mirror, tf.reverse(out, axis=[2]), out)
    return tf.ensure_shape(out, images.shape)


def _tfds_splits(name, validation_split, seed):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except Exception as error:  # tfds raises its own DatasetNotFoundError
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"Unknown TensorFlow Datasets name ({first_line}). Received: source='tfds:{name}'") from None
    info = builder.info
    keys = list(info.supervised_keys or ())
    if len(keys) != 2:
        raise ValueError(f"The tfds dataset has no (image, label) supervised keys. Received: source='tfds:{name}'")
    label_feature = info.features[keys[1]]
    class_names = list(getattr(label_feature, "names", None) or [str(i) for i in range(label_feature.num_classes)])
    native_shape = tuple(info.features[keys[0]].shape)
    available = dict(info.splits)

    def read(split):
        # Without prepared metadata (e.g. under tfds.testing.mock_data) the split list is
        # empty: try the split and count it.
        if available and split not in available:
            return None
        try:
            ds = tfds.load(name, split=split, as_supervised=True, shuffle_files=False)
        except (KeyError, ValueError):
            if available:
                raise
            return None
        if split in available:
            size = available[split].num_examples
        else:
            size = int(ds.cardinality())
            if size < 0:
                size = int(ds.reduce(0, lambda n, _: n + 1))
        return _Split(ds, size)

    train = read("train")
    if train is None or train.size == 0:
        raise ValueError(f"The tfds dataset has no (or an empty) 'train' split. Received: source='tfds:{name}'")
    validation = read("validation")
    if validation is None and validation_split > 0:
        n_val = int(round(train.size * validation_split))
        # shuffle_files=False keeps the order fixed, so take/skip split it the same way every epoch.
        validation = _Split(train.dataset.take(n_val), n_val)
        train = _Split(train.dataset.skip(n_val), train.size - n_val)
    test = read("test")
    return {"train": train, "validation": validation, "test": test}, class_names, native_shape


def _list_image_folder(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    paths, labels, empty = [], [], []
    for index, name in enumerate(classes):
        folder = os.path.join(root, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(_IMAGE_EXTENSIONS))
        paths += [os.path.join(folder, f) for f in files]
        labels += [index] * len(files)
        if not files:
            empty.append(folder)
    if paths and empty:
        # A class without images would still get an output unit that nothing trains.
        raise ValueError(
            f"Every class folder must hold {_IMAGE_EXTENSIONS} files; {empty} hold none. Received: source={root!r}"
        )
    return classes, np.array(paths), np.array(labels, "int32")


def _check_image_files(paths, source):
    """Decodes every file once, before training; returns the shape of each, or names the unreadable ones.

    The decoder is the pipeline's (`tf.io.decode_image`), so a file that passes
    here decodes there too. A file that fails is dropped by `ignore_errors`,
    and the paths missing from the output are the bad ones.
    """

    def probe(path):
        return path, tf.shape(tf.io.decode_image(tf.io.read_file(path), expand_animations=False))

    ds = tf.data.Dataset.from_tensor_slices(paths).map(probe, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    shapes = {}
    for batch_paths, batch_shapes in ds.ignore_errors().batch(1024):
        for path, shape in zip(batch_paths.numpy(), batch_shapes.numpy()):
            shapes[os.fsdecode(path)] = tuple(int(v) for v in shape)
    bad = [str(p) for p in paths if str(p) not in shapes]
    if bad:
        more = f" and {len(bad) - _MAX_NAMED_FILES} more" if len(bad) > _MAX_NAMED_FILES else ""
        raise ValueError(
            f"{len(bad)} of {len(paths)} image files cannot be read or decoded (corrupt, truncated or not an "
            f"image): {bad[:_MAX_NAMED_FILES]}{more}. Fix or remove them. Received: source={source!r}"
        )
    return shapes


def _folder_splits(root, image_size, channels, validation_split, seed):
    sub = {d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))}
    if {"train", "test"} <= sub and all(
        os.path.isdir(os.path.join(root, "train", d)) for d in os.listdir(os.path.join(root, "train"))
    ):
        classes, paths, labels = _list_image_folder(os.path.join(root, "train"))
        test_classes, test_paths, test_labels = _list_image_folder(os.path.join(root, "test"))
        if test_classes != classes:
            raise ValueError(f"The class folders of train/ and test/ differ in source={root!r}")
    else:
        classes, paths, labels = _list_image_folder(root)
        test_paths = None
    if not len(paths):
        raise ValueError(
            f"No images found: the image folder must hold one sub-folder of {_IMAGE_EXTENSIONS} files per class. "
            f"Received: source={root!r}"
        )
    if len(classes) < 2:
        raise ValueError(
            f"A classifier needs at least 2 class folders. Received: {len(classes)} ({classes}) in source={root!r}"
        )
    shapes = _check_image_files(np.concatenate([paths, test_paths]) if test_paths is not None else paths, root)
    # Size and channels of the first image fix those of the folder when not given.
    native_shape = shapes[str(paths[0])]
    size = image_size or native_shape[:2]
    read_channels = channels or native_shape[-1]
    if read_channels not in (1, 3):
        read_channels = 3

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=read_channels, expand_animations=False)
        image = tf.image.resize(image, size, antialias=True)  # float32 in [0, 255]
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    def split(p, y):
        ds = tf.data.Dataset.from_tensor_slices((p, y)).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        return _Split(ds, len(p))

    (paths, labels), (val_paths, val_labels) = _split_arrays(paths, labels, validation_split, seed)
    splits = {
        "train": split(paths, labels),
        "validation": split(val_paths, val_labels) if len(val_paths) else None,
        "test": split(test_paths, test_labels) if test_paths is not None else None,
    }
    return splits, classes, (size[0], size[1], read_channels)
