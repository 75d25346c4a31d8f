"""The devices a search runs on: GPUs per backend, the tf.distribute strategy, mixed precision."""

import contextlib

import keras


def gpu_devices():
    """The GPUs the active Keras backend sees (`keras_vit.training.gpu_devices`, the one place that asks).

    Keras places models on the first GPU by itself; several GPUs are used
    together on TensorFlow (see `select_strategy`).
    """
    from keras_vit import training

    return training.gpu_devices()


def select_strategy(gpus=None):
    """A `tf.distribute` strategy for the GPUs found, or None for the default device.

    Several GPUs: `MirroredStrategy` over all of them (data parallel, one
    replica per GPU) on TensorFlow. One GPU or none, or another backend: None
    (Keras places the model on the first GPU by itself).

    Args:
        gpus: list of physical devices; defaults to `gpu_devices()`.
    """
    gpus = gpu_devices() if gpus is None else list(gpus)
    if len(gpus) < 2 or keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    names = [f"/gpu:{i}" for i in range(len(gpus))]
    return tf.distribute.MirroredStrategy(devices=names)


def resolve_mixed_precision(setting="auto", gpus=None):
    """Whether to train in mixed precision: "auto" means on with a GPU, off on CPU."""
    if setting in ("auto", None):
        gpus = gpu_devices() if gpus is None else gpus
        return len(gpus) > 0
    if isinstance(setting, bool):
        return setting
    if setting in ("on", "off"):
        return setting == "on"
    raise ValueError(f"`mixed_precision` must be 'auto', True or False. Received: mixed_precision={setting!r}")


@contextlib.contextmanager
def dtype_policy(mixed):
    """Sets the global dtype policy to "mixed_float16" when `mixed`, and restores it afterwards."""
    previous = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
