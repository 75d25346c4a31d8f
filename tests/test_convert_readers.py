"""`keras_vit.convert.readers`: safetensors (bfloat16 too), PyTorch state dicts, .npz; bad and unsafe files."""

import json
import os
import pickle
import sys

import numpy as np
import pytest

from keras_vit import convert
from keras_vit.convert import readers

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture(name):
    with np.load(os.path.join(FIXTURES, f"{name}.npz"), allow_pickle=False) as data:
        return {k[len("weights/") :]: data[k] for k in data.files if k.startswith("weights/")}, None


def write_safetensors(weights, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path))
    return str(path)


def write_pth(weights, path):
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}, str(path))
    return str(path)


def test_checkpoints_read_alike_from_every_format(tmp_path):
    weights, _ = fixture("timm_vit_token")
    np.savez(str(tmp_path / "model.npz"), **weights)
    for path in (
        write_safetensors(weights, tmp_path / "model.safetensors"),
        write_pth(weights, tmp_path / "model.pth"),
        str(tmp_path / "model.npz"),
    ):
        arrays = convert.read_checkpoint(path)
        assert sorted(arrays) == sorted(weights)
        for key, value in weights.items():
            np.testing.assert_array_equal(arrays[key], value)


def test_truncated_and_foreign_files_are_clear_errors(tmp_path):
    weights, _ = fixture("timm_vit_token")
    path = write_safetensors(weights, tmp_path / "model.safetensors")
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(convert.CheckpointError, match="Not a readable safetensors checkpoint"):
        convert.read_checkpoint(truncated)
    text = tmp_path / "notes.safetensors"
    text.write_text("these are not weights")
    with pytest.raises(convert.CheckpointError, match="Not a readable safetensors checkpoint"):
        convert.read_checkpoint(text)
    bad_npz = tmp_path / "model.npz"
    bad_npz.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(convert.CheckpointError, match="Not a readable .npz checkpoint"):
        convert.read_checkpoint(bad_npz)
    (tmp_path / "model.ckpt").write_text("x")
    with pytest.raises(ValueError, match=r"Unknown checkpoint extension.*model.ckpt"):
        convert.read_checkpoint(tmp_path / "model.ckpt")
    with pytest.raises(FileNotFoundError):
        convert.read_checkpoint(tmp_path / "absent.safetensors")


def test_bfloat16_safetensors_read_as_float32(tmp_path):
    # A file written byte by byte: header length, JSON header, then a BF16 and an F32 tensor.
    values = np.array([[1.0, -2.5], [0.15625, 3.0e5]], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    f32 = np.arange(3, dtype="<f4").tobytes()
    header = json.dumps(
        {
            "w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [3], "data_offsets": [8, 20]},
        }
    ).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(np.array([len(header)], "<u8").tobytes() + header + bf16 + f32)
    arrays = convert.read_checkpoint(path)
    assert arrays["w"].dtype == np.float32
    np.testing.assert_array_equal(arrays["w"], [[1.0, -2.5], [0.15625, 299008.0]])  # 3e5 rounded to bf16
    np.testing.assert_array_equal(arrays["b"], [0.0, 1.0, 2.0])
    # The reader used where NumPy has no bfloat16 type registered (no ml_dtypes imported).
    fallback = readers._read_bfloat16_safetensors(str(path))
    np.testing.assert_array_equal(fallback["w"], arrays["w"])
    np.testing.assert_array_equal(fallback["b"], arrays["b"])


def test_truncated_pth_is_a_clear_error(tmp_path):
    weights, _ = fixture("timm_vit_token")
    path = write_pth(weights, tmp_path / "model.pth")
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(convert.CheckpointError, match="Not a readable PyTorch checkpoint"):
        convert.read_checkpoint(truncated)


class _Payload:
    """Unpickling this object would call `os.system`: a checkpoint that runs code."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickle_needing_code_execution_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "evil.pth"
    torch.save({"pos_embed": torch.zeros(1, 17, 32), "payload": _Payload()}, str(path))
    with pytest.raises(convert.CheckpointError, match="Refused to load .*needs code execution"):
        convert.read_checkpoint(path)
    plain = tmp_path / "evil.bin"
    plain.write_bytes(pickle.dumps({"payload": _Payload()}))
    with pytest.raises(convert.CheckpointError, match="Refused to load|Not a readable PyTorch checkpoint"):
        convert.read_checkpoint(plain)
    obj_npz = tmp_path / "objects.npz"
    np.savez(str(obj_npz), payload=np.array([_Payload()], dtype=object))
    with pytest.raises(convert.CheckpointError, match="Refused to load .*pickled objects"):
        convert.read_checkpoint(obj_npz)


def test_pth_without_torch_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"needs PyTorch \(`pip install torch`\)"):
        convert.read_torch_state_dict(tmp_path / "model.pth")


def test_pth_with_a_torch_older_than_2_6_is_refused(tmp_path, monkeypatch):
    """Before 2.6, `torch.load(weights_only=True)` could still run code (CVE-2025-32434)."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(2)}, path)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(ImportError, match=r"needs torch>=2\.6\. Received: torch==2\.5\.1\+cpu"):
        convert.read_torch_state_dict(path)
    monkeypatch.setattr(torch, "__version__", "2.6.0")
    np.testing.assert_array_equal(convert.read_torch_state_dict(path)["w"], np.zeros(2))
