import keras
import numpy as np
import pytest

from keras_vit.applications import VisionTransformer
from keras_vit.distillation import DistillationTrainer

pytestmark = pytest.mark.backends

CLASSES = 4


def _data(n=64):
    rng = np.random.default_rng(0)
    x = 0.5 * rng.random((n, 8, 8, 3), dtype=np.float32)
    x[np.arange(n), :, :, rng.integers(0, 3, n)] += 0.5  # one bright colour channel per image
    # The teacher labels by the brightest channel; the "ground truth" is that
    # rule shifted by one class, so the two always disagree.
    teacher_labels = np.argmax(x.mean(axis=(1, 2)), axis=-1)
    return x, teacher_labels, (teacher_labels + 1) % CLASSES


def _teacher():
    inputs = keras.Input((8, 8, 3))
    means = keras.layers.GlobalAveragePooling2D()(inputs)
    logits = keras.layers.Dense(CLASSES, use_bias=False, name="rule")(means)
    teacher = keras.Model(inputs, logits)
    weights = np.zeros((3, CLASSES), "float32")
    weights[[0, 1, 2], [0, 1, 2]] = 100.0
    teacher.get_layer("rule").set_weights([weights])
    return teacher


def _student():
    return VisionTransformer(
        patch_size=4,
        hidden_dim=16,
        depth=1,
        num_heads=2,
        mlp_dim=32,
        input_shape=(8, 8, 3),
        classes=CLASSES,
        distillation=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("distillation_type", ["hard", "soft"])
def test_distillation_head_learns_the_teachers_labels(distillation_type):
    x, teacher_labels, labels = _data()
    assert (teacher_labels != labels).all()
    student = _student()
    trainer = DistillationTrainer(student, _teacher(), alpha=1.0, distillation_type=distillation_type, temperature=2.0)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"], jit_compile=False)
    trainer.fit(x, labels, batch_size=16, epochs=25, verbose=0)
    dist_head = keras.Model(student.inputs, student.get_layer("head_dist").output)
    predicted = np.argmax(keras.ops.convert_to_numpy(dist_head(x)), axis=-1)
    assert np.mean(predicted == teacher_labels) >= 0.8
    assert np.mean(predicted == labels) <= 0.2


def test_inference_is_the_students_averaged_heads_and_loss_weights():
    x, teacher_labels, labels = _data(8)
    student = _student()
    trainer = DistillationTrainer(student, _teacher(), alpha=0.5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(trainer(x)), keras.ops.convert_to_numpy(student(x)), atol=1e-6
    )
    cls_logits, dist_logits = trainer(x, training=True)
    # Hard distillation: ½ CE(class head, y) + ½ CE(distillation head, argmax teacher).
    ce = lambda logits, y: keras.ops.convert_to_numpy(  # noqa: E731
        keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    ).mean()
    expected = 0.5 * ce(cls_logits, labels) + 0.5 * ce(dist_logits, teacher_labels)
    loss = keras.ops.convert_to_numpy(trainer.compute_loss(x, labels, (cls_logits, dist_logits)))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="Received: distillation_type='medium'"):
        DistillationTrainer(student, _teacher(), distillation_type="medium")
    with pytest.raises(ValueError, match="Received: alpha=2"):
        DistillationTrainer(student, _teacher(), alpha=2)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _numpy_deit_loss(zs, zd, zt, y, alpha, distillation_type, tau):
    """DeiT's loss in NumPy: Eq. 2 (soft) and Eq. 3 (hard), averaged over the batch."""
    ce = -_log_softmax(zs)[np.arange(len(y)), y]
    if distillation_type == "hard":
        distill = -_log_softmax(zd)[np.arange(len(y)), zt.argmax(-1)]
    else:  # τ² KL(ψ(Z_t/τ) ‖ ψ(Z_d/τ)), teacher first.
        log_pt, log_pd = _log_softmax(zt / tau), _log_softmax(zd / tau)
        distill = tau**2 * (np.exp(log_pt) * (log_pt - log_pd)).sum(-1)
    return ((1 - alpha) * ce + alpha * distill).mean()


@pytest.mark.parametrize(
    "distillation_type, alpha, tau", [("soft", 0.7, 3.0), ("soft", 1.0, 0.5), ("hard", 0.5, 1.0), ("hard", 0.3, 4.0)]
)
def test_loss_on_fixed_logits_matches_deit_equations(distillation_type, alpha, tau):
    rng = np.random.default_rng(1)
    batch = 6
    # The teacher is the identity on its inputs, so x *is* the teacher's logits Z_t.
    inputs = keras.Input((CLASSES,))
    teacher = keras.Model(inputs, keras.layers.Identity()(inputs))
    student = keras.Sequential([keras.Input((CLASSES,)), keras.layers.Dense(CLASSES)])
    trainer = DistillationTrainer(student, teacher, alpha=alpha, distillation_type=distillation_type, temperature=tau)
    zt, zs, zd = (3.0 * rng.standard_normal((batch, CLASSES)).astype("float32") for _ in range(3))
    y = rng.integers(0, CLASSES, batch)
    loss = keras.ops.convert_to_numpy(trainer.compute_loss(zt, y, (zs, zd)))
    np.testing.assert_allclose(loss, _numpy_deit_loss(zs, zd, zt, y, alpha, distillation_type, tau), rtol=1e-5)
    # One-hot labels give the same loss as class ids.
    one_hot = np.eye(CLASSES, dtype="float32")[y]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(trainer.compute_loss(zt, one_hot, (zs, zd))), loss, rtol=1e-5)
