"""Small helpers shared by the training code, the demo and the command line."""

import json
import os
import tempfile


def save_model_atomic(model, path):
    """Saves `model` to the `.keras` file `path` so that `path` is never left half-written.

    The model is written to a temporary file in the same folder, then moved
    over `path` with `os.replace` (atomic on POSIX and Windows). If saving
    fails, the temporary file is removed, any previous file at `path` is left
    untouched, and the error propagates.

    Args:
        model: a `keras.Model`.
        path: destination ending in `.keras`.

    Returns:
        `path`.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"`path` must end in '.keras'. Received: path={path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=folder)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json_atomic(obj, path):
    """Writes `obj` as JSON to `path` through a temporary file and `os.replace`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
