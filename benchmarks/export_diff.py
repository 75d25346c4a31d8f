"""Max abs difference of each exported artefact from Keras, on the tiny registry models.

Each model (`get_model(name, **tiny_config(name))`, random weights) is exported with
`keras_vit.export.export_model` to a SavedModel, a LiteRT `.tflite` and an ONNX file, each run with
its own runtime (`keras_vit.export.load_artifact`) on three images (two N(0, 1), one of [0, 255]
pixels, as tests/test_export.py feeds them). Prints one row per model: SavedModel, LiteRT, ONNX.

    python benchmarks/export_diff.py
"""

import tempfile

import keras
import numpy as np

from keras_vit.applications import get_model, tiny_config
from keras_vit.export import FORMATS, export_model, load_artifact

MODELS = (
    "vit_tiny_patch16_224",
    "deit_tiny_distilled_patch16_224",
    "vit_base_r50_s16_224",
    "swin_tiny_patch4_window7_224",
    "mvitv2_tiny",
)
SUFFIX = {"saved_model": "", "litert": ".tflite", "onnx": ".onnx"}


def main():
    print("model", *FORMATS, sep=" | ")
    with tempfile.TemporaryDirectory() as folder:
        for name in MODELS:
            model = get_model(name, **tiny_config(name))
            rng = np.random.default_rng(0)
            shape = model.input_shape[1:]
            images = np.concatenate([rng.standard_normal((2, *shape)), rng.uniform(0, 255, (1, *shape))])
            images = images.astype("float32")
            expected = keras.ops.convert_to_numpy(model(images, training=False))
            row = []
            for fmt in FORMATS:
                path = export_model(model, f"{folder}/{name}{SUFFIX[fmt]}", format=fmt)
                row.append(float(np.max(np.abs(load_artifact(path, fmt)(images) - expected))))
            print(name, *(f"{d:.1e}" for d in row), sep=" | ", flush=True)


if __name__ == "__main__":
    main()
