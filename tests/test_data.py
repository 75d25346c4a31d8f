import os

import numpy as np
import pytest
import tensorflow as tf

from keras_vit import data


def _all(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def _write_npz(path, n=40, shape=(6, 6, 3), classes=4, test=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.integers(0, 256, (n, *shape), dtype=np.uint8), "y": np.arange(n) % classes}
    if test:
        arrays["x_test"] = rng.integers(0, 256, (10, *shape), dtype=np.uint8)
        arrays["y_test"] = np.arange(10) % classes
    np.savez(path, **arrays)
    return arrays


def test_digits_bundle():
    bundle = data.load("digits", batch_size=32, validation_split=0.1)
    assert bundle.input_shape == (8, 8, 1)
    assert bundle.num_classes == 10
    assert bundle.class_names == [str(i) for i in range(10)]
    # 1,797 digits: 80/20 stratified train/test, then 10 % of train validates.
    assert (bundle.num_train, bundle.num_validation, bundle.num_test) == (1293, 144, 360)
    x, y = next(iter(bundle.train))
    assert x.shape == (32, 8, 8, 1) and x.dtype == tf.float32
    assert y.shape == (32,) and y.dtype == tf.int32
    x_train, y_train = _all(bundle.train)
    assert len(x_train) == 1293
    # Normalised with the training set's own statistics: mean 0, std 1.
    np.testing.assert_allclose(x_train.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(), 1.0, atol=1e-4)
    # Stratified: every class is in validation and test.
    _, y_val = _all(bundle.validation)
    _, y_test = _all(bundle.test)
    assert set(y_val) == set(y_test) == set(range(10))


def test_digits_arrays_match_sklearn():
    from sklearn.datasets import load_digits

    (x_train, y_train), (x_test, y_test), names = data.load_arrays("digits")
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert names == [str(i) for i in range(10)]
    digits = load_digits()
    # The split is a partition of the 1,797 images, scaled from [0, 16] to [0, 1].
    assert len(x_train) + len(x_test) == len(digits.images)
    np.testing.assert_allclose(
        np.sort(np.concatenate([x_train, x_test]).sum((1, 2, 3))), np.sort(digits.images.sum((1, 2)) / 16.0), rtol=1e-6
    )
    np.testing.assert_array_equal(np.bincount(np.concatenate([y_train, y_test])), np.bincount(digits.target))


def test_npz_file_values(tmp_path):
    path = str(tmp_path / "d.npz")
    arrays = _write_npz(path)
    bundle = data.load(path, batch_size=8, validation_split=0.0, normalize=False)
    assert bundle.input_shape == (6, 6, 3)
    assert bundle.num_classes == 4 and bundle.num_test == 10 and bundle.validation is None
    x_test, y_test = _all(bundle.test)
    # Test split keeps its order; uint8 is scaled to [0, 1].
    np.testing.assert_allclose(x_test, arrays["x_test"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    assert bundle.mean == (0.0, 0.0, 0.0) and bundle.std == (1.0, 1.0, 1.0)


def test_per_channel_normalisation_from_training_set(tmp_path):
    path = str(tmp_path / "d.npz")
    arrays = _write_npz(path, n=40)
    scaled = arrays["x"] / 255.0
    full = data.load(path, batch_size=16, validation_split=0.0)
    np.testing.assert_allclose(full.mean, scaled.mean((0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(full.std, scaled.std((0, 1, 2)), rtol=1e-6)
    x_test, _ = _all(full.test)
    np.testing.assert_allclose(
        x_test, (arrays["x_test"] / 255.0 - scaled.mean((0, 1, 2))) / scaled.std((0, 1, 2)), rtol=1e-4, atol=1e-5
    )
    # With a validation split the statistics come from the 30 training images only:
    # those are then exactly standardised per channel.
    held = data.load(path, batch_size=16, validation_split=0.25)
    x_train, _ = _all(held.train)
    assert len(x_train) == 30 and held.num_validation == 10
    np.testing.assert_allclose(x_train.mean((0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_train.std((0, 1, 2)), 1.0, atol=1e-4)
    assert not np.allclose(held.mean, full.mean, atol=1e-6)


def test_fixed_normalisation(tmp_path):
    path = str(tmp_path / "d.npz")
    arrays = _write_npz(path)
    bundle = data.load(path, validation_split=0.0, normalize=((0.5, 0.4, 0.3), 0.25))
    x_test, _ = _all(bundle.test)
    np.testing.assert_allclose(x_test, (arrays["x_test"] / 255.0 - [0.5, 0.4, 0.3]) / 0.25, rtol=1e-5, atol=1e-5)


def test_npz_pair_folder_grayscale_resize_to_rgb(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (30, 10, 10), dtype=np.uint8)  # MNIST layout: (N, H, W)
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(30) % 3, class_names=np.array(["a", "b", "c"]))
    np.savez(tmp_path / "test.npz", x=x[:6], y=np.arange(6) % 3)
    bundle = data.load(str(tmp_path), image_size=16, channels=3, batch_size=4, validation_split=0.0, normalize=False)
    assert bundle.input_shape == (16, 16, 3)
    assert bundle.class_names == ["a", "b", "c"]
    assert (bundle.num_train, bundle.num_test) == (30, 6)
    x_test, y_test = _all(bundle.test)
    assert x_test.shape == (6, 16, 16, 3)
    np.testing.assert_array_equal(x_test[..., 0], x_test[..., 2])  # gray copied to R, G, B
    expected = tf.image.resize(x[:6, ..., None].astype("float32") / 255.0, (16, 16), antialias=True).numpy()
    np.testing.assert_allclose(x_test[..., :1], expected, atol=1e-5)
    native = data.load(str(tmp_path), batch_size=4, validation_split=0.0)
    assert native.input_shape == (10, 10, 1)
    assert next(iter(native.test))[0].shape == (4, 10, 10, 1)
    (xa, ya), (xt, yt), names = data.load_arrays(str(tmp_path))
    assert xa.shape == (30, 10, 10) and xt.shape == (6, 10, 10) and names == ["a", "b", "c"]


def test_image_folder(tmp_path):
    rng = np.random.default_rng(2)
    colors = {"blue": (0, 0, 255), "red": (255, 0, 0)}
    for name, color in colors.items():
        os.makedirs(tmp_path / name)
        for i in range(6):
            image = np.zeros((12, 12, 3), np.uint8) + np.array(color, np.uint8)
            image[: i + 1, : i + 1] = rng.integers(0, 256, 3, dtype=np.uint8)
            tf.io.write_file(str(tmp_path / name / f"{i}.png"), tf.io.encode_png(image))
    (tmp_path / "red" / "notes.txt").write_text("not an image")
    bundle = data.load(str(tmp_path), batch_size=4, validation_split=1 / 3, normalize=False)
    assert bundle.class_names == ["blue", "red"]
    assert bundle.input_shape == (12, 12, 3)
    assert (bundle.num_train, bundle.num_validation) == (8, 4) and bundle.test is None
    x_val, y_val = _all(bundle.validation)
    assert sorted(y_val.tolist()) == [0, 0, 1, 1]  # stratified
    # Pixels far from the random corner have the class colour.
    np.testing.assert_allclose(x_val[:, -1, -1], np.array([colors[bundle.class_names[k]] for k in y_val]) / 255.0)
    small = data.load(str(tmp_path), image_size=(6, 4), channels=1, batch_size=4, validation_split=0.0)
    x, _ = next(iter(small.train))
    assert small.input_shape == (6, 4, 1) and x.shape == (4, 6, 4, 1)


def test_image_folder_with_train_and_test(tmp_path):
    for split, count in (("train", 4), ("test", 2)):
        for name in ("cat", "dog"):
            os.makedirs(tmp_path / split / name)
            for i in range(count):
                image = np.full((5, 7, 1), 40 if name == "cat" else 200, np.uint8)
                tf.io.write_file(str(tmp_path / split / name / f"{i}.png"), tf.io.encode_png(image))
    bundle = data.load(str(tmp_path), batch_size=8, validation_split=0.0, normalize=False)
    assert bundle.class_names == ["cat", "dog"] and bundle.input_shape == (5, 7, 1)
    assert (bundle.num_train, bundle.num_test) == (8, 4)
    x_test, y_test = _all(bundle.test)
    np.testing.assert_array_equal(y_test, [0, 0, 1, 1])
    np.testing.assert_allclose(x_test[:, 0, 0, 0], np.array([40, 40, 200, 200]) / 255.0, rtol=1e-6)


def test_tfds_mock():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        bundle = data.load("tfds:mnist", batch_size=5, image_size=14)
    assert bundle.input_shape == (14, 14, 1)
    assert bundle.num_classes == 10 and bundle.class_names[3] == "3"
    assert bundle.num_train == 12 and bundle.num_test == 12
    x_train, y_train = _all(bundle.train)
    assert x_train.shape == (12, 14, 14, 1) and x_train.dtype == np.float32 and y_train.dtype == np.int32
    np.testing.assert_allclose(x_train.mean(), 0.0, atol=1e-4)
    assert set(y_train.tolist()) <= set(range(10))


def test_augment_crop_and_flip():
    images = tf.reshape(tf.range(2 * 8 * 8, dtype=tf.float32) + 1.0, (2, 8, 8, 1))
    tf.random.set_seed(3)
    seen_shift = seen_flip = False
    for _ in range(20):
        out = data._augment_batch(images, (1, 1), flip=True).numpy()
        assert out.shape == (2, 8, 8, 1)
        for k in range(2):
            source = images[k, ..., 0].numpy()
            padded = np.pad(source, 1)
            candidates = [padded[dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)]
            matches = [np.array_equal(out[k, ..., 0], c) for c in candidates]
            flipped = [np.array_equal(out[k, ..., 0], c[:, ::-1]) for c in candidates]
            # Every output is a crop of the zero-padded image, possibly mirrored.
            assert any(matches) or any(flipped)
            seen_shift |= not np.array_equal(out[k, ..., 0], source) and any(matches)
            seen_flip |= any(flipped) and not any(matches)
    assert seen_shift and seen_flip
    no_flip = [data._augment_batch(images, (1, 1), flip=False).numpy() for _ in range(20)]
    for out in no_flip:
        padded = np.pad(images[0, ..., 0].numpy(), 1)
        assert any(
            np.array_equal(out[0, ..., 0], padded[dy : dy + 8, dx : dx + 8]) for dy in range(3) for dx in range(3)
        )


def test_augment_only_on_training_split():
    bundle = data.load("digits", batch_size=2000, augment=True, validation_split=0.0)
    plain = data.load("digits", batch_size=2000, augment=False, validation_split=0.0)
    x_aug, _ = _all(bundle.test)
    x_plain, _ = _all(plain.test)
    np.testing.assert_array_equal(x_aug, x_plain)
    a, ya = _all(bundle.train)
    b, yb = _all(plain.train)
    assert a.shape == b.shape == (1437, 8, 8, 1)
    assert not np.allclose(np.sort(a.ravel()), np.sort(b.ravel()))  # padding shifts zeros in


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": "imagenet"}, "Unknown data source. .*Received: source='imagenet'"),
        ({"source": "digits", "batch_size": 0}, "Received: batch_size=0"),
        ({"source": "digits", "validation_split": 1.0}, r"Received: validation_split=1.0"),
        ({"source": "digits", "channels": 2}, "Received: channels=2"),
        ({"source": "digits", "image_size": (8, 0)}, r"Received: image_size=\(8, 0\)"),
        ({"source": "digits", "normalize": "imagenet"}, "Received: normalize='imagenet'"),
        ({"source": "tfds:"}, "Received: source='tfds:'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load(**kwargs)


def test_missing_paths(tmp_path):
    missing = str(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match=f"Received: source='{missing}'"):
        data.load(missing)
    with pytest.raises(FileNotFoundError, match="Received: source="):
        data.load_arrays(str(tmp_path / "no_such_dir") + os.sep)


def test_bad_files(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"lacks the arrays \['x', 'y'\]"):
        data.load(str(tmp_path / "bad.npz"))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="must be a .npz archive"):
        data.load(str(tmp_path / "f.txt"))
    os.makedirs(tmp_path / "empty" / "cls")
    with pytest.raises(ValueError, match="No images found"):
        data.load(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="in-memory sources only"):
        data.load_arrays(str(tmp_path / "empty"))
