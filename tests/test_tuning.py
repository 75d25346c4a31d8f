import csv
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zipfile

import keras
import keras_tuner as kt
import numpy as np
import pytest

from keras_vit import cli, training
from keras_vit.cli.tune import parse_hp
from keras_vit.tuning import (
    BEST_TRIAL_FILE,
    CNNHybridViTHyperModel,
    TransformerHyperModel,
    ViTHyperModel,
    devices,
    distributed,
    patch_size_choices,
    run_search,
    tuners,
)

# A tiny search space: every trial trains in seconds on 8×8 images.
TINY_SPACE = {
    "depth": 1,
    "hidden_dim": 16,
    "num_heads": [2, 4],
    "patch_size": [2, 4],
    "mlp_ratio": 2.0,
    "dropout": 0.0,
    "drop_path_rate": 0.0,
}
TINY_HP_ARGS = [
    "--hp",
    "depth=1",
    "--hp",
    "hidden_dim=16",
    "--hp",
    "num_heads=2,4",
    "--hp",
    "patch_size=2,4",
    "--hp",
    "mlp_ratio=2.0",
    "--hp",
    "dropout=0.0",
    "--hp",
    "drop_path_rate=0.0",
]
SUBPROCESS_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": ""}


def tiny_data(n=64, seed=0):
    """8×8 grey images whose class is which half (top or bottom) is brighter."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 128, (n, 8, 8, 1))
    for i, label in enumerate(y):
        x[i, 4 * label : 4 * label + 4] += 120
    return x.astype("uint8"), y.astype("int32")


def blocks(model):
    return [layer for layer in model.layers if layer.name.startswith("block_")]


def trial_statuses(project_dir):
    statuses = {}
    for name in sorted(os.listdir(project_dir)):
        path = os.path.join(project_dir, name, "trial.json")
        if name.startswith("trial_") and os.path.exists(path):
            with open(path) as f:
                trial = json.load(f)
            statuses[trial["trial_id"]] = trial["status"]
    return statuses


def read_events(project_dir):
    path = os.path.join(project_dir, "events.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc in procs:
            if proc.poll() is not None and proc.returncode != 0:
                raise AssertionError(f"a process exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def kill_all(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- hypermodel


def test_defaults_build_expected_architecture():
    hypermodel = ViTHyperModel((32, 32, 3), 10, total_steps=100)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values == {
        "vit/patch_size": 4,
        "vit/depth": 6,
        "vit/num_heads": 4,
        "vit/hidden_dim": 128,
        "vit/mlp_ratio": 2.0,
        "vit/dropout": 0.0,
        "vit/drop_path_rate": 0.1,
        "vit/learning_rate": 1e-3,
        "vit/weight_decay": 0.05,
    }
    assert model.get_layer("patch_embed").patch_size == 4
    assert model.get_layer("patch_embed").hidden_dim == 128
    assert len(blocks(model)) == 6
    block = blocks(model)[0]
    assert block.num_heads == 4 and block.mlp_dim == 256
    assert model.get_layer("head").units == 10
    assert model.output_shape == (None, 10)
    # 64 patch tokens plus the class token.
    assert model.get_layer("patch_embed").output.shape == (None, 65, 128)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.weight_decay == pytest.approx(0.05)
    # The training recipe: warmup over 10% of the 100 steps to the searched peak, then cosine to 0.
    config = model.optimizer.get_config()
    assert config["global_clipnorm"] == 1.0
    schedule = config["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert (schedule["config"]["warmup_steps"], schedule["config"]["decay_steps"]) == (10, 90)
    assert schedule["config"]["warmup_target"] == pytest.approx(1e-3)
    assert hypermodel.trial_recipe(hp) == training.Recipe(learning_rate=1e-3, weight_decay=0.05)


def test_searched_learning_rate_and_weight_decay_go_into_the_recipe():
    base = training.Recipe(warmup_fraction=0.2, global_clipnorm=0.5)
    hypermodel = ViTHyperModel((8, 8, 1), 2, recipe=base, total_steps=20, depth=1, hidden_dim=16, num_heads=2)
    hp = kt.HyperParameters()
    hp.Fixed("vit/learning_rate", 3e-3)
    hp.Fixed("vit/weight_decay", 0.01)
    model = hypermodel.build(hp)
    assert hypermodel.trial_recipe(hp) == training.Recipe(3e-3, 0.01, 0.2, 0.5)
    config = model.optimizer.get_config()
    assert config["weight_decay"] == pytest.approx(0.01) and config["global_clipnorm"] == 0.5
    schedule = config["learning_rate"]["config"]
    assert (schedule["warmup_steps"], schedule["decay_steps"]) == (4, 16)
    assert schedule["warmup_target"] == pytest.approx(3e-3)
    with pytest.raises(ValueError, match="needs `total_steps`.*Received: total_steps=None"):
        ViTHyperModel((8, 8, 1), 2, depth=1, hidden_dim=16, num_heads=2).build(kt.HyperParameters())
    with pytest.raises(ValueError, match="Received: recipe="):
        ViTHyperModel((8, 8, 1), 2, recipe={"learning_rate": 1e-3})


def test_fixed_overrides_build_expected_architecture():
    hypermodel = ViTHyperModel((32, 32, 3), 10, total_steps=10)
    hp = kt.HyperParameters()
    hp.Fixed("vit/patch_size", 8)
    hp.Fixed("vit/depth", 3)
    hp.Fixed("vit/num_heads", 2)
    hp.Fixed("vit/hidden_dim", 64)
    hp.Fixed("vit/mlp_ratio", 4.0)
    model = hypermodel.build(hp)
    assert model.get_layer("patch_embed").patch_size == 8
    assert model.get_layer("patch_embed").output.shape == (None, 17, 64)
    assert len(blocks(model)) == 3
    assert blocks(model)[0].num_heads == 2 and blocks(model)[0].mlp_dim == 256
    # The same architecture straight from the factory has the same parameter count.
    from keras_vit.applications import VisionTransformer

    expected = VisionTransformer(
        patch_size=8, hidden_dim=64, depth=3, num_heads=2, mlp_dim=256, input_shape=(32, 32, 3), classes=10
    )
    assert model.count_params() == expected.count_params()


def test_constructor_specs_fix_list_and_range():
    hypermodel = ViTHyperModel(
        (16, 16, 1),
        3,
        name="small",
        depth=2,
        patch_size=[4, 8],
        learning_rate={"min_value": 1e-3, "max_value": 1e-2, "sampling": "log"},
        num_heads={"values": [2, 4], "default": 4},
        total_steps=10,
    )
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    space = {p.name: p for p in hp.space}
    assert isinstance(space["small/depth"], kt.engine.hyperparameters.Fixed)
    assert space["small/patch_size"].values == [4, 8]
    assert space["small/learning_rate"].sampling == "log"
    assert hp.values["small/num_heads"] == 4
    assert hp.values["small/patch_size"] == 4
    assert model.name == "small" and len(blocks(model)) == 2


def test_scoped_names_compose():
    hp = kt.HyperParameters()
    ViTHyperModel((16, 16, 3), 5, name="a", depth=1, hidden_dim=32, total_steps=10).build(hp)
    ViTHyperModel((16, 16, 3), 5, name="b", depth=2, hidden_dim=64, total_steps=10).build(hp)
    assert hp.values["a/depth"] == 1 and hp.values["b/depth"] == 2
    assert hp.values["a/hidden_dim"] == 32 and hp.values["b/hidden_dim"] == 64


def test_patch_size_choices_divide_the_image():
    assert patch_size_choices(32) == [2, 4, 8, 16]
    assert patch_size_choices((224, 224)) == [14, 16, 28, 32, 56, 112]
    assert patch_size_choices((24, 36)) == [2, 3, 4, 6, 12]
    for p in patch_size_choices((24, 36)):
        assert 24 % p == 0 and 36 % p == 0


def test_invalid_spaces_raise():
    message = r"Every `patch_size` must divide the image size 32×32 .*Received: patch_size=\[4, 5\]"
    with pytest.raises(ValueError, match=message):
        ViTHyperModel((32, 32, 3), 10, patch_size=[4, 5])
    message = r"these pairs are not: \[\(64, 3\)\]. Received: hidden_dim=64, num_heads=\[2, 3\]"
    with pytest.raises(ValueError, match=message):
        ViTHyperModel((32, 32, 3), 10, hidden_dim=64, num_heads=[2, 3])
    with pytest.raises(ValueError, match=r"Unknown hyperparameters \['heads'\]"):
        ViTHyperModel((32, 32, 3), 10, heads=4)
    with pytest.raises(ValueError, match=r"unknown keys \['max'\], missing keys \['max_value'\]"):
        ViTHyperModel((32, 32, 3), 10, depth={"min_value": 2, "max": 4})
    with pytest.raises(ValueError, match=r"Received: classes=0"):
        ViTHyperModel((32, 32, 3), 0)


def test_twenty_random_draws_all_build():
    # The default space for 32×32 images (depth held at 1 to keep the builds quick:
    # depth does not interact with the patch/heads/width constraints). These seeds draw
    # 16 distinct (patch, heads, width) combinations in 20 draws.
    hypermodel = ViTHyperModel((32, 32, 3), 10, depth=1, total_steps=10)
    hp = kt.HyperParameters()
    hypermodel.declare_space(hp)
    seen = set()
    for i in range(20):
        values = {}
        for j, param in enumerate(hp.space):
            values[param.name] = param.random_sample(seed=1000 * i + j)
        sample = hp.copy()
        sample.values = values
        model = hypermodel.build(sample)
        patch, heads, hidden = values["vit/patch_size"], values["vit/num_heads"], values["vit/hidden_dim"]
        assert 32 % patch == 0 and hidden % heads == 0
        assert model.get_layer("patch_embed").output.shape == (None, (32 // patch) ** 2 + 1, hidden)
        assert blocks(model)[0].num_heads == heads
        assert blocks(model)[0].mlp_dim == round(values["vit/mlp_ratio"] * hidden)
        seen.add((patch, heads, hidden))
        keras.backend.clear_session()
    assert len(seen) > 12


# ---------------------------------------------------------------- devices


class _FakeDevice:
    def __init__(self, name):
        self.name = name
        self.device_type = "GPU"


def test_strategy_and_mixed_precision_follow_the_devices(monkeypatch):
    import tensorflow as tf

    made = []

    class FakeMirrored:
        def __init__(self, devices=None):
            made.append(devices)

    monkeypatch.setattr(tf.distribute, "MirroredStrategy", FakeMirrored)
    two = [_FakeDevice("/physical_device:GPU:0"), _FakeDevice("/physical_device:GPU:1")]
    assert isinstance(devices.select_strategy(two), FakeMirrored)
    assert made == [["/gpu:0", "/gpu:1"]]
    assert devices.select_strategy(two[:1]) is None
    assert devices.select_strategy([]) is None
    assert devices.resolve_mixed_precision("auto", two[:1]) is True
    assert devices.resolve_mixed_precision("auto", []) is False
    assert devices.resolve_mixed_precision("off", two) is False
    with pytest.raises(ValueError, match="Received: mixed_precision='fp8'"):
        devices.resolve_mixed_precision("fp8", [])
    # With the real device list of this machine (no GPU in CI): nothing changes.
    monkeypatch.setattr(devices, "gpu_devices", lambda: [])
    assert devices.select_strategy() is None and devices.resolve_mixed_precision() is False


def test_gpu_devices_on_torch(monkeypatch):
    torch = pytest.importorskip("torch")

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.gpu_devices() == ["cuda:0", "cuda:1"]
    # Keras places the model on the first GPU; MirroredStrategy is TensorFlow's.
    assert devices.select_strategy() is None and devices.resolve_mixed_precision() is True


def test_gpu_devices_on_jax(monkeypatch):
    jax = pytest.importorskip("jax")

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(jax, "devices", lambda kind=None: ["gpu0"] if kind == "gpu" else [])
    assert devices.gpu_devices() == ["gpu0"]

    def no_gpu_platform(kind=None):
        raise RuntimeError("Unknown backend: 'gpu' requested, but no platforms that are instances of gpu are present.")

    monkeypatch.setattr(jax, "devices", no_gpu_platform)
    assert devices.gpu_devices() == [] and devices.resolve_mixed_precision() is False


def test_run_search_uses_mirrored_strategy_and_mixed_precision_on_gpus(monkeypatch, tmp_path):
    import tensorflow as tf

    monkeypatch.setattr(devices, "gpu_devices", lambda: [_FakeDevice("GPU:0"), _FakeDevice("GPU:1")])
    # A real MirroredStrategy over the CPU stands in for the two GPUs.
    monkeypatch.setattr(devices, "select_strategy", lambda gpus=None: tf.distribute.MirroredStrategy(["/cpu:0"]))
    policies = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            policies.append((self.model.dtype_policy.name, self.model.get_layer("head").compute_dtype))

    x, y = tiny_data()
    result = run_search(
        (x, y),
        max_trials=1,
        epochs=1,
        batch_size=32,
        search_space=TINY_SPACE,
        compile_kwargs={"run_eagerly": True},
        directory=str(tmp_path),
        callbacks=[Record()],
        export_path=None,
        verbose=0,
    )
    assert result.strategy == "MirroredStrategy" and result.mixed_precision is True
    assert policies == [("mixed_float16", "float16")]
    assert keras.config.dtype_policy().name == "float32"  # restored after the search
    assert trial_statuses(result.tuner.project_dir) == {"0": "COMPLETED"}


# ---------------------------------------------------------------- searches


def test_random_search_three_trials_complete_and_report(tmp_path):
    x, y = tiny_data()
    result = run_search(
        (x, y),
        tuner="random",
        max_trials=3,
        epochs=2,
        batch_size=32,
        search_space=TINY_SPACE,
        compile_kwargs={"run_eagerly": True},
        directory=str(tmp_path),
        project_name="p",
        verbose=0,
    )
    project = os.path.join(str(tmp_path), "p")
    assert trial_statuses(project) == {"0": "COMPLETED", "1": "COMPLETED", "2": "COMPLETED"}
    assert result.strategy is None and result.mixed_precision is False
    with open(result.csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    for row, trial_id in zip(rows, "012"):
        trial = result.tuner.oracle.trials[trial_id]
        assert float(row["objective"]) == pytest.approx(trial.score)
        assert int(row["vit/patch_size"]) == trial.hyperparameters.values["vit/patch_size"]
        assert float(row["trial_seconds"]) > 0
        params = ViTHyperModel((8, 8, 1), 2, total_steps=4, **TINY_SPACE).build(trial.hyperparameters).count_params()
        assert float(row["num_params"]) == params
    # 58 training images (6 held out) in batches of 32, for 2 epochs: the schedule spans 4 steps.
    assert result.tuner.hypermodel.total_steps == 4 == result.best_trial["total_steps"]
    with open(result.markdown_path) as f:
        table = f.read().splitlines()
    assert table[0].startswith("| trial | status | vit/patch_size")
    assert table[0].endswith("| val_accuracy | parameters | seconds |")
    assert [line.startswith("|") for line in table[:6]] == [True] * 5 + [False]
    assert f"## Best trial: {result.best_trial['trial_id']}" in "\n".join(table)
    # Arrays have no `keras-vit train --data` form: the record has the recipe but no command.
    assert result.best_trial["command"] is None and result.best_trial["recipe"]["global_clipnorm"] == 1.0
    assert os.path.getsize(result.plot_path) > 1000
    best = max(result.tuner.oracle.trials.values(), key=lambda t: t.score)
    assert result.best_score == best.score
    loaded = keras.saving.load_model(result.model_path, compile=False)
    assert loaded.get_layer("patch_embed").patch_size == best.hyperparameters.values["vit/patch_size"]
    # The exported model holds the best trial's checkpointed weights.
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        reloaded = result.tuner.load_model(best)
    probe = x[:8].astype("float32") / 255.0
    # The export carries its preprocessing: it takes the pixels (uint8 arrays are scaled to [0, 1] for the search).
    pixels = x[:8].astype("float32")
    np.testing.assert_allclose(loaded.predict(pixels, verbose=0), reloaded.predict(probe, verbose=0), atol=1e-6)


def test_compiled_search_as_keras_vit_tune_runs_it(tmp_path):
    """The default path `keras-vit tune` users get: `fit` compiled into graphs (no `run_eagerly`)."""
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                seen.append((self.model.run_eagerly, self.model.jit_compile))

    x, y = tiny_data()
    result = run_search(
        (x, y),
        max_trials=2,
        epochs=1,
        batch_size=32,
        search_space=TINY_SPACE,
        directory=str(tmp_path),
        project_name="p",
        callbacks=[Record()],
        early_stopping_patience=None,
        verbose=0,
    )
    assert trial_statuses(result.tuner.project_dir) == {"0": "COMPLETED", "1": "COMPLETED"}
    assert seen == [(False, False), (False, False)]  # one record per trial, each compiled
    assert all(0.0 <= row["objective"] <= 1.0 for row in result.rows)
    # The exported model records the same compilation (`keras-vit tune --run-eagerly` would record True).
    with zipfile.ZipFile(result.model_path) as archive:
        assert json.loads(archive.read("config.json"))["compile_config"]["run_eagerly"] is False


def test_best_trial_trains_again_with_keras_vit_train(tmp_path):
    """The command in best_trial.json trains the best trial's architecture with its recipe and schedule."""
    x, y = tiny_data()
    source = str(tmp_path / "data.npz")
    np.savez(source, x=x, y=y)
    space = {**TINY_SPACE, "learning_rate": [2e-3, 5e-3], "weight_decay": [0.01, 0.1]}
    result = run_search(
        source,
        max_trials=2,
        epochs=1,
        batch_size=16,
        search_space=space,
        compile_kwargs={"run_eagerly": True},
        directory=str(tmp_path / "runs"),
        export_path=None,
        early_stopping_patience=None,
        verbose=0,
    )
    assert set(trial_statuses(result.tuner.project_dir).values()) == {"COMPLETED"}
    with open(result.best_trial_path) as f:
        record = json.load(f)
    assert os.path.basename(result.best_trial_path) == BEST_TRIAL_FILE
    best = result.tuner.oracle.get_best_trials(1)[0]
    values = best.hyperparameters.values
    assert record["trial_id"] == best.trial_id
    assert record["recipe"] == {
        "learning_rate": values["vit/learning_rate"],
        "weight_decay": values["vit/weight_decay"],
        "warmup_fraction": 0.1,
        "global_clipnorm": 1.0,
    }
    with open(result.markdown_path) as f:
        assert record["command"] in f.read()

    argv = shlex.split(record["command"])
    assert argv[:2] == ["keras-vit", "train"]
    out = str(tmp_path / "again")
    argv[argv.index("--out") + 1] = out
    assert cli.main([*argv[1:], "--quiet"]) == 0

    # What the search compiled for the best trial, and what `keras-vit train` trained.
    searched = result.tuner.hypermodel.build(best.hyperparameters)
    trained = keras.saving.load_model(os.path.join(out, "model.keras"))
    assert {v.path: tuple(v.shape) for v in trained.weights} == {v.path: tuple(v.shape) for v in searched.weights}
    assert trained.get_layer("patch_embed").patch_size == values["vit/patch_size"]
    assert trained.get_layer("block_0").num_heads == values["vit/num_heads"]

    def without_name(config):
        return {key: value for key, value in config.items() if key != "name"}

    config = without_name(trained.optimizer.get_config())
    assert config == without_name(searched.optimizer.get_config())
    schedule = config["learning_rate"]["config"]
    # 58 training images in batches of 16 for 1 epoch: 4 steps, in the search and in `keras-vit train`.
    assert schedule["warmup_steps"] + schedule["decay_steps"] == record["total_steps"] == 4
    assert int(trained.optimizer.iterations) == 4


