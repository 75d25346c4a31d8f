"""Benchmark 6b: greedy decoding speed with and without the key/value cache, and
against a keras-hub `TransformerDecoder` model of the same size, in one run.

All four decoders emit exactly `--length` tokens (no end token) for a batch
of random source sequences, with each step compiled (tf.function on
TensorFlow):

- keras_vit, cached: `keras_vit.translation.generate(..., use_cache=True)`.
- keras_vit, uncached: the decoder re-run over the whole prefix each step.
- keras-hub, cached: `TransformerEncoder`/`TransformerDecoder` stacks with
  `self_attention_cache` / `cross_attention_cache`.
- keras-hub, uncached: the same model re-run over the prefix each step.

Prints milliseconds per sequence batch and ratios, and writes them as JSON.

    pip install --no-deps keras-hub
    nice -n 10 python benchmarks/translation_decoding_speed.py --out decoding_speed.json
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN stays as TensorFlow sets it for its users (on, on x86).


def _keras_hub_model(vocab, layers, dim, heads, mlp):
    import keras
    from keras_hub.layers import TokenAndPositionEmbedding, TransformerDecoder, TransformerEncoder

    class HubSeq2Seq:
        def __init__(self):
            self.src_embed = TokenAndPositionEmbedding(vocab, 512, dim)
            self.tgt_embed = TokenAndPositionEmbedding(vocab, 512, dim)
            self.encoders = [TransformerEncoder(mlp, heads) for _ in range(layers)]
            self.decoders = [TransformerDecoder(mlp, heads) for _ in range(layers)]
            self.head = keras.layers.Dense(vocab)

        def encode(self, src):
            x = self.src_embed(src)
            for enc in self.encoders:
                x = enc(x)
            return x

        def decode_full(self, prefix, enc):
            x = self.tgt_embed(prefix)
            for dec in self.decoders:
                x = dec(x, enc)
            return self.head(x[:, -1])

        def decode_step(self, token, index, self_caches, cross_caches, enc, first):
            # Position embedding of the token at `index`.
            x = self.tgt_embed(token, start_index=index)
            new_self, new_cross = [], []
            for i, dec in enumerate(self.decoders):
                x, sc, cc = dec(
                    x,
                    enc,
                    self_attention_cache=self_caches[i],
                    self_attention_cache_update_index=index,
                    cross_attention_cache=cross_caches[i],
                    cross_attention_cache_update_index=0 if first else None,
                )
                new_self.append(sc)
                new_cross.append(cc)
            return self.head(x[:, 0]), new_self, new_cross

    return HubSeq2Seq()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocabulary-size", type=int, default=8000)
    p.add_argument("--num-layers", type=int, default=3)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--mlp-dim", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--source-length", type=int, default=24)
    p.add_argument("--length", type=int, default=64, help="output tokens per sequence")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="translation_decoding_speed.json")
    args = p.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_vit.applications import Transformer
    from keras_vit.translation.decoding import generate

    keras.utils.set_random_seed(0)
    v, n, d, h, f = args.vocabulary_size, args.num_layers, args.hidden_dim, args.num_heads, args.mlp_dim
    rng = np.random.default_rng(0)
    src = rng.integers(4, v, (args.batch_size, args.source_length)).astype("int32")
    length = args.length

    model = Transformer(v, num_layers=n, hidden_dim=d, num_heads=h, mlp_dim=f, dropout=0.0)

    def ours(use_cache):
        # end_id=-1 never occurs: every run decodes exactly `length` tokens.
        out = generate(model, src, max_length=length, end_id=-1, use_cache=use_cache)
        assert out.shape == (args.batch_size, length)
        return out

    hub = _keras_hub_model(v, n, d, h, f)
    hub_encode = tf.function(hub.encode)
    hub_full = tf.function(hub.decode_full, reduce_retracing=True)
    hub_step_first = tf.function(lambda *a: hub.decode_step(*a, first=True))
    hub_step = tf.function(lambda *a: hub.decode_step(*a, first=False))

    def hub_cached():
        enc = hub_encode(src)
        b = args.batch_size
        self_caches = [tf.zeros((b, 2, length, h, d // h)) for _ in range(n)]
        cross_caches = [tf.zeros((b, 2, args.source_length, h, d // h)) for _ in range(n)]
        token = np.full((b, 1), 2, "int32")
        out = []
        for i in range(length):
            fn = hub_step_first if i == 0 else hub_step
            logits, self_caches, cross_caches = fn(token, tf.constant(i), self_caches, cross_caches, enc)
            token = np.argmax(logits.numpy(), -1).astype("int32")[:, None]
            out.append(token)
        return np.concatenate(out, 1)

    def hub_uncached():
        enc = hub_encode(src)
        prefix = np.full((args.batch_size, 1), 2, "int32")
        for _ in range(length):
            logits = hub_full(prefix, enc)
            prefix = np.concatenate([prefix, np.argmax(logits.numpy(), -1)[:, None].astype("int32")], 1)
        return prefix[:, 1:]

    runs = {
        "keras_vit_cached": lambda: ours(True),
        "keras_vit_uncached": lambda: ours(False),
        "keras_hub_cached": hub_cached,
        "keras_hub_uncached": hub_uncached,
    }
    same_tokens = bool(np.array_equal(ours(True), ours(False)))
    hub_same = bool(np.array_equal(hub_cached(), hub_uncached()))
    times = {}
    for name, fn in runs.items():
        fn()  # warm-up: tracing and compilation
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        times[name] = best
        print(f"{name}: {best * 1000:.0f} ms for {args.batch_size}x{length} tokens", flush=True)
    report = {
        "config": vars(args),
        "backend": keras.backend.backend(),
        "seconds": times,
        "cached_tokens_equal_uncached": same_tokens,
        "keras_hub_cached_tokens_equal_uncached": hub_same,
        "speedup_cache_keras_vit": times["keras_vit_uncached"] / times["keras_vit_cached"],
        "speedup_cache_keras_hub": times["keras_hub_uncached"] / times["keras_hub_cached"],
        "keras_vit_cached_vs_keras_hub_cached": times["keras_hub_cached"] / times["keras_vit_cached"],
        "keras_vit_cached_vs_keras_hub_uncached": times["keras_hub_uncached"] / times["keras_vit_cached"],
        "loadavg": os.getloadavg(),
        "keras_vit_parameters": model.count_params(),
    }
    print(json.dumps(report, indent=1))
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
