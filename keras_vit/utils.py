"""Small helpers shared by the training code, the demo and the command line.

Every file the package writes goes through `atomic_path`: the content is
written to a temporary file in the destination's folder, flushed to disk
(`fsync`), given the permissions a plain `open` would give it under the
user's umask, and moved over the destination with `os.replace` (atomic on
POSIX and Windows). A kill, a full disk or an error at any moment leaves
either the old file or the new one, never half of one; the temporary file is
removed when the write fails (a SIGKILL can leave one behind, named
`.tmp-*`, which `remove_temporary_files` clears on the next run).
"""

import contextlib
import json
import math
import os
import socket
import tempfile
import threading
import time

TEMPORARY_PREFIX = ".tmp-"


def _umask_mode():
    # The mode `open(path, "w")` gives a new file: 0o666 less the umask (mkstemp alone gives 0o600).
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _suffix(path):
    # Keep the whole extension (`.weights.h5`, `.keras`): Keras checks it on the path it writes.
    name = os.path.basename(path)
    dot = name.find(".", 1)
    return name[dot:] if dot > 0 else ""


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # folders cannot be opened on Windows; os.replace is durable there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; on success it replaces `path` atomically.

    The temporary file lies in the folder of `path` (so `os.replace` never
    crosses file systems) and ends in the same extension. When the block
    raises, the temporary file is removed and `path` is left as it was.

    Args:
        path: the destination file.

    Yields:
        The temporary path, to be written by the block (by any writer: a
        `keras.Model.save`, `h5py`, `open`).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=_suffix(path), dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
        _fsync_folder(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_kwargs):
    """`open(path, mode)` that replaces `path` atomically when the block ends without error.

    Args:
        path: the destination file.
        mode: "w" (text) or "wb" (bytes).
        **open_kwargs: more `open` arguments (`encoding`, `newline`).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"`mode` must be 'w' or 'wb'. Received: mode={mode!r}")
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f


def save_model_atomic(model, path):
    """Saves `model` to the `.keras` file `path` so that `path` is never left half-written.

    Args:
        model: a `keras.Model`.
        path: destination ending in `.keras`.

    Returns:
        `path`.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"`path` must end in '.keras'. Received: path={path!r}")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def save_weights_atomic(model, path):
    """Saves `model.save_weights` (optimizer state included) to `path` (ending in `.weights.h5`) atomically."""
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"`path` must end in '.weights.h5'. Received: path={path!r}")
    with atomic_path(path) as tmp:
        model.save_weights(tmp, overwrite=True)
    return path


def json_safe(value):
    """`value` with every NaN or infinity replaced by None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_dumps(obj, **kwargs):
    """`json.dumps` that writes valid JSON only: NaN and infinities become `null`."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def write_json_atomic(obj, path):
    """Writes `obj` as valid JSON (NaN as `null`) to `path` atomically (see `atomic_path`)."""
    with atomic_write(path) as f:
        f.write(json_dumps(obj, indent=2))
    return os.fspath(path)


def remove_temporary_files(folder):
    """Removes the `.tmp-*` files a killed writer left in `folder` (not recursive); returns their names.

    Call it only while holding the folder's `folder_lock`: another writer's
    temporary file would be removed too.
    """
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in sorted(os.listdir(folder)):
        full = os.path.join(folder, name)
        if name.startswith(TEMPORARY_PREFIX) and os.path.isfile(full):
            os.remove(full)
            removed.append(name)
    return removed


LOCK_FILE = ".keras_vit.lock"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@contextlib.contextmanager
def folder_lock(folder, purpose="a run"):
    """Holds `folder/.keras_vit.lock` (the pid and host of its owner) for the block.

    A second writer into the same folder is refused with a `ValueError` that
    names the owner; a lock left by a process that no longer runs (killed) is
    taken over. The lock is re-entrant within one process.

    Args:
        folder: the folder to own.
        purpose: what holds it, for the message (e.g. "a training").
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _umask_mode())
        except FileExistsError:
            try:
                with open(path, encoding="utf-8") as f:
                    owner = json.load(f)
                pid, host = int(owner["pid"]), owner.get("host")
            except (OSError, ValueError, KeyError, TypeError):
                # Unreadable: its writer is writing it now, or was killed while writing it.
                owner, pid, host = {}, None, None
                with contextlib.suppress(OSError):
                    if time.time() - os.path.getmtime(path) < 10:
                        pid, host = "unknown", me["host"]
            if pid == os.getpid() and host == me["host"]:
                yield path  # nested use by the owner itself
                return
            if pid is not None and (host != me["host"] or pid == "unknown" or _pid_alive(pid)):
                raise ValueError(
                    f"{folder!r} is in use by {owner.get('purpose', 'another run')} (pid {pid} on {host}); "
                    f"wait for it to finish or write into another folder. If that process no longer runs, "
                    f"delete {path!r}. Received: out_dir={os.fspath(folder)!r}"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)  # stale: its owner is dead
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        break
    else:
        raise ValueError(f"Could not take the lock {path!r}. Received: out_dir={os.fspath(folder)!r}")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def status_lines(text, verbose, every=8.0):
    """`text...` on stdout, repeated with the seconds elapsed every `every` s until the block ends."""
    if not verbose:
        yield
        return
    start = time.monotonic()
    print(f"{text}...", flush=True)
    stop = threading.Event()

    def beat():
        while not stop.wait(every):
            print(f"{text}... ({time.monotonic() - start:.0f} s)", flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
