"""`keras-vit tune`: search a ViT's hyperparameters with KerasTuner.

Examples:
    keras-vit tune tfds:cifar10 --max-trials 8 --epochs 5 --hp patch_size=4,8 --hp depth=8,12
    keras-vit tune data.npz --tuner hyperband --epochs 9 --hp learning_rate=1e-4:1e-2:log

The search folder gets results.csv, results.md, results.png, best_model.keras
and best_trial.json: the best trial's recipe and model arguments, and the
`keras-vit train` command that trains its model again with the same recipe
over the same schedule (also at the end of results.md), e.g.

    keras-vit train --model vit_tiny_patch16_224 --data data.npz --out runs/tuning/search/best_trial \
        --epochs 10 --batch-size 64 --validation-split 0.1 --seed 0 --lr 0.00123 --weight-decay 0.01 \
        --warmup 0.1 --set patch_size=4 --set hidden_dim=128 --set depth=6 ...

Distributed (KerasTuner's chief/worker mode; start the chief first, with the
same data and search space everywhere):
    keras-vit tune data.npz --distributed --tuner-id chief --oracle-address 10.0.0.1:8000
    keras-vit tune data.npz --distributed --tuner-id worker0 --oracle-address 10.0.0.1:8000

The chief's oracle has no authentication or encryption (KerasTuner's gRPC
protocol): it listens on exactly --oracle-address, and must run on a trusted
network only.

A search with no completed trial (every trial failed, an unknown
--objective, an empty search space) exits with status 2 and the reason, and
exports nothing: best_model.keras only ever holds a completed trial.
"""

import os


def _number(text):
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_hp(text):
    """`"name=spec"` → `(name, spec)`.

    `depth=8` fixes a value, `patch_size=4,8` lists choices, `depth=2:12:2`
    is a range with a step and `learning_rate=1e-4:1e-2:log` a log range.
    """
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise ValueError(f"--hp must look like name=value, name=a,b,c or name=min:max[:step|:log]. Received: {text!r}")
    if "," in spec:
        return name.strip(), [_number(v) for v in spec.split(",")]
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"A range is min:max, min:max:step or min:max:log. Received: {text!r}")
        entry = {"min_value": _number(parts[0]), "max_value": _number(parts[1])}
        if len(parts) == 3:
            if parts[2] == "log":
                entry["sampling"] = "log"
            else:
                entry["step"] = _number(parts[2])
        return name.strip(), entry
    return name.strip(), _number(spec)


def register(subparsers):
    parser = subparsers.add_parser(
        "tune",
        help="search a ViT's hyperparameters (patch size, depth, heads, ...) with KerasTuner",
        description=__doc__.split("\n\n")[0],
        epilog="Distributed search: the chief's oracle has no authentication or encryption and listens on "
        "exactly --oracle-address; run it on a trusted network only.",
    )
    parser.add_argument("data", help="data source: tfds:NAME, an image folder or an .npz file with x and y")
    parser.add_argument("--tuner", choices=("random", "bayesian", "hyperband", "grid"), default="random")
    parser.add_argument("--max-trials", type=int, default=10, help="trials (random, bayesian, grid)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (hyperband: at most)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--image-size", type=int, default=None, help="resize images to this size")
    parser.add_argument("--objective", default="val_accuracy")
    parser.add_argument("--patience", type=int, default=3, help="early-stopping patience in epochs (0: off)")
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="search-space override, repeatable: depth=8 (fixed), patch_size=4,8 (choices), "
        "depth=2:12:2 or learning_rate=1e-4:1e-2:log (ranges)",
    )
    parser.add_argument(
        "--directory", default=os.path.join("runs", "tuning"), help="search folder; rerunning resumes it"
    )
    parser.add_argument("--project-name", default="search")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--export", default="auto", help="path of the best model (.keras); 'none' to skip")
    parser.add_argument(
        "--mixed-precision", choices=("auto", "on", "off"), default="auto", help="auto: on with a GPU, off on CPU"
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="KerasTuner chief/worker search: a --tuner-id containing 'chief' serves, others work",
    )
    parser.add_argument("--tuner-id", default=None, help="this process's id (default: $KERASTUNER_TUNER_ID)")
    parser.add_argument(
        "--oracle-address",
        default=None,
        help="chief host:port (default: $KERASTUNER_ORACLE_IP:$KERASTUNER_ORACLE_PORT); the chief listens on exactly "
        "this address, unauthenticated: trusted networks only",
    )
    parser.add_argument(
        "--lease-seconds", type=float, default=60.0, help="chief: requeue a trial whose worker is silent this long"
    )
    parser.add_argument("--heartbeat-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-eagerly", action="store_true", help="no graph compilation (faster for tiny data)")
    parser.add_argument(
        "--verbose",
        type=int,
        default=1,
        help="1: each trial's line, hyperparameters and Keras progress bars; 2: one line per epoch; 0 (or --quiet): "
        "results only",
    )
    parser.set_defaults(func=run)


def run(args):
    from keras_vit.tuning import run_search

    for flag, value in (
        ("--max-trials", args.max_trials),
        ("--epochs", args.epochs),
        ("--batch-size", args.batch_size),
    ):
        if value < 1:
            raise ValueError(f"`{flag}` must be a positive integer. Received: {flag} {value}")
    if args.export.lower() != "none" and args.export != "auto" and not args.export.endswith(".keras"):
        raise ValueError(f"`--export` must end in .keras (or be 'auto' or 'none'). Received: --export {args.export!r}")
    search_space = dict(parse_hp(text) for text in args.hp)
    if args.distributed and args.oracle_address is None and "KERASTUNER_ORACLE_IP" not in os.environ:
        raise ValueError("--distributed needs --oracle-address host:port (or $KERASTUNER_ORACLE_IP/PORT)")
    result = run_search(
        args.data,
        tuner=args.tuner,
        objective=args.objective,
        max_trials=args.max_trials,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        image_size=args.image_size,
        early_stopping_patience=args.patience or None,
        search_space=search_space,
        compile_kwargs={"run_eagerly": True} if args.run_eagerly else None,
        directory=args.directory,
        project_name=args.project_name,
        overwrite=args.overwrite,
        export_path=None if args.export.lower() == "none" else args.export,
        mixed_precision=args.mixed_precision,
        distributed_search=args.distributed,
        tuner_id=args.tuner_id,
        oracle_address=args.oracle_address,
        lease_seconds=args.lease_seconds,
        heartbeat_seconds=args.heartbeat_seconds,
        seed=args.seed,
        verbose=0 if getattr(args, "quiet", False) else args.verbose,
    )
    if result.role == "worker":
        print(f"worker {args.tuner_id or os.environ.get('KERASTUNER_TUNER_ID')}: no trials left")
        return 0
    with open(result.markdown_path) as table:
        print(table.read())
    print(f"best {args.objective}: {result.best_score}")
    print(f"best hyperparameters: {result.best_hyperparameters}")
    print(f"results: {result.csv_path}, {result.markdown_path}, {result.plot_path}, {result.best_trial_path}")
    if result.model_path:
        print(f"best model: {result.model_path}")
    return 0
