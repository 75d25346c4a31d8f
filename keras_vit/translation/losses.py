"""Loss, metric and learning-rate schedule of the Transformer (Vaswani et al. 2017).

- `LabelSmoothedCrossEntropy` (Sec. 5.4, ε_ls = 0.1), padding ignored.
- `masked_accuracy`: token accuracy over non-padding positions.
- `TransformerSchedule`: the warm-up inverse-square-root schedule (Sec. 5.3, Eq. (3)).
- `compile_translator`: Adam(β₂ = 0.98, ε = 1e-9) with that schedule and loss.
"""

import keras
from keras import ops


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

    def __init__(
        self, label_smoothing=0.1, padding_id=0, from_logits=True, name="label_smoothed_cross_entropy", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing}")
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
            raise ValueError(f"`warmup_steps` must be a positive integer. Received: warmup_steps={warmup_steps}")
        self.hidden_dim = hidden_dim
        self.warmup_steps = warmup_steps
        self.scale = scale

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        return self.scale * self.hidden_dim**-0.5 * ops.minimum(ops.power(step, -0.5), step * self.warmup_steps**-1.5)

    def get_config(self):
        return {"hidden_dim": self.hidden_dim, "warmup_steps": self.warmup_steps, "scale": self.scale}


def compile_translator(model, warmup_steps=4000, learning_rate_scale=1.0, label_smoothing=0.1, jit_compile="auto"):
    """Compiles `model` as in the paper: Adam(β1=0.9, β2=0.98, ε=1e-9), the
    warm-up schedule and the label-smoothed loss. `jit_compile` is passed to
    Keras ("auto": Keras' choice)."""
    schedule = TransformerSchedule(model.hidden_dim, warmup_steps, learning_rate_scale)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9),
        loss=LabelSmoothedCrossEntropy(label_smoothing, padding_id=model.padding_id),
        metrics=[masked_accuracy],
        jit_compile=jit_compile,
    )
    return model
