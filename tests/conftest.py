import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def data_dir():
    """The shared real datasets (CIFAR-10, MNIST, Multi30k), from $KERAS_VIT_DATA."""
    return os.environ.get("KERAS_VIT_DATA", os.path.join("..", "shared", "data"))


@pytest.fixture
def shared_data():
    """Path of the shared datasets folder; skips the test with a clear message if absent."""
    path = data_dir()
    if not os.path.isdir(path):
        pytest.skip(f"shared datasets not found at {path!r}; set KERAS_VIT_DATA to the folder")
    return path


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield


def backend():
    return keras.backend.backend()


def keras_vit_cli(*args, cwd=None, stdin=None):
    """Runs `keras-vit ARGS` as its own process, as a user would; returns its stdout."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "keras_vit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        input=stdin,
        timeout=600,
    )
    assert result.returncode == 0, f"keras-vit {args[0]} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout
