"""What the `keras-vit` command prints, and when: no native start-up noise, a first line within 2 s and a
line at least every 10 s after, `--quiet` before or after the subcommand, per-trial progress of `tune`."""

import argparse
import importlib
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np

from keras_vit import _startup, cli

# Lines that TensorFlow, Abseil and CUDA print while loading; none may reach a user of the command line.
NOISE = re.compile(r"^[IWEF]\d{4} |absl|cuda|oneDNN|cpu_feature_guard|To enable the following instructions", re.I)


def command():
    """The console script `make install` writes beside the interpreter, else `python -m keras_vit.cli`."""
    script = os.path.join(os.path.dirname(sys.executable), "keras-vit")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "keras_vit.cli"]


def user_env():
    """The environment of a user who set nothing: no TF_CPP_MIN_LOG_LEVEL, no oneDNN switch, no GPU."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_timed(args, cwd=None, timeout=600):
    """Runs `keras-vit ARGS`; returns (returncode, [(seconds, stream, line)], stdout, stderr) with the time each
    line (or progress-bar update, split at carriage returns) arrived after the start."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [*command(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=user_env(), cwd=cwd
    )
    lines, texts = [], {"stdout": [], "stderr": []}

    def read(stream, name):
        buffer = b""
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            texts[name].append(chunk)
            buffer += chunk
            *done, buffer = re.split(rb"[\r\n]", buffer)
            lines.extend((time.monotonic() - start, name, part.decode("utf-8", "replace")) for part in done if part)
        if buffer:
            lines.append((time.monotonic() - start, name, buffer.decode("utf-8", "replace")))

    readers = [
        threading.Thread(target=read, args=(proc.stdout, "stdout")),
        threading.Thread(target=read, args=(proc.stderr, "stderr")),
    ]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        for reader in readers:
            reader.join()
    end = time.monotonic() - start
    lines.sort()
    out, err = (b"".join(texts[name]).decode("utf-8", "replace") for name in ("stdout", "stderr"))
    return proc.returncode, lines, out, err, end


def assert_alive(lines, end, what):
    """A first line within 2 s, then no silence longer than 10 s until the process ended."""
    times = [t for t, _, _ in lines]
    assert times and times[0] <= 2.0, f"{what}: first output after {times[0] if times else end:.1f} s"
    gaps = np.diff([0.0, *times, end])
    worst = int(np.argmax(gaps))
    after = lines[worst - 1][2] if worst else "the start"
    assert gaps.max() <= 10.0, f"{what}: {gaps.max():.1f} s without output after {after!r}"


def noise(text):
    return [line for line in text.splitlines() if NOISE.search(line)]


