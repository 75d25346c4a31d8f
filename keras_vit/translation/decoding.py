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
score `log P(Y) / lp(Y)`, `lp(Y) = ((5 + |Y|) / 6)^α` (Wu et al., Eq. 14),
keeping the `beam_size` best of them. A source is done at `max_length`, or
once no live prefix can still beat the best ended hypothesis: a prefix's
log-probability only falls as it grows, so its best possible score is its
log-probability divided by the largest penalty still to come. Stopping as
soon as `beam_size` hypotheses have ended would instead keep the early,
short ones and favour short outputs.
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
    step_callback=None,
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
        step_callback: None or a function of no arguments, called after each
            decoding step (a progress bar's heartbeat).

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
        return _greedy(model, encoder_inputs, max_length, start_id, end_id, use_cache, forbidden_ids, step_callback)
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
        step_callback,
    )


def _greedy(model, encoder_inputs, max_length, start_id, end_id, use_cache, forbidden, step_callback=None):
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
        if step_callback:
            step_callback()
        if done.all():
            break
    return prefix[:, 1:]


def _beam(model, encoder_inputs, max_length, k, alpha, start_id, end_id, use_cache, forbidden, step_callback=None):
    batch = encoder_inputs.shape[0]
    decoder = _Decoder(model, encoder_inputs, max_length, k, use_cache)
    prefix = np.full((batch * k, 1), start_id, "int32")
    scores = np.zeros((batch, k))
    scores[:, 1:] = -np.inf  # all beams start equal: keep one so the first step picks k tokens
    finished = [[] for _ in range(batch)]  # the k best ended hypotheses: (normalised score, ids)
    done = np.zeros(batch, bool)

    def penalty(length):
        return ((5.0 + length) / 6.0) ** alpha

    # lp is monotonic in the length, so its largest value over the lengths still to come is at an end.
    def largest_penalty(length):
        return max(penalty(length), penalty(max_length))

    for step in range(max_length):
        logp = _log_softmax(decoder.next_logits(prefix))
        logp[:, forbidden] = -np.inf
        vocab = logp.shape[-1]
        candidates = scores[:, :, None] + logp.reshape(batch, k, vocab)
        ended = candidates[:, :, end_id].copy()  # each beam may end here
        candidates[:, :, end_id] = -np.inf
        flat = candidates.reshape(batch, -1)
        top = np.argsort(-flat, axis=-1, kind="stable")[:, :k]  # the k best that continue
        parents, tokens = top // vocab, (top % vocab).astype("int32")
        new_scores = np.take_along_axis(flat, top, axis=-1)
        last = step == max_length - 1
        length = step + 1
        for b in range(batch):
            if done[b]:
                parents[b], tokens[b] = np.arange(k), end_id
                continue
            ends = [(ended[b, j], j, end_id) for j in range(k)]
            if last:  # at max_length the best continuations end too
                ends += [(new_scores[b, j], parents[b, j], tokens[b, j]) for j in range(k)]
            for score, beam, token in ends:
                if np.isfinite(score):
                    seq = [int(t) for t in prefix[b * k + beam, 1:]] + [int(token)]
                    finished[b].append((score / penalty(length), seq))
            finished[b] = sorted(finished[b], key=lambda x: -x[0])[:k]
            best_alive = new_scores[b].max()
            # No continuation can score more than its raw log-probability (which only falls) divided by
            # the largest penalty still to come: once the best ended score reaches that, it is final.
            done[b] = (
                last
                or not np.isfinite(best_alive)
                or (bool(finished[b]) and finished[b][0][0] >= best_alive / largest_penalty(length + 1))
            )
        if step_callback:
            step_callback()
        if done.all():
            break
        flat_parents = (parents + np.arange(batch)[:, None] * k).reshape(-1)
        prefix = np.concatenate([prefix[flat_parents], tokens.reshape(-1, 1)], axis=1)
        scores = np.where(done[:, None], -np.inf, new_scores)
        decoder.reorder(flat_parents)
    best = [f[0][1] if f else [end_id] for f in finished]
    return _pad(best, model.padding_id)
