"""Edge cases of the math modules that mutation testing (`make mutants`) showed untested.

Each test checks a closed form computed here in NumPy or Python, not the code path under test.
"""

import math

import keras
import numpy as np
import pytest

from keras_vit import training
from keras_vit.distillation import DistillationTrainer

CLASSES = 5


def _lr(peak, warmup, total, t):
    """The schedule of `training.learning_rate_schedule`'s docstring, in plain Python."""
    if t < warmup:
        return peak * t / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(t - warmup, total - warmup) / (total - warmup)))


@pytest.mark.parametrize(
    "fraction, total, expected",
    [
        (0.99, 10, 9),  # ceil(9.9) = 10, but one step is always left to decay
        (0.5, 2, 1),
        (0.1, 2, 1),  # ceil(0.2) = 1 of 2 steps
        (0.1, 1, 0),  # a single step: no warmup, the peak at once
        (0.0, 50, 0),
        (0.25, 36, 9),
    ],
)
def test_warmup_steps_closed_form(fraction, total, expected):
    recipe = training.Recipe(learning_rate=1e-3, warmup_fraction=fraction)
    assert training.warmup_steps(recipe, total) == expected
    assert expected == (min(math.ceil(total * fraction), total - 1) if total > 1 else 0)


@pytest.mark.parametrize("fraction, total", [(0.99, 10), (0.5, 2), (0.1, 1), (0.0, 4)])
def test_schedule_ends_at_zero_after_the_warmup(fraction, total):
    """lr(W) = peak, lr(T) = 0, also when the decay is a single step (T − W = 1) or there is no warmup."""
    peak = 2e-3
    recipe = training.Recipe(learning_rate=peak, warmup_fraction=fraction)
    warmup = min(math.ceil(total * fraction), total - 1) if total > 1 else 0
    schedule = training.learning_rate_schedule(recipe, total)
    got = [float(keras.ops.convert_to_numpy(schedule(t))) for t in range(total + 1)]
    want = [_lr(peak, warmup, total, t) for t in range(total + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    assert got[warmup] == pytest.approx(peak) and got[total] == pytest.approx(0.0, abs=1e-12)


def _numpy_soft_loss(zs, zd, zt, y, alpha, tau):
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    ce = -log_softmax(zs.astype("float64"))[np.arange(len(y)), y]
    log_pt, log_pd = log_softmax(zt.astype("float64") / tau), log_softmax(zd.astype("float64") / tau)
    return ((1 - alpha) * ce + alpha * tau**2 * (np.exp(log_pt) * (log_pt - log_pd)).sum(-1)).mean()


def _identity_teacher_trainer(student, alpha=0.6, tau=2.0):
    inputs = keras.Input((CLASSES,))
    teacher = keras.Model(inputs, keras.layers.Identity()(inputs))
    return DistillationTrainer(student, teacher, alpha=alpha, distillation_type="soft", temperature=tau)


def test_evaluation_loss_recomputes_the_heads_in_inference_mode():
    """`evaluate` hands `compute_loss` one tensor: the loss then reruns the student, without dropout."""
    rng = np.random.default_rng(2)
    student = keras.Sequential([keras.Input((CLASSES,)), keras.layers.Dense(CLASSES), keras.layers.Dropout(0.9)])
    trainer = _identity_teacher_trainer(student)
    x = 3.0 * rng.standard_normal((8, CLASSES)).astype("float32")
    y = rng.integers(0, CLASSES, 8)
    logits = np.asarray(student.predict(x, verbose=0))  # inference: no dropout
    loss = keras.ops.convert_to_numpy(trainer.compute_loss(x, y, keras.ops.convert_to_tensor(logits)))
    np.testing.assert_allclose(loss, _numpy_soft_loss(logits, logits, x, y, 0.6, 2.0), rtol=1e-5)


def test_distillation_loss_is_computed_in_float32_from_half_precision_heads():
    rng = np.random.default_rng(3)
    student = keras.Sequential([keras.Input((CLASSES,)), keras.layers.Dense(CLASSES)])
    trainer = _identity_teacher_trainer(student)
    x = rng.standard_normal((4, CLASSES)).astype("float32")
    y = rng.integers(0, CLASSES, 4)
    zs, zd = (rng.standard_normal((4, CLASSES)).astype("float16") for _ in range(2))
    loss = trainer.compute_loss(x, y, (keras.ops.convert_to_tensor(zs), keras.ops.convert_to_tensor(zd)))
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), _numpy_soft_loss(zs, zd, x, y, 0.6, 2.0), rtol=1e-5)


def test_sample_weights_weight_each_examples_loss():
    """The loss with `sample_weight` is mean_i(w_i · loss_i) (Keras' "sum_over_batch_size")."""
    rng = np.random.default_rng(4)
    student = keras.Sequential([keras.Input((CLASSES,)), keras.layers.Dense(CLASSES)])
    trainer = _identity_teacher_trainer(student, alpha=0.4, tau=3.0)
    x = 2.0 * rng.standard_normal((6, CLASSES)).astype("float32")
    y = rng.integers(0, CLASSES, 6)
    zs, zd = (2.0 * rng.standard_normal((6, CLASSES)).astype("float32") for _ in range(2))
    weights = np.array([0.0, 1.0, 2.0, 0.5, 3.0, 1.0], "float32")
    per_example = [
        _numpy_soft_loss(zs[i : i + 1], zd[i : i + 1], x[i : i + 1], y[i : i + 1], 0.4, 3.0) for i in range(6)
    ]
    loss = trainer.compute_loss(x, y, (zs, zd), sample_weight=weights)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), np.mean(weights * np.array(per_example)), rtol=1e-5)


def test_the_students_regularisation_losses_are_added_once():
    """loss = DeiT loss + Σ regularisation terms, here 0.1 · Σ W² of the student's kernel."""
    rng = np.random.default_rng(5)
    dense = keras.layers.Dense(CLASSES, kernel_regularizer=keras.regularizers.L2(0.1))
    student = keras.Sequential([keras.Input((CLASSES,)), dense])
    trainer = _identity_teacher_trainer(student)
    x = rng.standard_normal((4, CLASSES)).astype("float32")
    y = rng.integers(0, CLASSES, 4)
    zs, zd = (rng.standard_normal((4, CLASSES)).astype("float32") for _ in range(2))
    penalty = 0.1 * float(np.sum(np.square(keras.ops.convert_to_numpy(dense.kernel))))
    assert penalty > 0.01
    loss = keras.ops.convert_to_numpy(trainer.compute_loss(x, y, (zs, zd)))
    np.testing.assert_allclose(loss, _numpy_soft_loss(zs, zd, x, y, 0.6, 2.0) + penalty, rtol=1e-5)
