"""`feature_extractor`: block / stage outputs as a `keras.Model`, and DeiT's pooled features without heads.

Oracle: the model's layers called one after the other, eagerly, on the
images (not the functional graph the helper reads), then sliced and
reshaped in NumPy; the final LayerNorm redone in NumPy; DeiT against timm's
reference outputs (tests/fixtures/timm_deit_distilled.npz).
"""

import json
import os

import keras
import numpy as np
import pytest

from keras_vit.applications import VisionTransformer, feature_extractor, get_model, tiny_config

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TOL = 1e-5


def chain(model, images):
    """`{layer name: output}` of a model whose layers form a chain, each layer called eagerly on the last output."""
    outputs, x = {}, images
    for layer in model.layers[1:]:
        x = layer(x, training=False)
        outputs[layer.name] = keras.ops.convert_to_numpy(x)
    np.testing.assert_allclose(x, keras.ops.convert_to_numpy(model(images, training=False)), atol=1e-6)
    return outputs


def layer_norm(x, layer):
    gamma, beta = (keras.ops.convert_to_numpy(w) for w in (layer.gamma, layer.beta))
    x = x.astype(np.float64)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def images_for(model, n=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *model.input_shape[1:])).astype("float32")


def as_list(outputs):
    return [keras.ops.convert_to_numpy(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


@pytest.mark.parametrize(
    ("name", "prefix", "grid"),
    [("vit_tiny_patch16_224", 1, (4, 4)), ("vit_base_r50_s16_224", 1, (4, 4))],
)
def test_vit_family_block_maps(name, prefix, grid):
    model = get_model(name, **tiny_config(name))
    images = images_for(model)
    ref = chain(model, images)
    backbone = feature_extractor(model, indices=(0, -1))
    maps = as_list(backbone(images))
    for got, block in zip(maps, ("block_0", "block_1")):
        tokens = ref[block]
        assert got.shape == (2, *grid, tokens.shape[-1])
        np.testing.assert_allclose(got, tokens[:, prefix:].reshape(2, *grid, -1), atol=TOL)

    tokens = as_list(feature_extractor(model, indices=1, output="tokens")(images))
    np.testing.assert_allclose(tokens[0], ref["block_1"], atol=TOL)

    normed = as_list(feature_extractor(model, indices=[-2], norm=True)(images))[0]
    expected = layer_norm(ref["block_0"], model.get_layer("norm"))[:, prefix:].reshape(2, *grid, -1)
    np.testing.assert_allclose(normed, expected, atol=TOL)


def test_register_tokens_are_dropped_from_maps():
    config = tiny_config("vit_tiny_patch16_224")
    model = VisionTransformer(**config, num_register_tokens=3)
    images = images_for(model)
    ref = chain(model, images)
    got = as_list(feature_extractor(model, indices=[1])(images))[0]
    np.testing.assert_allclose(got, ref["block_1"][:, 4:].reshape(2, 4, 4, -1), atol=TOL)


# The tiny configurations: Swin depth (2, 1) on 16 px (4×4 patches of width 8, then 2×2 of 16); MViTv2 (1, 1).
@pytest.mark.parametrize(
    ("name", "last_blocks", "shapes"),
    [
        ("swin_tiny_patch4_window7_224", ["stage_0_block_1", "stage_1_block_0"], [(4, 4, 8), (2, 2, 16)]),
        ("mvitv2_tiny", ["stage_0_block_0", "stage_1_block_0"], [(4, 4, 8), (2, 2, 16)]),
    ],
)
def test_hierarchical_stage_maps(name, last_blocks, shapes):
    model = get_model(name, **tiny_config(name))
    images = images_for(model)
    ref = chain(model, images)
    got = as_list(feature_extractor(model)(images))
    assert [g.shape[1:] for g in got] == shapes
    for g, block in zip(got, last_blocks):
        np.testing.assert_allclose(g, ref[block], atol=TOL)
    # norm=True: the final LayerNorm on the last stage only (the earlier ones have other widths).
    first, last = as_list(feature_extractor(model, norm=True)(images))
    np.testing.assert_allclose(first, ref[last_blocks[0]], atol=TOL)
    np.testing.assert_allclose(last, layer_norm(ref[last_blocks[-1]], model.get_layer("norm")), atol=TOL)
    np.testing.assert_allclose(last, ref["norm"], atol=TOL)


def test_backbone_trains_the_shared_weights(tmp_path):
    """A dense head on the maps: gradients reach the backbone's first layer; the model saves and reloads."""
    name = "swin_tiny_patch4_window7_224"
    model = get_model(name, **tiny_config(name))
    backbone = feature_extractor(model, indices=[-1])
    head = keras.layers.Conv2D(3, 1, name="dense_head")(backbone.output)
    segmenter = keras.Model(backbone.input, head)
    assert segmenter.output_shape == (None, 2, 2, 3)
    import tensorflow as tf

    images = tf.constant(images_for(model))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(segmenter(images, training=True)))
    kernel = model.get_layer("patch_embed").projection.kernel
    grad = tape.gradient(loss, kernel)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(as_list(reloaded(images))[0], as_list(backbone(images))[0], atol=1e-6)


def test_bad_arguments_name_themselves():
    vit = get_model("vit_tiny_patch16_224", **tiny_config("vit_tiny_patch16_224"))
    with pytest.raises(ValueError, match=r"`indices` must hold block indices in \[-2, 2\). Received: indices=\(2,\)"):
        feature_extractor(vit, indices=(2,))
    with pytest.raises(ValueError, match=r"`output` must be one of .*Received: output='nchw'"):
        feature_extractor(vit, output="nchw")
    with pytest.raises(ValueError, match=r"last n blocks, 1 to 2. Received: indices=3"):
        feature_extractor(vit, indices=3)
    avg = VisionTransformer(**tiny_config("vit_tiny_patch16_224"), pooling="avg")
    with pytest.raises(ValueError, match=r"`norm=True` needs a final LayerNorm"):
        feature_extractor(avg, norm=True)
    swin = get_model("swin_tiny_patch4_window7_224", **tiny_config("swin_tiny_patch4_window7_224"))
    with pytest.raises(ValueError, match=r"`output` must be 'map'. Received: output='tokens'"):
        feature_extractor(swin, output="tokens")


# ------------------------------------------------------------------ DeiT without heads


def _deit_fixture(tmp_path):
    from safetensors.numpy import save_file

    with np.load(os.path.join(FIXTURES, "timm_deit_distilled.npz"), allow_pickle=False) as data:
        ref = {k: data[k] for k in data.files}
    weights = {k[len("weights/") :]: np.ascontiguousarray(v) for k, v in ref.items() if k.startswith("weights/")}
    path = str(tmp_path / "deit.safetensors")
    save_file(weights, path)
    config = json.loads(str(ref["config"]))
    kwargs = dict(
        patch_size=config["patch_size"],
        input_shape=(config["img_size"], config["img_size"], 3),
        hidden_dim=config["embed_dim"],
        depth=config["depth"],
        num_heads=config["num_heads"],
        mlp_dim=int(config["embed_dim"] * config["mlp_ratio"]),
        distillation=True,
        include_top=False,
        weights=path,
    )
    return ref, kwargs


def test_distilled_deit_without_heads_pools_as_timm(tmp_path):
    """timm's distilled pre-logits: the mean of the class and distillation tokens of `forward_features`."""
    ref, kwargs = _deit_fixture(tmp_path)
    features = ref["features"]  # timm's forward_features: (B, 2 + N, D), normalised
    pooled = keras.ops.convert_to_numpy(VisionTransformer(**kwargs)(ref["inputs"], training=False))
    np.testing.assert_allclose(pooled, (features[:, 0] + features[:, 1]) / 2, atol=2e-5)
    tokens = keras.ops.convert_to_numpy(VisionTransformer(**kwargs, pooling=None)(ref["inputs"], training=False))
    assert tokens.shape == features.shape
    np.testing.assert_allclose(tokens, features, atol=2e-5)


def test_distillation_with_avg_pooling_names_the_argument():
    with pytest.raises(ValueError, match=r"pooling='token' \(or None for all tokens\). .*pooling='avg'"):
        VisionTransformer(**tiny_config("vit_tiny_patch16_224"), distillation=True, pooling="avg")
