"""One contract that every public layer of `keras_vit.layers` passes.

In the manner of keras-hub's `run_layer_test` / `run_serialization_test` /
`run_precision_test`, each layer in `CASES` (tiny init kwargs, tiny inputs) is
checked for:

1. config round trip, and `get_config()` keys being exactly its `__init__`
   arguments (plus the base `Layer` keys);
2. `compute_output_shape` equal to the shape of a real (eager) call;
3. a symbolic call on `keras.Input` giving the eager call's structure, shapes
   and dtypes;
4. a `.keras` round trip inside a functional model, reloaded in a fresh
   interpreter that only imports `keras_vit` (one subprocess for all layers),
   giving the original outputs;
5. mixed precision (`mixed_float16`, `mixed_bfloat16`): outputs, eager and
   symbolic, in the compute dtype, variables in float32.

`test_every_public_layer_has_a_case` makes a new layer without an entry fail.
"""

import dataclasses
import inspect
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_vit.layers as kvl

pytestmark = pytest.mark.backends

# Keys that `keras.layers.Layer.get_config` itself adds.
BASE_LAYER_KEYS = {"name", "trainable", "dtype", "activity_regularizer"}
BATCH = 2


@dataclasses.dataclass(frozen=True)
class Case:
    """One layer configuration.

    `inputs` maps call-argument names to shapes, in call order; the first is
    passed positionally, the others by keyword. `call_kwargs` are non-tensor
    call arguments (e.g. `return_attention_scores=True`).
    """

    id: str
    cls: type
    init_kwargs: dict
    inputs: dict
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    int_inputs: dict = dataclasses.field(default_factory=dict)  # name -> exclusive maximum id

    def make_inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        arrays = {}
        for name, shape in self.inputs.items():
            if name in self.int_inputs:
                arrays[name] = rng.integers(0, self.int_inputs[name], shape).astype("int32")
            else:
                arrays[name] = rng.standard_normal(shape).astype("float32")
        return arrays

    def symbolic_inputs(self):
        return {
            name: keras.Input(
                shape[1:], batch_size=None, dtype="int32" if name in self.int_inputs else "float32", name=name
            )
            for name, shape in self.inputs.items()
        }

    def call(self, layer, tensors, **extra):
        names = list(self.inputs)
        first, rest = tensors[names[0]], {n: tensors[n] for n in names[1:]}
        return layer(first, **rest, **self.call_kwargs, **extra)


