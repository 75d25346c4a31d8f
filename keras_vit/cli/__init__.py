"""The `keras-vit` command line.

Each subcommand lives in a module with a `register(subparsers)` function that
adds its parser and sets `func` (called with the parsed arguments, returning an
exit code).

Results go to stdout. While Keras and TensorFlow load, a line on stderr says
so (they load after the arguments are read: `--help` and argument errors answer
at once); then Keras' progress bars, or bars on stderr where stdout holds a
result. `--quiet` (`-q`), before or after the subcommand, sets `args.quiet`:
no status lines or bars (Keras' interactive logging is off), results and
errors only. TensorFlow's native start-up lines are held back below
`TF_CPP_MIN_LOG_LEVEL` (3 unless the user set it; see `keras_vit._startup`).

Every expected failure (a bad argument, a missing, unreadable or corrupt file,
a full disk) ends the command with one line, `keras-vit CMD: error: ...`, and
exit status 2; `--debug` shows the traceback instead.
"""

import argparse
import importlib
import os
import re
import sys
import zipfile

# The subcommands, in the order they appear in `--help`: name, module (with a `register(subparsers)`), and the
# one-line help that `keras-vit --help` shows without importing the module (a test keeps the two equal).
SUBCOMMANDS = [
    ("models", "keras_vit.cli.models", "list the registered model names"),
    ("train", "keras_vit.cli.train", "train a model on a dataset"),
    ("evaluate", "keras_vit.cli.evaluate", "loss and accuracy of a .keras model on a dataset"),
    ("predict", "keras_vit.cli.predict", "top-k classes of image files"),
    (
        "explain",
        "keras_vit.cli.explain",
        "draw what a saved model looks at in an image (LeGrad, attention rollout or attention)",
    ),
    (
        "convert",
        "keras_vit.cli.convert",
        "convert a local checkpoint (.safetensors, .pth, .bin, .npz) to Keras weights",
    ),
    ("export", "keras_vit.cli.export", "export a .keras model for inference (SavedModel, LiteRT, ONNX)"),
    ("translate", "keras_vit.cli.translate", "train a Transformer translator, translate text, or score BLEU"),
    ("tune", "keras_vit.cli.tune", "search a ViT's hyperparameters (patch size, depth, heads, ...) with KerasTuner"),
]
SUBCOMMAND_MODULES = [module for _, module, _ in SUBCOMMANDS]

QUIET_HELP = "no progress bars or status lines (results and errors are still printed)"

# Errors a user can cause with a bad argument or file (as opposed to a bug in the package):
# KeyError, IndexError and EOFError come out of truncated or foreign archives and pickles.
EXPECTED_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    IndexError,
    EOFError,
    UnicodeError,
    zipfile.BadZipFile,
    ImportError,
)

# Keras says "File not found" for any file that is not a zip archive, truncated ones included.
_KERAS_NOT_A_ZIP = re.compile(r"File not found: filepath=(?P<path>.*?)\. Please ensure the file is an accessible")


def build_parser(argv=None):
    """The `keras-vit` parser. With `argv`, only the subcommand it names is imported (the others get a
    placeholder with their help line), so that `keras-vit --help` and argument errors answer at once."""
    parser = argparse.ArgumentParser(
        prog="keras-vit",
        description="Transformers and Vision Transformers for Keras 3.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("--quiet", "-q", dest="global_quiet", action="store_true", help=QUIET_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else _named_subcommand(argv)
    for name, module, help_text in SUBCOMMANDS:
        if argv is not None and name != wanted:
            subparsers.add_parser(name, help=help_text)
            continue
        from keras_vit import _startup

        # A module that imports a framework at the top (`translate`) loads it here, logs held back.
        with _startup.native_logs_filtered():
            importlib.import_module(module).register(subparsers)
        _add_quiet(subparsers.choices[name])
    return parser


def _named_subcommand(argv):
    """The subcommand `argv` names: its first argument that is not an option (the top level's options take
    no value)."""
    names = {name for name, _, _ in SUBCOMMANDS}
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in names else None
    return None


def _add_quiet(parser):
    """`--quiet` after the subcommand (and after a sub-subcommand: `translate train --quiet`) as well."""
    has_quiet = any("--quiet" in action.option_strings for action in parser._actions)
    if not has_quiet:
        # SUPPRESS: a value given at one level is not reset by the default of a level below it.
        parser.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _add_quiet(child)


def error_message(error):
    """One line describing `error` for a user: what failed and on which file or argument."""
    if isinstance(error, KeyError):
        text = f"missing entry {error.args[0]!r}" if error.args else "missing entry"
    elif isinstance(error, OSError) and error.filename is not None:
        reason = error.strerror or str(error)
        text = f"{reason}: {os.fspath(error.filename)!r}"
        if error.filename2 is not None:
            text += f" -> {os.fspath(error.filename2)!r}"
    else:
        text = str(error) or type(error).__name__
    match = _KERAS_NOT_A_ZIP.search(text)
    if match and os.path.exists(match.group("path")):
        text = f"{match.group('path')!r} is not a readable Keras file (truncated, or not a .keras zip archive)"
    if isinstance(error, (zipfile.BadZipFile, EOFError)):
        text = f"a file is truncated or not the archive expected ({type(error).__name__}: {text})"
    return " ".join(text.split())


def _is_expected(error):
    # A factory given an unknown `--set`/`--config` key: the user's argument, not a bug.
    return isinstance(error, EXPECTED_ERRORS) or (
        isinstance(error, TypeError) and "unexpected keyword argument" in str(error)
    )


def parse_args(argv):
    """`(parser, args)` for the command line `argv`; `args.quiet` is set by `--quiet` before or after the
    subcommand."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.quiet = bool(getattr(args, "quiet", False) or args.global_quiet)
    return parser, args


def _quiet_python_logs():
    # Keras and TensorFlow's Python side log through absl (e.g. "WARNING:absl:..."): errors only.
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)


def main(argv=None):
    # Before anything imports TensorFlow; a user's own setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    argv = sys.argv[1:] if argv is None else list(argv)
    heartbeat = None
    named = _named_subcommand(argv)
    if named and "keras_vit.layers" not in sys.modules and not {"-h", "--help", "-q", "--quiet"} & set(argv):
        from keras_vit import _startup

        # The command line's process, nothing loaded yet. Some subcommands load Keras to build their parser:
        # the line comes after half a second of that, or at once after parsing, never before an argument error.
        heartbeat = _startup.Heartbeat(f"keras-vit {named}")
        heartbeat.say("loading Keras and TensorFlow...", delay=0.5)
    try:
        parser, args = parse_args(argv)
    except BaseException:
        if heartbeat is not None:
            heartbeat.stop()
        raise
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _quiet_python_logs()
    import keras_vit

    if heartbeat is not None and heartbeat.pending:
        heartbeat.say("loading Keras and TensorFlow...")
    if "keras_vit.layers" not in sys.modules:  # the command line's process: registered nothing yet
        keras_vit.register_all()
    if heartbeat is not None:
        # Until the command prints something of its own (reading a model, data...).
        heartbeat.say("running...")
        heartbeat.watch()
    import keras

    interactive = keras.config.is_interactive_logging_enabled()
    if args.quiet:
        # Keras' progress bars and `print_msg` go to absl's log (hidden) instead of stdout.
        keras.config.disable_interactive_logging()
    try:
        return int(args.func(args) or 0)
    except Exception as error:
        if args.debug or not _is_expected(error):
            raise
        print(f"keras-vit {args.command}: error: {error_message(error)}", file=sys.stderr)
        return 2
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
        if heartbeat is not None:
            heartbeat.stop()
