"""A training run survives what users and machines do to it: kills, full disks, bad arguments, reruns.

Every fault is real and happens in its own process: `SIGKILL` at a chosen
write (a driver script wraps Keras' writers, lets the write happen, truncates
the file to half, as a kill mid-write leaves it, and kills itself), a file-size
limit (`RLIMIT_FSIZE`, what a full disk does to a writer), two processes
writing one folder. Then the rerun, as a user would type it, must resume or
refuse with a message that names what is wrong.
"""

import csv
import json
import os
import resource
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_vit.cli import main

MODEL = "vit_cifar_patch4_depth8_32"
TINY = ["--set", "patch_size=2", "--set", "hidden_dim=32", "--set", "depth=1", "--set", "num_heads=2"]
TINY += ["--set", "mlp_dim=32"]
STEPS = 6  # 48 images in batches of 8

# Runs the CLI with Keras' writers wrapped: `KILL_DURING=backup:N` kills the process during the N-th
# weights write into a `backup` folder, `KILL_DURING=model:N` during the N-th `.keras` save;
# `PAUSE_DURING=backup` signals READY and waits for GO at the first backup write.
DRIVER = r"""
import os, signal, sys, time
import keras
from keras_vit.cli import main

what, _, count = os.environ.get("KILL_DURING", ":0").partition(":")
count, calls = int(count or 0), [0]
pause = os.environ.get("PAUSE_DURING")

def in_backup(path):
    return os.path.basename(os.path.dirname(os.path.abspath(path))) == "backup"

def wrap(original, kind):
    def wrapper(self, filepath, *args, **kwargs):
        path = os.fspath(filepath)
        target = what or pause
        hit = (kind == "weights" and in_backup(path)) if target == "backup" else (kind == target == "model")
        if hit and pause and not os.path.exists("GO"):
            open("READY", "w").close()
            while not os.path.exists("GO"):
                time.sleep(0.1)
        if hit and count:
            calls[0] += 1
            if calls[0] == count:
                original(self, filepath, *args, **kwargs)
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return original(self, filepath, *args, **kwargs)
    return wrapper

keras.Model.save_weights = wrap(keras.Model.save_weights, "weights")
keras.Model.save = wrap(keras.Model.save, "model")
sys.exit(main(sys.argv[1:]))
"""


def _npz(path, n=48, classes=2, seed=0):
    """Classes a ViT tells apart in an epoch or two: a bright band at a class-dependent row."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, (n, 8, 8, 1)).astype(np.uint8)
    for label in range(classes):
        x[y == label, 2 * label : 2 * label + 3] += 180
    np.savez(path, x=x, y=y, x_test=x[:16], y_test=y[:16])
    return str(path)


def _train_args(data, out, epochs):
    return ["train", "--model", MODEL, "--data", data, "--out", out, "--epochs", str(epochs), "--batch-size", "8"]


def _run(args, cwd, env=None, preexec_fn=None, driver=False, wait=True):
    """Runs `keras-vit ARGS` (through the fault-injecting driver when `driver`); returns the CompletedProcess."""
    command = [sys.executable, str(cwd / "driver.py")] if driver else [sys.executable, "-m", "keras_vit.cli"]
    if driver:
        (cwd / "driver.py").write_text(DRIVER)
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", **(env or {})}
    common = dict(cwd=cwd, env=full_env, preexec_fn=preexec_fn, text=True)
    full = [*command, *args, "--validation-split", "0", "--quiet", *TINY]
    if not wait:
        return subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **common)
    return subprocess.run(full, capture_output=True, timeout=600, **common)


def _history_epochs(out):
    with open(os.path.join(out, "logs", "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _temporary_files(out):
    return [os.path.join(root, f) for root, _, files in os.walk(out) for f in files if f.startswith(".tmp-")]


def _finished_cleanly(out, epochs):
    """The run's folder holds one finished run: model, no backup, no lock, no temporary file, one row per epoch."""
    assert _history_epochs(out) == list(range(epochs))
    assert not os.path.exists(os.path.join(out, "backup"))
    assert not os.path.exists(os.path.join(out, ".keras_vit.lock"))
    assert _temporary_files(out) == []
    model = keras.saving.load_model(os.path.join(out, "model.keras"))
    # The optimizer state came back on resume: the step count spans the whole run.
    assert int(model.optimizer.iterations) == epochs * STEPS
    return model


