"""Pretrained weights from local checkpoint files: timm, Hugging Face and Google ViT.

Checkpoints are read without running code from them: safetensors files with the
`safetensors` NumPy API, PyTorch `.pth`/`.bin` files with
`torch.load(weights_only=True)` (PyTorch is optional and only needed for those),
and `.npz` files with `numpy.load(allow_pickle=False)`.

Each source format has one function that maps its keys and layouts onto the
Keras weight paths of the models built by `VisionTransformer` (which follow
timm's layout: fused `qkv`, Conv2D patch projection, a position table that
includes the class/distillation rows):

- `convert_timm_state_dict`: timm `VisionTransformer`, `VisionTransformerDistilled`
  (DeiT) and the R50 hybrid (`vit_base_r50_s16_224`).
- `convert_hf_state_dict`: Hugging Face `ViTModel`, `ViTForImageClassification`,
  `DeiTModel`, `DeiTForImageClassificationWithTeacher`.
- `convert_google_npz`: the original ViT and R50+ViT `.npz` checkpoints.

`load_checkpoint(model, path)` reads a file, detects its format, converts it,
resamples the position table (and the patch projection, for another patch
size) to the model's grid as timm's `checkpoint_filter_fn` does, checks every
key and shape, and assigns the weights.
"""

import logging
import os
import pickle
import re
import zipfile

import numpy as np

logger = logging.getLogger(__name__)

CHECKPOINT_EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin", ".npz")
_FORMATS = ("auto", "timm", "hf", "npz")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the model."""


# --------------------------------------------------------------------------- #
# Reading files
# --------------------------------------------------------------------------- #


def is_checkpoint_path(path):
    """Whether `path` names a checkpoint this module converts (by extension)."""
    return os.fspath(path).lower().endswith(CHECKPOINT_EXTENSIONS)


def _read_bfloat16_safetensors(path):
    # NumPy has no bfloat16: take the 16 high bits of a float32 for BF16
    # tensors. The format: an 8-byte little-endian header length, a JSON header
    # {name: {dtype, shape, data_offsets}}, then the raw bytes.
    import json

    with open(path, "rb") as f:
        length = int(np.frombuffer(f.read(8), "<u8")[0])
        header = json.loads(f.read(length))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "BF16":
            array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            dtype = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}[info["dtype"]]
            array = np.frombuffer(raw, dtype).astype(np.float32 if info["dtype"] == "F16" else dtype)
        out[name] = array.reshape(info["shape"])
    return out


def read_safetensors(path):
    """`{name: np.ndarray}` of a `.safetensors` file (no PyTorch needed); bfloat16 becomes float32."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        arrays = load_file(os.fspath(path))
        # Half precision (bfloat16 where ml_dtypes is installed) is widened for the arithmetic here.
        return {k: v.astype(np.float32) if v.dtype.name in ("bfloat16", "float16") else v for k, v in arrays.items()}
    except TypeError as error:
        if "bfloat16" not in str(error):
            raise CheckpointError(f"Not a readable safetensors checkpoint: {os.fspath(path)!r} ({error})") from error
        return _read_bfloat16_safetensors(os.fspath(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"Not a readable safetensors checkpoint (truncated or another format): {os.fspath(path)!r} ({error})"
        ) from error


def read_torch_state_dict(path):
    """`{name: np.ndarray}` of a PyTorch `.pth`/`.bin` file, loaded with `weights_only=True`.

    A file whose unpickling needs code execution (anything but tensors and
    plain containers) is refused. A `{"model": ...}` or `{"state_dict": ...}`
    wrapper is unwrapped and a `module.` prefix (DataParallel) is dropped.
    """
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "Reading PyTorch `.pth`/`.bin` checkpoints needs PyTorch (`pip install torch`). "
            "Alternatively save the state dict as `.safetensors`, which needs no PyTorch."
        ) from error
    path = os.fspath(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"Refused to load {path!r}: it is a pickle that needs code execution to unpickle, "
            "and only plain tensors and containers are accepted (torch.load(weights_only=True)). "
            f"Save its state dict alone (`torch.save(model.state_dict(), ...)`). ({str(error).splitlines()[0]})"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"Not a readable PyTorch checkpoint (truncated or another format): {path!r} ({error})"
        ) from error
    for wrapper in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path!r} holds a {type(obj).__name__}, not a state dict of tensors")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        if key.startswith("module."):
            key = key[len("module.") :]
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        out[key] = value.numpy()
    return out


