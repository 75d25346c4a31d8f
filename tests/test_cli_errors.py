"""Every expected `keras-vit` failure is one line `keras-vit CMD: error: ...` and exit status 2.

Each case runs the command as its own process, as a user would; `--debug`
alone shows a traceback.
"""

import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from keras_vit.applications import get_model
from keras_vit.cli import error_message


def keras_vit_fails(*args, stdin=None, cwd=None):
    """Runs `keras-vit ARGS` in a new process, asserts exit 2 and one error line; returns that line."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "keras_vit.cli", *map(str, args)],
        capture_output=True,
        env=env,
        cwd=cwd,
        input=stdin,
        timeout=300,
    )
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, f"exit {result.returncode}:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    # TensorFlow's own start-up lines (absl, cuda) may precede ours; ours is exactly one line.
    ours = [line for line in stderr.splitlines() if line.startswith("keras-vit ")]
    assert len(ours) == 1, stderr[-3000:]
    assert ours[0].startswith(f"keras-vit {args[0]}: error: ")
    return ours[0]


@pytest.fixture(scope="module")
def tiny_vit_file(tmp_path_factory):
    model = get_model("vit_tiny_patch16_224", input_shape=(8, 8, 3), patch_size=4, depth=1, classes=3)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def test_truncated_keras_file_is_not_reported_as_missing(tmp_path, tiny_vit_file):
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(tiny_vit_file.read_bytes()[:2000])
    line = keras_vit_fails("translate", "run", "--model-file", truncated, stdin=b"hallo\n")
    assert f"{str(truncated)!r} is not a readable Keras file" in line
    assert "not found" not in line.lower()


def test_non_utf8_stdin_names_the_input(tmp_path):
    line = keras_vit_fails("translate", "run", "--model-file", tmp_path / "any.keras", stdin=b"\xff\xfehallo\n")
    assert "stdin is not UTF-8 text: byte 0xff at offset 0" in line


def test_zero_max_length_is_refused():
    line = keras_vit_fails("translate", "run", "--model-file", "any.keras", "--max-length", "0", stdin=b"")
    assert "`--max-length` must be a positive integer. Received: --max-length 0" in line


def test_existing_file_where_the_backup_folder_goes(tmp_path):
    # FileExistsError (an OSError) from makedirs: one line naming the path.
    (tmp_path / "a.txt").write_text("ein hund.\n", encoding="utf-8")
    (tmp_path / "de_en.backup").write_text("in the way", encoding="utf-8")
    src = tmp_path / "a.txt"
    line = keras_vit_fails(
        "translate", "train", "--source", src, "--target", src, "--out", tmp_path / "de_en.keras", "--epochs", "1"
    )
    assert str(tmp_path / "de_en.backup") in line


def test_convert_rejects_zero_classes_and_reports_a_bad_archive(tmp_path):
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip archive")
    line = keras_vit_fails(
        "convert", bad, "--model", "vit_tiny_patch16_224", "--out", tmp_path / "x.keras", "--classes", "0"
    )
    assert "`--classes` must be a positive integer. Received: --classes 0" in line
    line = keras_vit_fails("convert", bad, "--model", "vit_tiny_patch16_224", "--out", tmp_path / "x.keras")
    assert str(bad) in line or "truncated or not the archive expected" in line
    assert not (tmp_path / "x.keras").exists()


def test_explain_label_out_of_range(tmp_path, tiny_vit_file):
    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(image)
    line = keras_vit_fails(
        "explain", "--model-file", tiny_vit_file, "--image", image, "--out", tmp_path / "e.png", "--label", "42"
    )
    assert "`--label` takes class indices in [0, 3) for this model. Received: --label 42" in line


def test_unknown_set_key_is_one_line(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((8, 8, 8, 1), "uint8"), y=np.arange(8) % 2)
    line = keras_vit_fails(
        "train", "--model", "vit_tiny_patch16_224", "--data", data, "--out", tmp_path / "run", "--set", "foo=1"
    )
    assert "unexpected keyword argument 'foo'" in line


def test_debug_shows_the_traceback():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_vit.cli",
            "--debug",
            "translate",
            "run",
            "--model-file",
            "x",
            "--max-length",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        input="",
        timeout=300,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert "ValueError: `--max-length` must be a positive integer" in result.stderr


@pytest.mark.parametrize(
    "error, expected",
    [
        (PermissionError(13, "Permission denied", "/ro/out.keras"), "Permission denied: '/ro/out.keras'"),
        (FileExistsError(17, "File exists", "a", None, "b"), "File exists: 'a' -> 'b'"),
        (KeyError("model.weights.h5"), "missing entry 'model.weights.h5'"),
        (zipfile.BadZipFile("File is not a zip file"), "truncated or not the archive expected"),
        (EOFError(), "truncated or not the archive expected (EOFError: EOFError)"),
    ],
)
def test_error_message_names_the_thing(error, expected):
    message = error_message(error)
    assert expected in message and "\n" not in message


def test_models_params_matches_the_built_models(tmp_path):
    from keras_vit.cli.models import count_params

    # ViT-Ti/16 has 5,717,416 parameters (timm's count of the same architecture); DeiT-Ti is the same network.
    for name in ("deit_tiny_patch16_224", "vit_tiny_patch16_224"):
        expected = get_model(name).count_params()
        keras.backend.clear_session()
        assert count_params(name) == expected == 5_717_416
