import keras
import numpy as np
import pytest

from keras_vit.applications import VisionTransformerHybrid, get_model, model_config, resnetv2_stem

TINY = dict(
    stem_layers=(1, 1),
    stem_width=32,
    stage_channels=(128, 256),
    hidden_dim=32,
    depth=1,
    num_heads=2,
    mlp_dim=64,
    classes=5,
    input_shape=(32, 32, 3),
)


def test_stem_shapes_and_layer_names():
    stem = resnetv2_stem((64, 64, 3), (1, 2), 32, (128, 256))
    assert stem.output_shape == (None, 8, 8, 256)  # stride 4 · 2
    names = {layer.name for layer in stem.layers}
    assert {"stem_conv", "stem_norm", "stages_0_blocks_0_downsample_conv", "stages_1_blocks_1_conv3"} <= names
    assert "stages_1_blocks_1_downsample_conv" not in names


def test_registered_r50_matches_the_paper_configuration():
    config = model_config("vit_base_r50_s16_224")
    assert config["stem_layers"] == (3, 4, 9) and config["stage_channels"][-1] == 1024
    assert config["hidden_dim"] == 768 and config["input_shape"] == (224, 224, 3)
    overrides = {**TINY, "stem_layers": (1, 1, 1), "stage_channels": (128, 128, 128)}
    model = get_model("vit_base_r50_s16_224", **overrides)
    assert model.output_shape == (None, 5)
    assert model.get_layer("patch_embed").grid_size == (2, 2)  # 32 / 16


def test_keras_round_trip(tmp_path):
    model = VisionTransformerHybrid(**TINY)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "hybrid.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)


def test_bad_stem_arguments():
    with pytest.raises(ValueError, match=r"Received: groups=32, width=48"):
        resnetv2_stem((32, 32, 3), (1,), 48, (128,))
    with pytest.raises(ValueError, match=r"same length. Received: stem_layers=\(1, 1\), stage_channels=\(128,\)"):
        resnetv2_stem((32, 32, 3), (1, 1), 32, (128,))
