"""The encoder-decoder Transformer of Vaswani et al. (2017), "Attention Is All You Need"."""

import os

import keras
from keras import ops

from keras_vit.applications.registry import register_model
from keras_vit.layers.positional_encoding import sinusoidal_encoding_at
from keras_vit.layers.token_embedding import TokenEmbedding
from keras_vit.layers.transformer_block import TransformerBlock
from keras_vit.layers.transformer_decoder_block import TransformerDecoderBlock

# Table 3 of the paper: N, d_model, d_ff, h, P_drop (d_k = d_v = d_model / h).
TRANSFORMER_CONFIGS = {
    "base": {"num_layers": 6, "hidden_dim": 512, "mlp_dim": 2048, "num_heads": 8, "dropout": 0.1},
    "big": {"num_layers": 6, "hidden_dim": 1024, "mlp_dim": 4096, "num_heads": 16, "dropout": 0.3},
}

_TOKENIZER_FILES = ("source_tokenizer.json", "target_tokenizer.json")


@keras.saving.register_keras_serializable(package="keras_vit")
class Seq2SeqTransformer(keras.Model):
    """Encoder-decoder Transformer, Vaswani et al. (2017), Sec. 3 and Fig. 1.

    Source and target tokens enter all at once; order comes from the
    sinusoidal positional encoding (Sec. 3.5) added to the embeddings, which
    are multiplied by √d_model (Sec. 3.4). N encoder blocks (self-attention +
    MLP) read the source; N decoder blocks (causal self-attention, attention
    over the encoder output, MLP) read the shifted target; a linear map,
    optionally tied to the embedding, gives next-token logits.

    Args:
        vocabulary_size: int, source vocabulary size (the shared one when
            `share_embeddings=True`).
        target_vocabulary_size: int or None, defaults to `vocabulary_size`.
        num_layers: int, encoder blocks N.
        num_decoder_layers: int or None, decoder blocks; defaults to N.
        hidden_dim: int, d_model.
        num_heads: int, h.
        mlp_dim: int, d_ff.
        dropout: float, P_drop on embeddings and residual branches.
        attention_dropout: float, dropout on attention scores.
        norm_first: bool, pre-norm blocks (True) or the paper's post-norm.
        share_embeddings: bool, one embedding for source and target (needs
            equal vocabulary sizes).
        tie_output_embedding: bool, use the target embedding as the
            pre-softmax projection (Sec. 3.4).
        layer_norm_epsilon: float.
        activation: MLP activation ("relu" in the paper).
        padding_id: int, the padding token id (masked in attention).
        max_wavelength: float, the 10000 of the positional encoding.
        include_top: bool, whether `call` returns logits (True) or the final
            decoder states `(B, T, d_model)`.

    Call arguments:
        inputs: dict with "encoder_inputs" `(B, S)` and "decoder_inputs"
            `(B, T)` integer token ids (or a 2-tuple in that order).
        training: bool.

    Returns:
        logits `(B, T, target_vocabulary_size)`.
    """

    def __init__(
        self,
        vocabulary_size,
        target_vocabulary_size=None,
        num_layers=6,
        num_decoder_layers=None,
        hidden_dim=512,
        num_heads=8,
        mlp_dim=2048,
        dropout=0.1,
        attention_dropout=0.0,
        norm_first=False,
        share_embeddings=True,
        tie_output_embedding=True,
        layer_norm_epsilon=1e-6,
        activation="relu",
        padding_id=0,
        max_wavelength=10000.0,
        include_top=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        target_vocabulary_size = target_vocabulary_size or vocabulary_size
        if share_embeddings and target_vocabulary_size != vocabulary_size:
            raise ValueError(
                "`share_embeddings=True` needs one vocabulary for both sides. Received: "
                f"vocabulary_size={vocabulary_size}, target_vocabulary_size={target_vocabulary_size}"
            )
        for arg, value in (("num_layers", num_layers), ("hidden_dim", hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer. Received: {arg}={value}")
        if num_decoder_layers is not None and (not isinstance(num_decoder_layers, int) or num_decoder_layers < 1):
            raise ValueError(
                "`num_decoder_layers` must be a positive integer or None. "
                f"Received: num_decoder_layers={num_decoder_layers}"
            )
        if hidden_dim % 2:
            raise ValueError(f"`hidden_dim` must be even. Received: hidden_dim={hidden_dim}")
        self.vocabulary_size = vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.num_layers = num_layers
        self.num_decoder_layers = num_decoder_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.norm_first = norm_first
        self.share_embeddings = share_embeddings
        self.tie_output_embedding = tie_output_embedding
        self.layer_norm_epsilon = layer_norm_epsilon
        self.activation = activation
        self.padding_id = padding_id
        self.max_wavelength = max_wavelength
        self.include_top = include_top
        # A translator saved as one artefact carries its tokenizers (see save_assets).
        self.source_tokenizer = None
        self.target_tokenizer = None

        self.source_embedding = TokenEmbedding(vocabulary_size, hidden_dim, name="source_embedding")
        if share_embeddings:
            self.target_embedding = self.source_embedding
        else:
            self.target_embedding = TokenEmbedding(target_vocabulary_size, hidden_dim, name="target_embedding")
        self.embedding_dropout = keras.layers.Dropout(dropout, name="embedding_dropout")
        block = dict(
            num_heads=num_heads,
            mlp_dim=mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            norm_first=norm_first,
            layer_norm_epsilon=layer_norm_epsilon,
            activation=activation,
        )
        self.encoder_blocks = [TransformerBlock(name=f"encoder_block_{i}", **block) for i in range(num_layers)]
        self.decoder_blocks = [
            TransformerDecoderBlock(name=f"decoder_block_{i}", **block) for i in range(num_decoder_layers or num_layers)
        ]
        if norm_first:
            # Pre-norm stacks end with a LayerNorm (the residual stream is never normalised).
            self.encoder_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="encoder_norm")
            self.decoder_norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="decoder_norm")
        if include_top and not tie_output_embedding:
            self.output_projection = keras.layers.Dense(target_vocabulary_size, name="output_projection")

    def build(self, input_shape=None):
        src = keras.ops.zeros((1, 2), "int32")
        self.call({"encoder_inputs": src, "decoder_inputs": src})
        self.built = True

    # ---- the two stacks --------------------------------------------------------------

    def _embed(self, embedding, tokens, offset=0, training=None):
        x = embedding(tokens)
        positions = offset + ops.arange(ops.shape(tokens)[1])
        x = x + sinusoidal_encoding_at(positions, self.hidden_dim, self.max_wavelength, x.dtype)[None]
        return self.embedding_dropout(x, training=training)

    def encode(self, encoder_inputs, training=None, return_attention_scores=False):
        """Encoder output `(B, S, d_model)` and its padding mask `(B, S)`.

        With `return_attention_scores=True` also the list of per-block
        self-attention scores `(B, h, S, S)`.
        """
        mask = ops.not_equal(encoder_inputs, self.padding_id)
        x = self._embed(self.source_embedding, encoder_inputs, training=training)
        scores = []
        for block in self.encoder_blocks:
            out = block(
                x,
                attention_mask=mask,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                out, s = out
                scores.append(s)
            x = out
        if self.norm_first:
            x = self.encoder_norm(x)
        if return_attention_scores:
            return x, mask, scores
        return x, mask

    def _head(self, x):
        if not self.include_top:
            return x
        if self.tie_output_embedding:
            return self.target_embedding(x, reverse=True)
        return self.output_projection(x)

    def decode(
        self,
        decoder_inputs,
        encoder_outputs,
        encoder_padding_mask=None,
        training=None,
        return_attention_scores=False,
    ):
        """Logits `(B, T, V)` of the next tokens, attending causally to the prefix.

        With `return_attention_scores=True` also the list of per-block
        cross-attention scores `(B, h, T, S)`.
        """
        mask = ops.not_equal(decoder_inputs, self.padding_id)
        x = self._embed(self.target_embedding, decoder_inputs, training=training)
        scores = []
        for block in self.decoder_blocks:
            out = block(
                x,
                encoder_outputs,
                decoder_padding_mask=mask,
                encoder_padding_mask=encoder_padding_mask,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                out, s = out
                scores.append(s)
            x = out
        if self.norm_first:
            x = self.decoder_norm(x)
        if return_attention_scores:
            return self._head(x), scores
        return self._head(x)

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            src, tgt = inputs["encoder_inputs"], inputs["decoder_inputs"]
        else:
            src, tgt = inputs
        encoder_outputs, mask = self.encode(src, training=training)
        return self.decode(tgt, encoder_outputs, mask, training=training)

    def attention_scores(self, encoder_inputs, decoder_inputs):
        """Encoder self-attention and decoder cross-attention scores, per block.

        Returns:
            dict with "encoder_self_attention": list of `(B, h, S, S)` and
            "decoder_cross_attention": list of `(B, h, T, S)` (alignments).
        """
        enc, mask, enc_scores = self.encode(encoder_inputs, return_attention_scores=True)
        _, dec_scores = self.decode(decoder_inputs, enc, mask, return_attention_scores=True)
        return {"encoder_self_attention": enc_scores, "decoder_cross_attention": dec_scores}

    # ---- incremental decoding ----------------------------------------------------------

    def initial_decoding_state(self, encoder_outputs, max_length):
        """Empty self-attention caches and the encoder's cross-attention keys/values.

        Returns:
            `(self_caches, cross_caches)`, each stacked over decoder blocks:
            `(n_layers, B, 2, max_length, h, d_k)` and `(n_layers, B, 2, S, h, d_k)`.
        """
        batch = ops.shape(encoder_outputs)[0]
        self_caches = ops.stack(
            [b.initial_cache(batch, max_length, encoder_outputs.dtype) for b in self.decoder_blocks]
        )
        cross_caches = ops.stack([b.compute_cross_attention_cache(encoder_outputs) for b in self.decoder_blocks])
        return self_caches, cross_caches

    def decode_step(self, tokens, index, self_caches, cross_caches, encoder_padding_mask):
        """One decoder step with a key/value cache: the work of one token per block.

        Args:
            tokens: `(B, 1)` ids of the token at position `index`.
            index: scalar int, its position.
            self_caches, cross_caches: from `initial_decoding_state`.
            encoder_padding_mask: `(B, S)` bool.

        Returns:
            `(logits (B, V), updated self_caches)`.
        """
        x = self._embed(self.target_embedding, tokens, offset=index)
        new_caches = []
        for i, block in enumerate(self.decoder_blocks):
            x, cache = block(
                x,
                encoder_padding_mask=encoder_padding_mask,
                self_attention_cache=self_caches[i],
                cross_attention_cache=cross_caches[i],
                cache_update_index=index,
            )
            new_caches.append(cache)
        if self.norm_first:
            x = self.decoder_norm(x)
        return self._head(x)[:, 0], ops.stack(new_caches)

    # ---- one-artefact translators: the tokenizers travel in the .keras file -----------

    def save_assets(self, dir_path):
        tokenizers = (self.source_tokenizer, self.target_tokenizer)
        for filename, tokenizer in zip(_TOKENIZER_FILES, tokenizers):
            if tokenizer is not None:
                tokenizer.save(os.path.join(dir_path, filename))

    def load_assets(self, dir_path):
        from keras_vit.translation.tokenizer import SubwordTokenizer

        paths = [os.path.join(dir_path, f) for f in _TOKENIZER_FILES]
        if os.path.exists(paths[0]):
            self.source_tokenizer = SubwordTokenizer.load(paths[0])
        if os.path.exists(paths[1]):
            self.target_tokenizer = SubwordTokenizer.load(paths[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "target_vocabulary_size": self.target_vocabulary_size,
                "num_layers": self.num_layers,
                "num_decoder_layers": self.num_decoder_layers,
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "norm_first": self.norm_first,
                "share_embeddings": self.share_embeddings,
                "tie_output_embedding": self.tie_output_embedding,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "activation": self.activation,
                "padding_id": self.padding_id,
                "max_wavelength": self.max_wavelength,
                "include_top": self.include_top,
            }
        )
        return config


def Transformer(
    vocabulary_size=37000,
    target_vocabulary_size=None,
    variant="base",
    include_top=True,
    weights=None,
    name=None,
    **overrides,
):
    """Builds the encoder-decoder Transformer of Vaswani et al. (2017).

    `variant` picks a row of Table 3 ("base" or "big"); keyword `overrides`
    (`num_layers`, `hidden_dim`, `num_heads`, `mlp_dim`, `dropout`,
    `norm_first`, `share_embeddings`, ...; see `Seq2SeqTransformer`) win over
    the table.

    Args:
        vocabulary_size: int, the (shared) source vocabulary size; the paper
            used a shared BPE vocabulary of about 37,000 tokens for EN-DE.
        target_vocabulary_size: int or None.
        variant: "base" or "big".
        include_top: bool, whether the model returns logits.
        weights: None or the path of a `.weights.h5` file to load.
        name: str, model name.

    Returns:
        A built, uncompiled `Seq2SeqTransformer` (a `keras.Model`).
    """
    if variant not in TRANSFORMER_CONFIGS:
        raise ValueError(f"`variant` must be one of {sorted(TRANSFORMER_CONFIGS)}. Received: variant={variant!r}")
    config = {**TRANSFORMER_CONFIGS[variant], **overrides}
    model = Seq2SeqTransformer(
        vocabulary_size,
        target_vocabulary_size=target_vocabulary_size,
        include_top=include_top,
        name=name or f"transformer_{variant}",
        **config,
    )
    model.build()
    if weights is not None:
        if not os.path.exists(weights):
            raise ValueError(f"`weights` must be None or an existing file. Received: weights={weights!r}")
        model.load_weights(weights)
    return model


def TransformerBase(vocabulary_size=37000, **kwargs):
    """Transformer (base), Vaswani et al. (2017), Table 3: N=6, d_model=512, h=8, d_ff=2048."""
    return Transformer(vocabulary_size, variant="base", **kwargs)


def TransformerBig(vocabulary_size=37000, **kwargs):
    """Transformer (big), Vaswani et al. (2017), Table 3: N=6, d_model=1024, h=16, d_ff=4096."""
    return Transformer(vocabulary_size, variant="big", **kwargs)


# A tiny Transformer for tests (registry `tiny` entries): one layer each side, width 16, 30 tokens.
TINY_TRANSFORMER = {"vocabulary_size": 30, "num_layers": 1, "hidden_dim": 16, "num_heads": 2, "mlp_dim": 32}

register_model("transformer_base", Transformer, family="transformer", tiny=TINY_TRANSFORMER, variant="base")
register_model("transformer_big", Transformer, family="transformer", tiny=TINY_TRANSFORMER, variant="big")