def read_npz(path):
    """`{name: np.ndarray}` of a `.npz` file, loaded with `allow_pickle=False`."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise CheckpointError(
                f"Refused to load {path!r}: it holds pickled objects (needs allow_pickle=True, "
                "which can run code); only numeric arrays are accepted."
            ) from error
        raise CheckpointError(f"Not a readable .npz checkpoint: {path!r} ({error})") from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"Not a readable .npz checkpoint (truncated or another format): {path!r} ({error})"
        ) from error


def read_checkpoint(path):
    """Reads a checkpoint file into `{name: np.ndarray}`, choosing the reader by extension."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path!r}")
    lower = path.lower()
    if lower.endswith(".safetensors"):
        return read_safetensors(path)
    if lower.endswith((".pth", ".pt", ".bin")):
        return read_torch_state_dict(path)
    if lower.endswith(".npz"):
        return read_npz(path)
    raise CheckpointError(
        f"Unknown checkpoint extension; expected one of {CHECKPOINT_EXTENSIONS}. Received: {path!r}"
    )


def detect_format(state_dict):
    """"timm", "hf" or "npz" from the key names of a checkpoint."""
    keys = list(state_dict)
    if any(k.endswith("embedding/kernel") or k.startswith("Transformer/") for k in keys):
        return "npz"
    if any("embeddings.patch_embeddings." in k for k in keys):
        return "hf"
    if any(k.startswith("patch_embed.") for k in keys) or "pos_embed" in keys:
        return "timm"
    sample = ", ".join(repr(k) for k in keys[:5])
    raise CheckpointError(
        "Unrecognised checkpoint layout: no timm (`patch_embed.*`), Hugging Face "
        f"(`*embeddings.patch_embeddings.*`) or ViT .npz (`embedding/kernel`) keys. First keys: {sample}"
    )


# --------------------------------------------------------------------------- #
# Layout helpers
# --------------------------------------------------------------------------- #


def _dense(weight):
    # torch Linear (out, in) -> Keras Dense (in, out).
    return np.ascontiguousarray(weight.T)


def _conv(weight):
    # torch Conv2d (out, in, kh, kw) -> Keras Conv2D (kh, kw, in, out).
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _norm(prefix, param, value):
    """LayerNorm/GroupNorm weight → gamma, bias → beta."""
    return f"{prefix}/{'gamma' if param == 'weight' else 'beta'}", value


_TIMM_BLOCK = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attn.qkv": "attention/qkv",
    "attn.proj": "attention/proj",
    "mlp.fc1": "mlp/fc1",
    "mlp.fc2": "mlp/fc2",
}
_TIMM_TOP = {
    "cls_token": "patch_embed/class_token",
    "dist_token": "patch_embed/distillation_token",
    "pos_embed": "patch_embed/position_embedding",
}


def _timm_key(key, value):
    """One timm key → `(keras_path, array)`, or None for a key with no counterpart."""
    if key in _TIMM_TOP:
        return _TIMM_TOP[key], value
    if key.startswith("patch_embed.backbone."):
        # ResNetV2 stem of the hybrid: `stages.0.blocks.0.conv1.weight` → `stages_0_blocks_0_conv1/kernel`.
        module, param = key[len("patch_embed.backbone.") :].rsplit(".", 1)
        name = module.replace(".", "_")
        if value.ndim == 4:
            return f"{name}/kernel", _conv(value)
        return _norm(name, param, value)
    match = re.fullmatch(r"patch_embed\.proj\.(weight|bias)", key)
    if match:
        return ("patch_embed/projection/kernel", _conv(value)) if match[1] == "weight" else (
            "patch_embed/projection/bias", value)
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", key)
    if match and match[2] in _TIMM_BLOCK:
        path = f"block_{match[1]}/{_TIMM_BLOCK[match[2]]}"
        if match[2].startswith("norm"):
            return _norm(path, match[3], value)
        return (f"{path}/kernel", _dense(value)) if match[3] == "weight" else (f"{path}/bias", value)
    match = re.fullmatch(r"(norm|fc_norm)\.(weight|bias)", key)
    if match:
        return _norm(match[1], match[2], value)
    match = re.fullmatch(r"(head|head_dist)\.(weight|bias)", key)
    if match:
        return (f"{match[1]}/kernel", _dense(value)) if match[2] == "weight" else (f"{match[1]}/bias", value)
    return None


