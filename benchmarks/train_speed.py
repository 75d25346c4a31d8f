"""CPU training throughput: keras_vit (TensorFlow, JAX, PyTorch) vs timm vs keras-hub, in one run.

Two models: the CIFAR ViT (`vit_cifar_patch4_depth8_32`: patch 4, width 192,
depth 8, 3 heads, MLP 384, 32×32 images, batch 128) and ViT-S/16 at 224×224
(batch 32). Each contestant runs in its own worker process and trains the way
its users train it:

- keras_vit: `keras_vit.training.compile_model` with its defaults (the
  package's default path: AdamW, clipping, the schedule; `jit_compile` and
  `steps_per_execution` "auto") and `model.fit` on arrays in memory;
  variants with one setting turned off show what each setting contributes;
- keras-hub: `keras_hub.models.ViTBackbone` + a dense head on the class
  token, compiled with the same AdamW and clipping and Keras' own defaults;
- timm: `VisionTransformer` with `torch.optim.AdamW`, `clip_grad_norm_` and
  cross-entropy, eager and under `torch.compile`;
- `keras-vit train`: the whole command's path (`keras_vit.training.train`)
  on `cifar10/train.npz` under `KERAS_VIT_DATA`, with augmentation, timed
  from inside its `fit` between batches; its input pipeline's throughput
  alone is measured at start-up.

Workers are loaded and warmed up (compiled) first, then timed round-robin, one
repeat of `--iters` optimizer steps each in turn, the first contestant rotating
every round; the machine's load averages are recorded with every round, and
ratios are taken round by round, so that load from other processes falls on
every contestant alike.

Usage:
    python benchmarks/train_speed.py [--timm-python PATH] [--models cifar,vit_s16] [--repeats 5]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import vit_cpu

MODELS = {
    "cifar": {
        "title": "CIFAR ViT (vit_cifar_patch4_depth8_32)",
        "registry": "vit_cifar_patch4_depth8_32",
        "image_size": 32,
        "patch_size": 4,
        "depth": 8,
        "num_heads": 3,
        "hidden_dim": 192,
        "mlp_dim": 384,
        "classes": 10,
        "batch_size": 128,
    },
    "vit_s16": {
        "title": "ViT-S/16 at 224×224 (vit_small_patch16_224)",
        "registry": "vit_small_patch16_224",
        "image_size": 224,
        "patch_size": 16,
        "depth": 12,
        "num_heads": 6,
        "hidden_dim": 384,
        "mlp_dim": 1536,
        "classes": 1000,
        "batch_size": 32,
    },
}

# contestant -> (label, backend, how it trains)
CONTESTANTS = {
    "ours_tf": ("keras_vit", "tensorflow", "package default (XLA)"),
    "ours_jax": ("keras_vit", "jax", "package default (jax.jit)"),
    "ours_torch": ("keras_vit", "torch", "package default (eager)"),
    "ours_tf_nojit": ("keras_vit", "tensorflow", "jit_compile=False (Keras' CPU default)"),
    "ours_tf_spe4": ("keras_vit", "tensorflow", "XLA, steps_per_execution=4"),
    "timm": ("timm", "torch", "eager"),
    "timm_compile": ("timm", "torch", "torch.compile"),
    "hub_tf": ("keras-hub", "tensorflow", "Keras defaults (jit_compile='auto')"),
    "hub_tf_xla": ("keras-hub", "tensorflow", "jit_compile=True"),
    "hub_jax": ("keras-hub", "jax", "Keras defaults (jax.jit)"),
    "cli_train": ("keras-vit train", "tensorflow", "cifar10/train.npz, --augment, package default"),
}
DEFAULT_CONTESTANTS = {
    "cifar": "ours_tf,ours_jax,ours_torch,ours_tf_nojit,ours_tf_spe4,timm,timm_compile,hub_tf,hub_tf_xla,hub_jax,cli_train",
    "vit_s16": "ours_tf,ours_jax,ours_torch,ours_tf_nojit,timm,timm_compile,hub_tf,hub_jax",
}
TIMM_CONTESTANTS = ("timm", "timm_compile")
LEARNING_RATE, WEIGHT_DECAY, CLIPNORM = 1e-3, 0.05, 1.0


def train_flops_per_image(config):
    """FLOPs of one training step per image: forward + backward ≈ 3 × the forward pass (matmuls, attention)."""
    return 3 * vit_cpu.flops_per_image(config)


# --------------------------------------------------------------------------- workers


def _random_batch(config, channels_first=False):
    import numpy as np

    rng = np.random.default_rng(0)
    c = config
    shape = (c["batch_size"], 3, c["image_size"], c["image_size"]) if channels_first else None
    shape = shape or (c["batch_size"], c["image_size"], c["image_size"], 3)
    x = rng.uniform(0, 1, shape).astype("float32")
    y = rng.integers(0, c["classes"], c["batch_size"]).astype("int32")
    return x, y


def _timm_step(contestant, config, threads):
    import timm
    import torch

    info = {"threads": vit_cpu._framework_threads("torch", threads)}
    c = config
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=c["image_size"],
        patch_size=c["patch_size"],
        embed_dim=c["hidden_dim"],
        depth=c["depth"],
        num_heads=c["num_heads"],
        mlp_ratio=c["mlp_dim"] / c["hidden_dim"],
        num_classes=c["classes"],
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.CrossEntropyLoss()
    forward = torch.compile(model) if contestant == "timm_compile" else model
    x, y = _random_batch(config, channels_first=True)
    x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device)
    # Automatic mixed precision (bfloat16 autocast), timm's `--amp --amp-dtype bfloat16`.
    mixed = bool(config.get("mixed_precision"))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=mixed):
            loss = loss_fn(forward(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIPNORM)
        optimizer.step()
        return loss.detach()

    def steps(iters):
        losses = [step() for _ in range(iters)]
        return [float(loss) for loss in losses]  # waits for the device

    info.update(
        device=device,
        compile=("torch.compile(model)" if contestant == "timm_compile" else "eager") + (", AMP bf16" if mixed else ""),
        versions={"torch": torch.__version__, "timm": timm.__version__},
        params=sum(p.numel() for p in model.parameters()),
    )
    return steps, info


def _keras_step(contestant, config, threads):
    label, backend, _ = CONTESTANTS[contestant]
    os.environ["KERAS_BACKEND"] = backend
    import keras
    import numpy as np

    if keras.backend.backend() != backend:
        raise RuntimeError(f"Keras was imported with backend {keras.backend.backend()!r}, not {backend!r}")
    info = {"threads": vit_cpu._framework_threads(backend, threads)}
    keras.utils.set_random_seed(0)
    c = config
    if c.get("mixed_precision"):
        keras.config.set_dtype_policy("mixed_bfloat16")
    shape = (c["image_size"], c["image_size"], 3)
    versions = {"keras": keras.__version__, backend: vit_cpu._backend_version(backend)}
    if label == "keras_vit":
        from keras_vit import training
        from keras_vit.applications import get_model

        model = get_model(c["registry"], input_shape=shape, classes=c["classes"], classifier_activation=None)
        settings = {}
        if contestant == "ours_tf_nojit":
            settings["jit_compile"] = False
        if contestant == "ours_tf_spe4":
            settings["steps_per_execution"] = 4
        training.compile_model(model, training.Recipe(), total_steps=100_000, **settings)
    else:
        import keras_hub

        versions["keras_hub"] = keras_hub.__version__
        backbone = keras_hub.models.ViTBackbone(
            image_shape=shape,
            patch_size=c["patch_size"],
            num_layers=c["depth"],
            num_heads=c["num_heads"],
            hidden_dim=c["hidden_dim"],
            mlp_dim=c["mlp_dim"],
        )
        inputs = keras.Input(shape)
        logits = keras.layers.Dense(c["classes"], name="head")(backbone(inputs)[:, 0])
        model = keras.Model(inputs, logits)
        model.compile(
            optimizer=keras.optimizers.AdamW(LEARNING_RATE, weight_decay=WEIGHT_DECAY, global_clipnorm=CLIPNORM),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            **({"jit_compile": True} if contestant == "hub_tf_xla" else {}),
        )
    x, y = _random_batch(config)
    cache = {}

    def run(iters):
        if iters not in cache:
            cache[iters] = (np.concatenate([x] * iters), np.concatenate([y] * iters))
        xs, ys = cache[iters]
        history = model.fit(xs, ys, batch_size=c["batch_size"], epochs=1, shuffle=False, verbose=0)
        return history.history["loss"]

    info.update(
        compile=f"jit_compile={model.jit_compile}, steps_per_execution={model.steps_per_execution}, "
        f"{keras.config.dtype_policy().name}",
        versions=versions,
        params=model.count_params(),
    )
    if backend == "tensorflow" and contestant == "ours_tf":
        info["matmul_gflops"] = _tf_matmul_peak()
    return run, info


def _tf_matmul_peak(n=1024, repeats=20):
    """GFLOP/s of a float32 n×n matmul on TensorFlow (XLA), the best of a few timings: the machine's matmul peak."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    matmul = tf.function(lambda a: tf.matmul(a, a), jit_compile=True)
    matmul(a).numpy()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a)
        out.numpy()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * n**3 / best / 1e9


