"""Training and evaluating Transformer translators: `train_translator`, `translate`, BLEU.

BLEU is sacreBLEU's, on detokenized, cased text.
"""

import contextlib
import csv
import os
import shutil
import sys
import time
import warnings

import keras
import numpy as np

from keras_vit.training import StatusUntilFirstStep, resolve_jit_compile
from keras_vit.translation.data import TokenBatches, pad_sequences
from keras_vit.translation.decoding import generate
from keras_vit.translation.losses import compile_translator
from keras_vit.translation.tokenizer import SubwordTokenizer
from keras_vit.utils import atomic_write, save_model_atomic, save_weights_atomic, status_lines

HISTORY_SUFFIX = ".history.csv"
CURVES_SUFFIX = ".curves.png"


def encode_pairs(tokenizer, sources, targets, max_tokens=None, target_tokenizer=None):
    """Id lists of sources (with `</s>`) and targets (`<s> … </s>`), long pairs dropped."""
    target_tokenizer = target_tokenizer or tokenizer
    src = tokenizer.encode(sources, add_eos=True)
    tgt = target_tokenizer.encode(targets, add_bos=True, add_eos=True)
    if max_tokens:
        keep = [i for i in range(len(src)) if len(src[i]) <= max_tokens and len(tgt[i]) <= max_tokens + 1]
        src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    return src, tgt


# Defaults that bound the memory of one `translate` call: decoding caches grow with source length ×
# output length × beam × batch, so one unbounded line (50,000 characters) could take tens of GB.
MAX_SOURCE_TOKENS = 256
MAX_OUTPUT_TOKENS = 512
# Rows of a batch are cut so that rows × beam × (source + output length) stays under this many tokens.
BATCH_TOKEN_BUDGET = 65536


