"""Training and evaluating Transformer translators: data, loss, schedule, BLEU.

- Data: plain parallel text files (one sentence per line), Multi30k, and
  TensorFlow Datasets translation sets, as lists of sentence pairs; batches
  of about `tokens_per_batch` tokens from length buckets (Vaswani et al.
  2017, Sec. 5.1: "sentence pairs were batched together by approximate
  sequence length").
- `LabelSmoothedCrossEntropy` (Sec. 5.4, ε_ls = 0.1) and the warm-up
  inverse-square-root `TransformerSchedule` (Sec. 5.3, Eq. (3)).
- `train_translator`, `translate`, `evaluate_bleu` (sacreBLEU on detokenized,
  cased text).
"""

import math
import os
import time

import keras
import numpy as np
from keras import ops

from keras_vit.decoding import generate
from keras_vit.text import SubwordTokenizer

# ---- data ---------------------------------------------------------------------------


def load_parallel_text(source_path, target_path, limit=None):
    """Sentence pairs from two aligned text files, one sentence per line.

    Returns:
        `(sources, targets)`, two lists of str of equal length.
    """
    with open(source_path, encoding="utf-8") as f:
        sources = f.read().splitlines()
    with open(target_path, encoding="utf-8") as f:
        targets = f.read().splitlines()
    if len(sources) != len(targets):
        raise ValueError(
            f"Parallel files must have the same number of lines. Received: "
            f"{len(sources)} lines in {source_path!r}, {len(targets)} in {target_path!r}"
        )
    return sources[:limit], targets[:limit]


def load_multi30k(data_dir, split="train", source_language="de", target_language="en"):
    """Multi30k (Elliott et al. 2016) pairs from `data_dir/{split}.{lang}` files.

    `split` is "train", "val" or "test_2016_flickr".
    """
    return load_parallel_text(
        os.path.join(data_dir, f"{split}.{source_language}"),
        os.path.join(data_dir, f"{split}.{target_language}"),
    )


def load_tfds_translation(name, split="train", source_key=None, target_key=None, limit=None):
    """Sentence pairs of a TensorFlow Datasets translation set, e.g.
    `"ted_hrlr_translate/pt_to_en"` or `"wmt14_translate/de-en"`.

    `source_key`/`target_key` default to the dataset's supervised keys.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name)
    if source_key is None or target_key is None:
        keys = builder.info.supervised_keys
        if keys is None:
            raise ValueError(
                f"Dataset {name!r} has no supervised keys; pass source_key and target_key."
            )
        source_key = source_key or keys[0]
        target_key = target_key or keys[1]
    builder.download_and_prepare()
    ds = builder.as_dataset(split=split)
    if limit:
        ds = ds.take(limit)
    sources, targets = [], []
    for example in tfds.as_numpy(ds):
        sources.append(example[source_key].decode("utf-8"))
        targets.append(example[target_key].decode("utf-8"))
    return sources, targets


def _pad_to(sequences, length, pad_id):
    out = np.full((len(sequences), length), pad_id, "int32")
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out


class TokenBatches(keras.utils.PyDataset):
    """Batches of sentence pairs of about `tokens_per_batch` (padded) tokens.

    Pairs are sorted by length, cut into batches whose padded size stays
    under the budget, and the batch order is shuffled every epoch. Each
    element is `({"encoder_inputs", "decoder_inputs"}, labels)` with the
    target shifted by one (teacher forcing).

    Args:
        source_ids, target_ids: lists of id lists; targets include `<s>` and `</s>`.
        tokens_per_batch: int, the padded-token budget of one batch.
        shuffle: bool.
        pad_id: int.
        pad_multiple: int, lengths are padded to a multiple of it (fewer
            distinct shapes to compile).
    """

    def __init__(self, source_ids, target_ids, tokens_per_batch=4096, shuffle=True, pad_id=0,
                 pad_multiple=8, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.source_ids, self.target_ids = source_ids, target_ids
        self.pad_id, self.shuffle, self.pad_multiple = pad_id, shuffle, pad_multiple
        self.rng = np.random.default_rng(seed)
        order = sorted(
            range(len(source_ids)), key=lambda i: (len(target_ids[i]), len(source_ids[i]))
        )
        self.batches, current, width = [], [], 0
        for i in order:
            w = max(width, self._round(len(source_ids[i])), self._round(len(target_ids[i]) - 1))
            if current and w * (len(current) + 1) > tokens_per_batch:
                self.batches.append(current)
                current, w = [], max(self._round(len(source_ids[i])), self._round(len(target_ids[i]) - 1))
            current.append(i)
            width = w
        if current:
            self.batches.append(current)
        self.order = np.arange(len(self.batches))
        self.on_epoch_end()

    def _round(self, n):
        return int(math.ceil(n / self.pad_multiple) * self.pad_multiple)

    def __len__(self):
        return len(self.batches)

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)

    def __getitem__(self, index):
        rows = self.batches[self.order[index]]
        src = [self.source_ids[i] for i in rows]
        tgt = [self.target_ids[i] for i in rows]
        src = _pad_to(src, self._round(max(map(len, src))), self.pad_id)
        tgt = _pad_to(tgt, self._round(max(map(len, tgt)) - 1) + 1, self.pad_id)
        return {"encoder_inputs": src, "decoder_inputs": tgt[:, :-1]}, tgt[:, 1:]

    def for_fit(self):
        """What `model.fit` should read: on TensorFlow a `tf.data.Dataset` whose
        batch and length axes are declared variable (Keras' PyDataset adapter
        fixes them from the first batches); on other backends `self`."""
        if keras.backend.backend() != "tensorflow":
            return self
        import tensorflow as tf

        spec = tf.TensorSpec((None, None), tf.int32)

        def batches():
            for i in range(len(self)):
                yield self[i]
            self.on_epoch_end()

        ds = tf.data.Dataset.from_generator(
            batches,
            output_signature=({"encoder_inputs": spec, "decoder_inputs": spec}, spec),
        )
        return ds.prefetch(2)


# ---- loss, metric, schedule --------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_vit")
class LabelSmoothedCrossEntropy(keras.losses.Loss):
    """Cross-entropy against label-smoothed targets, padding ignored.

    Vaswani et al. (2017), Sec. 5.4, after Szegedy et al. (2016): the target
    distribution is `q = (1 - ε) one_hot(y) + ε / V`, so the loss per token is
    `-(1 - ε) log p_y - (ε / V) Σ_v log p_v`. Tokens whose label is
    `padding_id` do not count; the result is the mean over real tokens.

    Args:
        label_smoothing: float ε in [0, 1).
        padding_id: int or None, label id to ignore.
        from_logits: bool, whether `y_pred` are logits (else probabilities).
    """

    def __init__(self, label_smoothing=0.1, padding_id=0, from_logits=True,
                 name="label_smoothed_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing}"
            )
        self.label_smoothing = label_smoothing
        self.padding_id = padding_id
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        if self.from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
        else:
            log_p = ops.log(ops.clip(y_pred, 1e-12, 1.0))
        y_true = ops.cast(y_true, "int32")
        nll = -ops.take_along_axis(log_p, y_true[..., None], axis=-1)[..., 0]
        smooth = -ops.mean(log_p, axis=-1)
        eps = self.label_smoothing
        loss = (1.0 - eps) * nll + eps * smooth
        if self.padding_id is None:
            return ops.mean(loss)
        mask = ops.cast(ops.not_equal(y_true, self.padding_id), loss.dtype)
        # Mean over real tokens (returned as a scalar, so the reduction keeps it).
        return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "label_smoothing": self.label_smoothing,
                "padding_id": self.padding_id,
                "from_logits": self.from_logits,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
def masked_accuracy(y_true, y_pred, padding_id=0):
    """Next-token accuracy over non-padding labels."""
    y_true = ops.cast(y_true, "int32")
    hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
    mask = ops.cast(ops.not_equal(y_true, padding_id), "float32")
    return ops.sum(hit * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of Vaswani et al. (2017), Sec. 5.3, Eq. (3).

    `lrate = scale · d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5)`:
    linear warm-up for `warmup_steps`, then decay ∝ 1/√step (steps count
    from 1).

    Args:
        hidden_dim: int, d_model.
        warmup_steps: int (4000 in the paper).
        scale: float, a multiplier (1.0 in the paper).
    """

    def __init__(self, hidden_dim, warmup_steps=4000, scale=1.0):
        if not isinstance(warmup_steps, int) or warmup_steps < 1:
            raise ValueError(
                f"`warmup_steps` must be a positive integer. Received: warmup_steps={warmup_steps}"
            )
        self.hidden_dim = hidden_dim
        self.warmup_steps = warmup_steps
        self.scale = scale

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        return (
            self.scale
            * self.hidden_dim**-0.5
            * ops.minimum(ops.power(step, -0.5), step * self.warmup_steps**-1.5)
        )

    def get_config(self):
        return {"hidden_dim": self.hidden_dim, "warmup_steps": self.warmup_steps, "scale": self.scale}


