"""DeiT's distillation through attention (Touvron et al., "Training data-efficient image
transformers & distillation through attention", ICML 2021, Sec. 5)."""

import keras
from keras import ops

_TYPES = ("hard", "soft")


@keras.saving.register_keras_serializable(package="keras_vit")
class DistillationTrainer(keras.Model):
    """Trains a student from the labels and a frozen teacher's predictions.

    For a student with a distillation token (`VisionTransformer(...,
    distillation=True)`: heads named "head" and "head_dist"), the class head
    learns from the labels y and the distillation head from the teacher:

        hard (DeiT Eq. 3):  L = (1-α) CE(ψ(Z_s), y) + α CE(ψ(Z_d), argmax Z_t)
        soft (DeiT Eq. 2):  L = (1-α) CE(ψ(Z_s), y) + α τ² KL(ψ(Z_t/τ) ‖ ψ(Z_d/τ))

    with α = 1/2 in the paper's hard distillation. A student without a
    distillation head uses its one output for both terms (classic knowledge
    distillation). At inference the model is the student, whose two heads
    are averaged (`head_average`); `student` is also usable on its own.

    The loss lives in `compute_loss`, so Keras' own `train_step` runs it on
    every backend (TensorFlow, JAX, PyTorch). Compile without a loss:
    `trainer.compile(optimizer=..., metrics=["accuracy"])`. Labels are
    class indices `(B,)` or one-hot `(B, classes)`.

    Args:
        student: a Keras model; its head layers' outputs must be logits
            (a final "predictions" activation, if any, is applied after).
        teacher: any Keras model mapping the same inputs to `(B, classes)`;
            it is frozen and run in inference mode.
        alpha: float in [0, 1], weight of the distillation term.
        distillation_type: "hard" or "soft".
        temperature: float τ > 0 (soft distillation).
        teacher_from_logits: bool, whether the teacher outputs logits
            (False: probabilities, whose log is used as logits).

    Call arguments:
        inputs: the student's inputs.
        training: bool. In training the call returns the pair
            `(class-head logits, distillation-head logits)` for the loss; in
            inference the student's output.
    """

    def __init__(
        self,
        student,
        teacher,
        alpha=0.5,
        distillation_type="hard",
        temperature=1.0,
        teacher_from_logits=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if distillation_type not in _TYPES:
            raise ValueError(
                f"`distillation_type` must be one of {_TYPES}. Received: distillation_type={distillation_type!r}"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha}")
        if not temperature > 0:
            raise ValueError(f"`temperature` must be positive. Received: temperature={temperature}")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = alpha
        self.distillation_type = distillation_type
        self.temperature = temperature
        self.teacher_from_logits = teacher_from_logits
        names = {layer.name for layer in student.layers}
        if "head" in names:
            outputs = [student.get_layer("head").output]
            if "head_dist" in names:
                outputs.append(student.get_layer("head_dist").output)
            self._heads = keras.Model(student.inputs, outputs, name="student_heads")
        else:  # Any other model: its output is taken as logits.
            self._heads = None
        self._activation = student.get_layer("predictions").activation if "predictions" in names else None

    def _student_logits(self, inputs, training):
        if self._heads is None:
            out = self.student(inputs, training=training)
            return out, out
        outs = self._heads(inputs, training=training)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return (outs[0], outs[1]) if len(outs) == 2 else (outs[0], outs[0])

    def call(self, inputs, training=None):
        if training:
            return self._student_logits(inputs, training=True)
        return self.student(inputs, training=False)

    def _teacher_logits(self, x):
        out = ops.cast(ops.stop_gradient(self.teacher(x, training=False)), "float32")
        return out if self.teacher_from_logits else ops.log(ops.maximum(out, 1e-12))

    @staticmethod
    def _cross_entropy(y, logits):
        if len(y.shape) == len(logits.shape):
            return keras.losses.categorical_crossentropy(y, logits, from_logits=True)
        return keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, (list, tuple)):
            cls_logits, dist_logits = (ops.cast(t, "float32") for t in y_pred)
        else:  # Evaluation: recompute the heads.
            cls_logits, dist_logits = (ops.cast(t, "float32") for t in self._student_logits(x, False))
        base = self._cross_entropy(y, cls_logits)
        teacher = self._teacher_logits(x)
        if self.distillation_type == "hard":
            target = ops.argmax(teacher, axis=-1)
            distill = keras.losses.sparse_categorical_crossentropy(target, dist_logits, from_logits=True)
        else:
            t = self.temperature
            p_teacher = ops.softmax(teacher / t, axis=-1)
            log_p_teacher = ops.log_softmax(teacher / t, axis=-1)
            log_p_student = ops.log_softmax(dist_logits / t, axis=-1)
            distill = ops.sum(p_teacher * (log_p_teacher - log_p_student), axis=-1) * (t * t)
        loss = (1.0 - self.alpha) * base + self.alpha * distill
        if sample_weight is not None:
            loss = loss * ops.cast(ops.reshape(sample_weight, ops.shape(loss)), loss.dtype)
        loss = ops.mean(loss)
        if self.losses:
            loss = loss + ops.sum(ops.stack([ops.cast(extra, loss.dtype) for extra in self.losses]))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (list, tuple)):  # Training: report the averaged heads.
            y_pred = (y_pred[0] + y_pred[1]) / 2.0
            if self._activation is not None:
                y_pred = self._activation(y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "alpha": self.alpha,
                "distillation_type": self.distillation_type,
                "temperature": self.temperature,
                "teacher_from_logits": self.teacher_from_logits,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)