SCORES = {"return_attention_scores": True}
CASES = [
    Case("class_token", kvl.ClassToken, {"num_tokens": 2}, {"inputs": (BATCH, 4, 8)}),
    Case("drop_path", kvl.DropPath, {"rate": 0.5, "seed": 1}, {"inputs": (BATCH, 4, 8)}),
    Case(
        "image_preprocessing",
        kvl.ImagePreprocessing,
        {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.3, 0.4), "interpolation": "bilinear", "crop_pct": 0.875},
        {"inputs": (BATCH, 4, 4, 3)},
    ),
    Case("layer_scale", kvl.LayerScale, {"init_value": 0.1}, {"inputs": (BATCH, 4, 8)}),
    Case("mlp", kvl.MLP, {"mlp_dim": 16, "output_dim": 6}, {"inputs": (BATCH, 4, 8)}),
    Case("mhsa", kvl.MultiHeadSelfAttention, {"num_heads": 2}, {"inputs": (BATCH, 5, 8)}),
    Case("mhsa_scores", kvl.MultiHeadSelfAttention, {"num_heads": 2}, {"inputs": (BATCH, 5, 8)}, SCORES),
    Case(
        "mhsa_cross",
        kvl.MultiHeadSelfAttention,
        {"num_heads": 2, "head_dim": 3, "output_dim": 4, "cross_attention": True},
        {"inputs": (BATCH, 5, 8), "context": (BATCH, 3, 6)},
    ),
    Case(
        "patch_encoder",
        kvl.PatchEncoder,
        {"patch_size": 4, "hidden_dim": 8, "distillation_token": True, "num_register_tokens": 1},
        {"inputs": (BATCH, 8, 8, 3)},
    ),
    Case(
        "patch_encoder_sincos",
        kvl.PatchEncoder,
        {"patch_size": (4, 2), "hidden_dim": 8, "class_token": False, "position_embedding": "sincos"},
        {"inputs": (BATCH, 8, 4, 3)},
    ),
    Case("positional_encoding", kvl.PositionalEncoding, {}, {"inputs": (BATCH, 5, 8)}),
    Case("positional_encoding_2d", kvl.PositionalEncoding, {"kind": "sinusoidal_2d"}, {"inputs": (BATCH, 3, 2, 8)}),
    Case(
        "positional_encoding_learned",
        kvl.PositionalEncoding,
        {"kind": "learned", "max_length": 7},
        {"inputs": (BATCH, 5, 8)},
    ),
    Case(
        "std_conv2d",
        kvl.StdConv2D,
        {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "epsilon": 1e-6},
        {"inputs": (BATCH, 7, 7, 3)},
    ),
    Case("re_attention", kvl.ReAttention, {"num_heads": 2}, {"inputs": (BATCH, 5, 8)}),
    Case("re_attention_scores", kvl.ReAttention, {"num_heads": 2}, {"inputs": (BATCH, 5, 8)}, SCORES),
    Case("re_attention_block", kvl.ReAttentionBlock, {"num_heads": 2, "mlp_dim": 16}, {"inputs": (BATCH, 5, 8)}),
    Case("soft_split", kvl.SoftSplit, {"kernel_size": 3, "strides": 2, "padding": 1}, {"inputs": (BATCH, 7, 7, 2)}),
    Case("token_performer", kvl.TokenPerformer, {"output_dim": 8}, {"inputs": (BATCH, 6, 12)}),
    Case("token_pooling", kvl.TokenPooling, {"mode": "avg"}, {"inputs": (BATCH, 5, 8)}),
    Case("token_transformer", kvl.TokenTransformer, {"output_dim": 8, "num_heads": 2}, {"inputs": (BATCH, 6, 12)}),
    Case(
        "token_transformer_scores",
        kvl.TokenTransformer,
        {"output_dim": 8, "num_heads": 2},
        {"inputs": (BATCH, 6, 12)},
        SCORES,
    ),
    Case(
        "transformer_block",
        kvl.TransformerBlock,
        {"num_heads": 2, "mlp_dim": 16, "layer_scale_init": 0.1},
        {"inputs": (BATCH, 5, 8)},
    ),
    Case(
        "transformer_block_scores",
        kvl.TransformerBlock,
        {"num_heads": 2, "mlp_dim": 16},
        {"inputs": (BATCH, 5, 8)},
        SCORES,
    ),
    Case(
        "token_embedding",
        kvl.TokenEmbedding,
        {"vocabulary_size": 11, "hidden_dim": 8},
        {"inputs": (BATCH, 5)},
        int_inputs={"inputs": 11},
    ),
    Case(
        "token_embedding_reverse",
        kvl.TokenEmbedding,
        {"vocabulary_size": 11, "hidden_dim": 8},
        {"inputs": (BATCH, 5, 8)},
        {"reverse": True},
    ),
    Case(
        "transformer_decoder_block",
        kvl.TransformerDecoderBlock,
        {"num_heads": 2, "mlp_dim": 16},
        {"inputs": (BATCH, 5, 8), "encoder_outputs": (BATCH, 3, 8)},
    ),
    Case(
        "transformer_decoder_block_scores",
        kvl.TransformerDecoderBlock,
        {"num_heads": 2, "mlp_dim": 16, "norm_first": True},
        {"inputs": (BATCH, 5, 8), "encoder_outputs": (BATCH, 3, 8)},
        SCORES,
    ),
    Case("window_attention", kvl.WindowAttention, {"num_heads": 2, "window_size": 2}, {"inputs": (4, 4, 8)}),
    Case(
        "window_attention_scores",
        kvl.WindowAttention,
        {"num_heads": 2, "window_size": 2},
        {"inputs": (4, 4, 8)},
        SCORES,
    ),
    Case(
        "swin_block",
        kvl.SwinTransformerBlock,
        {"num_heads": 2, "window_size": 2, "shift_size": 1},
        {"inputs": (BATCH, 3, 4, 8)},
    ),
    Case(
        "swin_block_scores",
        kvl.SwinTransformerBlock,
        {"num_heads": 2, "window_size": 2, "shift_size": 1},
        {"inputs": (BATCH, 4, 4, 8)},
        SCORES,
    ),
    Case("patch_merging", kvl.PatchMerging, {}, {"inputs": (BATCH, 5, 4, 4)}),
    Case(
        "pooling_attention",
        kvl.PoolingAttention,
        {"num_heads": 2, "output_dim": 8, "stride_q": 2, "stride_kv": 2},
        {"inputs": (BATCH, 4, 4, 4)},
    ),
    Case(
        "pooling_attention_scores",
        kvl.PoolingAttention,
        {"num_heads": 2, "stride_kv": 2},
        {"inputs": (BATCH, 4, 4, 4)},
        SCORES,
    ),
    Case(
        "multiscale_block",
        kvl.MultiScaleBlock,
        {"num_heads": 2, "output_dim": 8, "stride_q": 2, "stride_kv": 2},
        {"inputs": (BATCH, 4, 4, 4)},
    ),
    Case(
        "multiscale_block_scores",
        kvl.MultiScaleBlock,
        {"num_heads": 2, "stride_kv": 2},
        {"inputs": (BATCH, 4, 4, 4)},
        SCORES,
    ),
]
CASES_BY_ID = {case.id: case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "case ids must be unique"


def cases(only=None):
    """One pytest parameter per table entry (those `only` keeps)."""
    return [pytest.param(case, id=case.id) for case in CASES if only is None or only(case)]


def call_layer(layer, case, arrays):
    """The outputs of a real call of `layer` on `arrays` (or, on JAX, their shapes and dtypes).

    On JAX every eager op is compiled once per shape and dtype, minutes for
    ~35 layers in three dtypes on 2 cores; `jax.eval_shape` runs the same
    `call` code on abstract values instead, so the shapes and dtypes are
    exactly those of an eager call, without compiling. (The layer's variables
    then hold tracers: use such a layer for nothing else.)
    """
    if keras.backend.backend() == "jax":
        import jax

        return jax.eval_shape(lambda a: case.call(layer, a), arrays)
    return case.call(layer, {k: keras.ops.convert_to_tensor(v) for k, v in arrays.items()})


def run_model(model, inputs):
    """Real outputs of a functional model, flattened to NumPy arrays."""
    if keras.backend.backend() == "jax":
        # One XLA compile per model rather than one per op (see `call_layer`).
        outputs = model.predict(inputs, batch_size=BATCH, verbose=0)
    else:
        outputs = model(inputs, training=False)
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def shapes_of(outputs):
    return keras.tree.map_structure(lambda x: tuple(x.shape), outputs)


def dtypes_of(outputs):
    return [keras.backend.standardize_dtype(x.dtype) for x in keras.tree.flatten(outputs)]


def public_layer_classes():
    names = set(getattr(kvl, "__all__", ())) | set(dir(kvl))
    found = set()
    for name in names:
        obj = getattr(kvl, name, None)
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer):
            found.add(obj)
    return found