def compile_translator(model, warmup_steps=4000, learning_rate_scale=1.0, label_smoothing=0.1):
    """Compiles `model` as in the paper: Adam(β1=0.9, β2=0.98, ε=1e-9), the
    warm-up schedule and the label-smoothed loss."""
    schedule = TransformerSchedule(model.hidden_dim, warmup_steps, learning_rate_scale)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9),
        loss=LabelSmoothedCrossEntropy(label_smoothing, padding_id=model.padding_id),
        metrics=[masked_accuracy],
    )
    return model


# ---- translation ----------------------------------------------------------------------


def encode_pairs(tokenizer, sources, targets, max_tokens=None, target_tokenizer=None):
    """Id lists of sources (with `</s>`) and targets (`<s> … </s>`), long pairs dropped."""
    target_tokenizer = target_tokenizer or tokenizer
    src = tokenizer.encode(sources, add_eos=True)
    tgt = target_tokenizer.encode(targets, add_bos=True, add_eos=True)
    if max_tokens:
        keep = [i for i in range(len(src)) if len(src[i]) <= max_tokens and len(tgt[i]) <= max_tokens + 1]
        src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    return src, tgt


def translate(model, sentences, beam_size=4, length_penalty=0.6, max_length=None,
              batch_size=64, use_cache=True):
    """Translates a list of sentences with a translator that carries its tokenizers.

    Args:
        model: a `Seq2SeqTransformer` with `source_tokenizer` (and optionally
            `target_tokenizer`; else the source one is used).
        sentences: list of str.
        beam_size, length_penalty, use_cache: see `keras_vit.decoding.generate`.
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
        src = _pad_to(batch, max(map(len, batch)), model.padding_id)
        length = max_length or src.shape[1] + 50
        out = generate(
            model, src, max_length=length, beam_size=beam_size, length_penalty=length_penalty,
            start_id=target_tok.bos_id, end_id=target_tok.eos_id, use_cache=use_cache,
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
    history = model.fit(train.for_fit(), validation_data=val and val.for_fit(), epochs=epochs, callbacks=callbacks,
                        verbose=verbose)
    return model, history
