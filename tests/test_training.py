import math
import os

import keras
import keras_tuner as kt
import numpy as np
import pytest

from keras_vit import data, training
from keras_vit.applications import VisionTransformer, get_model, tiny_config
from keras_vit.cli import main
from keras_vit.training import Recipe
from keras_vit.tuning import ViTHyperModel

TINY_VIT = {"patch_size": 4, "hidden_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}
TINY_SET = [
    "--set",
    "patch_size=4",
    "--set",
    "hidden_dim=16",
    "--set",
    "depth=1",
    "--set",
    "num_heads=2",
    "--set",
    "mlp_dim=32",
]


def tiny_npz(path, n=32):
    """8×8 grey images whose class is the brighter half (top or bottom)."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.integers(0, 60, (n, 8, 8, 1)).astype(np.uint8)
    x[y == 0, :4] += 180
    x[y == 1, 4:] += 180
    np.savez(path, x=x, y=y)
    return str(path)


def closed_form_lr(step, peak, warmup, total):
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to 0 at `total` (NumPy)."""
    step = np.asarray(step, "float64")
    rising = peak * step / max(warmup, 1)
    progress = np.clip((step - warmup) / (total - warmup), 0.0, 1.0)
    falling = peak * 0.5 * (1.0 + np.cos(np.pi * progress))
    return np.where(step < warmup, rising, falling)


def decayed_paths(model, step):
    """Paths of the variables `model.optimizer` decays: one AdamW update with zero gradients at `step`.

    Adam's update of a zero gradient from zero moments is 0, so what moves is
    the decoupled decay alone: w ← w − lr·λ·w.
    """
    optimizer = model.optimizer
    variables = model.trainable_variables
    if not optimizer.built:
        optimizer.build(variables)
    for v in optimizer.variables:
        v.assign(np.zeros(v.shape, v.dtype))
    optimizer.iterations.assign(step)
    for v in variables:
        v.assign(np.ones(v.shape, v.dtype))
    factor = 1.0 - float(optimizer.learning_rate) * float(optimizer.weight_decay)  # at `step`
    optimizer.apply([np.zeros(v.shape, v.dtype) for v in variables], variables)
    values = {v.path: np.asarray(v) for v in variables}
    changed = {path for path, value in values.items() if not np.all(value == 1.0)}
    for path in changed:  # each decayed weight shrank by exactly the decay factor
        np.testing.assert_allclose(values[path], factor, rtol=1e-6)
    return changed


# ---------------------------------------------------------------- the schedule


def test_schedule_matches_the_closed_form():
    recipe = Recipe(learning_rate=2e-3, warmup_fraction=0.25)
    schedule = training.learning_rate_schedule(recipe, total_steps=40)
    assert training.warmup_steps(recipe, 40) == 10
    steps = np.arange(0, 41)
    values = np.array([float(schedule(int(s))) for s in steps])
    np.testing.assert_allclose(values, closed_form_lr(steps, 2e-3, 10, 40), rtol=1e-5, atol=1e-9)
    assert values[0] == 0.0  # step 0
    assert values[10] == pytest.approx(2e-3)  # end of warmup: the peak
    assert values[25] == pytest.approx(1e-3)  # half-way through the cosine
    assert values[40] == pytest.approx(0.0, abs=1e-9)  # the end
    # No warmup: the cosine starts at the peak.
    flat = training.learning_rate_schedule(Recipe(learning_rate=1e-3, warmup_fraction=0.0), total_steps=8)
    np.testing.assert_allclose([float(flat(s)) for s in range(9)], closed_form_lr(range(9), 1e-3, 0, 8), atol=1e-9)
    # A short run still warms up for a step when a warmup is asked for.
    assert training.warmup_steps(Recipe(warmup_fraction=0.1), 4) == 1


def test_recipe_checks_its_fields_and_round_trips():
    with pytest.raises(ValueError, match="Received: learning_rate=0"):
        Recipe(learning_rate=0)
    with pytest.raises(ValueError, match="Received: weight_decay=-0.1"):
        Recipe(weight_decay=-0.1)
    with pytest.raises(ValueError, match="Received: warmup_fraction=1.0"):
        Recipe(warmup_fraction=1.0)
    with pytest.raises(ValueError, match="Received: global_clipnorm=0"):
        Recipe(global_clipnorm=0)
    with pytest.raises(ValueError, match="Received: total_steps=None"):
        training.learning_rate_schedule(Recipe(), None)
    recipe = Recipe(learning_rate=3e-4, weight_decay=0.1, warmup_fraction=0.05, global_clipnorm=None)
    assert Recipe.from_config(recipe.to_config()) == recipe
    with pytest.raises(ValueError, match=r"Unknown recipe keys \['lr'\]"):
        Recipe.from_config({"lr": 1e-3})


def test_fit_model_warms_up_then_decays(tmp_path):
    bundle = data.load(tiny_npz(tmp_path / "d.npz"), batch_size=8, validation_split=0.0)
    model = VisionTransformer(input_shape=(8, 8, 1), classes=2, **TINY_VIT)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate))

    recipe = Recipe(learning_rate=4e-3, warmup_fraction=0.3)
    training.fit_model(model, bundle, recipe=recipe, epochs=3, callbacks=[Record()], verbose=0)
    total = 3 * math.ceil(32 / 8)
    assert len(seen) == total == 12
    warmup = math.ceil(0.3 * total)  # 4
    np.testing.assert_allclose(seen, closed_form_lr(np.arange(total), 4e-3, warmup, total), rtol=1e-5, atol=1e-9)
    assert seen[0] == 0.0 and all(a < b for a, b in zip(seen[:warmup], seen[1 : warmup + 1]))
    assert seen[warmup] == pytest.approx(4e-3)


