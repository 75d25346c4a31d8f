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


def shared_data_path():
    """The shared datasets folder, or a skip that says why; under `CI=true` a failure instead, so that a CI run
    without its data cannot pass by skipping the tests that need it."""
    path = data_dir()
    if not os.path.isdir(path):
        reason = f"shared datasets not found at {path!r}; set KERAS_VIT_DATA to the folder"
        if os.environ.get("CI", "").strip().lower() in ("true", "1"):
            pytest.fail(f"{reason} (CI={os.environ['CI']}: missing data fails instead of skipping)", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def shared_data():
    """Path of the shared datasets folder (see `shared_data_path`)."""
    return shared_data_path()


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
