"""Multi-head (self- or cross-) attention, Vaswani et al. 2017, Sec. 3.2."""

import keras
from keras import ops


def _flash_attention(q, k):
    """None (let Keras choose the fused kernel), or False where it must not try cuDNN.

    On JAX with a GPU, Keras picks cuDNN's fused kernel whenever the forward
    shapes qualify, but its backward pass refuses odd sequence lengths (a
    ViT's N patches + 1 class token): Keras then logs a traceback per layer
    and falls back to XLA. Asking for XLA up front gives the same numbers
    without the failed attempt.
    """
    if keras.backend.backend() != "jax":
        return None
    t, s = q.shape[1], k.shape[1]
    if t is None or s is None or t % 2 or s % 2:
        return False
    return None


def scaled_dot_product_attention(
    q, k, v, scale, mask=None, bias=None, explicit=False, transform_probs=None, dropout=None
):
    """Attention(Q, K, V) = softmax(Q Kᵀ · scale + bias, masked) V (Vaswani et al. 2017, Eq. 1).

    The one attention kernel of the package: `MultiHeadSelfAttention` (and
    through it `ReAttention`, `WindowAttention`, `PoolingAttention`, the
    encoder and decoder blocks) and `TokenTransformer` call it.

    By default it runs the fused `keras.ops.dot_product_attention`, which
    never materialises the `(B, h, T, S)` probabilities. The explicit path,
    softmax over the logits (in float32) followed by a weighted sum of V,
    runs when `explicit=True` or when `transform_probs` or `dropout` need
    the probabilities.

    Args:
        q: `(B, T, h, d)` queries.
        k, v: `(B, S, h, d)` keys and values.
        scale: float, the logit scale (1/√d_k in the paper).
        mask: None or a boolean tensor broadcastable to `(B, h, T, S)`,
            True where attention is allowed.
        bias: None or a float tensor broadcastable to `(B, h, T, S)` added
            to the logits.
        explicit: bool, compute and return the probabilities.
        transform_probs: None or a callable `(B, h, T, S) -> (B, h, T, S)`
            applied to the probabilities A before they weight V (e.g.
            DeepViT's head mixing, or an inspection hook); implies the
            explicit path.
        dropout: None or a callable applied to the (transformed)
            probabilities on their way to V only (attention dropout); the
            returned maps are taken before it.

    Returns:
        `(outputs, maps)`: outputs `(B, T, h, d)`; maps `(B, h, T, S)`, the
        (transformed) probabilities, or None on the fused path.
    """
    if not explicit and transform_probs is None and dropout is None:
        if mask is not None and bias is not None:
            # Some backends' fused kernels take a bias or a mask, not both:
            # fold the mask into the bias.
            bias = ops.where(mask, ops.cast(bias, q.dtype), ops.cast(-1e9, q.dtype))
            mask = None
        out = ops.dot_product_attention(
            q, k, v, bias=bias, mask=mask, scale=scale, flash_attention=_flash_attention(q, k)
        )
        return out, None
    logits = ops.einsum("bthd,bshd->bhts", q, k) * ops.cast(scale, q.dtype)
    if bias is not None:
        logits = logits + ops.cast(bias, logits.dtype)
    if mask is not None:
        # A large finite negative keeps fully masked rows NaN-free.
        logits = ops.where(mask, logits, ops.cast(-1e9, logits.dtype))
    maps = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), q.dtype)
    if transform_probs is not None:
        maps = transform_probs(maps)
    weights = maps if dropout is None else dropout(maps)
    return ops.einsum("bhts,bshd->bthd", weights, v), maps


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention.

    Implements Eq. (1) and the multi-head form of Sec. 3.2.2 of Vaswani et
    al., "Attention Is All You Need" (2017):

        Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V
        MultiHead(X) = Concat(head_1, ..., head_h) W^O,
        head_i = Attention(X W_i^Q, X W_i^K, X W_i^V)

    which is also the MSA of Eq. (2)-(3) in Dosovitskiy et al. (2020).
    Self-attention projects Q, K and V from one fused `qkv` matrix (the
    layout of timm and the original ViT); cross-attention
    (`cross_attention=True`) projects Q from the input and K, V from the
    `context` sequence (the encoder-decoder attention of the Transformer
    decoder).

    The kernel is `scaled_dot_product_attention`: by default the fused
    `keras.ops.dot_product_attention` runs. When `return_attention_scores=True`
    is passed at call time, or `attention_probs_hook` is set, or attention
    dropout is active, the explicit path computes the softmax scores, for
    that call only. Subclasses change the maps between the softmax and V by
    overriding `mix_heads` (see `ReAttention`).

    Args:
        num_heads: int, number of attention heads h.
        head_dim: int or None, width d_k of each head. Defaults to
            `hidden_dim // num_heads`, where `hidden_dim` is the input width.
        output_dim: int or None, width of the output projection W^O.
            Defaults to the input width.
        qkv_bias: bool, whether the Q, K, V projections have a bias.
        attention_dropout: float, dropout rate on the attention scores.
        proj_dropout: float, dropout rate after the output projection.
        cross_attention: bool, whether keys and values come from `context`.
        kernel_initializer: initializer of the projection kernels.

    Call arguments:
        inputs: tensor `(B, T, hidden_dim)`, the query sequence.
        context: tensor `(B, S, context_dim)`, keys/values for
            cross-attention. Required iff `cross_attention=True`.
        attention_mask: boolean tensor, True where attention is allowed:
            `(B, S)` (a key padding mask), `(B, T, S)` or `(B, 1|h, T, S)`.
        attention_bias: float tensor broadcastable to `(B, h, T, S)` added to
            the logits (e.g. Swin's relative position bias).
        use_causal_mask: bool, whether token t may only attend to tokens ≤ t.
        return_attention_scores: bool, whether to also return the scores
            `(B, h, T, S)`.
        training: bool, dropout switch.
        cache: optional key/value cache `(B, 2, S, h, d_k)` for incremental
            decoding. For self-attention, the new keys and values of
            `inputs` are written into it at `cache_update_index` and the
            queries attend to the cache slots `≤ cache_update_index + t`
            (causal by construction; `use_causal_mask` is then ignored).
            For cross-attention with `cache_update_index=None`, the cache
            holds the projected keys/values of the context (see
            `compute_key_value_cache`) and `context` is not needed.
        cache_update_index: int or scalar tensor, position in the cache of
            the first token of `inputs`.

    Returns:
        `(B, T, output_dim)`, or `(outputs, scores)` when
        `return_attention_scores=True`. With a `cache`, the updated cache is
        appended: `(outputs, cache)` or `(outputs, scores, cache)`.

    Attributes:
        attention_probs_hook: None (the default), or a callable
            `hook(maps, masked) -> maps` that the layer calls on the
            attention maps A `(B, h, T, S)` (after `mix_heads`, before
            attention dropout) and whose result weights V in their place.
            `masked` is a Python bool: whether a mask, causal mask or bias
            shaped these maps. A hook that returns `maps` unchanged reads
            them; one that returns `maps + delta` with a zero `delta` leaves
            the outputs unchanged and makes ∂y/∂delta = ∂y/∂A (how
            `keras_vit.explain` takes LeGrad's gradients). It is not part of
            the config and is not saved; setting it turns the explicit path
            on for this layer only.
    """

    def __init__(
        self,
        num_heads,
        head_dim=None,
        output_dim=None,
        qkv_bias=True,
        attention_dropout=0.0,
        proj_dropout=0.0,
        cross_attention=False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"`num_heads` must be a positive integer. Received: num_heads={num_heads}")
        if head_dim is not None and (not isinstance(head_dim, int) or head_dim < 1):
            raise ValueError(f"`head_dim` must be a positive integer or None. Received: head_dim={head_dim}")
        for arg, rate in (("attention_dropout", attention_dropout), ("proj_dropout", proj_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"`{arg}` must be in [0, 1). Received: {arg}={rate}")
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.output_dim = output_dim
        self.qkv_bias = qkv_bias
        self.attention_dropout = attention_dropout
        self.proj_dropout = proj_dropout
        self.cross_attention = cross_attention
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = False
        # Not a config argument: set at run time by whoever inspects the maps.
        self.attention_probs_hook = None

    def build(self, inputs_shape, context_shape=None):
        input_shape = inputs_shape
        hidden_dim = input_shape[-1]
        if hidden_dim is None:
            raise ValueError(f"The last axis of the input must be known. Received: input_shape={input_shape}")
        if self.head_dim is None and hidden_dim % self.num_heads != 0:
            raise ValueError(
                "The hidden size must be divisible by `num_heads` when `head_dim` "
                f"is not given. Received: hidden_dim={hidden_dim}, num_heads={self.num_heads}"
            )
        self._head_dim = self.head_dim or hidden_dim // self.num_heads
        self._output_dim = self.output_dim or hidden_dim
        inner = self.num_heads * self._head_dim
        kw = dict(kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy)
        if self.cross_attention:
            context_dim = hidden_dim if context_shape is None else context_shape[-1]
            self.query = keras.layers.Dense(inner, use_bias=self.qkv_bias, name="query", **kw)
            self.query.build(input_shape)
            self.key_value = keras.layers.Dense(2 * inner, use_bias=self.qkv_bias, name="key_value", **kw)
            self.key_value.build((None, None, context_dim))
        else:
            self.qkv = keras.layers.Dense(3 * inner, use_bias=self.qkv_bias, name="qkv", **kw)
            self.qkv.build(input_shape)
        self.proj = keras.layers.Dense(self._output_dim, name="proj", **kw)
        self.proj.build((None, None, inner))
        self.attn_drop = keras.layers.Dropout(self.attention_dropout, name="attn_drop", dtype=self.dtype_policy)
        self.proj_drop = keras.layers.Dropout(self.proj_dropout, name="proj_drop", dtype=self.dtype_policy)
        self.built = True

    def _split_heads(self, x, parts):
        # (B, T, parts * h * d) -> `parts` tensors of shape (B, T, h, d).
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], parts, self.num_heads, self._head_dim))
        return [x[:, :, i] for i in range(parts)]

    def project_qkv(self, inputs, context=None):
        """Returns Q, K, V, each `(B, T|S, h, d_k)`."""
        if self.cross_attention:
            if context is None:
                raise ValueError("`context` is required when `cross_attention=True`. Received: context=None")
            (q,) = self._split_heads(self.query(inputs), 1)
            k, v = self._split_heads(self.key_value(context), 2)
        else:
            if context is not None:
                raise ValueError(
                    "`context` is only used when `cross_attention=True`; this layer "
                    "was built for self-attention. Received a `context` tensor."
                )
            q, k, v = self._split_heads(self.qkv(inputs), 3)
        return q, k, v

    @staticmethod
    def _expand_mask(mask):
        if mask is None:
            return None
        mask = ops.cast(mask, "bool")
        rank = len(mask.shape)
        if rank == 2:  # (B, S) key padding mask.
            return mask[:, None, None, :]
        if rank == 3:  # (B, T, S).
            return mask[:, None, :, :]
        if rank == 4:
            return mask
        raise ValueError(f"`attention_mask` must have rank 2, 3 or 4. Received a mask of shape {mask.shape}")

    def mix_heads(self, probs):
        """The step between softmax(QKᵀ/√d_k) and V: identity here.

        The override point of subclasses that transform the attention maps
        before they weight V, e.g. `ReAttention`'s head mixing; the rest of
        the kernel (`scaled_dot_product_attention`) is shared. A subclass
        that overrides it always takes the explicit path.

        Args:
            probs: `(B, h, T, S)` attention probabilities.

        Returns:
            `(B, h, T, S)`, the maps that weight V.
        """
        return probs

    def attend(
        self,
        q,
        k,
        v,
        attention_mask=None,
        attention_bias=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        """softmax(Q Kᵀ/√d_k + bias, masked) V on `(B, T, h, d)` tensors.

        Returns `(outputs (B, T, h, d), maps (B, h, T, S) or None)`.
        """
        mask = self._expand_mask(attention_mask)
        if use_causal_mask:
            t, s = ops.shape(q)[1], ops.shape(k)[1]
            causal = ops.greater_equal(ops.arange(t)[:, None] + (s - t), ops.arange(s)[None, :])[None, None]
            mask = causal if mask is None else ops.logical_and(mask, causal)
        hook = self.attention_probs_hook
        mixes = type(self).mix_heads is not MultiHeadSelfAttention.mix_heads
        transform = None
        if mixes or hook is not None:
            masked = mask is not None or attention_bias is not None

            def transform(probs):
                maps = self.mix_heads(probs)
                return maps if hook is None else hook(maps, masked)

        dropout = None
        if training and self.attention_dropout > 0:
            dropout = lambda maps: self.attn_drop(maps, training=training)  # noqa: E731
        return scaled_dot_product_attention(
            q,
            k,
            v,
            1.0 / float(self._head_dim) ** 0.5,
            mask=mask,
            bias=attention_bias,
            explicit=return_attention_scores,
            transform_probs=transform,
            dropout=dropout,
        )

    def compute_key_value_cache(self, context):
        """Projected keys and values `(B, 2, S, h, d_k)` of `context`.

        For cross-attention this is computed once per source sequence and
        reused at every decoding step (the encoder output does not change).
        """
        if self.cross_attention:
            k, v = self._split_heads(self.key_value(context), 2)
        else:
            _, k, v = self._split_heads(self.qkv(context), 3)
        return ops.stack([k, v], axis=1)

    def _cached_qkv(self, inputs, context, cache, cache_update_index):
        """Q, K, V and the new cache and key mask for incremental decoding."""
        if self.cross_attention and cache_update_index is None:
            (q,) = self._split_heads(self.query(inputs), 1)
            return q, cache[:, 0], cache[:, 1], cache, None
        if cache_update_index is None:
            raise ValueError(
                "`cache_update_index` is required with a self-attention `cache`. Received: cache_update_index=None"
            )
        q, k_new, v_new = self.project_qkv(inputs, context)
        index = ops.cast(cache_update_index, "int32")
        zero = ops.zeros((), "int32")
        start = (zero, index, zero, zero)
        k = ops.slice_update(cache[:, 0], start, ops.cast(k_new, cache.dtype))
        v = ops.slice_update(cache[:, 1], start, ops.cast(v_new, cache.dtype))
        cache = ops.stack([k, v], axis=1)
        # Query t (at absolute position index + t) sees cache slots ≤ index + t.
        t, s = ops.shape(q)[1], ops.shape(k)[1]
        allowed = ops.less_equal(ops.arange(s, dtype="int32")[None, :], index + ops.arange(t, dtype="int32")[:, None])
        return q, k, v, cache, allowed[None, None]

    def call(
        self,
        inputs,
        context=None,
        attention_mask=None,
        attention_bias=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_update_index=None,
    ):
        if cache is not None:
            q, k, v, cache, allowed = self._cached_qkv(inputs, context, cache, cache_update_index)
            if allowed is not None:
                mask = self._expand_mask(attention_mask)
                attention_mask = allowed if mask is None else ops.logical_and(mask, allowed)
            use_causal_mask = False
        else:
            q, k, v = self.project_qkv(inputs, context)
        out, scores = self.attend(
            q,
            k,
            v,
            attention_mask=attention_mask,
            attention_bias=attention_bias,
            use_causal_mask=use_causal_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        shape = ops.shape(out)
        out = ops.reshape(out, (shape[0], shape[1], self.num_heads * self._head_dim))
        out = self.proj_drop(self.proj(out), training=training)
        outputs = (out, scores) if return_attention_scores else (out,)
        if cache is not None:
            outputs = outputs + (cache,)
        return outputs if len(outputs) > 1 else out

    def compute_output_shape(self, inputs_shape, context_shape=None):
        return (*inputs_shape[:-1], self.output_dim or inputs_shape[-1])

    def compute_output_spec(
        self,
        inputs,
        context=None,
        attention_mask=None,
        attention_bias=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_update_index=None,
    ):
        # Keras passes `compute_output_shape` the input shapes only; the
        # scores and the cache that the call returns beside the output are
        # described here, so a functional model keeps them.
        output = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        outputs = (output,)
        if return_attention_scores:
            if cache is not None:
                keys = cache.shape[2]
            elif context is not None:
                keys = context.shape[1]
            else:
                keys = inputs.shape[1]
            # The explicit kernel casts the softmax back to the dtype of Q, the compute dtype.
            shape = (inputs.shape[0], self.num_heads, inputs.shape[1], keys)
            outputs += (keras.KerasTensor(shape, dtype=self.compute_dtype),)
        if cache is not None:
            outputs += (keras.KerasTensor(cache.shape, dtype=cache.dtype),)
        return outputs if len(outputs) > 1 else output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "head_dim": self.head_dim,
                "output_dim": self.output_dim,
                "qkv_bias": self.qkv_bias,
                "attention_dropout": self.attention_dropout,
                "proj_dropout": self.proj_dropout,
                "cross_attention": self.cross_attention,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
