"""Pixels in [0, 255] → the normalised images a model was trained on, inside the model."""

import math

import keras
import numpy as np
from keras import ops

# The ImageNet statistics of torchvision and timm (`IMAGENET_DEFAULT_MEAN` / `_STD`), on [0, 1] pixels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos3", "area")


def _channel_values(value, arg):
    """A float, or a sequence of floats (one per channel), as a tuple of finite floats."""
    values = (value,) if isinstance(value, (int, float, np.number)) else tuple(value)
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(
            f"`{arg}` must be a finite number or a sequence of them, one per channel. Received: {arg}={value!r}"
        )
    return values


@keras.saving.register_keras_serializable(package="keras_vit")
class ImagePreprocessing(keras.layers.Layer):
    """Rescales and normalises images: `(x · scale − mean) / std`, per channel.

    The normalisation every ViT is trained with (Dosovitskiy et al. 2020 and
    DeiT, Touvron et al. 2021, feed images standardised by a per-channel mean
    and standard deviation), placed inside the model in the manner of
    keras.applications' ConvNeXt and EfficientNetV2 (`include_preprocessing`):
    a model that starts with this layer takes pixels in [0, 255] and carries
    its statistics in its `.keras` file. It has no weights; `mean` and `std`
    are part of its config.

    `interpolation` and `crop_pct` do not act on the tensor (the model's
    input size is fixed): they record how images are to be resized before
    the model, as the checkpoint's configuration says (timm's
    `pretrained_cfg`): the shorter side to `floor(size / crop_pct)` with that
    interpolation, then a central crop of the input size; or, with
    `crop_pct=None`, straight to the input size (as `keras_vit.data` and
    Hugging Face's `ViTImageProcessor` do).

    Args:
        mean: float or one float per channel, subtracted after scaling
            (on [0, 1] pixels with the default `scale`).
        std: float or one float per channel, positive.
        scale: positive float the pixels are first multiplied by (1/255 maps
            [0, 255] to [0, 1]).
        interpolation: one of `INTERPOLATIONS`, the resize method before the model.
        crop_pct: None (resize straight to the input size) or a float in
            (0, 1], the fraction of the resized image kept by the central crop.

    Call arguments:
        inputs: images `(B, H, W, C)`, pixels in [0, 255] with the default scale.

    Returns:
        `(B, H, W, C)` in the layer's compute dtype.
    """

    def __init__(
        self,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        scale=1.0 / 255.0,
        interpolation="bicubic",
        crop_pct=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.mean = _channel_values(mean, "mean")
        self.std = _channel_values(std, "std")
        if not all(v > 0 for v in self.std):
            raise ValueError(f"`std` must be positive. Received: std={std!r}")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(
                f"`mean` and `std` must have one value per channel, or one value. Received: mean={mean!r}, std={std!r}"
            )
        if (
            isinstance(scale, bool)
            or not isinstance(scale, (int, float, np.number))
            or not (math.isfinite(scale) and scale > 0)
        ):
            raise ValueError(f"`scale` must be a positive finite number. Received: scale={scale!r}")
        self.scale = float(scale)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {INTERPOLATIONS}. Received: interpolation={interpolation!r}"
            )
        self.interpolation = interpolation
        if crop_pct is not None and (
            isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float, np.number)) or not 0 < crop_pct <= 1
        ):
            raise ValueError(f"`crop_pct` must be None or a number in (0, 1]. Received: crop_pct={crop_pct!r}")
        self.crop_pct = None if crop_pct is None else float(crop_pct)

    def build(self, input_shape):
        channels = input_shape[-1]
        for arg, values in (("mean", self.mean), ("std", self.std)):
            if channels is not None and len(values) not in (1, channels):
                raise ValueError(
                    f"`{arg}` must have one value per input channel ({channels}) or one value. "
                    f"Received: {arg}={values}, input_shape={tuple(input_shape)}"
                )
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.convert_to_tensor(np.asarray(self.mean, "float32"), dtype=self.compute_dtype)
        std = ops.convert_to_tensor(np.asarray(self.std, "float32"), dtype=self.compute_dtype)
        return (x * ops.cast(self.scale, self.compute_dtype) - mean) / std

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mean": self.mean,
                "std": self.std,
                "scale": self.scale,
                "interpolation": self.interpolation,
                "crop_pct": self.crop_pct,
            }
        )
        return config
