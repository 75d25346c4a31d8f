import json
import os

import numpy as np
import pytest

from keras_vit import demo


@pytest.mark.slow
def test_demo_reaches_target_accuracy(tmp_path):
    result = demo.run_demo(str(tmp_path), verbose=0)  # the demo's own settings
    print(f"demo: test accuracy {result['test_accuracy']:.4f}, training {result['train_seconds']:.0f} s")
    assert result["test_accuracy"] >= demo.TARGET_ACCURACY
    assert result["max_reload_diff"] < 1e-5
    assert os.path.isfile(tmp_path / "vit_digits.keras")
    assert sorted(os.listdir(tmp_path)) == ["explanation.png", "metrics.json", "preprocessing.json", "vit_digits.keras"]
    with open(tmp_path / "metrics.json") as f:
        saved = json.load(f)
    np.testing.assert_allclose(saved["test_accuracy"], result["test_accuracy"])


def test_demo_model_matches_config():
    model = demo.build_demo_model()
    assert model.input_shape == (None, 8, 8, 1)
    assert model.output_shape == (None, 10)
    assert (
        len([layer for layer in model.layers if layer.name.startswith("block_")]) == demo.DEMO_CONFIG["model"]["depth"]
    )
