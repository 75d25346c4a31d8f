"""Training and evaluating Transformer translators: `train_translator`, `translate`, BLEU.

BLEU is sacreBLEU's, on detokenized, cased text.
"""

import time

import keras
import numpy as np

from keras_vit.translation.data import TokenBatches, pad_sequences
from keras_vit.translation.decoding import generate
from keras_vit.translation.losses import compile_translator
from keras_vit.translation.tokenizer import SubwordTokenizer


def encode_pairs(tokenizer, sources, targets, max_tokens=None, target_tokenizer=None):
    """Id lists of sources (with `</s>`) and targets (`<s> … </s>`), long pairs dropped."""
    target_tokenizer = target_tokenizer or tokenizer
    src = tokenizer.encode(sources, add_eos=True)
    tgt = target_tokenizer.encode(targets, add_bos=True, add_eos=True)
    if max_tokens:
        keep = [i for i in range(len(src)) if len(src[i]) <= max_tokens and len(tgt[i]) <= max_tokens + 1]
        src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    return src, tgt


def translate(model, sentences, beam_size=4, length_penalty=0.6, max_length=None, batch_size=64, use_cache=True):
    """Translates a list of sentences with a translator that carries its tokenizers.

    Args:
        model: a `Seq2SeqTransformer` with `source_tokenizer` (and optionally
            `target_tokenizer`; else the source one is used).
        sentences: list of str.
        beam_size, length_penalty, use_cache: see `keras_vit.translation.generate`.
        max_length: int or None, defaults to source length + 50 per batch.
        batch_size: int.

    Returns:
        list of str, detokenized.
    """
    if model.source_tokenizer is None:
        raise ValueError("The model has no `source_tokenizer`; train or load a translator first.")
    source_tok = model.source_tokenizer
    target_tok = model.target_tokenizer or source_tok
    ids = source_tok.encode(list(sentences), add_eos=True)
    order = np.argsort([len(x) for x in ids], kind="stable")
    outputs = [None] * len(ids)
    for start in range(0, len(ids), batch_size):
        rows = order[start : start + batch_size]
        batch = [ids[i] for i in rows]
        src = pad_sequences(batch, max(map(len, batch)), model.padding_id)
        length = max_length or src.shape[1] + 50
        out = generate(
            model,
            src,
            max_length=length,
            beam_size=beam_size,
            length_penalty=length_penalty,
            start_id=target_tok.bos_id,
            end_id=target_tok.eos_id,
            use_cache=use_cache,
        )
        for i, row in zip(rows, out):
            outputs[i] = target_tok.decode(list(row))
    return outputs


def bleu(hypotheses, references):
    """Corpus BLEU of sacreBLEU (13a tokenization, cased) on detokenized text."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)])


def evaluate_bleu(model, sources, references, **translate_kwargs):
    """`(sacrebleu BLEUScore, hypotheses)` of `model` on a test set."""
    hypotheses = translate(model, sources, **translate_kwargs)
    return bleu(hypotheses, references), hypotheses


class _TimeLimit(keras.callbacks.Callback):
    def __init__(self, seconds, start):
        super().__init__()
        self.seconds, self.start = seconds, start

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds and time.time() - self.start > self.seconds:
            self.model.stop_training = True


def train_translator(
    train_pairs,
    val_pairs=None,
    vocabulary_size=8000,
    epochs=10,
    tokens_per_batch=4096,
    warmup_steps=4000,
    learning_rate_scale=1.0,
    label_smoothing=0.1,
    max_tokens=100,
    time_limit=None,
    checkpoint=None,
    tokenizer=None,
    verbose=1,
    **model_kwargs,
):
    """Learns a shared BPE vocabulary, builds a Transformer and trains it.

    Args:
        train_pairs, val_pairs: `(sources, targets)` lists of str.
        vocabulary_size: int, shared subword vocabulary size.
        epochs: int.
        tokens_per_batch: int, padded tokens per batch.
        warmup_steps, learning_rate_scale, label_smoothing: see `compile_translator`.
        max_tokens: int, training pairs longer than this are dropped.
        time_limit: seconds or None; training stops after this wall time
            (tokenizer training included).
        checkpoint: path of a `.keras` file written after each epoch (the
            whole translator, tokenizer included).
        tokenizer: a `SubwordTokenizer` to use instead of training one.
        **model_kwargs: `keras_vit.applications.Transformer` arguments
            (`variant`, `num_layers`, `hidden_dim`, ...).

    Returns:
        `(model, history)`; `model.source_tokenizer` is set.
    """
    from keras_vit.applications.transformer import Transformer

    start = time.time()
    sources, targets = train_pairs
    if tokenizer is None:
        tokenizer = SubwordTokenizer.train(list(sources) + list(targets), vocabulary_size)
    src, tgt = encode_pairs(tokenizer, sources, targets, max_tokens)
    train = TokenBatches(src, tgt, tokens_per_batch, shuffle=True, pad_id=SubwordTokenizer.pad_id)
    val = None
    if val_pairs is not None:
        vsrc, vtgt = encode_pairs(tokenizer, *val_pairs)
        val = TokenBatches(vsrc, vtgt, tokens_per_batch, shuffle=False, pad_id=SubwordTokenizer.pad_id)
    model = Transformer(tokenizer.vocabulary_size, padding_id=SubwordTokenizer.pad_id, **model_kwargs)
    model.source_tokenizer = tokenizer
    compile_translator(model, warmup_steps, learning_rate_scale, label_smoothing)
    callbacks = [_TimeLimit(time_limit, start)]
    if checkpoint:
        callbacks.append(keras.callbacks.ModelCheckpoint(checkpoint, save_weights_only=False))
    history = model.fit(
        train.for_fit(),
        validation_data=val and val.for_fit(),
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )
    return model, history
