"""`keras-vit translate`: train a Transformer translator, translate text, score BLEU.

keras-vit translate train --source train.de --target train.en --out de_en.keras
keras-vit translate run --model-file de_en.keras < sentences.de > sentences.en
keras-vit translate evaluate --model-file de_en.keras --source test.de --target test.en

`translate train` keeps its resumable state (weights, optimizer, tokenizer)
in OUT's name with `.backup` for `.keras` (de_en.backup/): rerun the same
command after an interruption and it continues at the next epoch; the folder
is removed once OUT is written. Every file is written atomically. Beside
OUT it writes OUT's name with `.history.csv` (one row per epoch: loss,
token accuracy, their validation values) and `.curves.png` (those curves).

Each command shows what it does: status lines, Keras' progress bar within
each training epoch, a progress bar over the sentences while translating (on
stderr, so stdout carries only the translations). `--quiet` silences them.
`translate evaluate` prints sacreBLEU's line with its full signature, then
the brevity penalty and the hypothesis/reference length ratio.

Memory is bounded: sources longer than --max-source-tokens subword tokens are
truncated to them, with a warning on stderr naming the line; no output is
longer than --max-output-tokens.
"""

import contextlib
import os
import sys
import warnings

from keras_vit.cli.train import add_jit_arguments, jit_compile_of
from keras_vit.translation.translator import MAX_OUTPUT_TOKENS, MAX_SOURCE_TOKENS
from keras_vit.utils import atomic_write


def register(subparsers):
    parser = subparsers.add_parser("translate", help="train a Transformer translator, translate text, or score BLEU")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="learn a BPE vocabulary and train a translator")
    train.add_argument("--source", help="training source file, one sentence per line")
    train.add_argument("--target", help="training target file, aligned with --source")
    train.add_argument("--tfds", help='a TFDS translation set instead, e.g. "ted_hrlr_translate/pt_to_en"')
    train.add_argument("--val-source")
    train.add_argument("--val-target")
    train.add_argument(
        "--out",
        required=True,
        help="path of the .keras translator to write (resumable state: OUT without .keras + .backup)",
    )
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
    add_jit_arguments(train)
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
    parser.add_argument("--max-length", type=int, help="most tokens generated per line (default: source length + 50)")
    parser.add_argument(
        "--max-source-tokens",
        type=int,
        default=MAX_SOURCE_TOKENS,
        help=f"longer lines are truncated, with a warning (default {MAX_SOURCE_TOKENS})",
    )
    parser.add_argument(
        "--max-output-tokens",
        type=int,
        default=MAX_OUTPUT_TOKENS,
        help=f"cap on --max-length and its default (default {MAX_OUTPUT_TOKENS})",
    )
    parser.add_argument("--batch-size", type=int, default=64)


def _check_positive(args, *names):
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"`{flag}` must be a positive integer. Received: {flag} {value}")


def _read_lines(path):
    """Lines of a UTF-8 text file, or of stdin for "-"; a clear error naming the input otherwise."""
    name = "stdin" if path == "-" else repr(path)
    if path == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{name} is not UTF-8 text: byte {data[error.start]:#04x} at offset {error.start}. "
            "Convert it first, e.g. with `iconv -t utf-8`."
        ) from None
    return text.splitlines()


def _load(path):
    from keras_vit.cli.images import load_model_file

    model = load_model_file(path)
    if getattr(model, "source_tokenizer", None) is None:
        raise ValueError(f"Not a translator: the model carries no tokenizer. Received: --model-file {path!r}")
    return model


def _decoding_kwargs(args):
    _check_positive(args, "beam_size", "max_length", "max_source_tokens", "max_output_tokens", "batch_size")
    return dict(
        beam_size=args.beam_size,
        length_penalty=args.length_penalty,
        max_length=args.max_length,
        batch_size=args.batch_size,
        max_source_tokens=args.max_source_tokens,
        max_output_tokens=args.max_output_tokens,
    )


@contextlib.contextmanager
def _warnings_to_stderr():
    """The block's warnings (truncated lines) as one `keras-vit translate: warning: ...` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for warning in caught:
                print(f"keras-vit translate: warning: {warning.message}", file=sys.stderr)


def backup_dir_of(out):
    """The resumable-state folder of `translate train --out OUT`: beside OUT, named after it."""
    return os.path.splitext(out)[0] + ".backup"


def _quiet(args):
    return bool(getattr(args, "quiet", False))


def _say(args, text):
    if not _quiet(args):
        print(f"[keras-vit translate] {text}", file=sys.stderr, flush=True)


def run_train(args):
    from keras_vit.translation import load_parallel_text, load_tfds_translation, train_translator
    from keras_vit.translation.translator import history_paths

    if not args.out.endswith(".keras"):
        raise ValueError(f"`--out` must end in .keras. Received: --out {args.out!r}")
    _check_positive(args, "epochs", "vocabulary_size", "tokens_per_batch", "limit")
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
    _say(args, f"{len(train[0]):,} training pairs" + (f", {len(val[0]):,} validation pairs" if val else ""))
    history_file, curves_file = history_paths(args.out)
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
        backup_dir=backup_dir_of(args.out),
        history_file=history_file,
        verbose=0 if _quiet(args) else 1,
        variant=args.variant,
        norm_first=args.norm_first,
        jit_compile=jit_compile_of(args),
        **overrides,
    )
    print(f"saved {args.out} ({model.count_params():,} parameters, {len(history.history.get('loss', []))} epochs)")
    if os.path.isfile(history_file):
        print(f"history: {history_file}, curves: {curves_file}")
    return 0


def run_translate(args):
    from keras_vit.translation import translate

    kwargs = _decoding_kwargs(args)
    lines = _read_lines(args.input)
    _say(args, f"loading {args.model_file}")
    model = _load(args.model_file)
    _say(args, f"translating {len(lines):,} lines (beam {args.beam_size})")
    with _warnings_to_stderr():
        outputs = translate(model, lines, verbose=0 if _quiet(args) else 1, **kwargs) if lines else []
    text = "".join(line + "\n" for line in outputs)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with atomic_write(args.output) as f:
            f.write(text)
    return 0


def run_evaluate(args):
    from keras_vit.translation import evaluate_bleu, length_ratio, load_parallel_text

    kwargs = _decoding_kwargs(args)
    _say(args, f"loading {args.model_file}")
    model = _load(args.model_file)
    sources, references = load_parallel_text(args.source, args.target)
    _say(args, f"translating {len(sources):,} sentences (beam {args.beam_size}), then scoring them with sacreBLEU")
    with _warnings_to_stderr():
        score, hypotheses = evaluate_bleu(model, sources, references, verbose=0 if _quiet(args) else 1, **kwargs)
    if args.hypotheses:
        with atomic_write(args.hypotheses) as f:
            f.write("".join(h + "\n" for h in hypotheses))
    print(score.format(signature=score.signature))
    print(f"brevity penalty {score.bp:.3f}, length ratio (hypotheses/references) {length_ratio(score):.3f}")
    return 0
