"""`set_image_size`: a model at another input size, its size-dependent weights resampled.

Oracles: timm's own model at the new image and patch size (the
tests/fixtures/timm_vit_resampled.npz reference); the factory built directly
at the new size with the same weights; interpolation properties that any
correct resize keeps (a constant table stays constant).
"""

import json
import os

import keras
import numpy as np
import pytest

from keras_vit.applications import (
    VisionTransformer,
    VisionTransformerHybrid,
    get_model,
    list_models,
    model_family,
    set_image_size,
    tiny_config,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TOL = 2e-5  # the converter parity tolerance (measured max 6e-6 on the timm fixtures)
TINY_VIT = dict(hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, classes=10, classifier_activation=None)


def fixture(name, tmp_path):
    from safetensors.numpy import save_file

    with np.load(os.path.join(FIXTURES, f"{name}.npz"), allow_pickle=False) as data:
        ref = {k: data[k] for k in data.files}
    weights = {k[len("weights/") :]: np.ascontiguousarray(v) for k, v in ref.items() if k.startswith("weights/")}
    path = str(tmp_path / f"{name}.safetensors")
    save_file(weights, path)
    return ref, path


def numpy_out(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


@pytest.mark.parametrize("tag", ["up", "down"])
def test_vit_matches_timm_at_the_new_image_and_patch_size(tag, tmp_path):
    """A 32 px / patch 8 model moved to timm's `up` (48 px, patch 4) and `down` (32 px, patch 16) models."""
    ref, path = fixture("timm_vit_resampled", tmp_path)
    image, patch = json.loads(str(ref["config"]))[tag]
    model = VisionTransformer(patch_size=8, input_shape=(32, 32, 3), weights=path, **TINY_VIT)
    moved = set_image_size(model, image, patch_size=patch)
    assert moved.input_shape == (None, image, image, 3)
    probe = keras.Model(moved.inputs, [moved.get_layer("norm").output, moved.output])
    features, logits = (keras.ops.convert_to_numpy(o) for o in probe(ref[f"{tag}_inputs"], training=False))
    np.testing.assert_allclose(features, ref[f"{tag}_features"], atol=TOL)
    np.testing.assert_allclose(logits, ref[f"{tag}_logits"], atol=TOL)
    # The original is untouched.
    assert model.input_shape == (None, 32, 32, 3)


def test_hybrid_equals_the_checkpoint_loaded_at_the_new_size(tmp_path):
    """Moving a loaded hybrid to 64 px = converting its checkpoint for 64 px (validated against timm elsewhere)."""
    ref, path = fixture("timm_hybrid", tmp_path)
    kw = dict(stem_layers=(1, 1), stem_width=32, stage_channels=(128, 256), **TINY_VIT)
    config = json.loads(str(ref["config"]))
    size = config["img_size"]
    model = VisionTransformerHybrid(input_shape=(size, size, 3), weights=path, **kw)
    moved = set_image_size(model, 2 * size)
    direct = VisionTransformerHybrid(input_shape=(2 * size, 2 * size, 3), weights=path, **kw)
    images = np.random.default_rng(0).standard_normal((2, 2 * size, 2 * size, 3)).astype("float32")
    np.testing.assert_allclose(numpy_out(moved, images), numpy_out(direct, images), atol=1e-5)


def _copy_weights_by_path(source, target):
    values = {v.path: v for v in source.weights}
    for variable in target.weights:
        variable.assign(values[variable.path])


@pytest.mark.parametrize("name", ["swin_tiny_patch4_window7_224", "mvitv2_tiny", "deit_tiny_distilled_patch16_224"])
def test_rebuilt_graph_is_the_factorys_at_the_new_size(name):
    """The moved model computes what the factory builds at that size, given the moved weights."""
    config = tiny_config(name)
    model = get_model(name, **config)
    size = 2 * config["input_shape"][0]
    moved = set_image_size(model, size)
    direct = get_model(name, **{**config, "input_shape": (size, size, 3)})
    assert [v.shape for v in direct.weights] == [v.shape for v in moved.weights]
    _copy_weights_by_path(moved, direct)
    images = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(numpy_out(moved, images), numpy_out(direct, images), atol=1e-5)
    # Every weight that does not depend on the size is carried over unchanged.
    old = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    for variable in moved.weights:
        if tuple(variable.shape) == old[variable.path].shape:
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), old[variable.path])