def _positive(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def translate(
    model,
    sentences,
    beam_size=4,
    length_penalty=0.6,
    max_length=None,
    batch_size=64,
    use_cache=True,
    max_source_tokens=MAX_SOURCE_TOKENS,
    max_output_tokens=MAX_OUTPUT_TOKENS,
    verbose=0,
):
    """Translates a list of sentences with a translator that carries its tokenizers.

    Memory is bounded: a source longer than `max_source_tokens` subword
    tokens is truncated to its first `max_source_tokens` (its end token kept)
    with a warning naming the sentence, and no output exceeds
    `max_output_tokens`; long sentences go in smaller batches.

    Args:
        model: a `Seq2SeqTransformer` with `source_tokenizer` (and optionally
            `target_tokenizer`; else the source one is used).
        sentences: list of str.
        beam_size, length_penalty, use_cache: see `keras_vit.translation.generate`.
        max_length: int or None, the most tokens generated per sentence;
            None means source length + 50. Capped at `max_output_tokens`.
        batch_size: int, the most sentences decoded together.
        max_source_tokens: int, longer sources are truncated (with a warning).
        max_output_tokens: int, the cap on `max_length`.
        verbose: 0 (silent) or 1, a `keras.utils.Progbar` over the sentences
            on stderr, redrawn during each batch's decoding too.

    Returns:
        list of str, detokenized.
    """
    if model.source_tokenizer is None:
        raise ValueError("The model has no `source_tokenizer`; train or load a translator first.")
    _positive("max_length", max_length, allow_none=True)
    _positive("batch_size", batch_size)
    _positive("beam_size", beam_size)
    _positive("max_source_tokens", max_source_tokens)
    _positive("max_output_tokens", max_output_tokens)
    source_tok = model.source_tokenizer
    target_tok = model.target_tokenizer or source_tok
    ids = source_tok.encode(list(sentences), add_eos=True)
    for i, row in enumerate(ids):
        if len(row) > max_source_tokens:
            warnings.warn(
                f"Sentence {i + 1} has {len(row)} tokens; only its first {max_source_tokens} are translated "
                f"(raise max_source_tokens to translate more). Received: max_source_tokens={max_source_tokens}",
                stacklevel=2,
            )
            ids[i] = row[: max_source_tokens - 1] + [row[-1]]
    order = np.argsort([len(x) for x in ids], kind="stable")
    outputs = [None] * len(ids)
    progress = _Progress(len(ids), "sentence") if verbose else None
    start = 0
    while start < len(ids):
        # Sources are sorted by length, so the window's last row is its longest.
        longest = len(ids[order[min(start + batch_size, len(ids)) - 1]])
        bound = min(max_length if max_length is not None else longest + 50, max_output_tokens)
        rows_fit = max(1, BATCH_TOKEN_BUDGET // (beam_size * (longest + bound)))
        rows = order[start : start + min(batch_size, rows_fit)]
        start += len(rows)
        batch = [ids[i] for i in rows]
        src = pad_sequences(batch, max(map(len, batch)), model.padding_id)
        length = min(max_length if max_length is not None else src.shape[1] + 50, max_output_tokens)
        out = generate(
            model,
            src,
            max_length=length,
            beam_size=beam_size,
            length_penalty=length_penalty,
            start_id=target_tok.bos_id,
            end_id=target_tok.eos_id,
            use_cache=use_cache,
            step_callback=(lambda done=start - len(rows): progress.update(done)) if progress else None,
        )
        for i, row in zip(rows, out):
            outputs[i] = target_tok.decode(list(row))
        if progress:
            progress.update(start)
    return outputs


class _Progress:
    """`keras.utils.Progbar` on stderr (stdout may carry the translations); a new line every 5 s
    where stderr is no terminal, rather than one every 50 ms."""

    def __init__(self, target, unit_name):
        tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.bar = keras.utils.Progbar(target, interval=0.5 if tty else 5.0, unit_name=unit_name)
        self.target = target
        self.update(0)

    def update(self, current):
        with contextlib.redirect_stdout(sys.stderr):
            self.bar.update(current, finalize=current >= self.target)
            if current >= self.target:
                sys.stderr.flush()


def bleu(hypotheses, references):
    """Corpus BLEU of sacreBLEU (13a tokenization, cased) on detokenized text.

    Returns:
        a `sacrebleu.metrics.bleu.BLEUScore` (`.score`, `.bp`, `.sys_len`,
        `.ref_len`), with `.signature` set to sacreBLEU's signature string
        (`nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...`);
        `score.format(signature=score.signature)` is the line to report.
    """
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    score = metric.corpus_score(list(hypotheses), [list(references)])
    score.signature = str(metric.get_signature())
    return score


def length_ratio(score):
    """Hypothesis/reference length ratio of a `bleu` score (the `ratio` of its line)."""
    return score.sys_len / score.ref_len if score.ref_len else float("nan")


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


_BACKUP_TOKENIZER = "tokenizer.json"


def _backup_weights(backup_dir):
    """`[(epoch, path)]` of the epoch backups in `backup_dir`, newest first."""
    found = []
    for name in os.listdir(backup_dir) if os.path.isdir(backup_dir) else []:
        stem = name[len("epoch-") : -len(".weights.h5")] if name.startswith("epoch-") else ""
        if name.endswith(".weights.h5") and stem.isdigit():
            found.append((int(stem), os.path.join(backup_dir, name)))
    return sorted(found, reverse=True)


class _EpochBackup(keras.callbacks.Callback):
    """After each epoch: the weights and optimizer state in `backup_dir/epoch-N.weights.h5`, and the
    whole translator in `checkpoint`; both written atomically, so a kill leaves the previous ones."""

    def __init__(self, backup_dir, checkpoint):
        super().__init__()
        self.backup_dir, self.checkpoint = backup_dir, checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if self.backup_dir:
            older = _backup_weights(self.backup_dir)
            # One file per epoch: the epoch number and the weights land in one atomic rename.
            save_weights_atomic(self.model, os.path.join(self.backup_dir, f"epoch-{epoch + 1}.weights.h5"))
            for _, path in older:
                os.remove(path)
        if self.checkpoint:
            save_model_atomic(self.model, self.checkpoint)


def history_paths(model_path):
    """`(history.csv, curves.png)` paths that `keras-vit translate train` writes beside `model_path`."""
    stem = os.path.splitext(os.fspath(model_path))[0]
    return stem + HISTORY_SUFFIX, stem + CURVES_SUFFIX


class _History(keras.callbacks.Callback):
    """One CSV row per epoch and its learning-curve figure, both rewritten atomically after each epoch."""

    def __init__(self, path, initial_epoch=0):
        super().__init__()
        self.path = os.fspath(path)
        self.curves = os.path.splitext(self.path)[0] + ".png"
        if self.path.endswith(HISTORY_SUFFIX):
            self.curves = self.path[: -len(HISTORY_SUFFIX)] + CURVES_SUFFIX
        self.rows = []
        if initial_epoch and os.path.isfile(self.path):
            try:
                with open(self.path, newline="", encoding="utf-8") as f:
                    self.rows = [row for row in csv.DictReader(f) if int(row["epoch"]) < initial_epoch]
            except (ValueError, KeyError, TypeError, csv.Error):
                self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        from keras_vit.curves import write_curves

        row = {"epoch": epoch, **{key: float(value) for key, value in (logs or {}).items()}}
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        keys = ["epoch"] + sorted({key for r in self.rows for key in r} - {"epoch"})
        with atomic_write(self.path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        write_curves(self.rows, self.curves)


def _restore(model, backup_dir):
    """Loads the newest readable epoch backup into `model`; returns its epoch (0 if none).

    An unreadable backup (a foreign or damaged file) is renamed `*.corrupt`
    with a warning and the next older one is tried.
    """
    for epoch, path in _backup_weights(backup_dir):
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(path)
        except (OSError, ValueError, KeyError) as error:
            os.replace(path, path + ".corrupt")
            warnings.warn(f"Set aside the unreadable backup {path!r} ({error}); trying an older one.", stacklevel=2)
            continue
        return epoch
    return 0


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
    backup_dir=None,
    callbacks=None,
    history_file=None,
    jit_compile="auto",
    **model_kwargs,
):
    """Learns a shared BPE vocabulary, builds a Transformer and trains it.

    With `backup_dir`, an interrupted training resumes: after each epoch the
    weights and optimizer state go to `backup_dir` (with the tokenizer, so the
    vocabulary is the same), and a rerun with the same arguments continues
    at the next epoch. The folder is removed when training ends.

    Args:
        train_pairs, val_pairs: `(sources, targets)` lists of str.
        vocabulary_size: int, shared subword vocabulary size.
        epochs: int, the total number of epochs (a resumed run counts the
            epochs already done).
        tokens_per_batch: int, padded tokens per batch.
        warmup_steps, learning_rate_scale, label_smoothing: see `compile_translator`.
        max_tokens: int, training pairs longer than this are dropped.
        time_limit: seconds or None; training stops after this wall time
            (tokenizer training included).
        checkpoint: path of a `.keras` file written atomically after each
            epoch and at the end (the whole translator, tokenizer included).
        tokenizer: a `SubwordTokenizer` to use instead of training one.
        backup_dir: folder of the resumable state, or None (no resuming).
        callbacks: list of further `keras.callbacks.Callback` for `fit`.
        history_file: path of a CSV written after each epoch (one row per
            epoch: loss, metrics, validation), with the learning curves
            (`keras_vit.curves`) beside it in the same name with `.png`
            for `.csv`. A resumed run keeps the rows of the epochs it does
            not redo.
        verbose: 0 silent; 1 status lines and Keras' progress bar; 2 one
            line per epoch.
        jit_compile: "auto", True or False. "auto" is
            `keras_vit.training.resolve_jit_compile`'s pick (XLA on
            TensorFlow once the training is long enough: a Multi30k epoch
            on 2 CPU cores in 288 s instead of 631-752 s, see
            benchmarks/README.md; `jax.jit` on JAX). A compiled step reads
            batches of fixed shapes (`TokenBatches(fixed_shapes=True)`).
        **model_kwargs: `keras_vit.applications.Transformer` arguments
            (`variant`, `num_layers`, `hidden_dim`, ...).

    Returns:
        `(model, history)`; `model.source_tokenizer` is set.
    """
    from keras_vit.applications.transformer import Transformer

    _positive("epochs", epochs)
    start = time.time()
    sources, targets = train_pairs
    backup_tokenizer = os.path.join(backup_dir, _BACKUP_TOKENIZER) if backup_dir else None
    if tokenizer is None and backup_tokenizer and os.path.isfile(backup_tokenizer):
        tokenizer = SubwordTokenizer.load(backup_tokenizer)  # the resumed weights index this vocabulary
    if tokenizer is None:
        with status_lines(
            f"learning a {vocabulary_size:,}-token vocabulary from {2 * len(sources):,} sentences", verbose
        ):
            tokenizer = SubwordTokenizer.train(list(sources) + list(targets), vocabulary_size)
    if backup_tokenizer:
        with atomic_write(backup_tokenizer) as f:
            f.write(tokenizer.to_json())
    src, tgt = encode_pairs(tokenizer, sources, targets, max_tokens)
    model = Transformer(tokenizer.vocabulary_size, padding_id=SubwordTokenizer.pad_id, **model_kwargs)
    model.source_tokenizer = tokenizer
    pad = SubwordTokenizer.pad_id
    train = TokenBatches(src, tgt, tokens_per_batch, shuffle=True, pad_id=pad)
    jit_compile = resolve_jit_compile(model, jit_compile, total_steps=len(train) * epochs)
    if jit_compile:
        train = TokenBatches(src, tgt, tokens_per_batch, shuffle=True, pad_id=pad, fixed_shapes=True)
    val = None
    if val_pairs is not None:
        vsrc, vtgt = encode_pairs(tokenizer, *val_pairs)
        val = TokenBatches(vsrc, vtgt, tokens_per_batch, shuffle=False, pad_id=pad, fixed_shapes=jit_compile)
    compile_translator(model, warmup_steps, learning_rate_scale, label_smoothing, jit_compile=jit_compile)
    initial_epoch = _restore(model, backup_dir) if backup_dir else 0
    if initial_epoch and verbose:
        print(f"Resuming from {backup_dir!r} after epoch {initial_epoch}/{epochs}")
    # The history row of an epoch is written before its backup: a kill in between redoes that epoch,
    # whose row the resumed run then replaces.
    history_writer = [_History(history_file, initial_epoch)] if history_file else []
    callbacks = [
        _TimeLimit(time_limit, start),
        *history_writer,
        _EpochBackup(backup_dir, checkpoint),
        *(callbacks or []),
    ]
    if verbose and initial_epoch < epochs:
        callbacks.append(StatusUntilFirstStep("compiling the training step"))
    history = model.fit(
        train.for_fit(),
        validation_data=val and val.for_fit(),
        epochs=epochs,
        initial_epoch=min(initial_epoch, epochs),
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )
    if checkpoint:
        save_model_atomic(model, checkpoint)
    if backup_dir:
        # Only now that the final translator is on disk.
        shutil.rmtree(backup_dir, ignore_errors=True)
    return model, history