# ---------------------------------------------------------------- weight decay


def test_excluded_variables_are_norms_biases_tokens_and_position_embeddings():
    model = VisionTransformer(
        input_shape=(8, 8, 1), classes=2, distillation=True, num_register_tokens=2, layer_scale_init=0.1, **TINY_VIT
    )
    variables = model.trainable_variables
    one_dimensional = {v.path for v in variables if len(v.shape) == 1}
    assert any(p.endswith("/bias") for p in one_dimensional) and any(p.endswith("/gamma") for p in one_dimensional)
    tokens = {
        "patch_embed/class_token",
        "patch_embed/distillation_token",
        "patch_embed/register_tokens",
        "patch_embed/position_embedding",
    }
    assert tokens <= {v.path for v in variables}
    expected = one_dimensional | tokens
    assert {v.path for v in training.no_weight_decay_variables(variables)} == expected

    recipe = Recipe(learning_rate=0.1, weight_decay=0.5, warmup_fraction=0.0)
    training.compile_model(model, recipe, total_steps=10)
    decayed = decayed_paths(model, step=0)
    assert decayed == {v.path for v in variables} - expected
    assert decayed == {
        "patch_embed/projection/kernel",
        "block_0/attention/qkv/kernel",
        "block_0/attention/proj/kernel",
        "block_0/mlp/fc1/kernel",
        "block_0/mlp/fc2/kernel",
        "head/kernel",
        "head_dist/kernel",
    }


@pytest.mark.parametrize(
    "name, tables",
    [
        ("deepvit_cifar_patch4_depth8_32", {"class_token/tokens", "position_embedding/embeddings"}),
        ("swin_tiny_patch4_window7_224", None),
    ],
)
def test_excluded_variables_of_other_families(name, tables):
    model = get_model(name, **tiny_config(name))
    variables = model.trainable_variables
    paths = {v.path for v in variables}
    if tables is None:  # Swin: its relative position bias tables (2-D) are position embeddings too
        tables = {p for p in paths if p.endswith("/relative_position_bias_table")}
        assert tables
    assert tables <= paths
    expected = {v.path for v in variables if len(v.shape) == 1} | tables
    assert {v.path for v in training.no_weight_decay_variables(variables)} == expected


