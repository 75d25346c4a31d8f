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


# Data is validated once, at load: every bad input below is a ValueError naming the array (or
# file) and what was found, raised before anything trains.


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _gray(n, seed=0, dtype=np.float32, high=1.0):
    """`n` 4×4 grey images on [0, high] and alternating labels 0, 1."""
    x = (np.random.default_rng(seed).random((n, 4, 4, 1)) * high).astype(dtype)
    return x, np.arange(n) % 2


def test_non_finite_pixels_are_named_and_counted(tmp_path):
    x, y = _gray(300)
    x[17, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"`x` holds 1 non-finite values .*Received: x with 1 non-finite"):
        data.load(_npz(tmp_path / "nan.npz", x=x, y=y))
    x, y = _gray(8)
    x_test = x.copy()
    x_test[0, 0, 0, 0], x_test[3, 1, 1, 0] = np.inf, -np.inf
    with pytest.raises(ValueError, match="`x_test` holds 2 non-finite values"):
        data.load(_npz(tmp_path / "inf.npz", x=x, y=y, x_test=x_test, y_test=y))


def test_non_finite_training_statistics_are_refused():
    # Sources checked by dtype only (tfds) meet NaN in the statistics pass instead.
    images = np.zeros((4, 2, 2, 1), np.float32)
    images[1, 0, 0, 0] = np.nan
    split = data._Split(tf.data.Dataset.from_tensor_slices((images, np.zeros(4, np.int32))), 4)
    with pytest.raises(ValueError, match="training images hold non-finite values"):
        data._normalization(True, split, lambda x, y: (x, y), 1)


@pytest.mark.parametrize(
    "dtype, high, message",
    [
        (np.float32, 255.0, r"Float images are taken as scaled to \[0, 1\].*value_range=.*x.dtype=float32 with values"),
        (np.uint16, 65535, r"Integer images are taken as 8-bit.*\(0, 65535\).*x.dtype=uint16 with values"),
        (np.int32, 4095, r"Integer images are taken as 8-bit.*x.dtype=int32 with values in \[\d+, 40\d\d\]"),
    ],
)
def test_images_off_their_declared_scale_are_refused(tmp_path, dtype, high, message):
    x, y = _gray(16, dtype=dtype, high=high)
    with pytest.raises(ValueError, match=message):
        data.load(_npz(tmp_path / "d.npz", x=x, y=y))


def test_value_range_declares_the_scale(tmp_path):
    x, y = _gray(12, high=255.0)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 255.0
    path = _npz(tmp_path / "d.npz", x=x, y=y, x_test=x[:4], y_test=y[:4])
    bundle = data.load(path, value_range=(0, 255), normalize=False, validation_split=0.0)
    np.testing.assert_allclose(_all(bundle.test)[0], x[:4] / 255.0, rtol=1e-6)
    x16 = (np.arange(12 * 16).reshape(12, 4, 4, 1) * 300).astype(np.uint16)
    bundle = data.load(
        _npz(tmp_path / "u16.npz", x=x16, y=y), value_range=(0, 65535), normalize=False, validation_split=0.0
    )
    np.testing.assert_allclose(np.sort(_all(bundle.train)[0].ravel()), np.sort(x16.ravel()) / 65535.0, rtol=1e-6)
    # 8-bit pixels in a wider integer type (np.array of Python ints) keep the uint8 scale.
    wide = np.random.default_rng(1).integers(0, 256, (12, 4, 4, 1))
    bundle = data.load(_npz(tmp_path / "i64.npz", x=wide, y=y, x_test=wide, y_test=y), normalize=False)
    np.testing.assert_allclose(_all(bundle.test)[0], wide / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"outside value_range=\(0.0, 100.0\).*values in \[0, 255\]"):
        data.load(path, value_range=(0, 100))
    with pytest.raises(ValueError, match=r"Received: value_range=\(1, 1\)"):
        data.load(path, value_range=(1, 1))
    with pytest.raises(ValueError, match="`value_range` applies to array and tfds sources"):
        data.load(str(_png_folder(tmp_path / "images")), value_range=(0, 255))


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 1, -1, 1] * 3), r"must be class ids 0..K-1. Received: a negative label -1"),
        (np.array([0, 1000] * 6), r"999 ids are missing \(first: \[1, 2, 3, 4, 5\]\).*np.unique.*from 0 to 1000"),
        (np.eye(2)[np.arange(12) % 2], r"If they are one-hot, store `y.argmax\(axis=1\)`. Received: y.shape=\(12, 2\)"),
        (np.array([0.0, 1.0, 0.5] * 4), r"Received: 4 non-integer labels \(first: 0.5\)"),
        (np.array(["cat", "dog"] * 6), r"map names to ids 0..K-1.*Received: y.dtype=<U3"),
        (np.zeros(12, np.int64), r"at least 2 classes. Received: 1 class"),
        (np.arange(11) % 2, r"one label per image \(12\). Received: 11 labels"),
    ],
)
def test_bad_labels(tmp_path, labels, message):
    x, _ = _gray(12)
    with pytest.raises(ValueError, match=message):
        data.load(_npz(tmp_path / "d.npz", x=x, y=labels))


