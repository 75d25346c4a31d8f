"""`keras-vit train --distribute`: several devices and machines through tf.distribute and keras.distribution.

Each run is its own process, as users run them: TensorFlow's
MirroredStrategy over two logical CPU devices (through `training.fit_model`),
and `keras-vit train` on JAX with two host devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`,
keras.distribution.DataParallel). The JAX oracle is a one-device run of the
same command on the same global batches: synchronous data parallelism gives
the same losses, up to the order of floating-point sums. The mirrored run is
killed after its first epoch and resumed from its backup.
"""

import csv
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_vit.cli import main

MODEL = "vit_cifar_patch4_depth8_32"
TINY = ["--set", "patch_size=4", "--set", "hidden_dim=16", "--set", "depth=1", "--set", "num_heads=2"]
TINY += ["--set", "mlp_dim=32"]
STEPS = 8  # 64 images in global batches of 8

# `training.fit_model` on the data of argv[1] into argv[2]: with argv[3] == "mirrored" under
# tf.distribute.MirroredStrategy over two logical CPUs (the CPU split as TensorFlow splits a GPU), else on
# one device; with argv[4] == "kill", the process dies (SIGKILL) right after committing epoch 1's backup.
FIT_MODEL = r"""
import os, signal, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_vit import data, training
from keras_vit.applications import get_model

source, out, mode, kill = sys.argv[1:5]
if kill == "kill":
    commit = training._RunFolder.commit

    def commit_then_die(self, model, epoch, best):
        commit(self, model, epoch, best)
        os.kill(os.getpid(), signal.SIGKILL)

    training._RunFolder.commit = commit_then_die
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if mode == "mirrored" else None
keras.utils.set_random_seed(0)
bundle = data.load(source, batch_size=8, validation_split=0.0, seed=0)
with training.distribution_scope(strategy):
    model = get_model("vit_cifar_patch4_depth8_32", input_shape=bundle.input_shape, classes=bundle.num_classes,
                      patch_size=4, hidden_dim=16, depth=1, num_heads=2, mlp_dim=32)
# No clipping: Keras' TensorFlow optimizer clips each replica's part of the gradient before the
# all-reduce, so with clipping a mirrored step differs from one device's (the JAX test keeps it).
recipe = training.Recipe(global_clipnorm=None)
training.fit_model(model, bundle, recipe=recipe, epochs=2, out_dir=out, distribute=strategy, verbose=0)
print("replicas", strategy.num_replicas_in_sync if strategy else 1)
model.save(os.path.join(out, "model.keras"))
"""


def _npz(path, n=64, classes=2):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, (n, 8, 8, 1)).astype(np.uint8)
    for label in range(classes):
        x[y == label, 2 * label : 2 * label + 3] += 180
    np.savez(path, x=x, y=y, x_test=x[:16], y_test=y[:16])
    return str(path)