def test_hyperband_and_bayesian_complete(tmp_path):
    x, y = tiny_data()
    for name in ("hyperband", "bayesian"):
        result = run_search(
            (x, y),
            tuner=name,
            max_trials=2,
            epochs=2,
            batch_size=32,
            search_space=TINY_SPACE,
            compile_kwargs={"run_eagerly": True},
            directory=str(tmp_path),
            project_name=name,
            export_path=None,
            early_stopping_patience=None,
            verbose=0,
        )
        statuses = trial_statuses(result.tuner.project_dir)
        assert statuses and set(statuses.values()) == {"COMPLETED"}, (name, statuses)
        assert len(result.rows) == len(statuses)


def test_run_search_rejects_bad_input():
    with pytest.raises(ValueError, match="`tuner` must be one of"):
        run_search(tiny_data(), tuner="annealing", search_space=TINY_SPACE)
    with pytest.raises(ValueError, match="`data` must be a source string"):
        run_search(42)
    with pytest.raises(ValueError, match="A `tf.data.Dataset` needs `validation_data`"):
        import tensorflow as tf

        run_search(tf.data.Dataset.from_tensor_slices(tiny_data()).batch(8))
    with pytest.raises(ValueError, match="A distributed search needs"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
        old = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            run_search(tiny_data(), distributed_search=True, search_space=TINY_SPACE)
        finally:
            os.environ.clear()
            os.environ.update(old)


def test_parse_hp():
    assert parse_hp("depth=8") == ("depth", 8)
    assert parse_hp("patch_size=4,8") == ("patch_size", [4, 8])
    assert parse_hp("mlp_ratio=2.0") == ("mlp_ratio", 2.0)
    assert parse_hp("depth=2:12:2") == ("depth", {"min_value": 2, "max_value": 12, "step": 2})
    assert parse_hp("learning_rate=1e-4:1e-2:log") == (
        "learning_rate",
        {"min_value": 1e-4, "max_value": 1e-2, "sampling": "log"},
    )
    with pytest.raises(ValueError, match="Received: 'depth'"):
        parse_hp("depth")
    assert distributed.parse_address("127.0.0.1:8000") == ("127.0.0.1", 8000)
    with pytest.raises(ValueError, match="Received: oracle_address='localhost'"):
        distributed.parse_address("localhost")


# ---------------------------------------------------------------- resume and distributed

RESUME_SCRIPT = textwrap.dedent("""
    import sys, time
    import keras, numpy as np
    from keras_vit.tuning import run_search

    class Slow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(1.0)

    data = np.load(sys.argv[1])
    run_search((data["x"], data["y"]), max_trials=3, epochs=2, batch_size=32, search_space={space!r},
               compile_kwargs={{"run_eagerly": True}}, directory=sys.argv[2], project_name="p",
               callbacks=[Slow()], export_path=None, verbose=0)
""").format(space=TINY_SPACE)


@pytest.mark.slow
def test_resume_after_sigkill_keeps_completed_trials(tmp_path):
    x, y = tiny_data()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    script = tmp_path / "search.py"
    script.write_text(RESUME_SCRIPT)
    args = [sys.executable, str(script), str(tmp_path / "data.npz"), str(tmp_path / "runs")]
    project = str(tmp_path / "runs" / "p")
    first = subprocess.Popen(args, env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(
            lambda: any(e["event"] == "begin" and e["trial_id"] == "1" for e in read_events(project)),
            180,
            "trial 1 to begin",
            [first],
        )
        time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        kill_all([first])
    assert first.returncode == -signal.SIGKILL
    assert trial_statuses(project) == {"0": "COMPLETED", "1": "RUNNING"}
    with open(os.path.join(project, "trial_0", "trial.json")) as f:
        trial_0 = json.load(f)

    second = subprocess.run(args, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    assert trial_statuses(project) == {"0": "COMPLETED", "1": "COMPLETED", "2": "COMPLETED"}
    with open(os.path.join(project, "trial_0", "trial.json")) as f:
        assert json.load(f) == trial_0  # not run again
    events = read_events(project)
    begins = [e["trial_id"] for e in events if e["event"] == "begin"]
    ends = [(e["trial_id"], e["status"]) for e in events if e["event"] == "end"]
    assert begins == ["0", "1", "1", "2"]  # only the interrupted trial runs twice
    assert ends == [("0", "COMPLETED"), ("1", "COMPLETED"), ("2", "COMPLETED")]


@pytest.mark.slow
def test_distributed_chief_and_two_workers_survive_a_killed_worker(tmp_path):
    x, y = tiny_data()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    address = f"127.0.0.1:{free_port()}"
    directory = str(tmp_path / "runs")
    project = os.path.join(directory, "search")

    def tune(tuner_id):
        argv = [
            sys.executable,
            "-m",
            "keras_vit.cli",
            "tune",
            str(tmp_path / "data.npz"),
            "--distributed",
            "--tuner-id",
            tuner_id,
            "--oracle-address",
            address,
            "--max-trials",
            "4",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--directory",
            directory,
            "--run-eagerly",
            "--lease-seconds",
            "8",
            "--heartbeat-seconds",
            "1",
            "--verbose",
            "0",
            *TINY_HP_ARGS,
        ]
        log = open(tmp_path / f"{tuner_id}.log", "w")
        return subprocess.Popen(argv, env=SUBPROCESS_ENV, stdout=log, stderr=subprocess.STDOUT)

    chief = tune("chief")
    workers = {name: tune(name) for name in ("worker0", "worker1")}
    procs = [chief, *workers.values()]
    try:
        # Kill worker1 as soon as it has begun a trial.
        wait_for(
            lambda: any(e["event"] == "begin" and e["tuner_id"] == "worker1" for e in read_events(project)),
            240,
            "worker1 to begin a trial",
            procs,
        )
        workers["worker1"].send_signal(signal.SIGKILL)
        workers["worker1"].wait(timeout=30)
        killed_trial = [e["trial_id"] for e in read_events(project) if e["tuner_id"] == "worker1"][0]
        assert workers["worker0"].wait(timeout=300) == 0, (tmp_path / "worker0.log").read_text()[-3000:]
        assert chief.wait(timeout=60) == 0, (tmp_path / "chief.log").read_text()[-3000:]
    finally:
        kill_all(procs)
    assert trial_statuses(project) == {str(i): "COMPLETED" for i in range(4)}
    events = read_events(project)
    ends = sorted((e["trial_id"], e["status"]) for e in events if e["event"] == "end")
    assert ends == [(str(i), "COMPLETED") for i in range(4)]  # every trial completed exactly once
    killed_runs = [e["tuner_id"] for e in events if e["trial_id"] == killed_trial]
    assert killed_runs == ["worker1", "worker0", "worker0"]  # begun by worker1, redone by worker0
    with open(os.path.join(project, "results.csv")) as f:
        assert len(list(csv.DictReader(f))) == 4
    assert "best hyperparameters" in (tmp_path / "chief.log").read_text()


def test_cli_lists_tune():
    parser = cli.build_parser()
    args = parser.parse_args(["tune", "data.npz", "--hp", "depth=8", "--tuner", "hyperband"])
    assert args.command == "tune" and args.hp == ["depth=8"] and args.tuner == "hyperband"


# ---------------------------------------------------------------- CNN-hybrid hypermodel


def tiny_cnn():
    """A fresh 2-layer CNN: 16×16 images → an 8×8×8 feature map."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="stem_conv")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(8, 1, name="stem_proj")(x))


def test_hybrid_hypermodel_patches_the_feature_map():
    hypermodel = CNNHybridViTHyperModel((16, 16, 3), 5, backbone=tiny_cnn, depth=1, hidden_dim=32, total_steps=10)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    # The 8×8 feature map: patch sizes 1, 2, 4 give 64, 16, 4 tokens; the default is 1×1 (64 tokens).
    assert hp.get("hybrid/patch_size") == 1 and hypermodel.search_space["patch_size"]["values"] == [1, 2, 4]
    assert model.get_layer("backbone").output.shape == (None, 8, 8, 8)
    assert model.get_layer("patch_embed").output.shape == (None, 65, 32)
    hp = kt.HyperParameters()
    hp.Fixed("hybrid/patch_size", 4)
    hp.Fixed("hybrid/num_heads", 2)
    second = hypermodel.build(hp)
    assert second.get_layer("patch_embed").output.shape == (None, 5, 32)
    assert blocks(second)[0].num_heads == 2
    # Each trial gets a backbone of its own, not the previous trial's weights.
    kernels = [m.get_layer("backbone").get_layer("stem_conv").kernel for m in (model, second)]
    assert kernels[0] is not kernels[1]
    # The same recipe as the ViTs; a backbone function has no registered model to train again.
    assert second.optimizer.get_config()["global_clipnorm"] == 1.0
    assert hypermodel.registry_name is None and "backbone" not in hypermodel.trial_model_arguments(hp)
    assert CNNHybridViTHyperModel.registry_name == "vit_hybrid_resnet50_cifar_s4_32"
    with pytest.raises(ValueError, match="a model instance would share its weights"):
        CNNHybridViTHyperModel((16, 16, 3), 5, backbone=tiny_cnn())
    with pytest.raises(ValueError, match=r"must divide the feature-map size 8×8 .*Received: patch_size=\[3\]"):
        CNNHybridViTHyperModel((16, 16, 3), 5, backbone=tiny_cnn, patch_size=[3])


def test_best_epoch_metrics_average_the_best_epochs():
    runs = []
    for logs in (
        {"val_accuracy": [0.5, 0.8, 0.7], "val_loss": [1.0, 0.4, 0.6]},
        {"val_accuracy": [0.6, 0.55], "val_loss": [0.9, 0.8]},
    ):
        history = keras.callbacks.History()
        history.history = logs
        runs.append(history)
    metrics = tuners.best_epoch_metrics(runs, kt.Objective("val_accuracy", "max"))
    assert metrics == pytest.approx({"val_accuracy": (0.8 + 0.6) / 2, "val_loss": (0.4 + 0.9) / 2})
    metrics = tuners.best_epoch_metrics(runs, kt.Objective("val_loss", "min"))
    assert metrics == pytest.approx({"val_accuracy": (0.8 + 0.55) / 2, "val_loss": (0.4 + 0.8) / 2})


# ---------------------------------------------------------------- seq2seq Transformer hypermodel


def test_transformer_hypermodel_defaults_and_fixed():
    hypermodel = TransformerHyperModel(40)
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert (model.num_layers, model.hidden_dim, model.num_heads, model.mlp_dim) == (3, 256, 4, 1024)
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["config"] == {"hidden_dim": 256, "warmup_steps": 4000, "scale": 1.0}
    hp = kt.HyperParameters()
    hp.Fixed("transformer/num_layers", 1)
    hp.Fixed("transformer/hidden_dim", 128)
    hp.Fixed("transformer/num_heads", 8)
    hp.Fixed("transformer/mlp_ratio", 2.0)
    model = hypermodel.build(hp)
    assert (model.num_layers, model.hidden_dim, model.num_heads, model.mlp_dim) == (1, 128, 8, 256)
    with pytest.raises(ValueError, match=r"these pairs are not: \[\(100, 8\)\]"):
        TransformerHyperModel(40, hidden_dim=[100], num_heads=[2, 4, 8])


def test_transformer_search_on_token_data(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    source = rng.integers(3, 20, (48, 6))
    target = np.concatenate([np.ones((48, 1), "int64"), source[:, ::-1], np.full((48, 1), 2)], axis=1)

    def pairs(rows):
        inputs = {"encoder_inputs": source[rows], "decoder_inputs": target[rows, :-1]}
        return tf.data.Dataset.from_tensor_slices((inputs, target[rows, 1:])).batch(16)

    hypermodel = TransformerHyperModel(
        20, num_layers=1, hidden_dim=32, num_heads=[2, 4], mlp_ratio=2.0, warmup_steps=1000, run_eagerly=True
    )
    result = run_search(
        pairs(slice(0, 32)),
        hypermodel,
        validation_data=pairs(slice(32, 48)),
        objective="val_masked_accuracy",
        max_trials=2,
        epochs=1,
        directory=str(tmp_path),
        export_path=None,
        verbose=0,
    )
    assert trial_statuses(result.tuner.project_dir) == {"0": "COMPLETED", "1": "COMPLETED"}
    assert {row["transformer/num_heads"] for row in result.rows} <= {2, 4}
    assert all(0.0 <= row["objective"] <= 1.0 for row in result.rows)


# ---------------------------------------------------------------- searches fail loudly


def test_zero_trials_and_zero_epochs_are_refused():
    with pytest.raises(ValueError, match=r"`epochs` must be a positive integer. Received: epochs=0"):
        run_search(tiny_data(), epochs=0, search_space=TINY_SPACE)
    # KerasTuner reads max_trials=0 as "no limit": the search ran forever.
    with pytest.raises(ValueError, match=r"`max_trials` must be a positive integer. Received: max_trials=0"):
        run_search(tiny_data(), max_trials=0, search_space=TINY_SPACE)


class _Explodes(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        raise RuntimeError("the data loader broke")


def test_all_failed_search_raises_and_exports_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"No trial completed \(2 ran; the last error: RuntimeError: the data loader"):
        run_search(
            tiny_data(),
            max_trials=2,
            epochs=1,
            batch_size=32,
            search_space=TINY_SPACE,
            compile_kwargs={"run_eagerly": True},
            callbacks=[_Explodes()],
            directory=str(tmp_path),
            project_name="p",
            verbose=0,
        )
    project = os.path.join(str(tmp_path), "p")
    assert set(trial_statuses(project).values()) <= {"FAILED", "INVALID"}
    assert not os.path.exists(os.path.join(project, "best_model.keras"))
    assert not os.path.exists(os.path.join(project, BEST_TRIAL_FILE))


def test_cli_unknown_objective_exits_2_and_exports_nothing(tmp_path):
    x, y = tiny_data(n=32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    hp = [a for k, v in TINY_SPACE.items() for a in ("--hp", f"{k}={v[0] if isinstance(v, list) else v}")]
    command = [sys.executable, "-m", "keras_vit.cli", "tune", str(tmp_path / "d.npz"), "--max-trials", "3"]
    command += ["--epochs", "1", "--objective", "val_top5_accuracy", "--run-eagerly", "--verbose", "0"]
    command += ["--directory", str(tmp_path / "runs"), *hp]
    result = subprocess.run(command, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("keras-vit tune: error:")]
    assert len(errors) == 1 and "Received: objective='val_top5_accuracy'" in errors[0], result.stderr[-3000:]
    assert "val_accuracy" in errors[0]  # the metrics the models do report
    assert "best hyperparameters" not in result.stdout
    project = tmp_path / "runs" / "search"
    assert not (project / "best_model.keras").exists()
    assert len(trial_statuses(str(project))) == 1  # stopped at the first trial, not failed three times

    zero = subprocess.run(
        [sys.executable, "-m", "keras_vit.cli", "tune", str(tmp_path / "d.npz"), "--max-trials", "0"],
        capture_output=True,
        text=True,
        env=SUBPROCESS_ENV,
        timeout=300,
    )
    assert zero.returncode == 2 and "--max-trials` must be a positive integer. Received: --max-trials 0" in zero.stderr


def test_tune_help_says_the_oracle_needs_a_trusted_network():
    text = cli.build_parser()._subparsers._group_actions[0].choices["tune"].format_help()
    assert "trusted network" in " ".join(text.split())


def test_export_of_the_best_model_is_atomic(tmp_path):
    from keras_vit.tuning import search

    target = tmp_path / "best_model.keras"
    target.write_bytes(b"the previous, valid export")

    class HalfWritten(keras.Model):
        def save(self, path, *args, **kwargs):
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04half")
            raise OSError(28, "No space left on device")

    class Tuner:
        project_dir = str(tmp_path)

        def load_model(self, trial):
            inputs = keras.Input((2,))
            return HalfWritten(inputs, keras.layers.Dense(1)(inputs))

    with pytest.raises(OSError, match="No space left"):
        search._export_best(Tuner(), trial=None, export_path=str(target))
    assert target.read_bytes() == b"the previous, valid export"
    assert [p.name for p in tmp_path.iterdir()] == ["best_model.keras"]  # no temporary file left
