"""Subword tokenization learned from a training corpus (byte-pair encoding).

Translation models read and write subword units (Sennrich et al. 2016; the
Transformer used a shared BPE vocabulary of about 37,000 tokens). The
`SubwordTokenizer` wraps the Hugging Face `tokenizers` library: BPE or
WordPiece trained on the corpus, a SentencePiece-style whitespace marker so
that decoding restores the original spacing (detokenization), and four
special tokens with fixed ids.
"""

import json

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
_MODELS = ("bpe", "wordpiece")


class SubwordTokenizer:
    """A trained subword vocabulary: text ⇄ token ids.

    Special ids: `pad_id=0`, `unk_id=1`, `bos_id=2`, `eos_id=3`.

    Build one with `SubwordTokenizer.train(texts, vocabulary_size)`, or load
    one with `SubwordTokenizer.load(path)` / `from_json(string)`.
    """

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        for token, expected in zip(SPECIAL_TOKENS, range(4)):
            if tokenizer.token_to_id(token) != expected:
                raise ValueError(
                    f"The tokenizer must map {token!r} to id {expected}. "
                    f"Received: {token!r} -> {tokenizer.token_to_id(token)}"
                )

    @classmethod
    def train(cls, texts, vocabulary_size=8000, model="bpe", min_frequency=2, lowercase=False):
        """Learns a subword vocabulary from an iterable of sentences.

        Args:
            texts: iterable of str (e.g. source and target sides together,
                for a shared vocabulary).
            vocabulary_size: int, target vocabulary size including the
                special tokens.
            model: "bpe" (byte-pair encoding) or "wordpiece".
            min_frequency: int, minimum count of a merged pair.
            lowercase: bool, whether text is lower-cased first.
        """
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        if not isinstance(vocabulary_size, int) or vocabulary_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                "`vocabulary_size` must be an integer larger than the 4 special tokens. "
                f"Received: vocabulary_size={vocabulary_size}"
            )
        norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        if model == "bpe":
            tokenizer = Tokenizer(models.BPE(unk_token=UNK))
            trainer = trainers.BpeTrainer(
                vocab_size=vocabulary_size,
                min_frequency=min_frequency,
                special_tokens=list(SPECIAL_TOKENS),
            )
        elif model == "wordpiece":
            tokenizer = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
            trainer = trainers.WordPieceTrainer(
                vocab_size=vocabulary_size,
                min_frequency=min_frequency,
                special_tokens=list(SPECIAL_TOKENS),
            )
        else:
            raise ValueError(f"`model` must be one of {_MODELS}. Received: model={model!r}")
        tokenizer.normalizer = normalizers.Sequence(norm)
        # Metaspace marks word starts with "▁", so decoding restores the spacing exactly.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
        tokenizer.decoder = decoders.Metaspace()
        tokenizer.train_from_iterator(list(texts), trainer=trainer)
        return cls(tokenizer)

    @property
    def vocabulary_size(self):
        return self._tokenizer.get_vocab_size()

    def encode(self, texts, add_bos=False, add_eos=False):
        """Token ids of each text: a list of lists of int (one text gives one list)."""
        single = isinstance(texts, str)
        batch = self._tokenizer.encode_batch([texts] if single else list(texts))
        prefix = [self.bos_id] if add_bos else []
        suffix = [self.eos_id] if add_eos else []
        ids = [prefix + e.ids + suffix for e in batch]
        return ids[0] if single else ids

    def decode(self, ids):
        """Text of a list of ids (or of a batch: a list of lists); stops at `</s>`."""
        if len(ids) and not isinstance(ids[0], (int,)) and hasattr(ids[0], "__len__"):
            return [self.decode(list(x)) for x in ids]
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def tokenize(self, text):
        """The subword strings of one text."""
        return self._tokenizer.encode(text).tokens

    def to_json(self):
        return self._tokenizer.to_str()

    @classmethod
    def from_json(cls, string):
        from tokenizers import Tokenizer

        json.loads(string)  # a clear error for a non-JSON string
        return cls(Tokenizer.from_str(string))

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    def __eq__(self, other):
        return isinstance(other, SubwordTokenizer) and self.to_json() == other.to_json()

    def __repr__(self):
        return f"SubwordTokenizer(vocabulary_size={self.vocabulary_size})"