def _train(data, out, *extra, env=None, script=None, cwd):
    command = [sys.executable, script] if script else [sys.executable, "-m", "keras_vit.cli"]
    args = ["train", "--model", MODEL, "--data", data, "--out", out, "--epochs", "2", "--batch-size", "8"]
    args += ["--validation-split", "0", "--quiet", *TINY, *extra]
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen(
        command + args, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def _losses(out):
    with open(os.path.join(out, "logs", "history.csv"), newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def _fit_model(tmp_path, data, out, mode, kill=""):
    script = tmp_path / "fit_model.py"
    script.write_text(FIT_MODEL)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        [sys.executable, str(script), data, out, mode, kill or "-"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_mirrored_on_two_devices_trains_and_resumes_after_a_kill(tmp_path):
    data = _npz(tmp_path / "data.npz")
    out, single = str(tmp_path / "mirrored"), str(tmp_path / "single")
    # A mirrored run killed after epoch 1, and the one-device oracle beside it.
    killed = _fit_model(tmp_path, data, out, "mirrored", kill="kill")
    oracle = _fit_model(tmp_path, data, single, "single")
    code, _, stderr = _finish(killed)
    assert code == -signal.SIGKILL, stderr[-3000:]
    code, _, stderr = _finish(oracle)
    assert code == 0, stderr[-3000:]

    # The same call resumes from the backup and finishes on both replicas.
    code, stdout, stderr = _finish(_fit_model(tmp_path, data, out, "mirrored"))
    assert code == 0, stderr[-3000:]
    assert "Resuming an interrupted run at epoch 2/2" in stdout
    assert "replicas 2" in stdout
    # One row per epoch (epoch 1 from before the kill), both finite, like the one-device run's.
    expected, got = _losses(single), _losses(out)
    assert len(got) == len(expected) == 2
    assert np.isfinite(got).all()
    model = keras.saving.load_model(os.path.join(out, "model.keras"))
    assert int(model.optimizer.iterations) == 2 * STEPS
    assert not os.path.exists(os.path.join(out, "backup"))


def test_jax_data_parallel_on_two_devices_matches_one_device(tmp_path):
    data = _npz(tmp_path / "data.npz")
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "CUDA_VISIBLE_DEVICES": ""}
    runs = {
        "parallel": _train(data, str(tmp_path / "parallel"), "--distribute", "data-parallel", env=env, cwd=tmp_path),
        "single": _train(data, str(tmp_path / "single"), env=env, cwd=tmp_path),
    }
    for name, process in runs.items():
        code, _, stderr = _finish(process)
        assert code == 0, f"{name}: {stderr[-3000:]}"
    np.testing.assert_allclose(_losses(tmp_path / "parallel"), _losses(tmp_path / "single"), rtol=1e-4)
    # The trained model was laid out on both devices.
    probe = (
        "import jax, keras\n"
        "from keras_vit import training\n"
        "d = training.make_distribution('data-parallel')\n"
        "print(len(jax.devices()), d.device_mesh.shape)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert shown.stdout.split()[0] == "2", shown.stderr[-2000:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--distribute", "sideways"], "argument --distribute: invalid choice: 'sideways'"),
        (["--jit-compile", "maybe"], "argument --jit-compile: must be one of auto, true, false. Received: 'maybe'"),
        (["--steps-per-execution", "0"], "argument --steps-per-execution: must be a positive integer. Received: '0'"),
        (["--mixed-precision", "fp8"], "argument --mixed-precision: must be one of auto, on, off. Received: 'fp8'"),
    ],
)
def test_bad_speed_and_distribution_flags_are_refused_naming_them(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", MODEL, "--out", str(tmp_path / "run"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_multi_worker_on_tensorflow_says_what_is_missing_or_why_not(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    data = _npz(tmp_path / "data.npz")
    command = ["train", "--model", MODEL, "--data", data, "--out", str(tmp_path / "run"), *TINY]
    command += ["--distribute", "multi-worker"]
    assert main(command) == 2
    assert "reads the cluster from the TF_CONFIG environment variable" in capsys.readouterr().err
    # With a cluster: refused before any work, naming the Keras failure and the way that works.
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}')
    assert main(command) == 2
    assert "cannot `fit` under tf.distribute.MultiWorkerMirroredStrategy" in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.keras").exists()


def test_the_compiled_step_is_announced_unless_quiet(tmp_path, capsys):
    data = _npz(tmp_path / "data.npz", n=16)
    common = ["train", "--model", MODEL, "--data", data, "--epochs", "1", "--batch-size", "8", *TINY]
    assert main([*common, "--out", str(tmp_path / "a"), "--no-jit"]) == 0
    shown = capsys.readouterr().out
    expected = {"tensorflow": "tf.function graph"}.get(keras.backend.backend())
    if expected:
        # --no-jit: TensorFlow still compiles a graph (without XLA); JAX and PyTorch run eagerly.
        assert f"Compiling the training step ({keras.backend.backend()}, {expected})..." in shown
        assert shown.index("Compiling the training step") < shown.index("Saved ")
    assert main([*common, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert "Compiling" not in capsys.readouterr().out
