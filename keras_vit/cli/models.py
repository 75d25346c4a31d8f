"""`keras-vit models`: list the registered models."""


def register(subparsers):
    parser = subparsers.add_parser("models", help="list the registered model names")
    parser.add_argument("pattern", nargs="?", default=None, help='glob filter, e.g. "vit_*"')
    parser.add_argument("--params", action="store_true", help="also build each model and count its parameters")
    parser.set_defaults(func=run)


def count_params(name):
    """Parameters of the registered model `name`; its memory is released before returning.

    Without the clearing, one process building the whole registry keeps every
    model's weights (and Keras's global graph state) alive: 6 GB for 56 models.
    """
    import gc

    import keras

    from keras_vit.applications import get_model

    model = get_model(name)
    count = model.count_params()
    del model
    keras.backend.clear_session()
    gc.collect()
    return count


def run(args):
    import sys

    from keras_vit.applications import list_models

    names = list_models(args.pattern)
    if not args.params:
        for name in names:
            print(name)
        return 0 if names else 1
    from tqdm import tqdm

    # The counts go to stdout as each model is done; the bar (which model is being built) to stderr.
    bar = tqdm(names, unit="model", file=sys.stderr, disable=args.quiet, leave=False, dynamic_ncols=True)
    for name in bar:
        bar.set_postfix_str(name, refresh=True)
        count = count_params(name)
        tqdm.write(f"{name}\t{count:,}", file=sys.stdout)
        sys.stdout.flush()
    bar.close()
    return 0 if names else 1
