"""Every `keras-vit` flag reaches what it configures, checked on what the command built.

Each subcommand runs as its own process, as a user runs it; the checks read what it wrote (the saved
model's architecture and its optimizer's own recorded settings, the tuner's oracle files, the figures),
never the parser. One training run is shared by the tests that read its model.
"""

import csv
import fnmatch
import json
import math
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import keras_vit_cli

from keras_vit import data
from keras_vit.applications import get_model, list_models

MODEL = "vit_cifar_patch4_depth8_32"
# digits are 8×8 grey: --image-size 16 --channels 3 gives 16×16 RGB, patch 4 → a 4×4 grid of tokens.
TRAIN_FLAGS = [
    "--model",
    MODEL,
    "--data",
    "digits",
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--lr",
    "2e-3",
    "--weight-decay",
    "0.03",
    "--warmup",
    "0.25",
    "--validation-split",
    "0.2",
    "--seed",
    "3",
    "--image-size",
    "16",
    "--channels",
    "3",
    "--set",
    "patch_size=4",
    "--set",
    "hidden_dim=16",
    "--set",
    "depth=2",
    "--set",
    "num_heads=2",
    "--set",
    "mlp_dim=24",
    "--jit-compile",
    "false",
    "--steps-per-execution",
    "3",
    "--quiet",
    "--json",
]
# scikit-learn's digits as keras_vit.data splits them: 1,797 images, 360 of them the test split.
DIGITS_TRAIN = 1797 - 360


def _trained_with(out, *flags):
    stdout = keras_vit_cli("train", *flags, "--out", out)
    return json.loads(stdout.strip().splitlines()[-1]), stdout


def _history(out):
    with open(os.path.join(out, "logs", "history.csv")) as f:
        return list(csv.DictReader(f))


