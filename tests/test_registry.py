"""Common tests over every registered model, with tiny overrides so they stay fast."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.applications import get_model, list_models

# Tiny overrides per family, matched by name prefix (the first match wins).
TINY_OVERRIDES = [
    ("vit_", dict(hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), patch_size=8)),
    ("deit_", dict(hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, input_shape=(32, 32, 3), patch_size=8)),
]


def tiny_overrides(name):
    for prefix, overrides in TINY_OVERRIDES:
        if name.startswith(prefix):
            return dict(overrides, classes=5)
    raise AssertionError(f"No tiny overrides for {name!r}: add its family to TINY_OVERRIDES")


def sample(model):
    shape = tuple(model.input.shape[1:])
    return np.random.RandomState(0).rand(2, *shape).astype("float32")


@pytest.mark.parametrize("name", list_models())
def test_registered_model(name, tmp_path):
    model = get_model(name, **tiny_overrides(name))
    x = sample(model)
    out = ops.convert_to_numpy(model(x))
    assert out.shape == (2, 5)
    assert np.all(np.isfinite(out))

    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(clone(x)), out, atol=1e-5)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), out, atol=1e-5)
