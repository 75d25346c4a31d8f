"""Greedy and beam-search decoding for `Seq2SeqTransformer`, with a key/value cache.

With the cache (`use_cache=True`), each new token costs one decoder step:
the keys and values of earlier target tokens are kept per block (see
`TransformerDecoderBlock`), and the encoder's keys/values for the
cross-attention are projected once per source. Without it, the decoder is
re-run over the whole prefix at every step (the textbook loop), which gives
the same tokens at a cost that grows with the prefix.

Beam search follows Wu et al. (2016) and Vaswani et al. (2017), Sec. 6.1:
the `beam_size` best prefixes by log-probability are extended each step;
hypotheses that emit the end token are set aside with the length-normalised
score `log P(Y) / lp(Y)`, `lp(Y) = ((5 + |Y|) / 6)^α`; a source is done when
`beam_size` hypotheses have ended (or at `max_length`).
"""

import weakref

import keras
import numpy as np
from keras import ops

_COMPILED = weakref.WeakKeyDictionary()


def _compile(fn):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _functions(model):
    """Compiled encoder, cached step, cache reorder and uncached step of `model`."""
    if model not in _COMPILED:

        def encode(src):
            return model.encode(src, training=False)

        def init(enc, max_length_tensor):
            return model.initial_decoding_state(enc, ops.shape(max_length_tensor)[0])

        def step(tokens, index, self_caches, cross_caches, mask):
            return model.decode_step(tokens, index, self_caches, cross_caches, mask)

        def reorder(self_caches, parents):
            return ops.take(self_caches, parents, axis=1)

        def full(tokens, enc, mask):
            return model.decode(tokens, enc, mask, training=False)[:, -1]

        _COMPILED[model] = {
            name: _compile(fn)
            for name, fn in (
                ("encode", encode),
                ("init", init),
                ("step", step),
                ("reorder", reorder),
                ("full", full),
            )
        }
    return _COMPILED[model]


def _log_softmax(logits):
    logits = logits.astype("float64")
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


class _Decoder:
    """Runs the decoder one position at a time, with or without the cache."""

    def __init__(self, model, encoder_inputs, max_length, repeat, use_cache):
        self.fns = _functions(model)
        self.use_cache = use_cache
        enc, mask = self.fns["encode"](ops.convert_to_tensor(encoder_inputs, "int32"))
        if repeat > 1:  # one copy of the source per beam
            enc = ops.repeat(enc, repeat, axis=0)
            mask = ops.repeat(mask, repeat, axis=0)
        self.enc, self.mask = enc, mask
        self.index = 0
        if use_cache:
            self.self_caches, self.cross_caches = self.fns["init"](enc, ops.zeros((max_length,), "int32"))

    def next_logits(self, prefix):
        """Logits `(N, V)` of the token after `prefix` `(N, index + 1)`, as NumPy."""
        if self.use_cache:
            logits, self.self_caches = self.fns["step"](
                ops.convert_to_tensor(prefix[:, -1:], "int32"),
                ops.convert_to_tensor(self.index, "int32"),
                self.self_caches,
                self.cross_caches,
                self.mask,
            )
        else:
            logits = self.fns["full"](ops.convert_to_tensor(prefix, "int32"), self.enc, self.mask)
        self.index += 1
        return ops.convert_to_numpy(logits)

    def reorder(self, parents):
        if self.use_cache:
            self.self_caches = self.fns["reorder"](self.self_caches, ops.convert_to_tensor(parents, "int32"))


def _check(max_length, beam_size):
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"`max_length` must be a positive integer. Received: max_length={max_length}")
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"`beam_size` must be a positive integer. Received: beam_size={beam_size}")


def _pad(sequences, pad_id):
    width = max(len(s) for s in sequences)
    out = np.full((len(sequences), width), pad_id, "int32")
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out