def _saved_config(path):
    """The architecture and compile configuration a `.keras` file stores, read from the archive itself."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("flags") / "run")
    report, stdout = _trained_with(out, *TRAIN_FLAGS)
    return {"out": out, "report": report, "stdout": stdout, "model_file": os.path.join(out, "model.keras")}


@pytest.fixture(scope="module")
def digit_pngs(trained, tmp_path_factory):
    """Two test digits as 16×16 RGB PNG files (each pixel doubled, so reading them back resizes nothing)."""
    (_, _), (x_test, y_test), _ = data.load_arrays("digits")
    folder = tmp_path_factory.mktemp("images")
    pixels, paths = [], []
    for i in (0, 1):
        image = np.round(x_test[i] * 255).astype(np.uint8)
        image = np.repeat(np.repeat(np.repeat(image, 2, axis=0), 2, axis=1), 3 // image.shape[-1], axis=-1)
        path = str(folder / f"digit{i}.png")
        tf.io.write_file(path, tf.io.encode_png(image))
        pixels.append(image)
        paths.append(path)
    return {"paths": paths, "pixels": np.stack(pixels), "labels": [int(y) for y in y_test[:2]]}


def test_train_flags_reach_the_model_the_optimizer_and_the_data(trained):
    model = keras.saving.load_model(trained["model_file"])
    # --image-size 16 --channels 3 reach the data, hence the input the model was built for.
    assert model.input_shape == (None, 16, 16, 3)
    # Every --set reaches the factory: count the blocks in the saved file, read each one's width.
    config = _saved_config(trained["model_file"])
    blocks = [layer for layer in config["config"]["layers"] if layer["class_name"] == "TransformerBlock"]
    assert len(blocks) == 2
    assert {(b["config"]["num_heads"], b["config"]["mlp_dim"]) for b in blocks} == {(2, 24)}
    embed = model.get_layer("patch_embed")
    assert (embed.patch_size, embed.hidden_dim) == (4, 16)
    assert embed.output.shape == (None, 17, 16)  # a 4×4 grid and the class token
    # The optimizer's own record: --lr is the peak, --weight-decay the decay, --warmup a quarter of the steps.
    optimizer = config["compile_config"]["optimizer"]["config"]
    assert optimizer["weight_decay"] == pytest.approx(0.03)
    schedule = optimizer["learning_rate"]["config"]
    assert schedule["warmup_target"] == pytest.approx(2e-3) and schedule["initial_learning_rate"] == 0.0
    steps = int(model.optimizer.iterations)
    # --validation-split 0.2 holds out a fifth, --batch-size 64 batches the rest, for --epochs 2.
    n_train = DIGITS_TRAIN - round(DIGITS_TRAIN * 0.2)
    assert steps == 2 * math.ceil(n_train / 64) == 36
    assert (schedule["warmup_steps"], schedule["warmup_steps"] + schedule["decay_steps"]) == (math.ceil(0.25 * 36), 36)
    assert [row["epoch"] for row in _history(trained["out"])] == ["0", "1"]
    # --jit-compile false (the default compiles with XLA) and --steps-per-execution 3 reach `compile`.
    assert (config["compile_config"]["jit_compile"], config["compile_config"]["steps_per_execution"]) == (False, 3)


def test_train_quiet_and_json_shape_the_output(trained):
    # --quiet: no progress bars or epoch lines; --json: the last line is the report, and nothing else is printed.
    lines = [line for line in trained["stdout"].splitlines() if line.strip()]
    assert len(lines) == 1, trained["stdout"][-2000:]
    report = trained["report"]
    assert set(report) == {"model_path", "loss", "accuracy", "examples"}
    assert report["examples"] == 360 and os.path.samefile(report["model_path"], trained["model_file"])


def test_evaluate_flags_pick_the_split_the_training_held_out(trained):
    """`evaluate --split validation --validation-split 0.2 --seed 3` is the training's validation set:
    its accuracy is the one the last training epoch logged, which another seed or split would not give."""
    stdout = keras_vit_cli(
        "evaluate",
        "--model-file",
        trained["model_file"],
        "--data",
        "digits",
        "--split",
        "validation",
        "--validation-split",
        "0.2",
        "--seed",
        "3",
        "--batch-size",
        "50",
        "--json",
    )
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["split"] == "validation"
    assert report["examples"] == round(DIGITS_TRAIN * 0.2)
    last = _history(trained["out"])[-1]
    assert report["accuracy"] == pytest.approx(float(last["val_accuracy"]), abs=1e-6)
    assert report["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-4)


def test_train_augment_reaches_the_training_pipeline(trained, tmp_path):
    """The same run with --augment: same data split and statistics, other training batches, other weights.
    (Without --augment this run is deterministic: a rerun gives the fixture's loss to the last digit.)"""
    out = str(tmp_path / "augmented")
    report, _ = _trained_with(out, *TRAIN_FLAGS, "--augment")
    with (
        open(os.path.join(out, "preprocessing.json")) as f,
        open(os.path.join(trained["out"], "preprocessing.json")) as g,
    ):
        assert json.load(f) == json.load(g)
    plain, augmented = _history(trained["out"]), _history(out)
    assert len(plain) == len(augmented) == 2
    assert float(plain[0]["loss"]) != float(augmented[0]["loss"])
    first = keras.saving.load_model(trained["model_file"])
    second = keras.saving.load_model(os.path.join(out, "model.keras"))
    assert int(first.optimizer.iterations) == int(second.optimizer.iterations)  # same number of batches
    kernel = "patch_embed/projection/kernel"
    weights = {m: {v.path: v for v in m.weights} for m in (first, second)}
    assert not np.allclose(np.asarray(weights[first][kernel]), np.asarray(weights[second][kernel]))


def test_predict_top_k_ranks_the_models_own_probabilities(trained, digit_pngs):
    stdout = keras_vit_cli("predict", "--model-file", trained["model_file"], "--top-k", "2", *digit_pngs["paths"])
    lines = stdout.strip().splitlines()
    assert len(lines) == 2
    model = keras.saving.load_model(trained["model_file"])
    with open(os.path.join(trained["out"], "preprocessing.json")) as f:
        prep = json.load(f)
    probabilities = model.predict(_inputs(model, digit_pngs["pixels"], prep), verbose=0)
    for line, path, probs in zip(lines, digit_pngs["paths"], probabilities):
        name, ranked = line.split(": ", 1)
        assert name == path
        entries = [entry.rsplit(" (", 1) for entry in ranked.split(", ")]
        assert len(entries) == 2  # --top-k 2
        assert [int(c) for c, _ in entries] == list(np.argsort(-probs)[:2])
        np.testing.assert_allclose([float(p.rstrip(")")) for _, p in entries], np.sort(probs)[::-1][:2], atol=6e-4)


def _inputs(model, pixels, prep):
    """What `predict`/`explain` feed `model` for these uint8 pixels: the pixels themselves when the model
    normalises inside (an `ImagePreprocessing` layer), else [0, 1] pixels standardised with preprocessing.json."""
    if any(type(layer).__name__ == "ImagePreprocessing" for layer in model.layers):
        return pixels.astype("float32")
    return ((pixels / 255.0 - np.asarray(prep["mean"])) / np.asarray(prep["std"])).astype("float32")


def _png(path):
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy().astype(np.int16)


def _differing(a, b):
    """Fraction of pixels that differ by more than 2 levels of 255 (1.0 when the sizes differ). The margin
    absorbs the one-level rounding of an image decoded from PNG and resized instead of computed in float64."""
    return 1.0 if a.shape != b.shape else float(np.mean(np.abs(a - b).max(axis=-1) > 2))


@pytest.mark.parametrize(
    "flags, options, defaults",
    [
        (
            ["--method", "legrad", "--class-index", "3", "--legrad-layers", "0", "--label", "3", "4"],
            {"method": "legrad", "class_index": 3, "layers": [0], "labels": [3, 4]},
            {"method": "legrad"},
        ),
        (
            ["--method", "rollout", "--head-fusion", "max", "--discard-ratio", "0.5"],
            {"method": "rollout", "head_fusion": "max", "discard_ratio": 0.5},
            {"method": "rollout"},
        ),
        (["--method", "attention", "--layer", "0"], {"method": "attention", "layer": 0}, {"method": "attention"}),
    ],
    ids=["legrad", "rollout", "attention"],
)
def test_explain_flags_reach_the_figure(trained, digit_pngs, tmp_path, flags, options, defaults):
    """The CLI's figure is the figure of the explain function called with what the flags say, and not the
    one of its defaults (so a flag that is dropped or misrouted changes the pixels)."""
    from keras_vit.explain import save_explanation_figure

    figure = tmp_path / "cli.png"
    keras_vit_cli(
        "explain", "--model-file", trained["model_file"], "--image", *digit_pngs["paths"], *flags, "--out", figure
    )
    model = keras.saving.load_model(trained["model_file"], compile=False)
    with open(os.path.join(trained["out"], "preprocessing.json")) as f:
        prep = json.load(f)

    def expected(path, method, **kwargs):
        x = _inputs(model, digit_pngs["pixels"], prep)
        save_explanation_figure(model, x, path, method=method, class_names=prep["class_names"], **kwargs)
        return _png(path)

    wanted = expected(tmp_path / "wanted.png", **options)
    default = expected(tmp_path / "default.png", **defaults)
    got = _png(figure)
    assert _differing(got, wanted) < 0.002, _differing(got, wanted)
    assert _differing(default, wanted) > 0.01  # the flags change the figure


def test_models_pattern_and_params():
    """`models PATTERN --params`: the registered names the glob matches, each with its built parameter count."""
    pattern = "vit_cifar_patch8_*"
    names = fnmatch.filter(list_models(), pattern)
    assert len(names) == 2
    counts = {}
    for line in keras_vit_cli("models", pattern, "--params").strip().splitlines():
        name, count = line.split("\t")
        counts[name] = int(count.replace(",", ""))
    assert list(counts) == names
    for name in names:
        assert counts[name] == get_model(name).count_params()
        keras.backend.clear_session()


def _tune_npz(path, n=64):
    """12×12 grey images whose class is which half is brighter."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 128, (n, 12, 12, 1))
    for i, label in enumerate(y):
        x[i, 6 * label : 6 * label + 6] += 120
    np.savez(path, x=x.astype("uint8"), y=y.astype("int32"))
    return str(path)


def test_tune_flags_reach_the_tuner_and_its_compiled_trials(tmp_path):
    """`keras-vit tune` as users run it: compiled (no --run-eagerly), every trial COMPLETED, and each flag
    visible in what the tuner wrote (oracle, trials, best-trial record, exported model)."""
    source = _tune_npz(tmp_path / "d.npz")
    export = tmp_path / "exported" / "best.keras"
    keras_vit_cli(
        "tune",
        source,
        "--tuner",
        "grid",
        "--max-trials",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--validation-split",
        "0.25",
        "--image-size",
        "8",
        "--objective",
        "val_loss",
        "--patience",
        "0",
        "--hp",
        "depth=1",
        "--hp",
        "hidden_dim=16",
        "--hp",
        "num_heads=2,4",
        "--hp",
        "patch_size=4",
        "--hp",
        "mlp_ratio=2.0",
        "--hp",
        "dropout=0.0",
        "--hp",
        "drop_path_rate=0.0",
        "--hp",
        "learning_rate=0.002",
        "--hp",
        "weight_decay=0.02",
        "--directory",
        tmp_path / "runs",
        "--project-name",
        "proj",
        "--export",
        export,
        "--mixed-precision",
        "on",
        "--seed",
        "5",
        "--verbose",
        "0",
    )
    project = tmp_path / "runs" / "proj"  # --directory and --project-name
    with open(project / "oracle.json") as f:
        oracle = json.load(f)
    assert oracle["seed"] == 5  # --seed
    space = {p["config"]["name"]: p for p in oracle["hyperparameters"]["space"]}
    assert space["vit/num_heads"]["class_name"] == "Choice" and space["vit/num_heads"]["config"]["values"] == [2, 4]
    assert {name: p["config"]["value"] for name, p in space.items() if p["class_name"] == "Fixed"} == {
        "vit/depth": 1,
        "vit/hidden_dim": 16,
        "vit/patch_size": 4,
        "vit/mlp_ratio": 2.0,
        "vit/dropout": 0.0,
        "vit/drop_path_rate": 0.0,
        "vit/learning_rate": 0.002,
        "vit/weight_decay": 0.02,
    }
    trials = {}
    for name in sorted(os.listdir(project)):
        if name.startswith("trial_"):
            with open(project / name / "trial.json") as f:
                trial = json.load(f)
            trials[trial["trial_id"]] = trial
    # --tuner grid --max-trials 2 over a space of exactly two points: both, once each.
    assert {t["status"] for t in trials.values()} == {"COMPLETED"} and len(trials) == 2
    assert sorted(t["hyperparameters"]["values"]["vit/num_heads"] for t in trials.values()) == [2, 4]
    for trial in trials.values():
        # --objective val_loss: the score is the trial's best val_loss.
        observed = [o["value"][0] for o in trial["metrics"]["metrics"]["val_loss"]["observations"]]
        assert trial["score"] == pytest.approx(min(observed))
    with open(project / "best_trial.json") as f:
        record = json.load(f)
    assert record["score"] == min(t["score"] for t in trials.values())
    # 64 images, a quarter held out (--validation-split), batches of 16 (--batch-size), --epochs 2.
    assert (record["epochs"], record["batch_size"], record["total_steps"]) == (2, 16, 2 * 3)
    assert record["recipe"]["learning_rate"] == 0.002 and record["recipe"]["weight_decay"] == 0.02
    # --export: the best model there, built for --image-size 8, compiled as the trials were (not eagerly).
    config = _saved_config(export)
    assert not (project / "best_model.keras").exists()
    assert config["config"]["layers"][0]["config"]["batch_shape"] == [None, 8, 8, 1]
    assert config["compile_config"]["run_eagerly"] is False
    head = [layer for layer in config["config"]["layers"] if layer["name"] == "head"][0]
    assert head["config"]["dtype"]["config"]["name"] == "mixed_float16"  # --mixed-precision on, also on a CPU
    best = keras.saving.load_model(export, compile=False)
    assert best.get_layer("block_0").num_heads == record["hyperparameters"]["vit/num_heads"]