def test_every_public_layer_has_a_case():
    covered = {case.cls for case in CASES}
    missing = sorted(cls.__name__ for cls in public_layer_classes() - covered)
    assert not missing, f"public layers without an entry in CASES: {missing}"
    for name in kvl.__all__:
        assert hasattr(kvl, name), name


def init_argument_names(cls):
    """Named `__init__` parameters of `cls`, and those of the parents it forwards `**kwargs` to."""
    own, inherited = None, set()
    for klass in cls.__mro__:
        if klass is keras.layers.Layer or not issubclass(klass, keras.layers.Layer):
            break
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if own is None:
            own = named
        else:
            inherited |= named
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return own, inherited


# 1. Config round trip; keys are the __init__ arguments.
@pytest.mark.parametrize("case", cases())
def test_config(case):
    layer = case.cls(**case.init_kwargs)
    config = layer.get_config()
    own, inherited = init_argument_names(case.cls)
    missing = own - set(config)
    extra = set(config) - own - inherited - BASE_LAYER_KEYS
    assert not missing, f"__init__ arguments missing from get_config(): {sorted(missing)}"
    assert not extra, f"get_config() keys that are not __init__ arguments: {sorted(extra)}"
    for key, value in case.init_kwargs.items():
        stored = config[key]
        if isinstance(stored, dict):  # a serialized object (initializer)
            continue
        if isinstance(value, int) and isinstance(stored, tuple):  # Keras' conv layers store 3 as (3, 3)
            stored = stored[0] if len(set(stored)) == 1 else stored
        assert stored == value, f"get_config()[{key!r}] = {config[key]!r}, passed {value!r}"
    assert case.cls.from_config(config).get_config() == config
    # Through JSON, as a .keras file stores it (tuples come back as lists).
    as_json = json.loads(json.dumps(config))
    assert json.loads(json.dumps(case.cls.from_config(as_json).get_config())) == as_json
    # Building does not change the config.
    call_layer(layer, case, case.make_inputs())
    assert layer.get_config() == config


# 2. compute_output_shape equals the shape of a real call.
@pytest.mark.parametrize("case", cases(only=lambda c: not c.call_kwargs))
def test_compute_output_shape(case):
    layer = case.cls(**case.init_kwargs)
    expected = shapes_of(call_layer(layer, case, case.make_inputs()))
    layer = case.cls(**case.init_kwargs)  # unbuilt: compute_output_shape must not need build()
    names = list(case.inputs)
    for batch in (BATCH, None):
        shapes = {n: (batch, *s[1:]) for n, s in case.inputs.items()}
        if len(names) == 1:
            shape = layer.compute_output_shape(shapes[names[0]])
        else:  # Keras' convention: one `<call argument>_shape` per tensor argument.
            shape = layer.compute_output_shape(**{f"{n}_shape": shapes[n] for n in names})
        assert tuple(shape) == (batch, *expected[1:])


