import keras
import numpy as np
import pytest
from keras import ops

from keras_vit.layers import MultiHeadSelfAttention, TransformerDecoderBlock


def _block(**kw):
    kw = {"num_heads": 2, "mlp_dim": 16, **kw}
    block = TransformerDecoderBlock(**kw)
    block.build((None, None, 8), (None, None, 6))
    return block


@pytest.mark.parametrize("norm_first", [False, True])
def test_causal_mask_blocks_the_future(norm_first):
    block = _block(norm_first=norm_first)
    x = np.random.normal(size=(2, 5, 8)).astype("float32")
    enc = np.random.normal(size=(2, 4, 6)).astype("float32")
    out = ops.convert_to_numpy(block(x, enc))
    for t in range(4):
        x2 = x.copy()
        x2[:, t + 1 :] = np.random.normal(size=x2[:, t + 1 :].shape)
        out2 = ops.convert_to_numpy(block(x2, enc))
        np.testing.assert_allclose(out2[:, : t + 1], out[:, : t + 1], atol=1e-5)
        assert np.abs(out2[:, t + 1 :] - out[:, t + 1 :]).max() > 1e-3


def test_encoder_padding_does_not_change_outputs():
    block = _block()
    x = np.random.normal(size=(1, 3, 8)).astype("float32")
    enc = np.random.normal(size=(1, 4, 6)).astype("float32")
    padded = np.concatenate([enc, np.random.normal(size=(1, 3, 6)).astype("float32")], axis=1)
    mask = np.array([[True] * 4 + [False] * 3])
    a = ops.convert_to_numpy(block(x, enc))
    b = ops.convert_to_numpy(block(x, padded, encoder_padding_mask=mask))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_steps_equal_full_pass(norm_first):
    block = _block(norm_first=norm_first)
    x = np.random.normal(size=(2, 6, 8)).astype("float32")
    enc = np.random.normal(size=(2, 4, 6)).astype("float32")
    enc_mask = np.array([[True] * 4, [True, True, False, False]])
    full = ops.convert_to_numpy(block(x, enc, encoder_padding_mask=enc_mask))
    cache = block.initial_cache(2, 6)
    cross = block.compute_cross_attention_cache(enc)
    assert tuple(cache.shape) == (2, 2, 6, 2, 4)
    for t in range(6):
        out, cache = block(
            x[:, t : t + 1],
            encoder_padding_mask=enc_mask,
            self_attention_cache=cache,
            cross_attention_cache=cross,
            cache_update_index=t,
        )
        np.testing.assert_allclose(ops.convert_to_numpy(out)[:, 0], full[:, t], atol=1e-5)


def test_cached_step_in_a_functional_model_returns_scores_and_cache():
    # A symbolic decoding step describes all three outputs (the block, the
    # cross-attention scores, the updated self-attention cache).
    block = _block()
    step = keras.Input((1, 8), name="step")
    self_cache = keras.Input((2, 6, 2, 4), name="self_cache")
    cross_cache = keras.Input((2, 4, 2, 4), name="cross_cache")
    outputs = block(
        step,
        self_attention_cache=self_cache,
        cross_attention_cache=cross_cache,
        cache_update_index=2,
        return_attention_scores=True,
    )
    assert [tuple(o.shape) for o in outputs] == [(None, 1, 8), (None, 2, 1, 4), (None, 2, 6, 2, 4)]
    model = keras.Model([step, self_cache, cross_cache], outputs)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1, 8)).astype("float32")
    cache = rng.normal(size=(2, 2, 6, 2, 4)).astype("float32")
    cross = ops.convert_to_numpy(block.compute_cross_attention_cache(rng.normal(size=(2, 4, 6)).astype("float32")))
    eager = block(
        x, self_attention_cache=cache, cross_attention_cache=cross, cache_update_index=2, return_attention_scores=True
    )
    for got, expected in zip(model([x, cache, cross]), eager):
        np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(expected), atol=1e-6)


def test_cross_attention_scores_are_alignments():
    block = _block()
    x = np.random.normal(size=(2, 3, 8)).astype("float32")
    enc = np.random.normal(size=(2, 5, 6)).astype("float32")
    mask = np.array([[True] * 5, [True] * 2 + [False] * 3])
    out, scores = block(x, enc, encoder_padding_mask=mask, return_attention_scores=True)
    scores = ops.convert_to_numpy(scores)
    assert scores.shape == (2, 2, 3, 5)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    assert np.abs(scores[1, :, :, 2:]).max() < 1e-6
    np.testing.assert_allclose(
        ops.convert_to_numpy(out), ops.convert_to_numpy(block(x, enc, encoder_padding_mask=mask)), atol=1e-5
    )


def test_config_round_trip_and_weight_names():
    block = _block(norm_first=True, dropout=0.1)
    clone = TransformerDecoderBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    names = sorted(w.path for w in block.weights)
    assert any("self_attention/qkv" in n for n in names)
    assert any("cross_attention/key_value" in n for n in names)
    assert any("norm3" in n for n in names)


def test_errors():
    with pytest.raises(ValueError, match="Received: mlp_dim=0"):
        TransformerDecoderBlock(2, 0)
    with pytest.raises(ValueError, match="Received: dropout=1.5"):
        TransformerDecoderBlock(2, 4, dropout=1.5)
    block = _block()
    with pytest.raises(ValueError, match="Received neither"):
        block(np.zeros((1, 2, 8), "float32"))


def test_attention_layer_cache_keeps_old_api():
    layer = MultiHeadSelfAttention(2)
    x = np.random.normal(size=(1, 4, 8)).astype("float32")
    layer.build(x.shape)
    ref = ops.convert_to_numpy(layer(x, use_causal_mask=True))
    assert sorted(w.path.split("/")[-2] for w in layer.weights) == ["proj", "proj", "qkv", "qkv"]
    cache = ops.zeros((1, 2, 4, 2, 4))
    out, cache = layer(x[:, :2], cache=cache, cache_update_index=0)
    out2, cache = layer(x[:, 2:], cache=cache, cache_update_index=2)
    got = np.concatenate([ops.convert_to_numpy(out), ops.convert_to_numpy(out2)], axis=1)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    with pytest.raises(ValueError, match="cache_update_index=None"):
        layer(x, cache=cache)
