"""`weights="hf://..."`: every family with a fixture, read through `huggingface_hub` from an offline cache.

The cache is laid out as `huggingface_hub` lays it out (`models--ORG--NAME/blobs/<sha256>`,
`snapshots/<commit>/<file>` symlinks to the blobs, `refs/main`), built here from the checked-in parity
fixtures (tests/fixtures/README.md), and read with `HF_HUB_OFFLINE=1`: the download path itself is the
library's. Each repo's `config.json` is what timm's `save_config_for_hf` or transformers'
`save_pretrained` writes, with a mean/std other than the fixtures' so that the preprocessing inside the
model is what maps the [0, 255] pixels back onto the fixture's input.
"""

import hashlib
import json
import os

import keras
import numpy as np
import pytest

from keras_vit import convert, hub
from keras_vit.applications import (
    MViTv2,
    SwinTransformer,
    VisionTransformer,
    VisionTransformerHybrid,
    ViTBase16,
    get_model,
    list_models,
    model_preprocessing,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TOL = 1e-4
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_repo(cache, repo_id, files, commit=COMMIT):
    """One repo in the hub cache layout; `files` maps names to bytes or JSON-able objects."""
    root = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
    os.makedirs(os.path.join(root, "refs"), exist_ok=True)
    snapshot = os.path.join(root, "snapshots", commit)
    os.makedirs(snapshot, exist_ok=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else json.dumps(content).encode()
        blob = hashlib.sha256(data).hexdigest()
        with open(os.path.join(root, "blobs", blob), "wb") as f:
            f.write(data)
        os.symlink(os.path.join("..", "..", "blobs", blob), os.path.join(snapshot, name))
    with open(os.path.join(root, "refs", "main"), "w") as f:
        f.write(commit)


def safetensors_bytes(weights):
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in weights.items()})


