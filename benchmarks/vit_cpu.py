"""CPU inference throughput of ViT-B/16: keras_vit vs keras-hub vs timm, in one run.

Every contestant runs in its own worker process (the Keras backend is fixed at
import, and timm lives in its own environment), compiled the way its users run
it:

- keras_vit and keras-hub on TensorFlow: a `tf.function(jit_compile=False)`
  forward pass;
- on JAX: a `jax.jit` of `model.stateless_call`;
- on PyTorch: the eager model under `torch.inference_mode()`;
- timm: the eager model under `torch.inference_mode()`.

All workers get the same number of threads. They are loaded and warmed up
first, then timed round-robin: one repeat of each contestant in turn, the start
rotating every round, so that load from other processes on the machine falls
on all of them alike. Throughput is the median over the repeats; the spread is
the min-max range, and each ratio is also given as the range of its per-round
values.

Usage:
    python benchmarks/vit_cpu.py [--timm-python PATH] [--repeats 7] [--output FILE]

The module imports only the standard library at the top, so that the same
file serves as the worker under any of the interpreters.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# ViT-B/16 at 224×224 (Dosovitskiy et al. 2020, Table 1).
VIT_B16 = {
    "image_size": 224,
    "patch_size": 16,
    "depth": 12,
    "num_heads": 12,
    "hidden_dim": 768,
    "mlp_dim": 3072,
    "batch_size": 8,
}

BACKENDS = ("tensorflow", "jax", "torch")
KERAS_CONTESTANTS = ("ours", "keras_hub")
CONTESTANT_LABELS = {"ours": "keras_vit", "keras_hub": "keras-hub", "timm": "timm"}
COMPILE_MODES = {
    "tensorflow": "tf.function(jit_compile=False)",
    "jax": "jax.jit(model.stateless_call)",
    "torch": "eager, torch.inference_mode()",
}


def flops_per_image(config):
    """Multiply-adds × 2 of a ViT forward pass (matmuls and attention; head excluded)."""
    c = config
    tokens = (c["image_size"] // c["patch_size"]) ** 2 + 1
    d, m = c["hidden_dim"], c["mlp_dim"]
    patch = (tokens - 1) * (c["patch_size"] ** 2 * 3) * d
    per_block = tokens * (3 * d * d + d * d + 2 * d * m) + 2 * tokens * tokens * d
    return 2 * (patch + c["depth"] * per_block)


# --------------------------------------------------------------------------- workers


def _limit_threads(threads):
    """Environment settings that must precede the framework import."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
    ).strip()


def _framework_threads(backend, threads):
    """Applies and reports the thread settings of the framework in use."""
    if backend == "tensorflow":
        import tensorflow as tf

        if threads is not None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # TF already initialised (in-process use).
                pass
        return {
            "tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            # TensorFlow's default on x86 is on; `make bench` keeps it on.
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        }
    if backend == "torch":
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        return {"torch_threads": torch.get_num_threads()}
    if backend == "jax":
        return {"xla_flags": os.environ.get("XLA_FLAGS", "")}
    raise ValueError(f"Unknown backend. Received: backend={backend!r}")


def _build_keras_model(contestant, config):
    c = config
    shape = (c["image_size"], c["image_size"], 3)
    if contestant == "ours":
        from keras_vit.applications import get_model

        return get_model(
            "vit_base_patch16_224",
            input_shape=shape,
            patch_size=c["patch_size"],
            depth=c["depth"],
            num_heads=c["num_heads"],
            hidden_dim=c["hidden_dim"],
            mlp_dim=c["mlp_dim"],
        )
    if contestant == "keras_hub":
        import keras_hub

        return keras_hub.models.ViTBackbone(
            image_shape=shape,
            patch_size=c["patch_size"],
            num_layers=c["depth"],
            num_heads=c["num_heads"],
            hidden_dim=c["hidden_dim"],
            mlp_dim=c["mlp_dim"],
        )
    raise ValueError(f"Unknown Keras contestant. Received: contestant={contestant!r}")


