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
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Examples read to estimate the per-channel mean and std of a large training set.
_MAX_STAT_EXAMPLES = 20000
_SHUFFLE_BUFFER = 20000


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

    Returns:
        A `DataBundle`.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    if not 0.0 <= float(validation_split) < 1.0:
        raise ValueError(f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"`channels` must be None, 1 or 3. Received: channels={channels!r}")
    image_size = _check_image_size(image_size)

    kind, target = _resolve(source)
    if kind == "tfds":
        splits, class_names, native_shape = _tfds_splits(target, validation_split, seed)
    elif kind == "folder":
        splits, class_names, native_shape = _folder_splits(target, image_size, channels, validation_split, seed)
    else:
        (x, y), (x_test, y_test), class_names = load_arrays(source)
        native_shape = x.shape[1:] if x.ndim == 4 else (*x.shape[1:], 1)
        (x, y), (x_val, y_val) = _split_arrays(x, y, validation_split, seed)
        splits = {
            "train": _array_split(x, y),
            "validation": _array_split(x_val, y_val) if len(x_val) else None,
            "test": _array_split(x_test, y_test) if x_test is not None else None,
        }
        splits["_dtype"] = x.dtype

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
    dtype = splits.pop("_dtype", None)
    value_scale = _value_scale(dtype if dtype is not None else splits["train"].dataset.element_spec[0].dtype)

    def prepare(images, labels):
        images = tf.cast(images, tf.float32) / value_scale
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


def load_arrays(source):
    """Loads an in-memory source as NumPy arrays.

    Args:
        source: `"digits"`, a `.npz` path or a folder with `train.npz` and
            `test.npz`.

    Returns:
        `(x_train, y_train), (x_test, y_test), class_names`; images as
        stored (uint8 `(N, H, W)` or `(N, H, W, C)` for the .npz files,
        float32 in [0, 1] `(N, 8, 8, 1)` for digits), labels int32;
        `x_test`/`y_test` are None when the source has no test set.
    """
    kind, target = _resolve(source)
    if kind == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x = (digits.images / 16.0).astype("float32")[..., None]
        y = digits.target.astype("int32")
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
        return (x_train, y_train), (x_test, y_test), [str(i) for i in range(10)]
    if kind == "npz":
        with np.load(target, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        x, y = _require(arrays, ("x", "y"), target)
        x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
        names = arrays.get("class_names")
    elif kind == "npz_pair":
        arrays = {}
        for split in ("train", "test"):
            with np.load(os.path.join(target, f"{split}.npz"), allow_pickle=False) as data:
                arrays[split] = {key: data[key] for key in data.files}
        x, y = _require(arrays["train"], ("x", "y"), os.path.join(target, "train.npz"))
        x_test, y_test = _require(arrays["test"], ("x", "y"), os.path.join(target, "test.npz"))
        names = arrays["train"].get("class_names")
    else:
        raise ValueError(
            "`load_arrays` reads in-memory sources only (digits, .npz). "
            f"Received: source={source!r}, a {kind} source; use `load`."
        )
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length in source={source!r}: {len(x)} != {len(y)}")
    if x.ndim not in (3, 4):
        raise ValueError(
            f"`x` must have shape (N, H, W) or (N, H, W, C). Received: x.shape={x.shape} in source={source!r}"
        )
    y = y.astype("int32").reshape(-1)
    if y_test is not None:
        y_test = y_test.astype("int32").reshape(-1)
    if names is None:
        top = int(max(y.max(), y_test.max() if y_test is not None and len(y_test) else 0))
        names = [str(i) for i in range(top + 1)]
    return (x, y), (x_test, y_test), [str(n) for n in names]


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


def _value_scale(dtype):
    """Integer images are scaled from [0, 255] to [0, 1]; float images are taken as in [0, 1]."""
    return 255.0 if tf.as_dtype(dtype).is_integer else 1.0


def _array_split(x, y):
    return _Split(tf.data.Dataset.from_tensor_slices((x, y)), len(x))


def _split_arrays(x, y, validation_split, seed):
    """Holds out `validation_split` of (x, y), stratified by class where every class allows it."""
    n_val = int(round(len(x) * validation_split))
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
    if train is None:
        raise ValueError(f"The tfds dataset has no 'train' split. Received: source='tfds:{name}'")
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
    paths, labels = [], []
    for index, name in enumerate(classes):
        folder = os.path.join(root, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(_IMAGE_EXTENSIONS))
        paths += [os.path.join(folder, f) for f in files]
        labels += [index] * len(files)
    return classes, np.array(paths), np.array(labels, "int32")


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
    # Size and channels of the first image fix those of the folder when not given.
    first = tf.io.decode_image(tf.io.read_file(paths[0]), expand_animations=False)
    native_shape = tuple(first.shape)
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
