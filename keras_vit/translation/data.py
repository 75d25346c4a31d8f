"""Parallel text for translation: files, Multi30k, TensorFlow Datasets, and token batches.

Batches hold about `tokens_per_batch` tokens drawn from length buckets
(Vaswani et al. 2017, Sec. 5.1: "sentence pairs were batched together by
approximate sequence length").
"""

import math
import os

import keras
import numpy as np


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
            raise ValueError(f"Dataset {name!r} has no supervised keys; pass source_key and target_key.")
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


def pad_sequences(sequences, length, pad_id):
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
        fixed_shapes: bool, for a compiled (XLA) training step, which
            compiles once per input shape: the pairs are bucketed by
            `width = max(source length, target length - 1)` rounded up to
            `pad_multiple`, both sides are padded to the width and every
            batch of a bucket has `tokens_per_batch // width` rows (the
            last one filled with copies of its first pair whose labels are
            all padding, so they add nothing to the loss). One shape per
            width: about a dozen on Multi30k instead of hundreds.
    """

    def __init__(
        self,
        source_ids,
        target_ids,
        tokens_per_batch=4096,
        shuffle=True,
        pad_id=0,
        pad_multiple=8,
        seed=0,
        fixed_shapes=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_ids, self.target_ids = source_ids, target_ids
        self.pad_id, self.shuffle, self.pad_multiple = pad_id, shuffle, pad_multiple
        self.fixed_shapes = fixed_shapes
        self.rng = np.random.default_rng(seed)
        order = sorted(range(len(source_ids)), key=lambda i: (len(target_ids[i]), len(source_ids[i])))
        if fixed_shapes:
            self._bucket(order, tokens_per_batch)
            return
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

    def _bucket(self, order, tokens_per_batch):
        buckets = {}
        for i in order:
            width = max(self._round(len(self.source_ids[i])), self._round(len(self.target_ids[i]) - 1))
            buckets.setdefault(width, []).append(i)
        self.batches, self.widths, self.rows = [], [], []
        for width in sorted(buckets):
            rows = max(1, tokens_per_batch // width)
            members = buckets[width]
            for start in range(0, len(members), rows):
                self.batches.append(members[start : start + rows])
                self.widths.append(width)
                self.rows.append(rows)
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
        if self.fixed_shapes:
            return self._fixed_batch(self.order[index])
        rows = self.batches[self.order[index]]
        src = [self.source_ids[i] for i in rows]
        tgt = [self.target_ids[i] for i in rows]
        src = pad_sequences(src, self._round(max(map(len, src))), self.pad_id)
        tgt = pad_sequences(tgt, self._round(max(map(len, tgt)) - 1) + 1, self.pad_id)
        return {"encoder_inputs": src, "decoder_inputs": tgt[:, :-1]}, tgt[:, 1:]

    def _fixed_batch(self, b):
        members, width, rows = self.batches[b], self.widths[b], self.rows[b]
        filler = rows - len(members)
        members = members + [members[0]] * filler
        src = pad_sequences([self.source_ids[i] for i in members], width, self.pad_id)
        tgt = pad_sequences([self.target_ids[i] for i in members], width + 1, self.pad_id)
        labels = tgt[:, 1:].copy()
        if filler:
            labels[-filler:] = self.pad_id
        return {"encoder_inputs": src, "decoder_inputs": tgt[:, :-1]}, labels

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
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(self)))
        return ds.prefetch(2)
