"""`keras-vit models`: list the registered models."""


def register(subparsers):
    parser = subparsers.add_parser("models", help="list the registered model names")
    parser.add_argument("pattern", nargs="?", default=None, help='glob filter, e.g. "vit_*"')
    parser.add_argument("--params", action="store_true", help="also build each model and count its parameters")
    parser.set_defaults(func=run)


def run(args):
    from keras_vit.applications import get_model, list_models

    names = list_models(args.pattern)
    for name in names:
        if args.params:
            print(f"{name}\t{get_model(name).count_params():,}")
        else:
            print(name)
    return 0 if names else 1