# ---------------------------------------------------------------- one recipe everywhere


def test_hypermodel_and_fit_model_compile_the_same_optimizer(tmp_path):
    bundle = data.load(tiny_npz(tmp_path / "d.npz"), batch_size=8, validation_split=0.0)
    recipe = Recipe(learning_rate=2e-3, weight_decay=0.02, warmup_fraction=0.2, global_clipnorm=0.5)
    epochs = 2
    total = training.steps_per_epoch(bundle) * epochs
    assert total == 8

    arch = {
        "patch_size": 4,
        "hidden_dim": 16,
        "depth": 1,
        "num_heads": 2,
        "mlp_ratio": 2.0,
        "dropout": 0.0,
        "drop_path_rate": 0.0,
    }
    hypermodel = ViTHyperModel(
        (8, 8, 1),
        2,
        recipe=recipe,
        total_steps=total,
        **arch,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
    )
    searched = hypermodel.build(kt.HyperParameters())

    fitted = VisionTransformer(input_shape=(8, 8, 1), classes=2, classifier_activation=None, name="vit", **TINY_VIT)
    training.fit_model(fitted, bundle, recipe=recipe, epochs=epochs, verbose=0)

    def without_name(config):  # Keras numbers optimizer names (adam_w_2, adam_w_3)
        return {key: value for key, value in config.items() if key != "name"}

    config = without_name(fitted.optimizer.get_config())
    assert without_name(searched.optimizer.get_config()) == config
    assert config["weight_decay"] == pytest.approx(0.02) and config["global_clipnorm"] == 0.5
    assert config["clipnorm"] is None
    schedule = config["learning_rate"]["config"]
    assert (schedule["warmup_steps"], schedule["decay_steps"], schedule["warmup_target"]) == (2, 6, 2e-3)
    assert searched.loss.get_config() == fitted.loss.get_config()
    assert searched.loss.get_config()["from_logits"] is True
    assert decayed_paths(searched, step=2) == decayed_paths(fitted, step=2)
    assert "patch_embed/projection/kernel" in decayed_paths(fitted, step=2)


def test_cli_train_flags_reach_the_optimizer(tmp_path):
    source = tiny_npz(tmp_path / "d.npz")
    out = str(tmp_path / "run")
    rc = main(
        [
            "train",
            "--model",
            "vit_cifar_patch4_depth8_32",
            "--data",
            source,
            "--out",
            out,
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--validation-split",
            "0",
            "--lr",
            "2e-3",
            "--weight-decay",
            "0.03",
            "--warmup",
            "0.25",
            "--quiet",
            *TINY_SET,
        ]
    )
    assert rc == 0
    model = keras.saving.load_model(os.path.join(out, "model.keras"))
    config = model.optimizer.get_config()
    assert config["weight_decay"] == pytest.approx(0.03)
    assert config["global_clipnorm"] == 1.0
    schedule = config["learning_rate"]["config"]
    # 32 images in batches of 8 for 2 epochs: 8 steps, a quarter of them warming up.
    assert schedule["warmup_steps"] == 2 and schedule["decay_steps"] == 6
    assert schedule["warmup_target"] == pytest.approx(2e-3) and schedule["initial_learning_rate"] == 0.0


def test_status_lines_repeat_until_the_block_ends(capsys):
    import re
    import time

    from keras_vit.utils import status_lines

    with status_lines("compiling", True, every=0.05):
        time.sleep(0.35)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "compiling..."
    assert len(lines) >= 3 and all(re.fullmatch(r"compiling\.\.\. \(\d+ s\)", line) for line in lines[1:])
    time.sleep(0.2)
    assert capsys.readouterr().out == ""  # the thread ended with the block
    with status_lines("compiling", False, every=0.05):
        time.sleep(0.15)
    assert capsys.readouterr().out == ""
