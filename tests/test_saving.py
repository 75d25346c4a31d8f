"""`import keras_vit` makes every artefact the package writes loadable in a fresh process.

Each artefact is saved here and loaded back in a new interpreter that imports
nothing but `keras`, `numpy` and `keras_vit`, as `keras-vit evaluate` or a
user's notebook would; the outputs must match the ones computed before saving.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_vit.applications import FAMILIES, get_model, list_models, tiny_config
from keras_vit.distillation import DistillationTrainer
from keras_vit.translation import SubwordTokenizer, compile_translator

LOADER = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import keras_vit  # the only registration there is
    cases = json.loads(sys.argv[1])
    for path, inputs, expected, atol in cases:
        model = keras.saving.load_model(path)
        data = np.load(inputs)
        arrays = [data[k] for k in sorted(data.files)]
        out = model.predict(arrays[0] if len(arrays) == 1 else arrays, verbose=0)
        out = out[0] if isinstance(out, (list, tuple)) else out
        np.testing.assert_allclose(out, np.load(expected), atol=atol, err_msg=path)
        print("loaded", path)
    """
)


def _load_in_fresh_process(cases):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(cases)], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count("loaded") == len(cases)


def _case(tmp_path, name, model, inputs, atol=1e-5):
    out = model.predict(inputs[0] if len(inputs) == 1 else inputs, verbose=0)
    out = out[0] if isinstance(out, (list, tuple)) else out
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    np.savez(tmp_path / f"{name}_inputs.npz", **{f"x{i}": x for i, x in enumerate(inputs)})
    np.save(tmp_path / f"{name}_expected.npy", out)
    return [path, str(tmp_path / f"{name}_inputs.npz"), str(tmp_path / f"{name}_expected.npy"), atol]


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "transformer"])
def test_every_image_family_has_a_tiny_registered_model(family):
    names = list_models(family=family)
    assert names, f"no registered model of family {family!r}"
    model = get_model(names[0], **tiny_config(names[0]))
    assert model.count_params() < 2_000_000, f"{names[0]}'s tiny config is not tiny"


def test_every_artefact_loads_with_only_keras_vit_imported(tmp_path):
    rng = np.random.default_rng(0)
    cases = []
    # One tiny model of each image family, as the factories build them.
    for family in FAMILIES:
        if family == "transformer":
            continue
        name = list_models(family=family)[0]
        model = get_model(name, **tiny_config(name))
        x = rng.uniform(size=(2, *model.input_shape[1:])).astype("float32")
        cases.append(_case(tmp_path, family, model, [x]))

    # A translator that carries its tokenizer, compiled with the package's loss and schedule.
    sentences = ["ein hund läuft im park.", "eine katze schläft im haus.", "a dog runs.", "a cat sleeps."]
    tokenizer = SubwordTokenizer.train(sentences * 5, vocabulary_size=60)
    translator = get_model(
        "transformer_base",
        vocabulary_size=tokenizer.vocabulary_size,
        num_layers=1,
        hidden_dim=16,
        num_heads=2,
        mlp_dim=32,
        padding_id=SubwordTokenizer.pad_id,
    )
    translator.source_tokenizer = tokenizer
    compile_translator(translator, warmup_steps=10)
    src = np.array([[5, 6, 7, 3], [8, 9, 3, 0]], "int32")
    tgt = np.array([[2, 5, 6], [2, 8, 0]], "int32")
    cases.append(_case(tmp_path, "translator", translator, [src, tgt]))

    # DeiT's distillation trainer around a tiny student and teacher.
    name = list_models(family="deit")[0]
    student = get_model(name, **tiny_config(name))
    teacher = keras.Sequential(
        [keras.Input(student.input_shape[1:]), keras.layers.Flatten(), keras.layers.Dense(student.output_shape[-1])]
    )
    trainer = DistillationTrainer(student, teacher, distillation_type="soft", temperature=2.0)
    x = rng.uniform(size=(2, *student.input_shape[1:])).astype("float32")
    trainer(x)
    cases.append(_case(tmp_path, "distillation", trainer, [x]))

    cases.append(_converted_with_preprocessing(tmp_path))
    cases.append(_tuned_best_model(tmp_path))
    _load_in_fresh_process(cases)


def _expected_case(tmp_path, name, path, inputs, expected, atol):
    np.savez(tmp_path / f"{name}_inputs.npz", x0=inputs)
    np.save(tmp_path / f"{name}_expected.npy", expected)
    return [path, str(tmp_path / f"{name}_inputs.npz"), str(tmp_path / f"{name}_expected.npy"), atol]


def _converted_with_preprocessing(tmp_path):
    """`keras-vit convert` of a timm checkpoint with its statistics: the file takes [0, 255] pixels and gives
    the timm reference logits (tests/fixtures/timm_vit_token.npz)."""
    from safetensors.numpy import save_file

    from keras_vit.cli import main as cli_main

    with np.load(os.path.join(os.path.dirname(__file__), "fixtures", "timm_vit_token.npz")) as data:
        ref = {k: data[k] for k in data.files}
    weights = {k[len("weights/") :]: np.ascontiguousarray(v) for k, v in ref.items() if k.startswith("weights/")}
    checkpoint = str(tmp_path / "timm_vit.safetensors")
    save_file(weights, checkpoint)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    config = {"patch_size": 8, "hidden_dim": 32, "depth": 2, "num_heads": 2, "mlp_dim": 64, "input_shape": [32, 32, 3]}
    path = str(tmp_path / "converted.keras")
    args = ["convert", checkpoint, "--model", "vit_base_patch16_224", "--out", path]
    args += ["--config", json.dumps({**config, "classifier_activation": None})]
    args += ["--image-mean", *map(str, mean), "--image-std", *map(str, std)]
    assert cli_main(args) == 0
    pixels = ((ref["inputs"] * std + mean) * 255.0).astype("float32")
    return _expected_case(tmp_path, "converted", path, pixels, ref["logits"], 1e-4)


def _tuned_best_model(tmp_path):
    """`tune`'s best_model.keras carries the statistics of its data: the pixels in, the trial's outputs out."""
    import warnings

    from keras_vit.tuning import run_search

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 32)
    x = rng.integers(0, 128, (32, 8, 8, 1)).astype("uint8")
    x[y == 1, 4:] += 120
    space = {"depth": 1, "hidden_dim": 16, "num_heads": 2, "patch_size": 4, "mlp_ratio": 2.0}
    result = run_search(
        (x, y), max_trials=1, epochs=1, batch_size=16, search_space=space, directory=str(tmp_path), verbose=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial_model = result.tuner.load_model(result.tuner.oracle.get_best_trials(1)[0])
    expected = trial_model.predict(x[:4].astype("float32") / 255.0, verbose=0)
    return _expected_case(tmp_path, "tuned", result.model_path, x[:4].astype("float32"), expected, 1e-5)