# --------------------------------------------------------------------------- #
# One converter per source format
# --------------------------------------------------------------------------- #


def convert_timm_state_dict(state_dict):
    """timm ViT / DeiT / R50-hybrid state dict → `{keras_path: (source_key, array)}`.

    Keys with no counterpart in our models are returned under `None` paths so
    that the caller can report them as unexpected.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("pre_logits."):  # removed representation layer (as timm ignores it)
            continue
        mapped = _timm_key(key, np.asarray(value))
        out[mapped[0] if mapped else f"?{key}"] = (key, None if mapped is None else mapped[1])
    return out


# Block sub-modules, in the layout of the saved files (`encoder.layer.N.…`) and
# of transformers ≥ 5 in memory (`layers.N.…`).
_HF_LAYER = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HF_QKV = {"query": "query", "key": "key", "value": "value", "q_proj": "query", "k_proj": "key", "v_proj": "value"}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HF_HEADS = {"classifier": "head", "cls_classifier": "head", "distillation_classifier": "head_dist"}
# Parts of Hugging Face models that our models do not have: ViTModel's pooler
# (Dense + tanh on the class token, not used by the classification heads) and
# the masked-image-modelling mask token.
_HF_IGNORED = ("pooler.", "embeddings.mask_token")


def convert_hf_state_dict(state_dict):
    """Hugging Face ViT/DeiT state dict → `{keras_path: (source_key, array)}`.

    `query`, `key` and `value` are concatenated into the fused `qkv` kernel
    in that order, which is the [q|k|v] × heads layout of our attention.
    """
    renamed = {}
    qkv = {}
    for key, value in state_dict.items():
        base = re.sub(r"^(vit|deit)\.", "", key)
        if base.startswith(_HF_IGNORED):
            continue
        if base in _HF_TOP:
            renamed[_HF_TOP[base]] = (key, value)
            continue
        match = re.fullmatch(
            r"(?:encoder\.layer|layers)\.(\d+)\.attention\.(?:attention\.)?(query|key|value|[qkv]_proj)\.(weight|bias)",
            base)
        if match:
            qkv.setdefault((match[1], match[3]), {})[_HF_QKV[match[2]]] = (key, value)
            continue
        match = re.fullmatch(r"(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)", base)
        if match and match[2] in _HF_LAYER:
            renamed[f"blocks.{match[1]}.{_HF_LAYER[match[2]]}.{match[3]}"] = (key, value)
            continue
        match = re.fullmatch(r"(classifier|cls_classifier|distillation_classifier)\.(weight|bias)", base)
        if match:
            renamed[f"{_HF_HEADS[match[1]]}.{match[2]}"] = (key, value)
            continue
        renamed[f"?{key}"] = (key, None)
    for (layer, param), parts in qkv.items():
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            raise CheckpointError(
                f"Hugging Face checkpoint has no `{missing[0]}` {param} in layer {layer} "
                f"(found {sorted(parts)})"
            )
        arrays = [np.asarray(parts[p][1]) for p in ("query", "key", "value")]
        renamed[f"blocks.{layer}.attn.qkv.{param}"] = (parts["query"][0], np.concatenate(arrays, axis=0))
    out = {}
    for timm_key, (key, value) in renamed.items():
        mapped = None if value is None else _timm_key(timm_key, np.asarray(value))
        out[mapped[0] if mapped else f"?{key}"] = (key, None if mapped is None else mapped[1])
    return out


def convert_google_npz(arrays):
    """Original ViT / R50+ViT `.npz` (Flax names) → `{keras_path: (source_key, array)}`.

    Flax kernels are already in Keras' (in, out) and (kh, kw, in, out) layouts;
    the per-head attention kernels `(D, heads, head_dim)` are flattened and
    concatenated into the fused `qkv` kernel.
    """
    prefix = ""
    for candidate in ("opt/target/", "params/"):
        if f"{candidate}embedding/kernel" in arrays:
            prefix = candidate
    w = {k[len(prefix) :]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}
    out = {}
    used = set()

    def take(src, path, transform=lambda a: a):
        used.add(src)
        out[path] = (prefix + src, transform(w[src]))

    simple = {
        "embedding/kernel": "patch_embed/projection/kernel",
        "embedding/bias": "patch_embed/projection/bias",
        "cls": "patch_embed/class_token",
        "Transformer/posembed_input/pos_embedding": "patch_embed/position_embedding",
        "Transformer/encoder_norm/scale": "norm/gamma",
        "Transformer/encoder_norm/bias": "norm/beta",
        "head/kernel": "head/kernel",
        "head/bias": "head/bias",
        "conv_root/kernel": "stem_conv/kernel",
        "gn_root/scale": "stem_norm/gamma",
        "gn_root/bias": "stem_norm/beta",
    }
    for src, path in simple.items():
        if src in w:
            take(src, path)
    for src in list(w):
        match = re.fullmatch(r"block(\d+)/unit(\d+)/(conv|gn)(1|2|3|_proj)/(kernel|scale|bias)", src)
        if match:
            stage, unit = int(match[1]) - 1, int(match[2]) - 1
            layer = ("conv" if match[3] == "conv" else "norm") + match[4]
            layer = layer.replace("conv_proj", "downsample_conv").replace("norm_proj", "downsample_norm")
            param = {"kernel": "kernel", "scale": "gamma", "bias": "beta"}[match[5]]
            take(src, f"stages_{stage}_blocks_{unit}_{layer}/{param}")
    blocks = sorted({int(m[1]) for k in w for m in [re.match(r"Transformer/encoderblock_(\d+)/", k)] if m})
    for i in blocks:
        bp = f"Transformer/encoderblock_{i}/"
        mha = bp + "MultiHeadDotProductAttention_1/"
        for src_ln, ln in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            for src_p, p in (("scale", "gamma"), ("bias", "beta")):
                if f"{bp}{src_ln}/{src_p}" in w:
                    take(f"{bp}{src_ln}/{src_p}", f"block_{i}/{ln}/{p}")
        names = [f"{mha}{n}/kernel" for n in ("query", "key", "value")]
        if all(n in w for n in names):
            used.update(names)
            out[f"block_{i}/attention/qkv/kernel"] = (
                prefix + names[0], np.concatenate([w[n].reshape(w[n].shape[0], -1) for n in names], axis=1))
        names = [f"{mha}{n}/bias" for n in ("query", "key", "value")]
        if all(n in w for n in names):
            used.update(names)
            out[f"block_{i}/attention/qkv/bias"] = (prefix + names[0], np.concatenate([w[n].reshape(-1) for n in names]))
        if f"{mha}out/kernel" in w:
            take(f"{mha}out/kernel", f"block_{i}/attention/proj/kernel", lambda a: a.reshape(-1, a.shape[-1]))
        if f"{mha}out/bias" in w:
            take(f"{mha}out/bias", f"block_{i}/attention/proj/bias")
        for r in (0, 1):
            for src_p, p in (("kernel", "kernel"), ("bias", "bias")):
                if f"{bp}MlpBlock_3/Dense_{r}/{src_p}" in w:
                    take(f"{bp}MlpBlock_3/Dense_{r}/{src_p}", f"block_{i}/mlp/fc{r + 1}/{p}")
    for src in w:
        # The representation ("pre_logits") layer of the in21k checkpoints is not
        # part of the model (timm drops it too).
        if src not in used and not src.startswith("pre_logits/"):
            out[f"?{prefix}{src}"] = (prefix + src, None)
    return out


_CONVERTERS = {"timm": convert_timm_state_dict, "hf": convert_hf_state_dict, "npz": convert_google_npz}


# --------------------------------------------------------------------------- #
# Resampling (position table and patch projection), as timm does it
# --------------------------------------------------------------------------- #


def _cubic(x, a):
    x = np.abs(x)
    return np.where(
        x < 1.0,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0),
    )


def _triangle(x):
    return np.maximum(0.0, 1.0 - np.abs(x))


def interpolation_matrix(in_size, out_size, interpolation="bicubic", antialias=True):
    """`(out_size, in_size)` matrix of a 1-D resize, as PyTorch's `F.interpolate` computes it.

    `align_corners=False`. With `antialias=True` it is PyTorch's (and PIL's)
    separable filter whose support widens by the scale factor when
    downsampling, with the cubic kernel's a = -0.5 and the weights of each
    output normalised to sum to one. With `antialias=False` it is the plain
    kernel: a = -0.75 for bicubic, indices clamped at the borders.

    Args:
        in_size: int, input length.
        out_size: int, output length.
        interpolation: "bicubic" or "bilinear".
        antialias: bool.

    Returns:
        float64 array `(out_size, in_size)`; `resized = M @ x`.
    """
    if interpolation not in ("bicubic", "bilinear"):
        raise ValueError(f"`interpolation` must be 'bicubic' or 'bilinear'. Received: interpolation={interpolation!r}")
    scale = in_size / out_size
    mat = np.zeros((out_size, in_size))
    if antialias:
        interp_size = 4 if interpolation == "bicubic" else 2
        support = interp_size * 0.5 * scale if scale >= 1.0 else interp_size * 0.5
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(out_size):
            center = scale * (i + 0.5)
            xmin = max(int(center - support + 0.5), 0)
            xmax = min(int(center + support + 0.5), in_size)
            j = np.arange(xmin, xmax)
            arg = (j - center + 0.5) * invscale
            w = _cubic(arg, -0.5) if interpolation == "bicubic" else _triangle(arg)
            total = w.sum()
            mat[i, xmin:xmax] = w / total if total != 0 else w
        return mat
    for i in range(out_size):
        src = scale * (i + 0.5) - 0.5
        if interpolation == "bilinear":
            src = max(src, 0.0)
            x0 = int(np.floor(src))
            lam = src - x0
            mat[i, min(x0, in_size - 1)] += 1.0 - lam
            mat[i, min(x0 + 1, in_size - 1)] += lam
        else:
            x0 = int(np.floor(src))
            t = src - x0
            for k, dist in zip(range(-1, 3), (1.0 + t, t, 1.0 - t, 2.0 - t)):
                mat[i, min(max(x0 + k, 0), in_size - 1)] += _cubic(dist, -0.75)
    return mat


def resize_2d(array, new_size, interpolation="bicubic", antialias=True):
    """Resizes axes 0 and 1 of `array` `(H, W, ...)` to `new_size`, as `F.interpolate` does."""
    mh = interpolation_matrix(array.shape[0], new_size[0], interpolation, antialias)
    mw = interpolation_matrix(array.shape[1], new_size[1], interpolation, antialias)
    return np.einsum("ih,jw,hw...->ij...", mh, mw, array.astype(np.float64))


def resample_abs_pos_embed(posemb, new_size, old_size=None, num_prefix_tokens=1, interpolation="bicubic",
                           antialias=True):
    """Resamples a `(1, P + H*W, D)` position table to a new grid, in NumPy.

    The P prefix rows (class, distillation) are kept apart and unchanged; the
    grid rows are resized as an image with `F.interpolate`'s arithmetic
    (`align_corners=False`, antialiased), matching timm's
    `resample_abs_pos_embed`. Returns the input unchanged if the grids match.

    Args:
        posemb: array `(1, P + H*W, D)`.
        new_size: `(new_H, new_W)`.
        old_size: `(H, W)`; inferred as square when None.
        num_prefix_tokens: int P.
        interpolation: "bicubic" or "bilinear".
        antialias: bool.

    Returns:
        array `(1, P + new_H*new_W, D)` of the input's dtype.
    """
    posemb = np.asarray(posemb)
    n = posemb.shape[1] - num_prefix_tokens
    if old_size is None:
        side = int(round(np.sqrt(n)))
        if side * side != n:
            raise CheckpointError(
                f"Cannot infer a square grid from {n} position rows (table shape {posemb.shape}, "
                f"{num_prefix_tokens} prefix tokens)"
            )
        old_size = (side, side)
    old_size, new_size = tuple(int(s) for s in old_size), tuple(int(s) for s in new_size)
    if old_size == new_size:
        return posemb
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[0, num_prefix_tokens:]
    grid = grid.reshape(old_size[0], old_size[1], -1)
    grid = resize_2d(grid, new_size, interpolation, antialias).reshape(1, -1, posemb.shape[-1])
    return np.concatenate([prefix, grid.astype(posemb.dtype)], axis=1)


def resample_patch_embed(kernel, new_size, interpolation="bicubic", antialias=True):
    """Resamples a Keras patch-projection kernel `(P, P, C, D)` to another patch size.

    FlexiViT's pseudo-inverse resize (Beyer et al. 2023, Eq. 5), as timm's
    `resample_patch_embed`: with B the matrix that resizes a patch, the new
    kernel is pinv(B)ᵀ applied to the old one, so that ⟨x, w⟩ = ⟨Bx, ŵ⟩.

    Args:
        kernel: array `(P_h, P_w, C, D)`.
        new_size: `(new_P_h, new_P_w)`.

    Returns:
        array `(new_P_h, new_P_w, C, D)`.
    """
    kernel = np.asarray(kernel)
    old_size = kernel.shape[:2]
    if tuple(old_size) == tuple(new_size):
        return kernel
    mh = interpolation_matrix(old_size[0], new_size[0], interpolation, antialias)
    mw = interpolation_matrix(old_size[1], new_size[1], interpolation, antialias)
    resize = np.kron(mh, mw)  # (new_h*new_w, old_h*old_w) on row-major flattened patches.
    pinv = np.linalg.pinv(resize)  # (old, new)
    flat = kernel.reshape(old_size[0] * old_size[1], -1).astype(np.float64)
    out = pinv.T @ flat
    return out.reshape(new_size[0], new_size[1], *kernel.shape[2:]).astype(kernel.dtype)


# --------------------------------------------------------------------------- #
# Assigning converted weights to a model
# --------------------------------------------------------------------------- #


def _shape(a):
    return tuple(int(s) for s in a.shape)


def _find_patch_encoder(model):
    from keras_vit.layers import PatchEncoder

    for layer in model.layers:
        if isinstance(layer, PatchEncoder):
            return layer
    return None


def checkpoint_classes(state_dict, format="auto"):
    """Number of classes of the checkpoint's head, or None when it has none."""
    if format == "auto":
        format = detect_format(state_dict)
    converted = _CONVERTERS[format](state_dict)
    bias = converted.get("head/bias")
    return None if bias is None or bias[1] is None else int(bias[1].shape[-1])


