import keras
import numpy as np
import pytest

from keras_vit.applications import CNNHybridViT, get_model, list_models


def test_resnet50_stage_feature_map_becomes_the_tokens():
    model = CNNHybridViT(
        "resnet50",
        stage=3,
        patch_size=2,
        hidden_dim=16,
        depth=1,
        num_heads=2,
        mlp_dim=16,
        input_shape=(64, 64, 3),
        classes=4,
    )
    # Stage 3 of ResNet-50 has stride 8: an 8×8 map of 512 channels; 2×2 patches → 4×4 tokens.
    assert model.get_layer("backbone").output_shape == (None, 8, 8, 512)
    embed = model.get_layer("patch_embed")
    assert embed.grid_size == (4, 4) and embed.channels == 512
    assert model.output_shape == (None, 4)


def test_user_cnn_and_keras_round_trip(tmp_path):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c2")(x)
    cnn = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    model = CNNHybridViT(cnn, feature_layer="c1", hidden_dim=16, depth=1, num_heads=2, mlp_dim=16, classes=3)
    assert model.get_layer("patch_embed").grid_size == (8, 8)
    x = np.random.rand(2, 16, 16, 3).astype("float32")
    path = str(tmp_path / "hybrid.keras")
    model.save(path)
    clone = keras.models.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, h, w, c\) map"):
        CNNHybridViT(cnn, hidden_dim=16, depth=1, num_heads=2, mlp_dim=16)


def test_registered_hybrids_and_errors():
    assert {
        "vit_hybrid_resnet50_small_s16_224",
        "vit_hybrid_resnet50_base_s16_224",
        "vit_hybrid_resnet50_cifar_s4_32",
    } <= set(list_models("vit_hybrid_*"))
    model = get_model("vit_hybrid_resnet50_cifar_s4_32", depth=1, hidden_dim=16, num_heads=2, mlp_dim=16)
    assert model.get_layer("patch_embed").grid_size == (8, 8) and model.output_shape == (None, 10)
    with pytest.raises(ValueError, match="Received: backbone='vgg'"):
        CNNHybridViT("vgg")
    with pytest.raises(ValueError, match="Received: stage=7"):
        CNNHybridViT("resnet50", stage=7, input_shape=(32, 32, 3))