def test_swin_window_change_resizes_the_bias_tables():
    name = "swin_tiny_patch4_window7_224"
    model = get_model(name, **{**tiny_config(name), "input_shape": (32, 32, 3)})  # 8×8 patches, windows of 2
    block = model.get_layer("stage_0_block_1")
    table = block.attention.relative_position_bias_table
    table.assign(np.broadcast_to(np.array([0.5, -2.0], "float32")[: table.shape[1]], table.shape))
    moved = set_image_size(model, 32, window_size=4)
    new_block = moved.get_layer("stage_0_block_1")
    assert new_block.resolved_window == (4, 4) and new_block.resolved_shift == (2, 2)
    new_table = keras.ops.convert_to_numpy(new_block.attention.relative_position_bias_table)
    assert new_table.shape == (7 * 7, table.shape[1])
    # Interpolation weights sum to one: a constant table stays constant.
    np.testing.assert_allclose(new_table, np.broadcast_to(keras.ops.convert_to_numpy(table)[:1], new_table.shape), 1e-6)
    images = np.random.default_rng(0).standard_normal((1, 32, 32, 3)).astype("float32")
    assert np.isfinite(numpy_out(moved, images)).all()


def test_mvitv2_relative_tables_are_interpolated():
    name = "mvitv2_tiny"
    model = get_model(name, **tiny_config(name))
    attention = model.get_layer("stage_0_block_0").attention
    old_len = attention.rel_pos_h.shape[0]
    attention.rel_pos_h.assign(np.full(attention.rel_pos_h.shape, 0.25, "float32"))
    moved = set_image_size(model, 32)
    new = moved.get_layer("stage_0_block_0").attention.rel_pos_h
    assert new.shape[0] == 2 * old_len + 1  # 2·max(q, k) - 1 for an 8×8 map instead of 4×4
    np.testing.assert_allclose(keras.ops.convert_to_numpy(new), 0.25, atol=1e-6)


def test_mvitv2_takes_a_non_square_size():
    """Its layers pool and index each axis on its own (the factory alone asks for a square)."""
    model = get_model("mvitv2_tiny", **tiny_config("mvitv2_tiny"))
    moved = set_image_size(model, (32, 48))
    attention = moved.get_layer("stage_0_block_0").attention
    assert (attention.rel_pos_h.shape[0], attention.rel_pos_w.shape[0]) == (15, 23)  # 2·8 - 1, 2·12 - 1
    assert moved.get_layer("stage_1_block_0").output.shape == (None, 4, 6, 16)
    images = np.random.default_rng(0).standard_normal((1, 32, 48, 3)).astype("float32")
    assert numpy_out(moved, images).shape == (1, 5) and np.isfinite(numpy_out(moved, images)).all()


def test_same_size_returns_the_model():
    model = get_model("vit_tiny_patch16_224", **tiny_config("vit_tiny_patch16_224"))
    assert set_image_size(model, 32) is model
    assert set_image_size(model, (32, 32)) is model


def test_saved_model_moves_and_saves(tmp_path):
    model = get_model("vit_tiny_patch16_224", **tiny_config("vit_tiny_patch16_224"))
    model.save(tmp_path / "m.keras")
    moved = set_image_size(keras.saving.load_model(tmp_path / "m.keras"), (48, 64))
    assert moved.input_shape == (None, 48, 64, 3)
    assert tuple(moved.get_layer("patch_embed").pos_embed.shape) == (1, 1 + 6 * 8, 32)
    moved.save(tmp_path / "moved.keras")
    images = np.random.default_rng(0).standard_normal((1, 48, 64, 3)).astype("float32")
    reloaded = keras.saving.load_model(tmp_path / "moved.keras")
    np.testing.assert_allclose(numpy_out(reloaded, images), numpy_out(moved, images), atol=1e-6)


def test_bad_arguments_name_themselves():
    vit = get_model("vit_tiny_patch16_224", **tiny_config("vit_tiny_patch16_224"))
    with pytest.raises(ValueError, match=r"`image_size` must be a positive integer .*Received: image_size=0"):
        set_image_size(vit, 0)
    with pytest.raises(ValueError, match=r"`image_size` .*Received: image_size='384'"):
        set_image_size(vit, "384")
    with pytest.raises(ValueError, match=r"cannot be built at image_size=\(36, 36\).*patch_size"):
        set_image_size(vit, 36)  # patches of 8 do not tile 36 px
    with pytest.raises(ValueError, match=r"`window_size` applies to Swin models"):
        set_image_size(vit, 48, window_size=4)
    swin = get_model("swin_tiny_patch4_window7_224", **tiny_config("swin_tiny_patch4_window7_224"))
    with pytest.raises(ValueError, match=r"patch size must divide the image height. Received: image_size=\(18, 18\)"):
        set_image_size(swin, 18)
    t2t = get_model("t2t_vit_7", **tiny_config("t2t_vit_7"))
    with pytest.raises(ValueError, match=r"cannot resize this model: its layer .*get_model\(name, input_shape="):
        set_image_size(t2t, 48)


# Every family whose factories take images.
IMAGE_FAMILIES = ("vit", "deit", "hybrid", "cnn_hybrid", "t2t", "swin", "mvitv2", "deepvit")


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_dynamic_input_shape_is_refused_by_name(family):
    name = list_models(family=family)[0]
    assert model_family(name) == family
    with pytest.raises(ValueError, match=r"`input_shape` must be \(height, width, channels\) with a known height"):
        get_model(name, **{**tiny_config(name), "input_shape": (None, None, 3)})