def convert_state_dict(model, state_dict, format="auto", skip_mismatched_head=True):
    """Converts a checkpoint dict to `{variable_path: array}` fitted and checked against `model`.

    Position tables are resampled to the model's patch grid and patch
    projections to its patch size. When the model has no head
    (`include_top=False`) the checkpoint's heads are dropped; when its head has
    another number of classes and `skip_mismatched_head`, the head keeps its
    fresh initialisation (fine-tuning). Any other missing, unexpected or
    mis-shaped key raises `CheckpointError` naming the first ones and both shapes.

    Returns:
        `{variable.path: np.ndarray}` covering every weight of `model`.
    """
    if format not in _FORMATS:
        raise ValueError(f"`format` must be one of {_FORMATS}. Received: format={format!r}")
    if format == "auto":
        format = detect_format(state_dict)
    converted = _CONVERTERS[format](state_dict)
    variables = {v.path: v for v in model.weights}
    encoder = _find_patch_encoder(model)
    has_head = "head/kernel" in variables
    unexpected, mismatched, result, seen = [], [], {}, set()
    for path, (source, array) in converted.items():
        if array is None or path.startswith("?"):
            unexpected.append(f"{source!r}")
            continue
        if not has_head and path.split("/")[0] in ("head", "head_dist"):
            continue
        if path not in variables:
            unexpected.append(f"{source!r} (shape {_shape(array)}, as Keras weight {path!r})")
            continue
        seen.add(path)
        target = _shape(variables[path])
        if _shape(array) != target and encoder is not None:
            array = _fit_embedding(path, array, target, encoder)
        if _shape(array) != target:
            head_classes_only = (
                path.split("/")[0] in ("head", "head_dist")
                and array.ndim == len(target)
                and _shape(array)[:-1] == target[:-1]
            )
            if head_classes_only and skip_mismatched_head:
                logger.warning(
                    "Keeping the new %s: the checkpoint has %d classes, the model %d.",
                    path, array.shape[-1], target[-1],
                )
                result[path] = None
                continue
            mismatched.append(
                f"{source!r}: checkpoint shape {_shape(state_dict[source]) if source in state_dict else _shape(array)}"
                f" (as Keras layout {_shape(array)}) vs model weight {path!r} shape {target}"
            )
            continue
        result[path] = array
    missing = [f"{p!r} (shape {_shape(v)})" for p, v in variables.items() if p not in result and p not in seen]
    if unexpected or missing or mismatched:
        parts = []
        for label, items in (("mis-shaped", mismatched), ("missing from the checkpoint", missing),
                             ("unexpected in the checkpoint", unexpected)):
            if items:
                more = f" and {len(items) - 3} more" if len(items) > 3 else ""
                parts.append(f"{len(items)} {label}: " + "; ".join(items[:3]) + more)
        raise CheckpointError(
            f"The {format} checkpoint does not fit model {model.name!r} (another architecture or size?). "
            + " | ".join(parts)
        )
    return {p: a for p, a in result.items() if a is not None}


