"""Preprocessing inside the model (`include_preprocessing`, `ImagePreprocessing`), `preprocess_input`,
`decode_predictions`, and `keras-vit train` baking its data's statistics into the model it saves."""

import json
import os

import keras
import numpy as np
import pytest

from keras_vit import training
from keras_vit.applications import (
    SwinTransformer,
    VisionTransformer,
    decode_predictions,
    get_model,
    imagenet_classes,
    model_preprocessing,
    preprocess_input,
    tiny_config,
)
from keras_vit.applications.common import add_preprocessing
from keras_vit.layers import ImagePreprocessing

TINY_VIT = dict(patch_size=8, hidden_dim=32, depth=1, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), classes=5)
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def test_layer_rescales_and_normalises_per_channel():
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(ImagePreprocessing(MEAN, STD)(x))
    np.testing.assert_allclose(out, (x / 255.0 - np.array(MEAN)) / np.array(STD), rtol=1e-5, atol=1e-5)
    grey = keras.ops.convert_to_numpy(ImagePreprocessing(0.5, 0.25, scale=1.0)(x[..., :1]))
    np.testing.assert_allclose(grey, (x[..., :1] - 0.5) / 0.25, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(std=(0.2, 0.0, 0.3)), "`std` must be positive"),
        (dict(mean="red"), "`mean` must be a finite number"),
        (dict(mean=(0.5, 0.4)), "`mean` and `std` must have one value per channel"),
        (dict(scale=0), "`scale` must be a positive finite number"),
        (dict(interpolation="cubic"), "`interpolation` must be one of"),
        (dict(crop_pct=1.5), "`crop_pct` must be None or a number in"),
    ],
)
def test_layer_argument_errors_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImagePreprocessing(**kwargs)


def test_layer_checks_the_channels_when_built():
    with pytest.raises(ValueError, match=r"one value per input channel \(1\)"):
        ImagePreprocessing(MEAN, STD)(np.zeros((1, 2, 2, 1), "float32"))


@pytest.mark.parametrize("factory, kwargs", [(VisionTransformer, TINY_VIT), (SwinTransformer, None)])
def test_include_preprocessing_equals_normalising_outside(factory, kwargs):
    kwargs = kwargs or tiny_config("swin_tiny_patch4_window7_224")
    plain = factory(**kwargs)
    inside = factory(**kwargs, include_preprocessing=True, image_mean=MEAN, image_std=STD)
    assert model_preprocessing(plain) is None and inside.layers[1].name == "preprocessing"
    assert inside.count_params() == plain.count_params()
    inside.set_weights(plain.get_weights())
    x = np.random.default_rng(1).uniform(0, 255, (2, *plain.input_shape[1:])).astype("float32")
    expected = plain.predict((x / 255.0 - np.array(MEAN)) / np.array(STD), verbose=0)
    np.testing.assert_allclose(inside.predict(x, verbose=0), expected, atol=1e-5)


def test_defaults_are_imagenet_statistics_and_argument_errors():
    model = VisionTransformer(**TINY_VIT, include_preprocessing=True)
    np.testing.assert_allclose(model.get_layer("preprocessing").mean, (0.485, 0.456, 0.406))
    with pytest.raises(ValueError, match="`image_mean` and `image_std` take effect with `include_preprocessing=True`"):
        VisionTransformer(**TINY_VIT, image_mean=MEAN, image_std=STD)
    with pytest.raises(ValueError, match="`include_preprocessing` must be None, True or False"):
        VisionTransformer(**TINY_VIT, include_preprocessing="yes")
    with pytest.raises(ValueError, match=r"needed for 1-channel images"):
        VisionTransformer(**{**TINY_VIT, "input_shape": (32, 32, 1)}, include_preprocessing=True)


def test_add_preprocessing_keeps_layers_weights_and_outputs():
    plain = VisionTransformer(**TINY_VIT)
    plain.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    wrapped = add_preprocessing(plain, MEAN, STD)
    assert [layer.name for layer in wrapped.layers] == ["images", "preprocessing"] + [
        layer.name for layer in plain.layers[1:]
    ]
    assert wrapped.get_compile_config()["loss"] == "sparse_categorical_crossentropy"
    assert add_preprocessing(wrapped, MEAN, STD) is wrapped
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = plain.predict((x / 255.0 - np.array(MEAN)) / np.array(STD), verbose=0)
    np.testing.assert_allclose(wrapped.predict(x, verbose=0), expected, atol=1e-5)


