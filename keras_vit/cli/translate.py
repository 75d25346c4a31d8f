"""`keras-vit translate`: train a Transformer translator, translate text, score BLEU.

keras-vit translate train --source train.de --target train.en --out de_en.keras
keras-vit translate run --model-file de_en.keras < sentences.de > sentences.en
keras-vit translate evaluate --model-file de_en.keras --source test.de --target test.en
"""

import sys


def register(subparsers):
    parser = subparsers.add_parser("translate", help="train a Transformer translator, translate text, or score BLEU")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="learn a BPE vocabulary and train a translator")
    train.add_argument("--source", help="training source file, one sentence per line")
    train.add_argument("--target", help="training target file, aligned with --source")
    train.add_argument("--tfds", help='a TFDS translation set instead, e.g. "ted_hrlr_translate/pt_to_en"')
    train.add_argument("--val-source")
    train.add_argument("--val-target")
    train.add_argument("--out", required=True, help="path of the .keras translator to write")
    train.add_argument("--vocabulary-size", type=int, default=8000)
    train.add_argument("--variant", default="base", choices=["base", "big"])
    train.add_argument("--num-layers", type=int)
    train.add_argument("--hidden-dim", type=int)
    train.add_argument("--num-heads", type=int)
    train.add_argument("--mlp-dim", type=int)
    train.add_argument("--dropout", type=float)
    train.add_argument("--norm-first", action="store_true", help="pre-norm blocks")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--tokens-per-batch", type=int, default=4096)
    train.add_argument("--warmup-steps", type=int, default=4000)
    train.add_argument("--learning-rate-scale", type=float, default=1.0)
    train.add_argument("--label-smoothing", type=float, default=0.1)
    train.add_argument("--minutes", type=float, help="stop training after this wall time")
    train.add_argument("--limit", type=int, help="use only the first N training pairs")
    train.set_defaults(func=run_train)

    run = actions.add_parser("run", help="translate a file (or stdin) line by line")
    _decoding_args(run)
    run.add_argument("input", nargs="?", default="-", help="text file, or - for stdin")
    run.add_argument("--output", default="-", help="file to write, or - for stdout")
    run.set_defaults(func=run_translate)

    evaluate = actions.add_parser("evaluate", help="sacreBLEU of a translator on a test set")
    _decoding_args(evaluate)
    evaluate.add_argument("--source", required=True)
    evaluate.add_argument("--target", required=True, help="reference translations")
    evaluate.add_argument("--hypotheses", help="also write the translations to this file")
    evaluate.set_defaults(func=run_evaluate)


def _decoding_args(parser):
    parser.add_argument("--model-file", required=True, help="a .keras translator written by `translate train`")
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--length-penalty", type=float, default=0.6)
    parser.add_argument("--max-length", type=int, help="default: source length + 50")
    parser.add_argument("--batch-size", type=int, default=64)


def _load(path):
    from keras_vit.cli.images import load_model_file

    model = load_model_file(path)
    if getattr(model, "source_tokenizer", None) is None:
        raise ValueError(f"Not a translator: the model carries no tokenizer. Received: --model-file {path!r}")
    return model


def _decoding_kwargs(args):
    return dict(
        beam_size=args.beam_size,
        length_penalty=args.length_penalty,
        max_length=args.max_length,
        batch_size=args.batch_size,
    )


def run_train(args):
    from keras_vit.translation import load_parallel_text, load_tfds_translation, train_translator

    if args.tfds:
        train = load_tfds_translation(args.tfds, "train", limit=args.limit)
        val = load_tfds_translation(args.tfds, "validation")
    elif args.source and args.target:
        train = load_parallel_text(args.source, args.target, limit=args.limit)
        val = None
        if args.val_source and args.val_target:
            val = load_parallel_text(args.val_source, args.val_target)
    else:
        raise ValueError("give --source and --target files, or --tfds NAME")
    overrides = {
        k: getattr(args, k)
        for k in ("num_layers", "hidden_dim", "num_heads", "mlp_dim", "dropout")
        if getattr(args, k) is not None
    }
    model, history = train_translator(
        train,
        val,
        vocabulary_size=args.vocabulary_size,
        epochs=args.epochs,
        tokens_per_batch=args.tokens_per_batch,
        warmup_steps=args.warmup_steps,
        learning_rate_scale=args.learning_rate_scale,
        label_smoothing=args.label_smoothing,
        time_limit=args.minutes * 60 if args.minutes else None,
        checkpoint=args.out,
        verbose=2,
        variant=args.variant,
        norm_first=args.norm_first,
        **overrides,
    )
    model.save(args.out)
    print(f"saved {args.out} ({model.count_params():,} parameters, {len(history.history.get('loss', []))} epochs)")
    return 0


def run_translate(args):
    from keras_vit.translation import translate

    model = _load(args.model_file)
    if args.input == "-":
        lines = sys.stdin.read().splitlines()
    else:
        with open(args.input, encoding="utf-8") as f:
            lines = f.read().splitlines()
    outputs = translate(model, lines, **_decoding_kwargs(args)) if lines else []
    text = "".join(line + "\n" for line in outputs)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


def run_evaluate(args):
    from keras_vit.translation import evaluate_bleu, load_parallel_text

    model = _load(args.model_file)
    sources, references = load_parallel_text(args.source, args.target)
    score, hypotheses = evaluate_bleu(model, sources, references, **_decoding_kwargs(args))
    if args.hypotheses:
        with open(args.hypotheses, "w", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in hypotheses))
    print(score)
    return 0
