"""Reading checkpoint files into `{name: np.ndarray}` without running code from them.

safetensors files are read with the `safetensors` NumPy API (bfloat16
widened to float32, also where NumPy has no bfloat16 type); PyTorch
`.pth`/`.pt`/`.bin` files with `torch.load(weights_only=True)` (PyTorch is
optional and only needed for those), which refuses any pickle that needs
code execution; `.npz` files with `numpy.load(allow_pickle=False)`.
"""

import json
import os
import pickle
import zipfile

import numpy as np

from keras_vit.convert.engine import CheckpointError

CHECKPOINT_EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin", ".npz")


# The first PyTorch whose `torch.load(weights_only=True)` runs no code.
MIN_SAFE_TORCH = (2, 6)


def is_checkpoint_path(path):
    """Whether `path` names a checkpoint this module converts (by extension)."""
    return os.fspath(path).lower().endswith(CHECKPOINT_EXTENSIONS)


def _read_bfloat16_safetensors(path):
    # NumPy has no bfloat16: take the 16 high bits of a float32 for BF16
    # tensors. The format: an 8-byte little-endian header length, a JSON header
    # {name: {dtype, shape, data_offsets}}, then the raw bytes.
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
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    if (major, minor) < MIN_SAFE_TORCH:
        # Before 2.6, torch.load(weights_only=True) could still run code (CVE-2025-32434).
        raise ImportError(
            f"Reading `.pth`/`.bin` checkpoints safely needs torch>=2.6. Received: torch=={torch.__version__}. "
            "Upgrade PyTorch, or convert the file to `.safetensors`."
        )
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
    raise CheckpointError(f"Unknown checkpoint extension; expected one of {CHECKPOINT_EXTENSIONS}. Received: {path!r}")