def test_help_answers_within_two_seconds_without_loading_tensorflow():
    # (`translate` and `convert` import Keras to build their parsers: not timed here.)
    for args in (
        ["--help"],
        *([name, "--help"] for name in ("models", "train", "evaluate", "predict", "explain", "tune")),
    ):
        start = time.monotonic()
        result = subprocess.run([*command(), *args], capture_output=True, text=True, env=user_env(), timeout=60)
        seconds = time.monotonic() - start
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: keras-vit"), result.stdout[:200]
        assert result.stderr == ""
        assert seconds < 2.0, f"keras-vit {' '.join(args)} took {seconds:.1f} s"
    assert "--quiet" in result.stdout
    # Noise-free even where the subcommand's module loads TensorFlow to build its parser.
    result = subprocess.run(
        [*command(), "translate", "train", "--help"], capture_output=True, text=True, env=user_env()
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "--quiet" in result.stdout  # also after a sub-subcommand


def test_models_prints_no_native_start_up_lines_and_shows_life():
    code, lines, out, err, end = run_timed(["models", "vit_tiny_*"])
    assert code == 0, err
    assert out.split() == ["vit_tiny_patch16_224", "vit_tiny_patch16_384"]
    assert noise(err) == [], err
    assert err.startswith("[keras-vit models] loading Keras and TensorFlow...")
    assert_alive(lines, end, "keras-vit models")
    # --quiet (before or after the subcommand: test_quiet_before_or_after_every_subcommand): the results only.
    code, _, quiet_out, quiet_err, _ = run_timed(["--quiet", "models", "vit_tiny_*"])
    assert code == 0 and quiet_out == out and quiet_err == "", quiet_err


def test_quiet_before_or_after_every_subcommand():
    required = {
        "models": [],
        "train": ["--model", "m", "--out", "o"],
        "evaluate": ["--model-file", "m.keras"],
        "predict": ["--model-file", "m.keras", "x.png"],
        "explain": ["--model-file", "m.keras", "--image", "x.png", "--out", "x.png"],
        "convert": ["m.safetensors", "--model", "m", "--out", "m.weights.h5"],
        "export": ["m.keras", "--format", "saved_model", "--out", "m"],
        "translate": ["run", "--model-file", "m.keras"],
        "tune": ["data.npz"],
    }
    assert set(required) == {name for name, _, _ in cli.SUBCOMMANDS}
    for name, rest in required.items():
        for argv, quiet in (
            ([name, *rest], False),
            (["--quiet", name, *rest], True),
            ([name, *rest, "--quiet"], True),
            (["-q", name, *rest], True),
        ):
            _, args = cli.parse_args(argv)
            assert args.quiet is quiet, argv
    _, args = cli.parse_args(["translate", "--quiet", "run", "--model-file", "m.keras"])
    assert args.quiet is True


def test_help_lines_are_those_of_the_subcommands():
    # `keras-vit --help` shows the table's lines without importing the modules: they must be the modules' own.
    for name, module, help_text in cli.SUBCOMMANDS:
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers()
        importlib.import_module(module).register(subparsers)
        (action,) = [a for a in subparsers._choices_actions if a.dest == name]
        assert action.help == help_text, name


def test_native_log_filter_keeps_everything_else():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796218914.385188    6063 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1796218915.245401    6063 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n"
        "W0000 00:00:1796218915.245401    6063 a.cc:1] a warning\n"
        "E0000 00:00:1796218915.245401    6063 b.cc:2] an error\n"
        "UserWarning: a Python warning\n"
        "Traceback (most recent call last):\n"
    )
    python = "UserWarning: a Python warning\nTraceback (most recent call last):\n"
    assert _startup.filter_native_logs(text, 0) == text
    assert _startup.filter_native_logs(text, 3) == python
    kept = _startup.filter_native_logs(text, 2).splitlines()
    assert kept == ["E0000 00:00:1796218915.245401    6063 b.cc:2] an error", *python.splitlines()]


def test_tune_shows_each_trial_and_quiet_shows_only_results(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 48)
    x = rng.integers(0, 128, (48, 8, 8, 1)).astype("uint8")
    x[y == 1, :4] += 120
    np.savez(tmp_path / "tiny.npz", x=x, y=y)
    args = ["tune", "tiny.npz", "--max-trials", "2", "--epochs", "2", "--batch-size", "16", "--run-eagerly"]
    args += ["--hp", "depth=1", "--hp", "hidden_dim=16", "--hp", "num_heads=2", "--hp", "patch_size=2,4"]
    args += ["--hp", "mlp_ratio=2.0", "--export", "none", "--tuner", "grid"]
    code, lines, out, err, end = run_timed(args, cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert noise(err) == [], err
    assert_alive(lines, end, "keras-vit tune")
    trial_lines = [line for _, _, line in lines if line.startswith("trial ")]
    assert [line.split(" (")[0] for line in trial_lines] == ["trial 1 of at most 2", "trial 2 of at most 2"]
    assert "no result yet" in trial_lines[0] and "best val_accuracy so far" in trial_lines[1]
    assert "Epoch 2/2" in out and "━" in out  # Keras' own bars within each trial
    project = tmp_path / "runs" / "tuning" / "search"
    trial_dirs = sorted(project.glob("trial_*"))
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        history = (trial_dir / "history.csv").read_text().splitlines()
        assert history[0].split(",")[0] == "epoch" and len(history) == 3  # a header and one row per epoch
    # Run again, quiet: the finished search resumes, trains nothing and prints its results only.
    code, _, quiet_out, quiet_err, _ = run_timed([*args, "--quiet"], cwd=tmp_path)
    assert code == 0, quiet_err[-3000:]
    assert quiet_err == ""
    assert not [line for line in quiet_out.splitlines() if line.startswith(("trial ", "search:", "Epoch"))]
    assert "best val_accuracy:" in quiet_out and "| trial |" in quiet_out
