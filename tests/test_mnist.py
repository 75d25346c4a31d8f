import os
import time

import pytest

from keras_vit import data, training
from keras_vit.applications import VisionTransformer

# A small ViT for 28×28 digits: 7×7 patches → 16 tokens + class token.
MNIST_VIT = {"patch_size": 7, "hidden_dim": 64, "depth": 4, "num_heads": 4, "mlp_dim": 128}
EPOCHS = 4


@pytest.mark.slow
def test_vit_mnist_accuracy(shared_data):
    bundle = data.load(os.path.join(shared_data, "mnist"), batch_size=128, validation_split=0.0)
    assert (bundle.num_train, bundle.num_test, bundle.input_shape) == (60000, 10000, (28, 28, 1))
    model = VisionTransformer(input_shape=bundle.input_shape, classes=10, name="vit_mnist", **MNIST_VIT)
    start, cpu_start = time.perf_counter(), time.process_time()
    training.fit_model(
        model, bundle, epochs=EPOCHS, recipe=training.Recipe(learning_rate=2e-3, weight_decay=0.05), verbose=2
    )
    metrics = training.evaluate_model(model, bundle.test)
    print(
        f"MNIST ViT: test accuracy {metrics['accuracy']:.4f} after {EPOCHS} epochs, "
        f"{time.perf_counter() - start:.0f} s ({time.process_time() - cpu_start:.0f} s CPU), "
        f"{model.count_params():,} parameters"
    )
    assert metrics["examples"] == 10000
    assert metrics["accuracy"] >= 0.97
