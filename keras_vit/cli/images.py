"""The one image and model reader of the command line.

Every subcommand that reads image files (`predict`, `explain`) reads them here,
the same way (`model_inputs`), decoded by TensorFlow:

- a model that starts with `ImagePreprocessing` (trained, converted or tuned
  by this package, or built with `include_preprocessing=True`) gets pixels in
  [0, 255], resized as its layer records: the shorter side to
  `floor(size / crop_pct)` with its interpolation (antialiased), then the
  central crop of its input size (timm's evaluation transform); it
  normalises them itself;
- any other model gets the images resized (antialiased bilinear) to its input
  size, scaled to [0, 1] and normalised with the mean/std of the
  `preprocessing.json` beside it (`keras_vit.training.read_preprocessing`),
  as older `keras-vit train` runs wrote it.
"""

import os
import zipfile


def load_model_file(path, option="--model-file"):
    """A `.keras` file written by the package or its CLI, loaded in this process.

    `import keras_vit` registers every class those files use.
    """
    import keras

    import keras_vit  # noqa: F401  (registers the package's serializable classes)

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such model file. Received: {option} {path!r}")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a readable Keras file (truncated, or not a .keras zip archive). Received: {option} {path!r}"
        )
    return keras.saving.load_model(path, compile=False)


def model_image_shape(model):
    """`(height, width, channels)` of the model's image input; a clear error if not fixed."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise ValueError(f"The model's input size must be fixed to read images for it. Received: input_shape={shape}")
    if shape[-1] not in (1, 3, 4):
        raise ValueError(f"Only 1, 3 or 4 channels can be read from an image file. Received: channels={shape[-1]}")
    return shape


def read_images(paths, shape, option="IMAGE", interpolation="bilinear", crop_pct=None):
    """Image files as a float32 batch `(N, height, width, channels)` in [0, 1].

    With `crop_pct=None` each image is resized to `(height, width)`; with a
    fraction, its shorter side is resized to `floor(side / crop_pct)` keeping
    the aspect ratio (no resize when it already has that size), then the
    central `(height, width)` crop is taken, as timm's evaluation transform.
    """
    import numpy as np
    import tensorflow as tf

    height, width, channels = shape
    batch = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such image file. Received: {option}={path!r}")
        try:
            image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        except tf.errors.InvalidArgumentError:
            raise ValueError(f"Not a readable image file. Received: {option}={path!r}") from None
        image = tf.cast(image, tf.float32) / 255.0
        if crop_pct is None:
            image = tf.image.resize(image, (height, width), method=interpolation, antialias=interpolation != "nearest")
            image = image.numpy()
        else:
            # Bicubic overshoots; 8-bit resizers (PIL) clip, so does this.
            image = np.clip(_resize_and_crop(image, height, width, interpolation, crop_pct), 0.0, 1.0)
        batch.append(image)
    return np.stack(batch).astype("float32")


def _resize_and_crop(image, height, width, interpolation, crop_pct):
    import math

    import numpy as np
    import tensorflow as tf

    h, w = int(image.shape[0]), int(image.shape[1])
    scale = math.floor(min(height, width) / crop_pct) / min(h, w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    if size != (h, w):
        image = tf.image.resize(image, size, method=interpolation, antialias=interpolation != "nearest")
    image = np.asarray(image)
    top = int(round((size[0] - height) / 2.0))
    left = int(round((size[1] - width) / 2.0))
    return image[top : top + height, left : left + width]


def model_inputs(model, paths, preprocessing=None, option="IMAGE"):
    """The batch `model` takes for the image files `paths` (see the module docstring)."""
    from keras_vit.applications import model_preprocessing

    shape = model_image_shape(model)
    layer = model_preprocessing(model)
    if layer is not None:
        images = read_images(paths, shape, option, interpolation=layer.interpolation, crop_pct=layer.crop_pct)
        return images / layer.scale  # [0, 255] for the default scale, 1/255
    return normalize(read_images(paths, shape, option), preprocessing)


def dataset_normalization(model, preprocessing=None):
    """`keras_vit.data.load`'s `normalize=` for `model`: [0, 255] pixels for a model with its preprocessing inside."""
    from keras_vit.applications import model_preprocessing

    if model_preprocessing(model) is not None:
        return (0.0, 1.0 / 255.0)  # (x - 0) / (1/255): the [0, 1] pipeline images back in [0, 255]
    return (preprocessing["mean"], preprocessing["std"]) if preprocessing else True


def normalize(images, preprocessing):
    """`(images - mean) / std` with the statistics of `preprocessing.json`; unchanged without them."""
    import numpy as np

    if not preprocessing or preprocessing.get("mean") is None:
        return images
    mean = np.asarray(preprocessing["mean"], "float32")
    std = np.asarray(preprocessing["std"], "float32")
    return (images - mean) / std