def test_preprocess_input_is_a_pass_through_or_normalises():
    x = np.random.default_rng(3).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(preprocess_input(x), x)
    expected = (x / 255 - np.array(MEAN)) / np.array(STD)
    np.testing.assert_allclose(preprocess_input(x, mean=MEAN, std=STD), expected, atol=1e-5)
    first = preprocess_input(x.transpose(0, 3, 1, 2), data_format="channels_first", mean=MEAN, std=STD)
    np.testing.assert_allclose(first.transpose(0, 2, 3, 1), preprocess_input(x, mean=MEAN, std=STD), rtol=1e-6)
    with pytest.raises(ValueError, match="Give both `mean` and `std`"):
        preprocess_input(x, mean=MEAN)


def test_imagenet_classes_ship_with_the_package():
    classes = imagenet_classes()
    assert len(classes) == 1000 and len({s for s, _ in classes}) == 1000
    # Index order of the ILSVRC-2012 devkit (sorted synsets): tench is 0, toilet tissue 999.
    assert classes[0] == ("n01440764", "tench") and classes[999] == ("n15075141", "toilet tissue")
    assert classes[1][1] == "goldfish" and classes[207][1] == "golden retriever"
    assert [s for s, _ in classes] == sorted(s for s, _ in classes)


def test_decode_predictions_ranks_like_keras_applications():
    preds = np.full((2, 1000), 1e-4, "float32")
    preds[0, [207, 1, 0]] = (0.6, 0.3, 0.1)
    preds[1, 999] = 0.9
    decoded = decode_predictions(preds, top=3)
    assert [(c, n) for c, n, _ in decoded[0]] == [
        ("n02099601", "golden retriever"),
        ("n01443537", "goldfish"),
        ("n01440764", "tench"),
    ]
    assert decoded[0][0][2] == pytest.approx(0.6) and decoded[1][0][:2] == ("n15075141", "toilet tissue")
    assert decode_predictions(np.array([[0.2, 0.8]]), top=1, class_names=["cat", "dog"]) == [[("1", "dog", 0.8)]]
    with pytest.raises(ValueError, match="expects ImageNet-1k predictions"):
        decode_predictions(np.zeros((1, 10)))
    with pytest.raises(ValueError, match="`top` must be a positive integer"):
        decode_predictions(preds, top=0)


def test_train_bakes_the_data_statistics_into_the_saved_model(tmp_path):
    """The saved `.keras` file alone predicts: it takes [0, 255] pixels and holds the data's mean/std."""
    from keras_vit import data

    result = training.train(
        model="vit_tiny_patch16_224",
        data="digits",
        out_dir=str(tmp_path / "run"),
        epochs=1,
        batch_size=128,
        overrides={"patch_size": 4, "hidden_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
        verbose=0,
    )
    with open(tmp_path / "run" / training.PREPROCESSING_FILE) as f:
        prep = json.load(f)
    bundle = result["bundle"]
    model = keras.saving.load_model(result["model_path"])
    layer = model.get_layer("preprocessing")
    np.testing.assert_allclose(layer.mean, bundle.mean)
    np.testing.assert_allclose(layer.std, bundle.std)
    assert prep["value_range"] == [0, 255] and prep["mean"] == list(layer.mean)
    (_, _), (x_test, y_test), _ = data.load_arrays("digits")
    pixels = (x_test[:64] * 255.0).astype("float32")[..., None]
    inner = keras.Model(layer.output, model.output)
    normalised = (x_test[:64, ..., None] - np.array(bundle.mean)) / np.array(bundle.std)
    np.testing.assert_allclose(model.predict(pixels, verbose=0), inner.predict(normalised, verbose=0), atol=1e-5)
    # The held-out metrics were computed on the same pixels the saved model takes.
    metrics = training.evaluate_model(model, bundle.test)
    assert metrics["accuracy"] == pytest.approx(result["metrics"]["accuracy"])
    assert os.path.isfile(tmp_path / "run" / "model.keras")


def test_get_model_builds_with_preprocessing_for_training():
    model = training.build_model(
        model="vit_tiny_patch16_224",
        input_shape=(8, 8, 1),
        num_classes=3,
        overrides={"patch_size": 4, "hidden_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32},
        mean=(0.3,),
        std=(0.2,),
    )
    assert model.get_layer("preprocessing").mean == (0.3,)
    plain = training.build_model(
        model="vit_tiny_patch16_224",
        input_shape=(8, 8, 1),
        num_classes=3,
        overrides={
            "patch_size": 4,
            "hidden_dim": 16,
            "depth": 1,
            "num_heads": 2,
            "mlp_dim": 32,
            "include_preprocessing": False,
        },
        mean=(0.3,),
        std=(0.2,),
    )
    assert model_preprocessing(plain) is None
    assert get_model("vit_tiny_patch16_224", **tiny_config("vit_tiny_patch16_224")).layers[1].name == "patch_embed"
