"""Model registry: timm-style names → factory + configuration."""

import difflib
import fnmatch

_REGISTRY = {}


def register_model(name, builder, **defaults):
    """Registers `builder(**defaults, **overrides)` under `name`."""
    if name in _REGISTRY:
        raise ValueError(f"A model is already registered under name={name!r}")
    _REGISTRY[name] = (builder, dict(defaults))


def list_models(pattern=None):
    """Sorted registered names, optionally filtered by a glob `pattern` ("vit_*")."""
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def model_config(name):
    """The registered defaults of `name` (a copy)."""
    _check_name(name)
    return dict(_REGISTRY[name][1])


def _check_name(name):
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown model name. Received: name={name!r}.{hint} "
            "See keras_vit.applications.list_models()."
        )


def get_model(name, **overrides):
    """Builds the registered model `name`; keyword arguments override its configuration.

    Example:
        >>> model = get_model("vit_tiny_patch16_224", classes=10, input_shape=(64, 64, 3))
    """
    _check_name(name)
    builder, defaults = _REGISTRY[name]
    kwargs = {**defaults, **overrides}
    kwargs.setdefault("name", name)
    return builder(**kwargs)
