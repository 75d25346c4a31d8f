"""Common tests over every registered model, each built from its registry entry's tiny configuration."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.applications import FAMILIES, get_model, list_models, model_config, model_family, tiny_config


def sample(name, model, tiny):
    """One input for the tiny model, and the output shape its registry entry promises."""
    rng = np.random.default_rng(0)
    if model_family(name) == "transformer":  # token sequences in, next-token logits out
        vocab = tiny["vocabulary_size"]
        x = {
            "encoder_inputs": rng.integers(1, vocab, (1, 6)).astype("int32"),
            "decoder_inputs": rng.integers(1, vocab, (1, 5)).astype("int32"),
        }
        return x, (1, 5, vocab)
    return rng.random((1, *model.input.shape[1:]), dtype="float32"), (1, tiny["classes"])


@pytest.mark.backends
@pytest.mark.parametrize("name", list_models())
def test_registered_model_builds_tiny_runs_and_round_trips(name, tmp_path):
    tiny = tiny_config(name)
    assert set(tiny) - {"classes", "input_shape"}, f"{name}: the tiny config must shrink the architecture"
    model = get_model(name, **tiny)
    assert model.name == name
    assert model.count_params() < 2_000_000, f"{name}: the tiny config is not tiny"
    x, expected_shape = sample(name, model, tiny)
    out = ops.convert_to_numpy(model(x))
    assert out.shape == expected_shape
    assert np.all(np.isfinite(out)) and np.ptp(out) > 0

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), out, atol=1e-5)


def test_every_family_has_models_and_filters():
    names = list_models()
    assert sorted(n for f in FAMILIES for n in list_models(family=f)) == names
    for family in FAMILIES:
        members = list_models(family=family)
        assert members and all(model_family(n) == family for n in members)
    assert "deit_tiny_distilled_patch16_224" in list_models(family="deit")
    assert "deit_tiny_distilled_patch16_224" not in list_models(family="vit")
    assert list_models("vit_base_r50_*", family="hybrid") == ["vit_base_r50_s16_224", "vit_base_r50_s16_384"]
    assert list_models("vit_base_r50_*", family="vit") == []


def test_tiny_config_is_a_copy_and_does_not_change_the_entry():
    name = "vit_base_patch16_224"
    tiny_config(name)["depth"] = 99
    model_config(name)["depth"] = 99
    assert tiny_config(name)["depth"] == 2 and model_config(name)["depth"] == 12


def test_bad_names_and_families():
    with pytest.raises(ValueError, match="Received: family='convnet'"):
        list_models(family="convnet")
    with pytest.raises(ValueError, match="Received: name='swin_tiny'"):
        model_family("swin_tiny")
    with pytest.raises(ValueError, match="name='vit_nano'"):
        tiny_config("vit_nano")


@pytest.mark.backends
def test_name_override_names_the_model():
    name = "vit_base_patch16_224"
    assert get_model(name, **tiny_config(name), name="my_vit").name == "my_vit"
    assert get_model(name, **tiny_config(name)).name == name
