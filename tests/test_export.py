"""`keras_vit.export` and `keras-vit export`: each artefact run by its own runtime matches Keras (≤ 1e-4).

The oracles are the runtimes a user serves with: ONNX Runtime for `.onnx`,
the LiteRT interpreter (`ai-edge-litert`) for `.tflite`, TensorFlow's
`tf.saved_model.load` for SavedModel, each called here directly.
"""

import json
import os

import keras
import numpy as np
import pytest
from conftest import keras_vit_cli

from keras_vit.applications import VisionTransformer, get_model, tiny_config
from keras_vit.export import FORMATS, export_model, replace_erfc

TOL = 1e-4
SUFFIX = {"saved_model": "", "litert": ".tflite", "onnx": ".onnx"}
MODELS = {"vit": "vit_tiny_patch16_224", "swin": "swin_tiny_patch4_window7_224", "hybrid": "vit_base_r50_s16_224"}

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export starts from a TF graph")


def run_onnx(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def run_litert(path, images):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def run_saved_model(path, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return loaded.serve(tf.constant(images)).numpy()


RUNTIMES = {"onnx": run_onnx, "litert": run_litert, "saved_model": run_saved_model}


def _round_trip(family, fmt, tmp_path):
    name = MODELS[family]
    model = get_model(name, **tiny_config(name))
    # Pixels of either scale: normalised images and [0, 255] ones reach the GELUs' tails.
    rng = np.random.default_rng(0)
    images = np.concatenate(
        [rng.standard_normal((2, *model.input_shape[1:])), rng.uniform(0, 255, (1, *model.input_shape[1:]))]
    ).astype("float32")
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    path = export_model(model, tmp_path / f"{family}{SUFFIX[fmt]}", format=fmt)
    got = RUNTIMES[fmt](path, images)
    assert got.shape == expected.shape
    diff = float(np.max(np.abs(got - expected)))
    assert diff <= TOL, f"{family} {fmt}: max abs difference {diff:.3g} > {TOL}"
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_vit_round_trip(fmt, tmp_path):
    path = _round_trip("vit", fmt, tmp_path)
    if fmt == "onnx":
        # Exact GELU reaches ONNX as its Erf operator; the file passes the full ONNX check.
        import onnx

        graph = onnx.load(path)
        onnx.checker.check_model(graph, full_check=True)
        ops = [node.op_type for node in graph.graph.node]
        assert "Erfc" not in ops
        assert ops.count("Erf") == 2  # one GELU per MLP, two blocks


# The two converters that rewrite the graph (LiteRT, ONNX) on the other two architectures; SavedModel is
# TensorFlow's own graph of the same operations, checked on the ViT.
@pytest.mark.slow
@pytest.mark.parametrize(("family", "fmt"), [(f, fmt) for f in ("swin", "hybrid") for fmt in ("litert", "onnx")])
def test_swin_and_hybrid_round_trip(family, fmt, tmp_path):
    _round_trip(family, fmt, tmp_path)


def test_replace_erfc_is_one_minus_erf():
    """The rewrite alone, on a one-node Erfc graph, against math.erfc."""
    import math

    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    node = helper.make_node("Erfc", ["x"], ["y"], name="erfc")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert replace_erfc(model) == 1
    onnx.checker.check_model(model)
    x = np.linspace(-6, 6, 97, dtype=np.float32)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, [math.erfc(v) for v in x], atol=1e-6)


def test_bad_arguments_name_themselves(tmp_path):
    model = get_model(MODELS["vit"], **tiny_config(MODELS["vit"]))
    with pytest.raises(ValueError, match=r"`format` must be one of .*Received: format='tflite'"):
        export_model(model, tmp_path / "m.tflite", format="tflite")
    with pytest.raises(ValueError, match=r"\.tflite.*Received: path="):
        export_model(model, tmp_path / "m.lite", format="litert")
    with pytest.raises(ValueError, match=r"\.onnx.*Received: path="):
        export_model(model, tmp_path / "m", format="onnx")
    with pytest.raises(ValueError, match=r"`opset` applies to format='onnx' only"):
        export_model(model, tmp_path / "m.tflite", format="litert", opset=17)


def _tiny_npz(path, n=32):
    """Two classes of 8×8 grey images: bright top half or bright bottom half."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = rng.integers(0, 60, (n, 8, 8, 1)).astype(np.uint8)
    x[y == 0, :4] += 180
    x[y == 1, 4:] += 180
    np.savez(path, x=x, y=y)
    return str(path)


def test_cli_exports_a_model_that_train_refit_at_another_resolution(tmp_path):
    """`train --model-file --image-size 16` refits an 8 px model at 16 px, `export` writes it as ONNX, each in
    its own process; ONNX Runtime then matches the Keras model reloaded here."""
    model = VisionTransformer(
        patch_size=2, hidden_dim=16, depth=1, num_heads=2, mlp_dim=16, input_shape=(8, 8, 1), classes=2
    )
    model.save(tmp_path / "base.keras")
    keras_vit_cli(
        "train",
        "--model-file",
        tmp_path / "base.keras",
        "--image-size",
        "16",
        "--data",
        _tiny_npz(tmp_path / "tiny.npz"),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        tmp_path / "run16",
        "--quiet",
    )
    model_file = tmp_path / "run16" / "model.keras"
    onnx_path = tmp_path / "exported" / "model.onnx"
    stdout = keras_vit_cli("export", model_file, "--format", "onnx", "--out", onnx_path, "--check", "--json")
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["path"] == str(onnx_path) and os.path.getsize(onnx_path) > 1000
    assert report["max_abs_diff"] <= TOL

    trained = keras.saving.load_model(model_file)
    assert trained.input_shape[1:3] == (16, 16)
    # 16 px, patches of 2: an 8×8 grid and the class token.
    assert tuple(trained.get_layer("patch_embed").pos_embed.shape) == (1, 65, 16)
    images = np.random.default_rng(1).uniform(0, 255, (3, *trained.input_shape[1:])).astype("float32")
    expected = keras.ops.convert_to_numpy(trained(images, training=False))
    np.testing.assert_allclose(run_onnx(onnx_path, images), expected, atol=TOL)


@pytest.mark.parametrize("shift", [(-2, -3), (2, 3), (1, 0), (0, -1), (5, -8)])
def test_swin_cyclic_shift_is_numpy_roll(shift):
    """Swin's cyclic shift, written with slices so that LiteRT needs no select ops, is `np.roll`."""
    from keras_vit.layers.swin_block import cyclic_shift

    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(cyclic_shift(x, shift)), np.roll(x, shift, axis=(1, 2)))