def _keras_forward(model, backend):
    """The forward pass compiled as users of `backend` run it; returns f(x) -> array."""
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False), jit_compile=False)
        return lambda x: fn(x).numpy()
    if backend == "jax":
        import jax

        @jax.jit
        def fn(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return lambda x: fn(trainable, non_trainable, x).block_until_ready()
    if backend == "torch":
        import torch

        def run(x):
            with torch.inference_mode():
                return model(x, training=False)

        return run
    raise ValueError(f"Unknown backend. Received: backend={backend!r}")


def make_forward(contestant, backend, config, threads=None):
    """Builds one contestant with random weights.

    Returns:
        `(forward, inputs, info)`: `forward(inputs)` runs one batch to completion;
        `info` describes the threads, compile mode and parameter count.
    """
    import numpy as np

    c = config
    rng = np.random.default_rng(0)
    if contestant == "timm":
        import timm
        import torch

        info = {"threads": _framework_threads("torch", threads)}
        if all(c[k] == VIT_B16[k] for k in VIT_B16 if k != "batch_size"):
            model = timm.create_model("vit_base_patch16_224", pretrained=False)
        else:
            model = timm.models.vision_transformer.VisionTransformer(
                img_size=c["image_size"],
                patch_size=c["patch_size"],
                embed_dim=c["hidden_dim"],
                depth=c["depth"],
                num_heads=c["num_heads"],
                mlp_ratio=c["mlp_dim"] / c["hidden_dim"],
            )
        model.eval()
        x = torch.from_numpy(
            rng.standard_normal((c["batch_size"], 3, c["image_size"], c["image_size"]), dtype=np.float32)
        )

        def forward(inputs):
            with torch.inference_mode():
                return model(inputs)

        info.update(
            compile="eager, torch.inference_mode()",
            versions={"torch": torch.__version__, "timm": timm.__version__},
            params=sum(p.numel() for p in model.parameters()),
        )
        return forward, x, info

    os.environ["KERAS_BACKEND"] = backend
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(
            f"Keras was imported with backend {keras.backend.backend()!r}; "
            f"a worker for backend {backend!r} must start in a fresh process"
        )
    info = {"threads": _framework_threads(backend, threads)}
    keras.utils.set_random_seed(0)
    model = _build_keras_model(contestant, c)
    x = rng.uniform(0, 1, (c["batch_size"], c["image_size"], c["image_size"], 3)).astype("float32")
    x = keras.ops.convert_to_tensor(x)
    versions = {"keras": keras.__version__, backend: _backend_version(backend)}
    if contestant == "keras_hub":
        import keras_hub

        versions["keras_hub"] = keras_hub.__version__
    info.update(compile=COMPILE_MODES[backend], versions=versions, params=model.count_params())
    return _keras_forward(model, backend), x, info


def _backend_version(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return __import__(module).__version__


def time_forward(forward, inputs, iters):
    """Wall-clock and process CPU seconds taken by `iters` forward passes of one batch."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        forward(inputs)
    return time.perf_counter() - start, time.process_time() - start_cpu


def _worker_main(args):
    """Line protocol on stdin/stdout: a JSON `ready` line, then one reply per request."""
    config = json.loads(args.config)
    out = sys.stdout
    sys.stdout = sys.stderr  # Framework chatter must not corrupt the protocol.
    try:
        forward, inputs, info = make_forward(args.worker, args.backend, config, args.threads)
        start = time.perf_counter()
        for _ in range(args.warmup):
            forward(inputs)
        info["warmup_s"] = time.perf_counter() - start
        out.write(json.dumps({"ready": True, **info}) + "\n")
    except Exception as err:  # Reported to the parent, which shows it in the table.
        out.write(json.dumps({"ready": False, "error": f"{type(err).__name__}: {err}"}) + "\n")
        out.flush()
        return 1
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        seconds, cpu_seconds = time_forward(forward, inputs, request["iters"])
        out.write(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds}) + "\n")
        out.flush()
    return 0


# --------------------------------------------------------------------------- runners


class InProcessRunner:
    """A contestant run in this process (its backend must be the one imported)."""

    def __init__(self, contestant, backend, config, warmup=1):
        self.contestant, self.backend, self.config = contestant, backend, config
        self.forward, self.inputs, self.info = make_forward(contestant, backend, config)
        for _ in range(warmup):
            self.forward(self.inputs)
        self.error = None

    def run(self, iters):
        return time_forward(self.forward, self.inputs, iters)

    def close(self):
        pass


class SubprocessRunner:
    """A contestant run by a worker process of `python` (`script`, default this file, in worker mode)."""

    def __init__(self, contestant, backend, config, python=None, threads=None, warmup=2, script=None):
        self.contestant, self.backend, self.config = contestant, backend, config
        cmd = [
            python or sys.executable,
            script or os.path.abspath(__file__),
            "--worker",
            contestant,
            "--backend",
            backend,
            "--config",
            json.dumps(config),
            "--warmup",
            str(warmup),
        ]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        env = dict(os.environ, KERAS_BACKEND=backend)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info, self.error = {}, None

    def wait_ready(self):
        line = self.proc.stdout.readline()
        if not line:
            self.error = "worker exited: " + self.proc.stderr.read().strip()[-2000:]
            return
        reply = json.loads(line)
        if not reply.pop("ready"):
            self.error = reply["error"]
            return
        self.info = reply
        # Drain stderr in the background so a chatty worker cannot block on a full pipe.
        import threading

        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def run(self, iters):
        self.proc.stdin.write(json.dumps({"iters": iters}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.contestant}/{self.backend} died")
        reply = json.loads(line)
        return reply["seconds"], reply["cpu_seconds"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------------------- timing


def benchmark(runners, repeats=5, iters=2, log=None):
    """Times `runners` round-robin.

    Each round gives every runner one timed repeat of `iters` batches; the
    first runner of a round rotates so no contestant always follows the same
    one. Runners with an `error` are skipped.

    Returns:
        A list with one dict per runner: `contestant`, `backend`, `info`,
        `error`, `images_per_s` (wall clock) and `cpu_s_per_image` (process
        CPU time, all threads), one value per round.
    """
    live = [r for r in runners if r.error is None]
    results = {id(r): [] for r in runners}
    cpu = {id(r): [] for r in runners}
    for round_ in range(repeats):
        shift = round_ % max(len(live), 1)
        for runner in live[shift:] + live[:shift]:
            seconds, cpu_seconds = runner.run(iters)
            images = iters * runner.config["batch_size"]
            results[id(runner)].append(images / seconds)
            cpu[id(runner)].append(cpu_seconds / images)
        if log:
            log(f"round {round_ + 1}/{repeats} done, load average {_load()}")
    return [
        {
            "contestant": r.contestant,
            "backend": r.backend,
            "info": r.info,
            "error": r.error,
            "images_per_s": results[id(r)],
            "cpu_s_per_image": cpu[id(r)],
        }
        for r in runners
    ]


def _load():
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _find(results, contestant, backend):
    for r in results:
        if r["contestant"] == contestant and (backend is None or r["backend"] == backend):
            return r
    return None


def _cell(result):
    if result is None:
        return "—"
    if result["error"] or not result["images_per_s"]:
        return "failed"
    v = result["images_per_s"]
    return f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})"


def _ratio(ours, other):
    if not ours or not other or ours["error"] or other["error"]:
        return "—"
    a, b = ours["images_per_s"], other["images_per_s"]
    if not a or not b:
        return "—"
    per_round = [x / y for x, y in zip(a, b)]
    return f"{statistics.median(a) / statistics.median(b):.2f}× ({min(per_round):.2f}–{max(per_round):.2f})"


TABLE_HEADER = "| backend | keras_vit img/s | keras-hub img/s | timm img/s | keras_vit / keras-hub | keras_vit / timm |"


def format_table(results):
    """The Markdown results table: one row per Keras backend that was run.

    Throughput cells are `median (min–max)` images/s over the rounds; ratio
    cells are `median ratio× (min–max of the per-round ratios)`. timm does not
    depend on the Keras backend: its column repeats the one timm measurement.
    """
    timm = _find(results, "timm", None)
    rows = [TABLE_HEADER, "|" + "---|" * 6]
    for backend in BACKENDS:
        ours = _find(results, "ours", backend)
        hub = _find(results, "keras_hub", backend)
        if ours is None and hub is None:
            continue
        rows.append(
            f"| {backend} | {_cell(ours)} | {_cell(hub)} | {_cell(timm)} | {_ratio(ours, hub)} | {_ratio(ours, timm)} |"
        )
    return "\n".join(rows)


def format_report(results, config, repeats, iters, threads, command, load_before, load_after):
    """The Markdown page: settings, the table, per-contestant details and errors."""
    c = config
    gflop = flops_per_image(c) / 1e9
    lines = [
        "# ViT-B/16 CPU inference throughput",
        "",
        f"Image {c['image_size']}×{c['image_size']}, patch {c['patch_size']}, depth {c['depth']}, "
        f"{c['num_heads']} heads, hidden {c['hidden_dim']}, MLP {c['mlp_dim']}, batch {c['batch_size']}, "
        f"random weights, float32 ({gflop:.1f} GFLOP/image). {repeats} timed rounds of {iters} batches "
        f"per contestant, round-robin, after warm-up; {threads} threads for every contestant. "
        f"Cells: median images/s (min–max over rounds); ratios: ratio of medians "
        f"(min–max of per-round ratios).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"load average before {load_before}, after {load_after}.",
        "",
        "Command: `" + command + "`",
        "",
        format_table(results),
        "",
        "Per contestant: CPU s/image is the process CPU time (all threads) per image, median over",
        "the rounds; it depends less on the machine's load than the wall-clock throughput.",
        "",
        "| contestant | backend | compile | threads | parameters | CPU s/image | versions |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        info = r["info"]
        threads_desc = ", ".join(f"{k}={v}" for k, v in info.get("threads", {}).items())
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
        lines.append(
            f"| {CONTESTANT_LABELS[r['contestant']]} | {r['backend']} | {info.get('compile', '—')} | "
            f"{threads_desc or '—'} | {info.get('params', 0):,} | "
            f"{statistics.median(r['cpu_s_per_image'] or [float('nan')]):.3f} | {versions or '—'} |"
            if r["error"] is None
            else f"| {CONTESTANT_LABELS[r['contestant']]} | {r['backend']} | failed: {r['error'][:300]} | | | | |"
        )
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per contestant")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for every contestant (default: the number of CPUs)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds")
    parser.add_argument("--iters", type=int, default=2, help="batches per timed repeat")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends to run")
    parser.add_argument(
        "--contestants", default="ours,keras_hub,timm", help="comma-separated subset of ours,keras_hub,timm"
    )
    parser.add_argument(
        "--timm-python", default=None, help="Python of the environment that has timm (default: this one)"
    )
    parser.add_argument("--batch-size", type=int, default=VIT_B16["batch_size"])
    parser.add_argument("--output", default=None, help="write the Markdown report here")
    args = parser.parse_args(argv)

    if args.worker:
        _limit_threads(args.threads)
        return _worker_main(args)

    threads = args.threads or os.cpu_count()
    config = dict(VIT_B16, batch_size=args.batch_size)
    contestants = [c.strip() for c in args.contestants.split(",") if c.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for c in contestants:
        if c not in CONTESTANT_LABELS:
            parser.error(f"unknown contestant {c!r}; choose from {sorted(CONTESTANT_LABELS)}")
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}; choose from {BACKENDS}")

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    load_before = _load()
    runners = []
    for backend in backends:
        for c in KERAS_CONTESTANTS:
            if c in contestants:
                runners.append(SubprocessRunner(c, backend, config, threads=threads, warmup=args.warmup))
    if "timm" in contestants:
        runners.append(
            SubprocessRunner("timm", "torch", config, python=args.timm_python, threads=threads, warmup=args.warmup)
        )
    try:
        for r in runners:
            r.wait_ready()
            state = f"failed: {r.error}" if r.error else f"ready (warm-up {r.info['warmup_s']:.1f} s)"
            log(f"{CONTESTANT_LABELS[r.contestant]} / {r.backend}: {state}")
        results = benchmark(runners, repeats=args.repeats, iters=args.iters, log=log)
    finally:
        for r in runners:
            r.close()
    command = "python benchmarks/vit_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = format_report(results, config, args.repeats, args.iters, threads, command.strip(), load_before, _load())
    print(report)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write(report)
    return 0 if all(r["error"] is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
