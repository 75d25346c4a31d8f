"""The worked examples in examples/: keras-io format, notebook conversion, and each one's quick mode run as a script.

The quick modes read CIFAR-10, MNIST and Multi30k from `KERAS_VIT_DATA` (the `shared_data` fixture: a skip
without the data, a failure under CI=true). Each example checks its own numbers against NumPy as it runs
(attention, positional encodings, z0, the soft split), so a wrong number is a non-zero exit here.
"""

import ast
import os
import re
import subprocess
import sys

import pytest

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

# example → the figures its quick mode must write, and lines its output must contain.
EXAMPLES = {
    "attention_from_scratch": (
        ["attention_heads_random.png", "cross_attention_multi30k.png"],
        [r"max \|NumPy - layer\| outputs: ", r"4 heads: max \|NumPy - layer\| attention weights", r"^output: "],
    ),
    "positional_information": (
        ["positional_progression.png", "positional_similarity.png"],
        [r"position 2 of 3: 0\.6667   position 4 of 6: 0\.6667   equal: True", r"sinusoids: similarity varies"],
    ),
    "transformer_translation": (["transformer_curves.png"], [r"BLEU on 50 test_2016_flickr sentences, beam 4: "]),
    "vit_step_by_step": (
        [
            "vit_patches.png",
            "vit_fig7_filters.png",
            "vit_fig7_position_similarity.png",
            "vit_fig7_attention_distance.png",
            "vit_training_curve.png",
        ],
        [r"z0 = \[x_class; x_p\^1 E; \.\.\.; x_p\^N E\] \+ E_pos: \(65, 64\)", r"mean attention distance"],
    ),
    "small_data_experiments": (
        ["small_data_claims.png"],
        [r"claim 1, patch 4 beats patch 8: ", r"claim 3b, the gap closes"],
    ),
    "cifar10_in_an_hour": (
        ["cifar10_in_an_hour.png"],
        [
            r"img/s\), [\d.]+ s per test-set evaluation: \d+ epoch\(s\) planned",
            r"goal \(0\.2 min\): [\d.]+ on 200 test images",
        ],
    ),
    "looking_inside": (
        [
            "inside_heads_cifar10.png",
            "inside_heads_mnist.png",
            "inside_maps_cifar10.png",
            "inside_maps_mnist.png",
            "inside_deletion_cifar10.png",
        ],
        [r"LeGrad: p\(true class\) drops by", r"random: p\(true class\) drops by"],
    ),
    "vit_variants": (
        [
            "variants_swin_windows.png",
            "variants_t2t_soft_split.png",
            "variants_deepvit_similarity.png",
            "variants_mvitv2_pooling.png",
        ],
        [r"ViT student, distilled: ", r"max \|layer - NumPy\| = ", r"64× fewer than unpooled"],
    ),
}
HEADER_FIELDS = ("Title", "Author", "Date created", "Last modified", "Description", "Accelerator")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _path(name):
    return os.path.join(EXAMPLES_DIR, f"{name}.py")


def test_every_example_is_listed():
    found = sorted(f[:-3] for f in os.listdir(EXAMPLES_DIR) if f.endswith(".py"))
    assert found == sorted(EXAMPLES)


def _blocks(source):
    """The top-level string statements (keras-io markdown blocks) of a script, in order."""
    tree = ast.parse(source)
    return [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    ]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_keras_io_format(name):
    with open(_path(name), encoding="utf-8") as f:
        source = f.read()
    assert source.startswith('"""\nTitle: '), "a keras-io example opens with its header block"
    header, *markdown = _blocks(source)
    keys = [line.split(":", 1)[0] for line in header.strip().splitlines()]
    assert keys == list(HEADER_FIELDS)
    assert len(markdown) >= 4 and any(block.lstrip().startswith("## ") for block in markdown)
    # Every figure the text shows is one the example writes.
    for figure in re.findall(r"\]\(figures/([\w.]+\.png)\)", source):
        assert figure in EXAMPLES[name][0], f"{name} shows {figure} but its quick mode is not checked for it"
    # No number left to fill in.
    assert "RESULTS" not in source and "not measured" not in source


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_converts_to_a_notebook(name):
    """jupytext turns the script into a notebook: markdown cells from the blocks, code cells between them."""
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    with open(_path(name), encoding="utf-8") as f:
        lines = f.read().splitlines()
    # The keras-io convention in jupytext's percent format: each top-level """ block is a markdown cell.
    percent, inside = [], False
    for line in lines:
        if line == '"""':
            inside = not inside
            percent.append("# %% [markdown]" if inside else "# %%")
        elif inside:
            percent.append(f"# {line}" if line else "#")
        else:
            percent.append(line)
    assert not inside, "an unclosed markdown block"
    notebook = jupytext.reads("\n".join(percent), fmt="py:percent")
    nbformat.validate(notebook)
    kinds = [cell.cell_type for cell in notebook.cells if cell.source.strip()]
    assert kinds.count("markdown") == len(_blocks("\n".join(lines)))
    assert kinds.count("code") >= 3
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    ast.parse(code)  # the code cells alone are a valid program


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_quick_mode_runs_and_writes_its_figures(name, shared_data, tmp_path):
    figures, expected_lines = EXAMPLES[name]
    env = {**os.environ, "KERAS_VIT_DATA": shared_data, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, _path(name), "--quick", "--figures-dir", str(tmp_path / "figures")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=1200,
    )
    assert result.returncode == 0, f"{name} --quick exited {result.returncode}:\n{result.stderr[-3000:]}"
    for pattern in expected_lines:
        assert re.search(pattern, result.stdout, re.MULTILINE), (
            f"{name}: no line matching {pattern!r}:\n{result.stdout}"
        )
    for figure in figures:
        path = tmp_path / "figures" / figure
        assert path.is_file(), f"{name} did not write {figure}"
        with open(path, "rb") as f:
            head = f.read(8)
        assert head == PNG_MAGIC and path.stat().st_size > 5000, f"{figure} is not a PNG with content"
    assert not (tmp_path / "examples").exists()  # --figures-dir was honoured


def test_missing_data_is_a_clear_error(tmp_path):
    env = {**os.environ, "KERAS_VIT_DATA": str(tmp_path / "nowhere"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, _path("vit_variants"), "--quick", "--figures-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode != 0
    assert "CIFAR-10 not found at" in result.stderr and "KERAS_VIT_DATA" in result.stderr
