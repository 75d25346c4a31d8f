import os
import signal
import subprocess
import sys
import time

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

    # One 50,000-character line: truncated to --max-source-tokens with a one-line warning, not 21 GB.
    long = subprocess.run(
        [sys.executable, "-m", "keras_vit.cli", "translate", "run", "--model-file", model, "--max-source-tokens", "32"],
        input=" ".join(["hund"] * 10_000) + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert long.returncode == 0 and len(long.stdout.splitlines()) == 1, long.stderr[-3000:]
    warned = [line for line in long.stderr.splitlines() if line.startswith("keras-vit translate: warning:")]
    assert len(warned) == 1 and "only its first 32 are translated" in warned[0]

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


def _train_command(src, tgt, model, epochs):
    return (
        [sys.executable, "-m", "keras_vit.cli", "translate", "train", "--source", src, "--target", tgt]
        + ["--out", model, "--vocabulary-size", "60", "--num-layers", "1", "--hidden-dim", "16", "--num-heads", "2"]
        + ["--mlp-dim", "32", "--epochs", str(epochs), "--tokens-per-batch", "256", "--warmup-steps", "10"]
    )


def test_translate_train_resumes_after_sigkill(tmp_path):
    rng = np.random.default_rng(0)
    words = ["ein", "hund", "katze", "läuft", "schläft", "im", "park", "haus"]
    de = [" ".join(rng.choice(words, rng.integers(2, 6))) + "." for _ in range(120)]
    src, tgt = _write(tmp_path / "train.de", de), _write(tmp_path / "train.en", de)
    model, backup = str(tmp_path / "de_en.keras"), tmp_path / "de_en.backup"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    first = subprocess.Popen(_train_command(src, tgt, model, 500), env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(backup.glob("epoch-*.weights.h5")) and first.poll() is None:
            assert time.monotonic() < deadline, "no epoch backup written"
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    # A kill between writing epoch N and deleting N - 1 leaves both: the newest is resumed.
    done = max(int(p.name.split("-")[1].split(".")[0]) for p in backup.glob("epoch-*.weights.h5"))
    # The per-epoch translator is whole after the kill: it loads in a fresh process and translates.
    assert (
        len(
            keras_vit_cli(
                "translate", "run", "--model-file", model, "--max-length", "3", stdin="ein hund.\n"
            ).splitlines()
        )
        == 1
    )

    out = keras_vit_cli(*_train_command(src, tgt, model, done + 2)[3:])
    assert f"Resuming from {str(backup)!r} after epoch {done}/{done + 2}" in out
    assert "2 epochs)" in out  # only the epochs left ran
    assert not backup.exists()  # removed once the final translator was written
