"""The one image and model reader of the command line.

Every subcommand that reads image files (`predict`, `explain`) reads them here,
the same way: decoded by TensorFlow, resized with antialiased bilinear
interpolation to the model's input size, scaled to [0, 1], then normalised
with the mean/std that `keras-vit train` wrote beside the model
(`keras_vit.training.read_preprocessing`).
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


def read_images(paths, shape, option="IMAGE"):
    """Image files as a float32 batch `(N, height, width, channels)` in [0, 1]."""
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
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (height, width), antialias=True)
        batch.append(image.numpy())
    return np.stack(batch).astype("float32")


def normalize(images, preprocessing):
    """`(images - mean) / std` with the statistics of `preprocessing.json`; unchanged without them."""
    import numpy as np

    if not preprocessing or preprocessing.get("mean") is None:
        return images
    mean = np.asarray(preprocessing["mean"], "float32")
    std = np.asarray(preprocessing["std"], "float32")
    return (images - mean) / std
