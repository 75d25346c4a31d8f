import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
from conftest import keras_vit_cli
from test_cli_progress import assert_alive, run_timed

from keras_vit.cli import main


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _check_alive(lines, end, what):
    """`assert_alive` (a first line within 2 s, then one at least every 10 s) where those seconds mean
    something: on a machine that other work leaves the cores to (load average at most the core count)."""
    if os.getloadavg()[0] <= (os.cpu_count() or 1):
        assert_alive(lines, end, what)


def _history_rows(model):
    import csv

    with open(model[: -len(".keras")] + ".history.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_translate_train_run_evaluate_in_fresh_processes(tmp_path):
    rng = np.random.default_rng(0)
    words = ["ein", "hund", "katze", "läuft", "schläft", "im", "park", "haus"]
    de = [" ".join(rng.choice(words, rng.integers(2, 6))) + "." for _ in range(120)]
    en = [s.replace("hund", "dog").replace("katze", "cat") for s in de]
    src, tgt = _write(tmp_path / "train.de", de), _write(tmp_path / "train.en", en)
    model = str(tmp_path / "de_en.keras")
    code, lines, out, err, end = run_timed(
        ["translate", "train", "--source", src, "--target", tgt, "--val-source", src, "--val-target", tgt]
        + ["--out", model, "--vocabulary-size", "60", "--num-layers", "1", "--hidden-dim", "16", "--num-heads", "2"]
        + ["--mlp-dim", "32", "--epochs", "2", "--tokens-per-batch", "512", "--warmup-steps", "10"]
        + ["--jit-compile", "true"]
    )
    assert code == 0, err[-3000:]
    assert "saved" in out
    # --jit-compile true reaches `compile` (the XLA step on fixed-shape batches; "auto" leaves a model this
    # small uncompiled).
    with zipfile.ZipFile(model) as archive:
        assert json.loads(archive.read("config.json"))["compile_config"]["jit_compile"] is True
    _check_alive(lines, end, "translate train")
    assert "compiling the training step..." in out
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)  # the bar's colours
    assert re.search(r"\b1/\d+ ━+", plain), plain[-2000:]  # Keras' progress bar within the epoch
    # The history beside the model: one row per epoch, train and validation; the curves as a PNG.
    rows = _history_rows(model)
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert all(np.isfinite(float(row[key])) for row in rows for key in ("loss", "val_loss", "val_masked_accuracy"))
    curves = tmp_path / "de_en.curves.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"curves: {curves}" in out

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

    # --quiet: the translations and nothing else.
    out_file = tmp_path / "hyp.en"
    quiet = subprocess.run(
        [sys.executable, "-m", "keras_vit.cli", "translate", "run", "--quiet", "--model-file", model, src]
        + ["--output", str(out_file), "--beam-size", "1", "--max-length", "5"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stderr[-3000:]
    assert "keras-vit translate:" not in quiet.stderr and "/120" not in quiet.stderr, quiet.stderr[-3000:]
    assert len(out_file.read_text(encoding="utf-8").splitlines()) == len(de)

    hypotheses = tmp_path / "evaluated.en"
    code, lines, out, err, end = run_timed(
        ["translate", "evaluate", "--model-file", model, "--source", src, "--target", tgt, "--beam-size", "2"]
        + ["--max-length", "5", "--batch-size", "16", "--hypotheses", hypotheses]
    )
    assert code == 0, err[-3000:]
    _check_alive(lines, end, "translate evaluate")
    assert re.search(r"\b120/120\b", re.sub(r"\x1b\[[0-9;]*m", "", err)), err[
        -2000:
    ]  # the progress bar over the sentences, on stderr
    # sacreBLEU's own line with its full signature, then BP and the length ratio, checked against sacreBLEU
    # run here on the written hypotheses.
    import sacrebleu

    score = sacrebleu.corpus_bleu(hypotheses.read_text(encoding="utf-8").splitlines(), [en])
    first, second = out.splitlines()[:2]
    assert re.match(r"BLEU\|nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:[\d.]+ = ", first), first
    assert f"= {score.score:.2f} " in first and f"hyp_len = {score.sys_len} ref_len = {score.ref_len}" in first
    assert second == (
        f"brevity penalty {score.bp:.3f}, length ratio (hypotheses/references) {score.sys_len / score.ref_len:.3f}"
    )


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
        # The epoch's backup, then its translator (written after it, which takes a while on a loaded machine).
        while not (list(backup.glob("epoch-*.weights.h5")) and os.path.exists(model)) and first.poll() is None:
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
    # The history holds every epoch once: those before the kill and the two after it.
    assert [int(row["epoch"]) for row in _history_rows(model)] == list(range(done + 2))
