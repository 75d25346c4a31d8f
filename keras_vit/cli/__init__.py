"""The `keras-vit` command line.

Each subcommand lives in a module with a `register(subparsers)` function that
adds its parser and sets `func` (called with the parsed arguments, returning an
exit code).
"""

import argparse
import importlib
import os
import sys

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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-vit",
        description="Transformers and Vision Transformers for Keras 3.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"keras-vit {args.command}: error: {error}", file=sys.stderr)
        return 2