def _fit_embedding(path, array, target, encoder):
    """Resamples the position table or patch kernel to the model's grid; other arrays pass through."""
    if path == "patch_embed/position_embedding" and array.ndim == 3 and array.shape[-1] == target[-1]:
        prefix = encoder.num_embedded_prefix_tokens
        n = array.shape[1] - prefix
        side = int(round(np.sqrt(max(n, 0))))
        if n > 0 and side * side == n:
            logger.info("Resampling the position table from %dx%d to %s.", side, side, encoder.grid_size)
            return resample_abs_pos_embed(array, encoder.grid_size, (side, side), prefix)
    if path == "patch_embed/projection/kernel" and array.ndim == 4 and array.shape[2:] == target[2:]:
        logger.info("Resampling the patch projection from %s to %s.", array.shape[:2], target[:2])
        return resample_patch_embed(array, target[:2])
    return array


def load_checkpoint(model, path, format="auto", skip_mismatched_head=True):
    """Loads a timm / Hugging Face / Google ViT checkpoint file into `model`.

    Args:
        model: a model built by `VisionTransformer` (or a registered factory)
            whose architecture matches the checkpoint's.
        path: `.safetensors`, `.pth`/`.pt`/`.bin` (PyTorch state dict, read
            with `weights_only=True`) or `.npz`.
        format: "auto" (from the key names), "timm", "hf" or "npz".
        skip_mismatched_head: keep a freshly initialised head when the
            checkpoint's head has another number of classes.

    Returns:
        `model`, with its weights set.
    """
    weights = convert_state_dict(model, read_checkpoint(path), format, skip_mismatched_head)
    for variable in model.weights:
        if variable.path in weights:
            variable.assign(weights[variable.path].astype(variable.dtype))
    return model
