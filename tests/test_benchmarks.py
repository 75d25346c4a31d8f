"""Smoke test of the benchmark harness (benchmarks/vit_cpu.py): format, not speed."""

import importlib.util
import pathlib
import re

import keras

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "vit_cpu.py"
_spec = importlib.util.spec_from_file_location("vit_cpu", _PATH)
vit_cpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vit_cpu)

TINY = {
    "image_size": 32,
    "patch_size": 8,
    "depth": 1,
    "num_heads": 2,
    "hidden_dim": 16,
    "mlp_dim": 32,
    "batch_size": 2,
}
NUMBER = r"\d+\.\d{2}"
CELL = rf"{NUMBER} \({NUMBER}–{NUMBER}\)"


def test_benchmark_round_robin_and_table_format():
    backend = keras.backend.backend()
    runner = vit_cpu.InProcessRunner("ours", backend, TINY)
    assert runner.info["params"] > 0
    results = vit_cpu.benchmark([runner], repeats=3, iters=2)

    assert len(results) == 1
    (result,) = results
    assert (result["contestant"], result["backend"], result["error"]) == ("ours", backend, None)
    assert len(result["images_per_s"]) == 3
    assert all(v > 0 for v in result["images_per_s"])
    assert len(result["cpu_s_per_image"]) == 3
    assert result["info"]["compile"] == vit_cpu.COMPILE_MODES[backend]

    lines = vit_cpu.format_table(results).splitlines()
    assert lines[0] == vit_cpu.TABLE_HEADER
    assert lines[1] == "|---|---|---|---|---|---|"
    # One row for the backend that ran; contestants that did not run show a dash.
    assert len(lines) == 3
    assert re.fullmatch(rf"\| {backend} \| {CELL} \| — \| — \| — \| — \|", lines[2]), lines[2]

    report = vit_cpu.format_report(results, TINY, 3, 2, 1, "python benchmarks/vit_cpu.py", "0", "0")
    assert "\n".join(lines) in report
    params = f"{runner.info['params']:,}"
    assert re.search(rf"\| keras_vit \| {backend} \| .+ \| {params} \| \d+\.\d{{3}} \| keras ", report)


def test_ratio_cells_use_round_by_round_values():
    def fake(contestant, backend, values):
        return {
            "contestant": contestant,
            "backend": backend,
            "info": {},
            "error": None,
            "images_per_s": values,
            "cpu_s_per_image": [],
        }

    results = [
        fake("ours", "tensorflow", [8.0, 9.0, 10.0]),
        fake("keras_hub", "tensorflow", [4.0, 6.0, 5.0]),
        fake("timm", "torch", [8.0, 9.0, 10.0]),
        {**fake("ours", "jax", []), "error": "ImportError: no jax"},
    ]
    lines = vit_cpu.format_table(results).splitlines()
    # Medians 9 / 5 = 1.80; per-round ratios 2.00, 1.50, 2.00.
    assert lines[2] == (
        "| tensorflow | 9.00 (8.00–10.00) | 5.00 (4.00–6.00) | 9.00 (8.00–10.00) | "
        "1.80× (1.50–2.00) | 1.00× (1.00–1.00) |"
    )
    assert lines[3] == "| jax | failed | — | 9.00 (8.00–10.00) | — | — |"