def test_labels_against_class_names_and_the_test_split(tmp_path):
    x, y = _gray(12)
    names = np.array(["a", "b", "c"])
    # With class_names declaring K = 3, a class absent from training is allowed ...
    bundle = data.load(_npz(tmp_path / "ok.npz", x=x, y=y, class_names=names))
    assert bundle.num_classes == 3
    # ... an id beyond them is not.
    with pytest.raises(ValueError, match=r"below the 3 `class_names`. Received: a label 3"):
        data.load(_npz(tmp_path / "big.npz", x=x, y=y * 3, class_names=names))
    with pytest.raises(ValueError, match=r"`y_test` must be class ids of the training set, 0..1. Received: a label 2"):
        data.load(_npz(tmp_path / "test.npz", x=x, y=y, x_test=x[:3], y_test=np.array([0, 1, 2])))


def test_empty_and_incomplete_archives(tmp_path):
    x, y = _gray(12)
    with pytest.raises(ValueError, match=r"`x` holds no images. Received: x.shape=\(0, 4, 4, 1\)"):
        data.load(_npz(tmp_path / "empty.npz", x=x[:0], y=y[:0]))
    with pytest.raises(ValueError, match="has `x_test` but no `y_test`: a test set needs both"):
        data.load(_npz(tmp_path / "half.npz", x=x, y=y, x_test=x))
    with pytest.raises(ValueError, match=r"`x_test` must have the image shape of `x`.*x_test.shape=\(3, 4, 4, 3\)"):
        data.load(_npz(tmp_path / "shape.npz", x=x, y=y, x_test=np.zeros((3, 4, 4, 3), np.float32), y_test=y[:3]))
    np.save(tmp_path / "single.npy", x)
    os.rename(tmp_path / "single.npy", tmp_path / "single.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object), y=y[:1])
    for name, content in (("zero.npz", b""), ("garbage.npz", b"PK\x03\x04 not a zip archive")):
        (tmp_path / name).write_bytes(content)
    for name in ("zero.npz", "garbage.npz", "single.npz", "objects.npz"):
        with pytest.raises(ValueError, match=f"Cannot read the .npz archive .*Received: source='.*{name}'"):
            data.load(str(tmp_path / name))
    with pytest.raises(ValueError, match=r"leaves no training examples of 3. Received: validation_split=0.9"):
        data.load(_npz(tmp_path / "three.npz", x=x[:3], y=y[:3]), validation_split=0.9)


def _png_folder(root, bad=()):
    """Two class folders of three 6×6 PNGs each, plus the named bad files (name → bytes) in class b."""
    for name in ("a", "b"):
        os.makedirs(root / name)
        for i in range(3):
            image = np.full((6, 6, 3), 50 + 100 * (name == "b"), np.uint8)
            tf.io.write_file(str(root / name / f"{i}.png"), tf.io.encode_png(image))
    for name, content in dict(bad).items():
        (root / "b" / name).write_bytes(content)
    return root


def _bad_files():
    png = tf.io.encode_png(np.zeros((6, 6, 3), np.uint8)).numpy()
    return {"truncated.png": png[: len(png) // 2], "notes.png": b"not an image, renamed .png"}


def test_unreadable_image_files_are_named_at_load(tmp_path):
    root = _png_folder(tmp_path / "images", _bad_files())
    with pytest.raises(ValueError, match=r"2 of 8 image files cannot be read or decoded") as info:
        data.load(str(root))
    assert os.path.join(str(root), "b", "truncated.png") in str(info.value)
    assert os.path.join(str(root), "b", "notes.png") in str(info.value)


def test_image_folder_class_checks(tmp_path):
    root = _png_folder(tmp_path / "images")
    os.makedirs(root / "c")
    with pytest.raises(ValueError, match=r"Every class folder must hold .* hold none") as info:
        data.load(str(root))
    assert os.path.join(str(root), "c") in str(info.value)
    single = tmp_path / "single"
    os.makedirs(single / "only")
    tf.io.write_file(str(single / "only" / "0.png"), tf.io.encode_png(np.zeros((4, 4, 1), np.uint8)))
    with pytest.raises(ValueError, match=r"at least 2 class folders. Received: 1 \(\['only'\]\)"):
        data.load(str(single))


def test_cli_reader_names_unreadable_files(tmp_path):
    # `predict` and `explain` read image files through this one reader.
    from keras_vit.cli.images import read_images

    for name, content in _bad_files().items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"Not a readable image file. Received: IMAGE='.*{name}'"):
            read_images([str(tmp_path / name)], (6, 6, 3))


def _train_cli(tmp_path, source):
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "keras_vit.cli", "train", "--model", "vit_cifar_patch4_depth8_32"]
    command += ["--data", source, "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_cli_train_refuses_nan_pixels_before_training(tmp_path):
    x, y = _gray(32)
    x[5, 1, 1, 0] = np.nan
    result = _train_cli(tmp_path, _npz(tmp_path / "nan.npz", x=x, y=y))
    assert result.returncode == 2, result.stderr
    assert "`x` holds 1 non-finite values" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "run" / "model.keras")


def test_cli_train_names_a_corrupt_image_file(tmp_path):
    root = _png_folder(tmp_path / "images", _bad_files())
    result = _train_cli(tmp_path, str(root))
    assert result.returncode == 2, result.stderr
    assert os.path.join(str(root), "b", "truncated.png") in result.stderr and "Traceback" not in result.stderr


def _order(ds, images):
    """The file positions of the images a pipeline yields, in the order it yields them."""
    x, _ = _all(ds)
    flat = images.reshape(len(images), -1) / 255.0
    return [int(np.argmin(np.abs(flat - row.reshape(1, -1)).sum(1))) for row in x]


def test_training_split_is_reshuffled_each_epoch_and_evaluation_splits_are_not(tmp_path):
    path = str(tmp_path / "d.npz")
    arrays = _write_npz(path, n=40)
    bundle = data.load(path, batch_size=8, validation_split=0.0, normalize=False)
    first, second = _order(bundle.train, arrays["x"]), _order(bundle.train, arrays["x"])
    # Every training image once per epoch, not in file order, and in a new order each epoch.
    assert sorted(first) == sorted(second) == list(range(40))
    assert first != list(range(40)) and second != list(range(40))
    assert first != second
    # The same seed gives the same sequence of epochs.
    again = data.load(path, batch_size=8, validation_split=0.0, normalize=False)
    assert _order(again.train, arrays["x"]) == first
    # Test and validation keep the file order, epoch after epoch.
    assert _order(bundle.test, arrays["x_test"]) == _order(bundle.test, arrays["x_test"]) == list(range(10))
    held = data.load(path, batch_size=8, validation_split=0.25, normalize=False)
    val = _order(held.validation, arrays["x"])
    assert len(val) == 10 and val == sorted(val) == _order(held.validation, arrays["x"])


def test_missing_shared_data_skips_with_the_reason_and_fails_under_ci(tmp_path, monkeypatch):
    from conftest import shared_data_path

    missing = str(tmp_path / "no_data_here")
    monkeypatch.setenv("KERAS_VIT_DATA", missing)
    monkeypatch.delenv("CI", raising=False)
    # Caught as BaseException: a skip where a failure is due must fail this test, not skip it.
    with pytest.raises(BaseException, match=r"shared datasets not found at .*no_data_here.*KERAS_VIT_DATA") as info:
        shared_data_path()
    assert info.type is pytest.skip.Exception
    monkeypatch.setenv("CI", "true")
    with pytest.raises(BaseException, match=r"shared datasets not found at .*no_data_here.*CI=true") as info:
        shared_data_path()
    assert info.type is pytest.fail.Exception
    monkeypatch.setenv("KERAS_VIT_DATA", str(tmp_path))
    assert shared_data_path() == str(tmp_path)
