"""The `keras-vit` command line.

Each subcommand lives in a module with a `register(subparsers)` function that
adds its parser and sets `func` (called with the parsed arguments, returning an
exit code).

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

# Modules that add subcommands, in the order they appear in `--help`.
SUBCOMMAND_MODULES = [
    "keras_vit.cli.models",
    "keras_vit.cli.train",
    "keras_vit.cli.evaluate",
    "keras_vit.cli.predict",
    "keras_vit.cli.explain",
    "keras_vit.cli.convert",
    "keras_vit.cli.translate",
    "keras_vit.cli.tune",
]

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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-vit",
        description="Transformers and Vision Transformers for Keras 3.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


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


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Exception as error:
        if args.debug or not _is_expected(error):
            raise
        print(f"keras-vit {args.command}: error: {error_message(error)}", file=sys.stderr)
        return 2