def _worker_main(args):
    config = json.loads(args.config)
    out = sys.stdout
    sys.stdout = sys.stderr  # framework chatter must not corrupt the protocol
    vit_cpu._limit_threads(args.threads)
    try:
        if args.worker == "cli_train":
            return _cli_worker(config, args, out)
        step, info = (_timm_step if args.worker in TIMM_CONTESTANTS else _keras_step)(args.worker, config, args.threads)
        start = time.perf_counter()
        step(args.warmup)
        info["warmup_s"] = time.perf_counter() - start
        out.write(json.dumps({"ready": True, **info}) + "\n")
    except Exception as err:  # noqa: BLE001 - reported to the parent, which shows it in the table
        out.write(json.dumps({"ready": False, "error": f"{type(err).__name__}: {err}"}) + "\n")
        out.flush()
        return 1
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        start, start_cpu = time.perf_counter(), time.process_time()
        losses = step(request["iters"])
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        out.write(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "loss": float(losses[-1])}) + "\n")
        out.flush()
    return 0


def _cli_worker(config, args, out):
    """`keras_vit.training.train` as `keras-vit train` runs it, paused between batches to take requests."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras

    from keras_vit import data as data_lib
    from keras_vit import training

    root = os.environ.get("KERAS_VIT_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    path = os.path.join(root, "cifar10", "train.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"keras-vit train needs cifar10/train.npz under KERAS_VIT_DATA. Received: {path!r}")
    info = {"threads": vit_cpu._framework_threads("tensorflow", args.threads), "data": "cifar10/train.npz"}
    # The input pipeline alone: batches per second it delivers, with the training's settings.
    bundle = data_lib.load(path, batch_size=config["batch_size"], augment=True, validation_split=0.1, seed=0)
    it = iter(bundle.train)
    next(it)
    start = time.perf_counter()
    for _ in range(20):
        next(it)
    info["pipeline_images_per_s"] = 20 * config["batch_size"] / (time.perf_counter() - start)
    del it, bundle

    class Served(keras.callbacks.Callback):
        """Warm-up batches, then one timed repeat per request; stops training on `quit`."""

        def __init__(self):
            super().__init__()
            self.seen, self.left, self.start = 0, None, None

        def _next_request(self):
            line = sys.stdin.readline()
            request = json.loads(line) if line else {"quit": True}
            if request.get("quit"):
                self.model.stop_training = True
                return
            self.left = request["iters"]
            self.start, self.start_cpu = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.left is None and self.seen == args.warmup:
                info.update(warmup_s=time.perf_counter() - self.t0, compile=f"jit_compile={self.model.jit_compile}")
                info["params"] = self.model.count_params()
                info["versions"] = {"keras": keras.__version__, "tensorflow": vit_cpu._backend_version("tensorflow")}
                out.write(json.dumps({"ready": True, **info}) + "\n")
                out.flush()
                self._next_request()
            elif self.left is not None:
                self.left -= 1
                if self.left == 0:
                    seconds, cpu = time.perf_counter() - self.start, time.process_time() - self.start_cpu
                    out.write(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "loss": float(logs["loss"])}) + "\n")
                    out.flush()
                    self._next_request()

        def on_train_begin(self, logs=None):
            self.t0 = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        training.train(
            model=config["registry"],
            data=path,
            out_dir=os.path.join(tmp, "run"),
            epochs=1,
            batch_size=config["batch_size"],
            augment=True,
            callbacks=[Served()],
            verbose=0,
        )
    return 0


# --------------------------------------------------------------------------- report


def _median(values):
    return statistics.median(values) if values else float("nan")


def _cell(result):
    if result is None:
        return "—"
    if result["error"] or not result["images_per_s"]:
        return "failed"
    v = result["images_per_s"]
    return f"{_median(v):.1f} ({min(v):.1f}–{max(v):.1f})"


def _ratio(a, b):
    if a is None or b is None or a["error"] or b["error"] or not a["images_per_s"] or not b["images_per_s"]:
        return "—"
    per_round = [x / y for x, y in zip(a["images_per_s"], b["images_per_s"])]
    return f"{_median(a['images_per_s']) / _median(b['images_per_s']):.2f}× ({min(per_round):.2f}–{max(per_round):.2f})"


def format_report(model_key, results, config, args, loads, command):
    by = {r["contestant"]: r for r in results}
    gflop = train_flops_per_image(config) / 1e9
    peak = (
        args.peak_tflops * 1e3 if args.peak_tflops else (by.get("ours_tf") or {}).get("info", {}).get("matmul_gflops")
    )
    peak_name = "MFU" if args.peak_tflops else "of matmul peak"
    lines = [
        f"## Training: {config['title']}",
        "",
        f"Image {config['image_size']}×{config['image_size']}, patch {config['patch_size']}, depth {config['depth']}, "
        f"{config['num_heads']} heads, width {config['hidden_dim']}, MLP {config['mlp_dim']}, {config['classes']} "
        f"classes, batch {config['batch_size']}, AdamW (lr {LEARNING_RATE}, weight decay {WEIGHT_DECAY}, global "
        f"norm clipped at {CLIPNORM}), random data in memory ({gflop:.2f} GFLOP per image per step). "
        f"{args.repeats} rounds of {args.iters} steps per contestant, round-robin, after {args.warmup} warm-up steps; "
        f"{args.threads} threads each. Cells: median img/s (min–max over rounds); ratios: ratio of medians (min–max "
        "of the per-round ratios).",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load averages (1, 5, 15 min) "
        f"before {loads[0]}, after each round {', '.join(loads[1:])}."
        + (
            f" Peak for the utilisation column: {peak:.0f} GFLOP/s "
            + ("(given)." if args.peak_tflops else "(TensorFlow float32 1024² matmul, XLA, measured at start-up).")
            if peak
            else ""
        ),
        "",
        "Command: `" + command + "`",
        "",
        "| contestant | backend | training step | img/s | CPU s/image | vs timm eager | vs keras-hub (same backend) |"
        + (f" {peak_name} |" if peak else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if peak else ""),
    ]
    timm = by.get("timm")
    for r in results:
        label, backend, how = CONTESTANTS[r["contestant"]]
        hub = by.get("hub_tf" if backend == "tensorflow" else "hub_jax" if backend == "jax" else "")
        row = (
            f"| {label} | {backend} | {how} | {_cell(r)} | "
            f"{_median(r['cpu_s_per_image']):.3f} | "
            f"{_ratio(r, timm) if r is not timm else '1'} | "
            f"{_ratio(r, hub) if label != 'keras-hub' else '—'} |"
        )
        if peak:
            ok = r["images_per_s"] and not r["error"]
            row += f" {100 * _median(r['images_per_s']) * gflop / peak:.0f} % |" if ok else " — |"
        lines.append(row)
    lines += [
        "",
        "| contestant | compile | parameters | warm-up s | last loss | versions / threads |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        info = r["info"]
        if r["error"]:
            lines.append(f"| {r['contestant']} | failed: {r['error'][:300]} | | | | |")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
        threads = ", ".join(f"{k}={v}" for k, v in info.get("threads", {}).items())
        lines.append(
            f"| {r['contestant']} | {info.get('compile', '—')} | {info.get('params', 0):,} | "
            f"{info.get('warmup_s', float('nan')):.0f} | {r.get('loss', float('nan')):.3f} | {versions}; {threads} |"
        )
    cli = by.get("cli_train")
    ours = by.get("ours_tf")
    if cli and ours and not cli["error"] and not ours["error"]:
        lines += [
            "",
            f"`keras-vit train` on cifar10/train.npz with augmentation vs the same model on arrays in memory: "
            f"{_ratio(cli, ours)}; its input pipeline alone delivers "
            f"{cli['info'].get('pipeline_images_per_s', float('nan')):.0f} img/s.",
        ]
    lines.append("")
    return "\n".join(lines)


class _Runner(vit_cpu.SubprocessRunner):
    def __init__(self, contestant, config, args):
        python = args.timm_python if contestant in TIMM_CONTESTANTS else None
        super().__init__(
            contestant,
            CONTESTANTS[contestant][1],
            config,
            python=python,
            threads=args.threads,
            warmup=args.warmup,
            script=os.path.abspath(__file__),
        )
        self.losses = []

    def run(self, iters):
        self.proc.stdin.write(json.dumps({"iters": iters}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.contestant} died")
        reply = json.loads(line)
        self.losses.append(reply["loss"])
        return reply["seconds"], reply["cpu_seconds"]


def run_model(model_key, contestants, args, log):
    config = dict(MODELS[model_key])
    if args.batch_size:
        config["batch_size"] = args.batch_size
    config["mixed_precision"] = args.mixed_precision
    loads = [vit_cpu._load()]
    runners = [_Runner(c, config, args) for c in contestants]
    try:
        for r in runners:
            r.wait_ready()
            state = f"failed: {r.error}" if r.error else f"ready (warm-up {r.info['warmup_s']:.0f} s)"
            log(f"{model_key} / {r.contestant}: {state}")

        def round_log(message):
            loads.append(vit_cpu._load())
            log(message)

        results = vit_cpu.benchmark(runners, repeats=args.repeats, iters=args.iters, log=round_log)
    finally:
        for r in runners:
            r.close()
    for result, runner in zip(results, runners):
        result["loss"] = runner.losses[-1] if runner.losses else float("nan")
    return results, config, loads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--models", default="cifar,vit_s16", help="comma-separated subset of " + ",".join(MODELS))
    parser.add_argument("--contestants", default=None, help="comma-separated contestants (default: all for the model)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    parser.add_argument("--iters", type=int, default=2, help="optimizer steps per timed repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per contestant (compilation included)")
    parser.add_argument("--threads", type=int, default=None, help="threads per contestant (default: CPU count)")
    parser.add_argument("--batch-size", type=int, default=None, help="override every model's batch size")
    parser.add_argument("--timm-python", default=None, help="Python of the environment that has timm")
    parser.add_argument(
        "--mixed-precision", action="store_true", help="bfloat16 compute: Keras 'mixed_bfloat16', timm bf16 autocast"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="the device's peak TFLOP/s: adds model FLOPs utilisation"
    )
    parser.add_argument("--output", default=None, help="write the Markdown report here")
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args)
    args.threads = args.threads or os.cpu_count()
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    command = "python benchmarks/train_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    pages, failed = ["# Training throughput on CPU", ""], False
    for model_key in [m.strip() for m in args.models.split(",") if m.strip()]:
        if model_key not in MODELS:
            parser.error(f"unknown model {model_key!r}; choose from {sorted(MODELS)}")
        names = [c.strip() for c in (args.contestants or DEFAULT_CONTESTANTS[model_key]).split(",") if c.strip()]
        for name in names:
            if name not in CONTESTANTS:
                parser.error(f"unknown contestant {name!r}; choose from {sorted(CONTESTANTS)}")
        results, config, loads = run_model(model_key, names, args, log)
        failed |= any(r["error"] for r in results)
        pages.append(format_report(model_key, results, config, args, loads, command.strip()))
        print(pages[-1], flush=True)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            f.write("\n".join(pages))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
