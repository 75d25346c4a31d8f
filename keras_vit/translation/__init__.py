"""Sequence-to-sequence translation with the Transformer of Vaswani et al. (2017).

- `data`: parallel text (files, Multi30k, TensorFlow Datasets) and length-bucketed token batches.
- `tokenizer`: `SubwordTokenizer`, a shared BPE/WordPiece vocabulary learned from the corpus.
- `losses`: label-smoothed cross-entropy, masked accuracy, the warm-up schedule, `compile_translator`.
- `decoding`: greedy and beam-search `generate`, with a key/value cache.
- `translator`: `train_translator`, `translate`, `bleu`, `length_ratio`, `evaluate_bleu`.
"""

from keras_vit.translation.data import TokenBatches, load_multi30k, load_parallel_text, load_tfds_translation
from keras_vit.translation.decoding import generate
from keras_vit.translation.losses import (
    LabelSmoothedCrossEntropy,
    TransformerSchedule,
    compile_translator,
    masked_accuracy,
)
from keras_vit.translation.tokenizer import SubwordTokenizer
from keras_vit.translation.translator import (
    bleu,
    encode_pairs,
    evaluate_bleu,
    length_ratio,
    train_translator,
    translate,
)

__all__ = [
    "LabelSmoothedCrossEntropy",
    "SubwordTokenizer",
    "TokenBatches",
    "TransformerSchedule",
    "bleu",
    "compile_translator",
    "encode_pairs",
    "evaluate_bleu",
    "generate",
    "length_ratio",
    "load_multi30k",
    "load_parallel_text",
    "load_tfds_translation",
    "masked_accuracy",
    "train_translator",
    "translate",
]
