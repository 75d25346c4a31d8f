import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import keras_vit_cli

from keras_vit import data, training
from keras_vit.cli import main
from keras_vit.utils import save_model_atomic

# A tiny ViT from the registry, resized for 8×8 digits.
TINY = [
    "--set",
    "patch_size=2",
    "--set",
    "hidden_dim=32",
    "--set",
    "depth=1",
    "--set",
    "num_heads=2",
    "--set",
    "mlp_dim=32",
]
TINY_KWARGS = {"patch_size": 2, "hidden_dim": 32, "depth": 1, "num_heads": 2, "mlp_dim": 32}
MODEL = "vit_cifar_patch4_depth8_32"


def _history_epochs(out):
    with open(os.path.join(out, "logs", "history.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _tiny_npz(path, n=48):
    """Two classes a ViT separates in one epoch: bright top half or bright bottom half."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.integers(0, 60, (n, 8, 8, 1)).astype(np.uint8)
    x[y == 0, :4] += 180
    x[y == 1, 4:] += 180
    np.savez(path, x=x, y=y, x_test=x[:16], y_test=y[:16])
    return str(path)


def test_train_evaluate_predict_explain_in_fresh_processes(tmp_path):
    """Each subcommand in its own process, on the files the one before wrote."""
    out = tmp_path / "run"
    stdout = keras_vit_cli(
        "train",
        "--model",
        MODEL,
        "--data",
        "digits",
        "--epochs",
        "3",
        "--lr",
        "3e-3",
        "--batch-size",
        "32",
        "--out",
        out,
        "--quiet",
        "--json",
        *TINY,
    )
    trained = json.loads(stdout.strip().splitlines()[-1])
    for name in ("model.keras", "preprocessing.json", "checkpoints/best.weights.h5", "logs/history.csv"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(out, "logs", "train")))
    assert _history_epochs(out) == [0, 1, 2]
    assert training.resume_epoch(out) == 0  # finished runs leave no backup to resume
    assert trained["accuracy"] > 0.45  # chance is 0.1; this setup reaches about 0.5
    model_file = os.path.join(out, "model.keras")

    stdout = keras_vit_cli("evaluate", "--model-file", model_file, "--data", "digits", "--json")
    evaluated = json.loads(stdout.strip().splitlines()[-1])
    assert evaluated["split"] == "test" and evaluated["examples"] == 360
    np.testing.assert_allclose(evaluated["accuracy"], trained["accuracy"], atol=1e-6)
    np.testing.assert_allclose(evaluated["loss"], trained["loss"], rtol=1e-4)

    # predict on PNG files of test digits gives the model's own probabilities.
    (_, _), (x_test, _), _ = data.load_arrays("digits")
    paths = []
    for i in range(3):
        path = str(tmp_path / f"digit{i}.png")
        tf.io.write_file(path, tf.io.encode_png(np.round(x_test[i] * 255).astype(np.uint8)))
        paths.append(path)
    predictions = json.loads(keras_vit_cli("predict", "--model-file", model_file, "--top-k", "3", "--json", *paths))
    model = keras.saving.load_model(model_file)
    prep = training.read_preprocessing(model_file)
    # The model carries the data's statistics inside and takes the pixels themselves.
    layer = model.get_layer("preprocessing")
    np.testing.assert_allclose(layer.mean, prep["mean"]) and np.testing.assert_allclose(layer.std, prep["std"])
    inner = keras.Model(layer.output, model.output)
    expected = inner.predict((np.round(x_test[:3] * 255) / 255 - prep["mean"]) / prep["std"], verbose=0)
    np.testing.assert_allclose(model.predict(np.round(x_test[:3] * 255), verbose=0), expected, atol=1e-5)
    for item, probs in zip(predictions, expected):
        top = item["top_k"]
        assert len(top) == 3
        assert [t["class"] for t in top] == list(np.argsort(-probs)[:3])
        np.testing.assert_allclose([t["probability"] for t in top], np.sort(probs)[::-1][:3], atol=1e-4)
        assert top[0]["name"] == str(top[0]["class"])

    figure = tmp_path / "legrad.png"
    assert "wrote" in keras_vit_cli("explain", "--model-file", model_file, "--image", paths[0], "--out", figure)
    assert figure.stat().st_size > 1000 and figure.read_bytes()[:4] == b"\x89PNG"

    # Fine-tuning the written file in a new process keeps its architecture.
    keras_vit_cli(
        "train",
        "--model-file",
        model_file,
        "--data",
        "digits",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--out",
        tmp_path / "finetuned",
        "--quiet",
    )
    finetuned = keras.saving.load_model(tmp_path / "finetuned" / "model.keras")
    assert finetuned.count_params() == model.count_params()


class _Interrupt(keras.callbacks.Callback):
    """Stops training with an error at the end of epoch `epoch` (0-based), like a killed job."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated interruption")


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_interrupted_training_resumes(tmp_path, capsys):
    source = _tiny_npz(tmp_path / "tiny.npz")
    out = str(tmp_path / "run")
    args = dict(
        model=MODEL,
        data=source,
        out_dir=out,
        epochs=4,
        batch_size=8,
        validation_split=0.0,
        overrides=TINY_KWARGS,
        verbose=0,
    )
    with pytest.raises(RuntimeError, match="simulated interruption"):
        training.train(**args, callbacks=[_Interrupt(1)])
    assert not os.path.exists(os.path.join(out, "model.keras"))
    assert training.resume_epoch(out) == 2
    assert _history_epochs(out) == [0, 1]

    # Rerunning the same command resumes at the third epoch instead of starting again.
    rc = main(
        [
            "train",
            "--model",
            MODEL,
            "--data",
            source,
            "--epochs",
            "4",
            "--batch-size",
            "8",
            "--validation-split",
            "0",
            "--out",
            out,
            *TINY,
        ]
    )
    assert rc == 0
    assert "Resuming an interrupted run at epoch 3/4" in capsys.readouterr().out
    assert _history_epochs(out) == [0, 1, 2, 3]
    assert training.resume_epoch(out) == 0
    model = keras.saving.load_model(os.path.join(out, "model.keras"))
    # The optimizer state came back too: 4 epochs × 6 steps in all, so the schedule continued.
    assert int(model.optimizer.iterations) == 24

    # Fine-tuning a saved model file keeps its architecture and restarts the count.
    out2 = str(tmp_path / "run2")
    recorder = _EpochRecorder()
    result = training.train(
        model_file=os.path.join(out, "model.keras"),
        data=source,
        out_dir=out2,
        epochs=1,
        batch_size=8,
        validation_split=0.0,
        callbacks=[recorder],
        verbose=0,
    )
    assert recorder.epochs == [0]
    assert result["model"].count_params() == model.count_params()
    assert result["metrics"]["examples"] == 16
    assert os.path.isfile(os.path.join(out2, "model.keras"))


def test_failed_save_leaves_no_file(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = str(tmp_path / "model.keras")

    def broken_save(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a model")
        raise OSError("disk full")

    good = save_model_atomic(model, path)
    before = open(good, "rb").read()
    model.save = broken_save
    with pytest.raises(OSError, match="disk full"):
        save_model_atomic(model, path)
    assert open(path, "rb").read() == before  # the previous model is intact
    assert os.listdir(tmp_path) == ["model.keras"]  # no temporary file left
    with pytest.raises(OSError):
        save_model_atomic(model, str(tmp_path / "new.keras"))
    assert not os.path.exists(tmp_path / "new.keras")
    with pytest.raises(ValueError, match="Received: path="):
        save_model_atomic(model, str(tmp_path / "model.h5"))


def test_cli_errors(tmp_path, capsys):
    assert main(["train", "--model", "vit_nonexistent", "--out", str(tmp_path / "x")]) == 2
    assert "Unknown model name. Received: name='vit_nonexistent'" in capsys.readouterr().err
    missing = str(tmp_path / "missing.keras")
    assert main(["evaluate", "--model-file", missing]) == 2
    assert f"Received: --model-file {missing!r}" in capsys.readouterr().err
    assert main(["train", "--model", MODEL, "--data", "nowhere", "--out", str(tmp_path / "y")]) == 2
    assert "Received: source='nowhere'" in capsys.readouterr().err
    assert main(["train", "--model", MODEL, "--set", "depth", "--out", str(tmp_path / "z")]) == 2
    assert "Received: --set 'depth'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "w")])  # --model or --model-file is required
