import numpy as np
from conftest import keras_vit_cli

from keras_vit.cli import main


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_translate_train_run_evaluate_in_fresh_processes(tmp_path):
    rng = np.random.default_rng(0)
    words = ["ein", "hund", "katze", "läuft", "schläft", "im", "park", "haus"]
    de = [" ".join(rng.choice(words, rng.integers(2, 6))) + "." for _ in range(120)]
    en = [s.replace("hund", "dog").replace("katze", "cat") for s in de]
    src, tgt = _write(tmp_path / "train.de", de), _write(tmp_path / "train.en", en)
    model = str(tmp_path / "de_en.keras")
    out = keras_vit_cli(
        "translate",
        "train",
        "--source",
        src,
        "--target",
        tgt,
        "--out",
        model,
        "--vocabulary-size",
        "60",
        "--num-layers",
        "1",
        "--hidden-dim",
        "16",
        "--num-heads",
        "2",
        "--mlp-dim",
        "32",
        "--epochs",
        "1",
        "--tokens-per-batch",
        "512",
        "--warmup-steps",
        "10",
    )
    assert "saved" in out

    # Each later step loads the translator in a new process.
    lines = keras_vit_cli(
        "translate",
        "run",
        "--model-file",
        model,
        "--beam-size",
        "2",
        "--max-length",
        "5",
        stdin="ein hund.\nim haus.\n",
    ).splitlines()
    assert len(lines) == 2

    out_file = tmp_path / "hyp.en"
    keras_vit_cli(
        "translate", "run", "--model-file", model, src, "--output", out_file, "--beam-size", "1", "--max-length", "5"
    )
    assert len(out_file.read_text(encoding="utf-8").splitlines()) == len(de)

    out = keras_vit_cli(
        "translate",
        "evaluate",
        "--model-file",
        model,
        "--source",
        src,
        "--target",
        tgt,
        "--beam-size",
        "1",
        "--max-length",
        "5",
    )
    assert out.startswith("BLEU = ")


def test_translate_train_needs_data(tmp_path, capsys):
    assert main(["translate", "train", "--out", str(tmp_path / "m.keras")]) == 2
    assert "--source and --target" in capsys.readouterr().err