# 3. A symbolic call gives the real call's structure, shapes and dtypes.
@pytest.mark.parametrize("case", cases())
def test_symbolic_call(case):
    real_outputs = call_layer(case.cls(**case.init_kwargs), case, case.make_inputs())
    real = shapes_of(real_outputs)
    symbolic = case.call(case.cls(**case.init_kwargs), case.symbolic_inputs())
    for out in keras.tree.flatten(symbolic):
        assert isinstance(out, keras.KerasTensor), type(out)
    unknown_batch = keras.tree.map_shape_structure(lambda s: (None, *s[1:]), real)
    assert keras.tree.map_shape_structure(tuple, shapes_of(symbolic)) == unknown_batch
    assert dtypes_of(symbolic) == dtypes_of(real_outputs)


# 4. `.keras` round trip in a functional model, reloaded in a fresh interpreter.
RELOAD_SCRIPT = r"""
import json, sys, traceback
import numpy as np
import keras
import keras_vit  # registers every layer; nothing else is imported

folder = sys.argv[1]
results = {}
for case_id in json.load(open(folder + "/manifest.json")):
    try:
        model = keras.saving.load_model(f"{folder}/{case_id}.keras")
        inputs = dict(np.load(f"{folder}/{case_id}.inputs.npz"))
        if keras.backend.backend() == "jax":  # one compile per model, not per op
            outputs = model.predict(inputs, batch_size=len(next(iter(inputs.values()))), verbose=0)
        else:
            outputs = model(inputs, training=False)
        outputs = [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]
        np.savez(f"{folder}/{case_id}.reloaded.npz", *outputs)
        results[case_id] = None
    except Exception:
        results[case_id] = traceback.format_exc()
json.dump(results, open(folder + "/results.json", "w"))
"""


def saved(case):
    # Score variants repeat their plain twin's layer; one keeps several outputs covered.
    return case.call_kwargs != SCORES or case.id == "swin_block_scores"


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory):
    """Saves one functional model per case, reloads them all in one fresh interpreter.

    Returns `{case id: (original outputs, reloaded outputs)}`, or
    `{case id: (None, error text)}`.
    """
    folder = tmp_path_factory.mktemp("layer_contract")
    keras.utils.set_random_seed(0)
    expected, errors = {}, {}
    for case in filter(saved, CASES):
        try:
            symbolic = case.symbolic_inputs()
            outputs = case.call(case.cls(**case.init_kwargs), symbolic)
            model = keras.Model(symbolic, outputs, name=f"contract_{case.id}")
            inputs = case.make_inputs(seed=1)
            expected[case.id] = run_model(model, inputs)
            model.save(folder / f"{case.id}.keras")
            np.savez(folder / f"{case.id}.inputs.npz", **inputs)
        except Exception as error:  # reported by that case's test
            errors[case.id] = f"building or saving failed: {type(error).__name__}: {error}"
    (folder / "manifest.json").write_text(json.dumps(sorted(expected)))
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "CUDA_VISIBLE_DEVICES": ""}
    # JAX: XLA's CPU optimisation passes cost more than these tiny models' run time.
    env.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
    proc = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((folder / "results.json").read_text())
    out = {case_id: (None, error) for case_id, error in errors.items()}
    for case_id in expected:
        if results[case_id] is not None:
            out[case_id] = (None, "reloading failed:\n" + results[case_id])
        else:
            with np.load(folder / f"{case_id}.reloaded.npz") as data:
                out[case_id] = (expected[case_id], [data[f"arr_{i}"] for i in range(len(data.files))])
    return out


@pytest.mark.parametrize("case", cases(only=saved))
def test_keras_file_round_trip_in_fresh_interpreter(case, reloaded):
    expected, got = reloaded[case.id]
    assert expected is not None, got
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


# 5. Mixed precision: outputs in the compute dtype, variables in float32.
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("case", cases())
def test_mixed_precision(case, policy):
    layer = case.cls(**case.init_kwargs, dtype=keras.dtype_policies.DTypePolicy(policy))
    compute_dtype = policy.split("_")[1]
    outputs = call_layer(layer, case, case.make_inputs())
    for out in keras.tree.flatten(outputs):
        assert keras.backend.standardize_dtype(out.dtype) == compute_dtype
        if keras.backend.backend() != "jax":  # JAX only traced the call (see `call_layer`)
            assert np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))).all()
    for weight in layer.weights:
        if "float" in weight.dtype:
            assert weight.dtype == "float32", weight.path
    assert layer.get_config()["dtype"]["config"]["name"] == policy
    # A functional model sees the dtypes that the real call returns.
    symbolic = case.call(case.cls(**case.init_kwargs, dtype=policy), case.symbolic_inputs())
    assert dtypes_of(symbolic) == [compute_dtype] * len(keras.tree.flatten(outputs))
