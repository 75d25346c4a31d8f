"""Inference artefacts of a Keras model: TensorFlow SavedModel, LiteRT (`.tflite`) and ONNX.

`export_model(model, path, format=...)` is the call behind `keras-vit export`.
It hands the model to Keras' own `model.export` (TensorFlow backend), then
makes the artefact valid where the converter leaves it invalid:

- ONNX: the exact GELU of every MLP, GELU(x) = x Φ(x) = ½ x (1 + erf(x/√2))
  (Hendrycks & Gimpel 2016, Eq. 1), is written by TensorFlow as
  ½ x erfc(-x/√2); tf2onnx copies TensorFlow's `Erfc` into the graph, and
  ONNX has no such operator, so onnxruntime refuses the file. Each `Erfc(z)`
  node is rewritten as `1 - Erf(z)`, the same function (erfc = 1 - erf),
  with ONNX's own `Erf` operator; the graph then passes `onnx.checker`.

The exported artefacts need neither this package nor Keras to run: ONNX
Runtime, the LiteRT interpreter, or TensorFlow load them alone.
"""

import logging
import os

import numpy as np

FORMATS = ("saved_model", "litert", "onnx")

# Keras' names for the formats.
_KERAS_FORMATS = {"saved_model": "tf_saved_model", "litert": "litert", "onnx": "onnx"}

# The packages each format needs besides TensorFlow (the `export` extra).
_REQUIREMENTS = {"onnx": ("tf2onnx", "onnx"), "litert": (), "saved_model": ()}


def export_model(model, path, format="saved_model", opset=None, verbose=False):
    """Writes `model` as an inference artefact.

    Args:
        model: a `keras.Model` with a known input shape (any factory's model,
            or one loaded with `keras.saving.load_model`).
        path: output path: a folder for "saved_model" (its `serve` signature
            maps images to the model's output), a `.tflite` file for
            "litert", a `.onnx` file for "onnx".
        format: "saved_model", "litert" or "onnx".
        opset: ONNX opset version (None: the converter's default); only with
            `format="onnx"`.
        verbose: bool, let the converters print their progress.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown `format`, a path with the wrong extension, an
            `opset` for another format, or a Keras backend other than
            TensorFlow (the three converters start from a TensorFlow graph).
        ImportError: the converter of `format` is not installed
            (`pip install "keras-vision-transformers[export]"`).
    """
    import keras

    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}. Received: format={format!r}")
    path = os.fspath(path)
    if format == "litert" and not path.endswith(".tflite"):
        raise ValueError(f"A LiteRT model is a `.tflite` file. Received: path={path!r}")
    if format == "onnx" and not path.endswith(".onnx"):
        raise ValueError(f"An ONNX model is a `.onnx` file. Received: path={path!r}")
    if opset is not None and format != "onnx":
        raise ValueError(f"`opset` applies to format='onnx' only. Received: opset={opset!r}, format={format!r}")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "Export runs on the TensorFlow backend (set KERAS_BACKEND=tensorflow). "
            f"Received: backend={keras.backend.backend()!r}"
        )
    for package in _REQUIREMENTS[format]:
        try:
            __import__(package)
        except ImportError as error:
            raise ImportError(
                f'format={format!r} needs the package {package!r}: pip install "keras-vision-transformers[export]"'
            ) from error
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    kwargs = {} if opset is None else {"opset_version": int(opset)}
    # The signature from the model's own input: a model just loaded from `.keras` has never been called, and
    # Keras infers a signature only from a call.
    image = model.inputs[0]
    signature = [keras.InputSpec(shape=tuple(image.shape), dtype=image.dtype, name=image.name)]
    converter_log = logging.getLogger("tf2onnx")
    level = converter_log.level
    if format == "onnx" and not verbose:
        # tf2onnx reports `Erfc` as unsupported; it is rewritten below, and `onnx.checker` catches any other.
        converter_log.setLevel(logging.CRITICAL)
    try:
        model.export(path, format=_KERAS_FORMATS[format], verbose=verbose, input_signature=signature, **kwargs)
    finally:
        converter_log.setLevel(level)
    if format == "onnx":
        import onnx

        graph = onnx.load(path)
        if replace_erfc(graph):
            onnx.save(graph, path)
        onnx.checker.check_model(graph)
    return path


def replace_erfc(model_proto):
    """Rewrites every `Erfc(z)` node of an ONNX model as `1 - Erf(z)`, in place.

    Args:
        model_proto: an `onnx.ModelProto`.

    Returns:
        int, the number of nodes rewritten.
    """
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    count = 0
    nodes = []
    for node in graph.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        base = node.name or f"erfc_{count}"
        erf_out = f"{base}/erf_out"
        one = f"{base}/one"
        graph.initializer.append(numpy_helper.from_array(np.ones((), np.float32), one))
        nodes.append(helper.make_node("Erf", [node.input[0]], [erf_out], name=f"{base}/Erf"))
        nodes.append(helper.make_node("Sub", [one, erf_out], [node.output[0]], name=f"{base}/one_minus_erf"))
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def load_artifact(path, format):
    """A NumPy function `images -> outputs` running an exported artefact with its own runtime.

    ONNX Runtime for "onnx", the LiteRT interpreter (`ai-edge-litert`, else
    TensorFlow's `tf.lite.Interpreter`) for "litert", TensorFlow for
    "saved_model": what a user serving the file would run.
    """
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}. Received: format={format!r}")
    path = os.fspath(path)
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda images: session.run(None, {name: np.asarray(images, np.float32)})[0]
    if format == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        interpreter = Interpreter(model_path=path)

        def run(images):
            images = np.asarray(images, np.float32)
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], images.shape)
            interpreter.allocate_tensors()
            interpreter.set_tensor(detail["index"], images)
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

        return run
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    return lambda images: loaded.serve(tf.constant(np.asarray(images, np.float32))).numpy()