def generate(
    model,
    encoder_inputs,
    max_length=64,
    beam_size=1,
    length_penalty=0.6,
    start_id=2,
    end_id=3,
    use_cache=True,
    forbidden_ids=None,
):
    """Translates a batch of token-id sequences with greedy or beam search.

    Args:
        model: a `Seq2SeqTransformer`.
        encoder_inputs: int array `(B, S)` of source ids, padded with the
            model's `padding_id`.
        max_length: int, the most tokens generated per source (end token
            included).
        beam_size: int; 1 is greedy decoding.
        length_penalty: float α of `lp(Y) = ((5 + |Y|) / 6)^α`; 0 ranks by
            raw log-probability.
        start_id: int, first decoder input (beginning of sequence).
        end_id: int, the end-of-sequence token.
        use_cache: bool, incremental decoding with the key/value cache.
        forbidden_ids: ids never generated; defaults to the padding and start ids.

    Returns:
        int32 NumPy array `(B, T ≤ max_length)` of generated ids (without the
        start token), each ending with `end_id` if one was produced, padded
        with the padding id.
    """
    _check(max_length, beam_size)
    encoder_inputs = np.asarray(encoder_inputs)
    if encoder_inputs.ndim != 2:
        raise ValueError(f"`encoder_inputs` must be (batch, length). Received: shape={encoder_inputs.shape}")
    if forbidden_ids is None:
        forbidden_ids = sorted({model.padding_id, start_id})
    forbidden_ids = list(forbidden_ids)
    if beam_size == 1:
        return _greedy(model, encoder_inputs, max_length, start_id, end_id, use_cache, forbidden_ids)
    return _beam(
        model,
        encoder_inputs,
        max_length,
        beam_size,
        length_penalty,
        start_id,
        end_id,
        use_cache,
        forbidden_ids,
    )


def _greedy(model, encoder_inputs, max_length, start_id, end_id, use_cache, forbidden):
    batch = encoder_inputs.shape[0]
    decoder = _Decoder(model, encoder_inputs, max_length, 1, use_cache)
    prefix = np.full((batch, 1), start_id, "int32")
    done = np.zeros(batch, bool)
    for _ in range(max_length):
        logits = decoder.next_logits(prefix)
        logits[:, forbidden] = -np.inf
        token = np.where(done, model.padding_id, logits.argmax(-1)).astype("int32")
        prefix = np.concatenate([prefix, token[:, None]], axis=1)
        done |= token == end_id
        if done.all():
            break
    return prefix[:, 1:]


def _beam(model, encoder_inputs, max_length, k, alpha, start_id, end_id, use_cache, forbidden):
    batch = encoder_inputs.shape[0]
    decoder = _Decoder(model, encoder_inputs, max_length, k, use_cache)
    prefix = np.full((batch * k, 1), start_id, "int32")
    scores = np.zeros((batch, k))
    scores[:, 1:] = -np.inf  # all beams start equal: keep one so the first step picks k tokens
    finished = [[] for _ in range(batch)]
    done = np.zeros(batch, bool)

    def penalty(length):
        return ((5.0 + length) / 6.0) ** alpha

    for step in range(max_length):
        logp = _log_softmax(decoder.next_logits(prefix))
        logp[:, forbidden] = -np.inf
        vocab = logp.shape[-1]
        candidates = (scores[:, :, None] + logp.reshape(batch, k, vocab)).reshape(batch, -1)
        # The 2k best: at most k end, so k continue.
        top = np.argsort(-candidates, axis=-1, kind="stable")[:, : 2 * k]
        parents = np.zeros((batch, k), "int64")
        tokens = np.full((batch, k), end_id, "int32")
        new_scores = np.full((batch, k), -np.inf)
        last = step == max_length - 1
        for b in range(batch):
            if done[b]:
                parents[b] = np.arange(k)
                continue
            alive = 0
            for flat in top[b]:
                beam, token = divmod(int(flat), vocab)
                score = candidates[b, flat]
                if not np.isfinite(score):
                    break
                if token == end_id or last:
                    if len(finished[b]) < k:
                        seq = list(prefix[b * k + beam, 1:]) + [token]
                        finished[b].append((score / penalty(len(seq)), seq))
                    continue
                if alive < k:
                    parents[b, alive], tokens[b, alive], new_scores[b, alive] = beam, token, score
                    alive += 1
                if alive == k and len(finished[b]) >= k:
                    break
            done[b] = len(finished[b]) >= k or alive == 0
        if done.all():
            break
        flat_parents = (parents + np.arange(batch)[:, None] * k).reshape(-1)
        prefix = np.concatenate([prefix[flat_parents], tokens.reshape(-1, 1)], axis=1)
        scores = new_scores
        decoder.reorder(flat_parents)
    best = [max(f, key=lambda x: x[0])[1] if f else [end_id] for f in finished]
    return _pad(best, model.padding_id)