def load_fixture(name):
    with np.load(os.path.join(FIXTURES, f"{name}.npz"), allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    prefix = "weights/" if any(k.startswith("weights/") for k in out) else "w/"
    weights = {k[len(prefix) :]: v for k, v in out.items() if k.startswith(prefix)}
    return weights, out


def timm_config(architecture, num_classes, model_args, global_pool, size):
    """A config.json in the format of timm's `save_config_for_hf`."""
    return {
        "architecture": architecture,
        "num_classes": num_classes,
        "global_pool": global_pool,
        "model_args": model_args,
        "label_names": [f"class_{i}" for i in range(num_classes)],
        "pretrained_cfg": {
            "tag": "test",
            "input_size": [3, size, size],
            "interpolation": "bicubic",
            "crop_pct": 0.9,
            "crop_mode": "center",
            "mean": list(MEAN),
            "std": list(STD),
            "num_classes": num_classes,
            "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
    }


def timm_vit_args(config):
    return {
        k: config[k]
        for k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "class_token")
        if k in config
    }


def transformers_files(ref, weights, model_type, architecture, crop):
    config = json.loads(str(ref["config"]))
    classes = ref["logits"].shape[-1]
    files = {
        "config.json": {
            "model_type": model_type,
            "architectures": [architecture],
            "hidden_size": config["hidden_size"],
            "num_hidden_layers": config["num_hidden_layers"],
            "num_attention_heads": config["num_attention_heads"],
            "intermediate_size": config["intermediate_size"],
            "hidden_act": "gelu",
            "image_size": config["image_size"],
            "patch_size": config["patch_size"],
            "num_channels": 3,
            "layer_norm_eps": config["layer_norm_eps"],
            "qkv_bias": True,
            "id2label": {str(i): f"label {i}" for i in range(classes)},
        },
        "preprocessor_config.json": {
            "do_normalize": True,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "image_mean": list(MEAN),
            "image_std": list(STD),
            "resample": 3,
            "do_resize": True,
            "size": {"height": crop + 4, "width": crop + 4}
            if model_type == "deit"
            else {"height": crop, "width": crop},
            **({"do_center_crop": True, "crop_size": {"height": crop, "width": crop}} if model_type == "deit" else {}),
        },
        "model.safetensors": safetensors_bytes(weights),
    }
    return files


def _swin_args(config):
    return {
        "img_size": config["input_shape"][0],
        "patch_size": config["patch_size"],
        "embed_dim": config["hidden_dim"],
        "depths": config["depth"],
        "num_heads": config["num_heads"],
        "window_size": config["window_size"],
    }


# repo id → (fixture, factory, reference input key)
CASES = {
    "timm/vit_base_patch16_224.tiny_token": ("timm_vit_token", VisionTransformer),
    "timm/vit_base_patch16_224.tiny_avg": ("timm_vit_avg", VisionTransformer),
    "timm/deit_base_distilled_patch16_224.tiny": ("timm_deit_distilled", VisionTransformer),
    "timm/vit_base_r50_s16_224.tiny": ("timm_hybrid", VisionTransformerHybrid),
    "timm/swin_tiny_patch4_window7_224.tiny": ("swin_tiny_config", SwinTransformer),
    "timm/mvitv2_tiny.tiny": ("mvitv2_tiny_config", MViTv2),
    "hf-internal/tiny-vit": ("hf_vit_classification", VisionTransformer),
    "hf-internal/tiny-deit-distilled": ("hf_deit_distilled", VisionTransformer),
}


def repo_files(repo_id):
    fixture, _ = CASES[repo_id]
    weights, ref = load_fixture(fixture)
    if fixture.startswith("hf_"):
        deit = "deit" in fixture
        return transformers_files(
            ref,
            weights,
            "deit" if deit else "vit",
            "DeiTForImageClassificationWithTeacher" if deit else "ViTForImageClassification",
            32,
        )
    config = json.loads(str(ref["config"]))
    classes = ref["logits"].shape[-1]
    if fixture.startswith("swin"):
        cfg = timm_config("swin_tiny_patch4_window7_224", classes, _swin_args(config), "avg", config["input_shape"][0])
    elif fixture.startswith("mvitv2"):
        # timm's MViTv2 takes its stage layout from a named config, not from constructor arguments:
        # the factory's own argument names express it.
        args = {"img_size": config["input_shape"][0], "hidden_dim": config["hidden_dim"], "depth": config["depth"]}
        args["num_heads"] = config["num_heads"]
        cfg = timm_config("mvitv2_tiny", classes, args, "avg", config["input_shape"][0])
    elif fixture == "timm_hybrid":
        # The ResNetV2 stem's layout, as the factory's arguments (timm builds it from a backbone object).
        args = {**timm_vit_args(config), "stem_layers": config["layers"], "stem_width": config["stem_chs"]}
        args["stage_channels"] = config["channels"]
        cfg = timm_config("vit_base_r50_s16_224", classes, args, "token", config["img_size"])
    else:
        arch = "deit_base_distilled_patch16_224" if "deit" in fixture else "vit_base_patch16_224"
        cfg = timm_config(arch, classes, timm_vit_args(config), config.get("global_pool", "token"), config["img_size"])
    return {"config.json": cfg, "model.safetensors": safetensors_bytes(weights)}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("hf_cache"))
    for repo_id in CASES:
        write_repo(cache, repo_id, repo_files(repo_id))
    weights, _ = load_fixture("timm_vit_token")
    good = repo_files("timm/vit_base_patch16_224.tiny_token")
    data = good["model.safetensors"]
    write_repo(
        cache, "broken/truncated", {"config.json": good["config.json"], "model.safetensors": data[: len(data) // 2]}
    )
    write_repo(cache, "broken/no-weights", {"config.json": good["config.json"]})
    write_repo(cache, "broken/bad-json", {"config.json": b'{"architecture": "vit_base_pat', "model.safetensors": data})
    write_repo(
        cache, "foreign/bert", {"config.json": {"model_type": "bert", "hidden_size": 32}, "model.safetensors": data}
    )
    write_repo(cache, "foreign/unknown", {"config.json": {"foo": 1}, "model.safetensors": data})
    unsafe = {**good["config.json"], "model_args": {"weights": "/etc/passwd"}}
    write_repo(cache, "foreign/unsafe-args", {"config.json": unsafe, "model.safetensors": data})
    write_repo(
        cache,
        "foreign/resnet",
        {"config.json": {**good["config.json"], "architecture": "resnet50"}, "model.safetensors": data},
    )
    return cache


@pytest.fixture
def offline(hub_cache, monkeypatch):
    """`HF_HUB_OFFLINE=1` with the test cache. huggingface_hub reads both variables when it is imported,
    so its constants are set too (a subprocess sees the environment variables)."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", hub_cache)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", hub_cache)
    return hub_cache


def pixels_for(ref_input, mean=MEAN, std=STD):
    """[0, 255] pixels that the checkpoint's normalisation maps onto the fixture's model input."""
    return ((ref_input * np.asarray(std) + np.asarray(mean)) * 255.0).astype("float32")


@pytest.mark.parametrize("repo_id", sorted(CASES))
def test_every_family_loads_from_the_hub_and_matches_its_reference(repo_id, offline):
    fixture, factory = CASES[repo_id]
    _, ref = load_fixture(fixture)
    model = factory(weights=f"hf://{repo_id}", classifier_activation=None)
    layer = model_preprocessing(model)
    assert layer is not None and model.layers[1] is layer
    np.testing.assert_allclose(layer.mean, MEAN, rtol=1e-6)
    np.testing.assert_allclose(layer.std, STD, rtol=1e-6)
    assert layer.interpolation == "bicubic"
    x = ref["inputs"] if "inputs" in ref else ref["input"]
    out = keras.ops.convert_to_numpy(model(pixels_for(x), training=False))
    diff = float(np.max(np.abs(out - ref["logits"])))
    assert out.shape == ref["logits"].shape
    assert diff <= TOL, f"{repo_id}: max abs difference {diff:.3g} > {TOL}"


def test_crop_fraction_and_classes_come_from_the_configs(offline):
    timm = hub.resolve("hf://timm/vit_base_patch16_224.tiny_token")
    assert timm.crop_pct == pytest.approx(0.9) and timm.arguments["classes"] == 10
    assert timm.arguments["input_shape"] == (32, 32, 3) and timm.arguments["mlp_dim"] == 64
    assert timm.class_names == [f"class_{i}" for i in range(10)]
    deit = hub.resolve("hf://hf-internal/tiny-deit-distilled")
    assert deit.crop_pct == pytest.approx(32 / 36) and deit.interpolation == "bicubic"
    assert deit.arguments["layer_norm_epsilon"] == 1e-12 and deit.arguments["distillation"] is True
    assert deit.class_names[3] == "label 3"


def test_explicit_arguments_win_and_a_new_head_starts_fresh(offline):
    _, ref = load_fixture("timm_vit_token")
    model = VisionTransformer(weights="hf://timm/vit_base_patch16_224.tiny_token", classes=3, include_top=False)
    assert model.output_shape == (None, 32)
    model = VisionTransformer(weights="hf://timm/vit_base_patch16_224.tiny_token", include_preprocessing=False)
    assert model_preprocessing(model) is None
    logits = VisionTransformer(
        weights="hf://timm/vit_base_patch16_224.tiny_token", include_preprocessing=False, classifier_activation=None
    )(ref["inputs"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), ref["logits"], atol=TOL, rtol=0)


def test_revision_is_read_from_the_uri(offline):
    model = VisionTransformer(weights=f"hf://timm/vit_base_patch16_224.tiny_token@{COMMIT}")
    assert model.output_shape == (None, 10)
    with pytest.raises(hub.HubError, match="not in the local Hub cache"):
        VisionTransformer(weights="hf://timm/vit_base_patch16_224.tiny_token@" + "f" * 40)


def test_another_architecture_names_both(offline):
    with pytest.raises(hub.HubError, match=r"swin_tiny_patch4_window7_224.*VisionTransformer builds vit/deit"):
        VisionTransformer(weights="hf://timm/swin_tiny_patch4_window7_224.tiny")
    with pytest.raises(hub.HubError, match=r"swin_tiny_patch4_window7_224.*'vit_base_patch16_224'"):
        get_model("vit_base_patch16_224", weights="hf://timm/swin_tiny_patch4_window7_224.tiny")
    with pytest.raises(hub.HubError, match=r"hidden_dim=768 \(checkpoint: 32\)"):
        ViTBase16(weights="hf://timm/vit_base_patch16_224.tiny_token")
    with pytest.raises(hub.HubError, match=r"'resnet50'.*does not have"):
        VisionTransformer(weights="hf://foreign/resnet")


def test_truncated_and_foreign_repos_give_clear_errors(offline):
    with pytest.raises(convert.CheckpointError, match=r"hf://broken/truncated.*truncated"):
        VisionTransformer(weights="hf://broken/truncated")
    with pytest.raises(hub.HubError, match=r"hf://broken/no-weights holds no weights"):
        VisionTransformer(weights="hf://broken/no-weights")
    with pytest.raises(hub.HubError, match=r"config.json of hf://broken/bad-json is not readable JSON"):
        VisionTransformer(weights="hf://broken/bad-json")
    with pytest.raises(hub.HubError, match=r"transformers 'bert' model"):
        VisionTransformer(weights="hf://foreign/bert")
    with pytest.raises(hub.HubError, match=r"neither 'architecture' \(timm\) nor 'model_type'"):
        VisionTransformer(weights="hf://foreign/unknown")
    with pytest.raises(hub.HubError, match=r"weights='/etc/passwd' of config.json has no keras_vit equivalent"):
        VisionTransformer(weights="hf://foreign/unsafe-args")
    with pytest.raises(hub.HubError, match=r"hf://nobody/absent.*not in the local Hub cache"):
        VisionTransformer(weights="hf://nobody/absent")
    with pytest.raises(hub.HubError, match=r"hf://ORG/REPO"):
        VisionTransformer(weights="hf://just-a-name")


def test_pretrained_names_map_to_timm_repos(offline):
    names = list_models(pretrained=True)
    for name in (
        "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "deit_tiny_distilled_patch16_224.fb_in1k",
        "swin_tiny_patch4_window7_224.ms_in1k",
        "mvitv2_tiny.fb_in1k",
        "vit_base_r50_s16_384.orig_in21k_ft_in1k",
    ):
        assert name in names
    assert list_models("swin_*", pretrained=True) == [n for n in names if n.startswith("swin_")]
    assert hub.pretrained_uri("vit_base_patch16_224") == "hf://timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
    # The offline cache lacks the real repo: the error shows the repo the name maps to.
    with pytest.raises(hub.HubError, match=r"hf://timm/vit_base_patch16_224\.augreg2_in21k_ft_in1k"):
        get_model("vit_base_patch16_224.augreg2_in21k_ft_in1k", pretrained=True)
    with pytest.raises(ValueError, match="Unknown pretrained tag 'nope'"):
        get_model("vit_base_patch16_224.nope", pretrained=True)
    with pytest.raises(ValueError, match="needs `pretrained=True`"):
        get_model("vit_base_patch16_224.augreg2_in21k_ft_in1k")
    with pytest.raises(ValueError, match="No pretrained weights are known for 'vit_cifar_patch4_depth8_32'"):
        get_model("vit_cifar_patch4_depth8_32", pretrained=True)


def test_factory_without_converter_refuses_hub_weights():
    from keras_vit.applications import CNNHybridViT

    with pytest.raises(ValueError, match="CNNHybridViT has no checkpoint converter"):
        CNNHybridViT(weights="hf://timm/vit_base_patch16_224.augreg2_in21k_ft_in1k")


def test_cli_converts_a_hub_repo_and_predicts_with_its_preprocessing(offline, tmp_path):
    """`keras-vit convert hf://...` then `keras-vit predict` on the file it wrote, each its own process."""
    from conftest import keras_vit_cli

    out = tmp_path / "vit.keras"
    keras_vit_cli("convert", "hf://timm/vit_base_patch16_224.tiny_token", "--classes", "1000", "--out", out)
    # 35 = floor(32 / crop_pct 0.9): predict keeps the image's size and crops its centre, as timm does.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (35, 35, 3), dtype=np.uint8)
    path = tmp_path / "image.png"
    keras.utils.save_img(str(path), image)
    result = json.loads(keras_vit_cli("predict", "--model-file", out, path, "--top-k", "3", "--json"))
    model = keras.saving.load_model(out)
    top = round((35 - 32) / 2.0)
    probs = keras.ops.convert_to_numpy(model(image[None, top : top + 32, top : top + 32].astype("float32")))[0]
    best = np.argsort(-probs)[:3]
    from keras_vit.applications import imagenet_classes

    assert [t["class"] for t in result[0]["top_k"]] == best.tolist()
    assert [t["name"] for t in result[0]["top_k"]] == [imagenet_classes()[i][1] for i in best]
    np.testing.assert_allclose([t["probability"] for t in result[0]["top_k"]], probs[best], atol=1e-5)