def test_kill_during_backup_write_resumes_and_changed_arguments_are_refused(tmp_path):
    data, other = _npz(tmp_path / "a.npz"), _npz(tmp_path / "b.npz", n=40, seed=1)
    out = str(tmp_path / "run")
    killed = _run(_train_args(data, out, 3), tmp_path, env={"KILL_DURING": "backup:2"}, driver=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(out, "model.keras"))

    # Other --epochs and --data: refused, naming both, before anything is trained or overwritten.
    changed = _run(_train_args(other, out, 2), tmp_path)
    assert changed.returncode == 2, changed.stderr[-2000:]
    assert "holds an interrupted run (after epoch 1) with other arguments" in changed.stderr
    assert "epochs: 3 then, 2 now" in changed.stderr
    assert f"data: {data!r} then, {other!r} now" in changed.stderr
    assert "Traceback" not in changed.stderr

    # The same command resumes after the one epoch that was committed, and finishes.
    resumed = _run(_train_args(data, out, 3), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming an interrupted run at epoch 2/3" in resumed.stdout
    _finished_cleanly(out, 3)


def test_full_disk_while_writing_leaves_nothing_half_written(tmp_path):
    data = _npz(tmp_path / "a.npz")
    out = str(tmp_path / "run")
    # The weights files are ~160 kB; the small files (history, TensorBoard events) fit under 64 kB.
    limit = 64 * 1024
    full = _run(
        _train_args(data, out, 2),
        tmp_path,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY)),
    )
    # Python ignores SIGXFSZ, so writes fail with EFBIG; h5py may then crash the process (SIGSEGV), as a kill
    # would. Either way no file under its real name is half-written; a temporary one is cleared by the rerun.
    assert full.returncode != 0, full.stderr[-2000:]
    for root, _, files in os.walk(out):
        for name in files:
            if not name.startswith(".tmp-"):
                assert not name.endswith((".h5", ".keras")), f"half-written {os.path.join(root, name)}"

    rerun = _run(_train_args(data, out, 2), tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _finished_cleanly(out, 2)


def test_kill_during_final_save_keeps_the_training(tmp_path):
    data = _npz(tmp_path / "a.npz")
    out = str(tmp_path / "run")
    killed = _run(_train_args(data, out, 2), tmp_path, env={"KILL_DURING": "model:1"}, driver=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(out, "model.keras"))

    rerun = _run(_train_args(data, out, 2), tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "had finished its 2 epochs" in rerun.stdout  # no epoch trained again
    _finished_cleanly(out, 2)


def test_a_second_training_into_the_same_folder_is_refused(tmp_path):
    data = _npz(tmp_path / "a.npz")
    out = str(tmp_path / "run")
    first = _run(_train_args(data, out, 1), tmp_path, env={"PAUSE_DURING": "backup"}, driver=True, wait=False)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "READY").exists():
            assert first.poll() is None, first.communicate()[1][-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        second = _run(_train_args(data, out, 1), tmp_path)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"is in use by a training (pid {first.pid} " in second.stderr
    finally:
        (tmp_path / "GO").touch()
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    _finished_cleanly(out, 1)


def test_nan_loss_exits_non_zero_and_keeps_the_good_model(tmp_path):
    data, three = _npz(tmp_path / "a.npz"), _npz(tmp_path / "c.npz", classes=3)
    out = tmp_path / "run"
    out.mkdir()
    # A lock left by a killed training (its pid no longer runs) is taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".keras_vit.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    good = _run(_train_args(data, str(out), 1), tmp_path, preexec_fn=lambda: os.umask(0o022))
    assert good.returncode == 0, good.stderr[-3000:]
    # Files get the user's umask (022 → rw-r--r--), as `open` would give them.
    for name in ("model.keras", "preprocessing.json", "logs/history.csv", "checkpoints/best.weights.h5"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    model_bytes, preprocessing = (out / "model.keras").read_bytes(), (out / "preprocessing.json").read_text()

    # A retrain on 3-class data that diverges: a clear error, and the folder keeps the good model and its classes.
    diverged = _run([*_train_args(three, str(out), 1), "--lr", "1e30"], tmp_path)
    assert diverged.returncode != 0
    assert "Training diverged: the loss became nan" in diverged.stderr
    assert "Received: learning_rate=1e+30" in diverged.stderr
    assert (out / "model.keras").read_bytes() == model_bytes
    assert (out / "preprocessing.json").read_text() == preprocessing
    assert json.loads(preprocessing)["class_names"] == ["0", "1"]
    assert _temporary_files(out) == []


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr", "nan", "must be a finite number"),
        ("--lr", "inf", "must be a finite number"),
        ("--lr", "-1", "must be positive"),
        ("--lr", "0", "must be positive"),
        ("--weight-decay", "nan", "must be a finite number"),
        ("--warmup", "1", "must be in [0, 1)"),
        ("--epochs", "0", "must be a positive integer"),
    ],
)
def test_bad_optimizer_flags_are_refused_naming_the_flag(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", MODEL, "--out", str(tmp_path / "run"), flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: {message}. Received: {value!r}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_corrupt_or_foreign_backup_is_set_aside(tmp_path, capsys):
    data = _npz(tmp_path / "a.npz")
    out = tmp_path / "run"
    # What Keras' BackupAndRestore leaves after a kill mid-write: a truncated HDF5 file.
    (out / "backup").mkdir(parents=True)
    (out / "backup" / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    (out / "backup" / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    assert main([*_train_args(data, str(out), 1), "--validation-split", "0", "--quiet", *TINY]) == 0
    err = capsys.readouterr().err
    assert "cannot be resumed (no state.json: not a backup of keras_vit's training)" in err
    (aside,) = [p for p in os.listdir(out) if p.startswith("backup.corrupt-")]
    assert sorted(os.listdir(out / aside)) == ["latest.weights.h5", "training_metadata.json"]
    assert f"moved it to {str(out / aside)!r}" in err
    _finished_cleanly(str(out), 1)

    # A backup whose state is unreadable (a disk error, an edit) is set aside too.
    (out / "backup").mkdir()
    (out / "backup" / "state.json").write_text('{"epoch": ')
    assert main([*_train_args(data, str(out), 1), "--validation-split", "0", "--quiet", *TINY]) == 0
    assert "cannot be resumed (unreadable state.json" in capsys.readouterr().err
    assert len([p for p in os.listdir(out) if p.startswith("backup.corrupt-")]) == 2


def test_recipe_refuses_non_finite_and_negative_rates():
    from keras_vit.training import Recipe

    for value in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises(ValueError, match=f"Received: learning_rate={value!r}"):
            Recipe(learning_rate=value)
    with pytest.raises(ValueError, match="Received: weight_decay=inf"):
        Recipe(weight_decay=float("inf"))
    with pytest.raises(ValueError, match="Received: global_clipnorm=nan"):
        Recipe(global_clipnorm=float("nan"))


def test_atomic_write_keeps_the_old_file_on_error_and_follows_the_umask(tmp_path):
    from keras_vit.utils import atomic_write

    path = tmp_path / "history.csv"
    path.write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(path) as f:
            f.write("half of the new")
            raise OSError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["history.csv"]
    previous = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "new.bin", "wb") as f:
            f.write(b"new")
    finally:
        os.umask(previous)
    assert (tmp_path / "new.bin").read_bytes() == b"new"
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == 0o640
