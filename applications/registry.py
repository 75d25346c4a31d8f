"""Model registry: timm-style names → factory, family, configuration and a tiny test configuration."""

import difflib
import fnmatch

# The families a registered model belongs to; `list_models(family=...)` filters on them and
# checkpoint conversion dispatches on them.
FAMILIES = ("vit", "deit", "swin", "mvitv2", "t2t", "deepvit", "hybrid", "cnn_hybrid", "transformer")

_REGISTRY = {}


def register_model(name, builder, *, family, tiny, **defaults):
    """Registers `builder(**defaults, **overrides)` under `name`.

    Args:
        name: str, the model name (timm's where timm has the model).
        builder: the factory.
        family: one of `FAMILIES`.
        tiny: dict, overrides of `defaults` that make a tiny model of the
            same architecture (a few blocks, a few channels, a small input),
            fast enough to build and run in a test.
        **defaults: the factory arguments of this model.
    """
    if name in _REGISTRY:
        raise ValueError(f"A model is already registered under name={name!r}")
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {FAMILIES}. Received: family={family!r}")
    if not isinstance(tiny, dict):
        raise ValueError(f"`tiny` must be a dict of overrides. Received: tiny={tiny!r}")
    _REGISTRY[name] = {"builder": builder, "family": family, "defaults": dict(defaults), "tiny": dict(tiny)}


def list_models(pattern=None, family=None, pretrained=False):
    """Sorted registered names, filtered by a glob `pattern` ("vit_*") and/or a `family` ("swin").

    With `pretrained=True`, the `name.tag` entries of the timm weights known on
    the Hugging Face Hub (`keras_vit.hub.PRETRAINED_TAGS`), as timm's
    `list_models(pretrained=True)`; each is a valid
    `get_model(..., pretrained=True)` name.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"`family` must be one of {FAMILIES}. Received: family={family!r}")
    if pretrained:
        from keras_vit import hub

        names = hub.list_pretrained(pattern)
        if family is not None:
            names = [n for n in names if _REGISTRY[n.split(".")[0]]["family"] == family]
        return names
    names = sorted(_REGISTRY)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    if family is not None:
        names = [n for n in names if _REGISTRY[n]["family"] == family]
    return names


def model_config(name):
    """The registered defaults of `name` (a copy)."""
    _check_name(name)
    return dict(_REGISTRY[name]["defaults"])


def model_family(name):
    """The family of `name`, one of `FAMILIES`."""
    _check_name(name)
    return _REGISTRY[name]["family"]


def model_builder(name):
    """The factory `name` is built with."""
    _check_name(name)
    return _REGISTRY[name]["builder"]


def tiny_config(name):
    """Overrides that make a tiny model of `name`'s architecture (a copy): `get_model(name, **tiny_config(name))`."""
    _check_name(name)
    return dict(_REGISTRY[name]["tiny"])


def _check_name(name):
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown model name. Received: name={name!r}.{hint} See keras_vit.applications.list_models()."
        )


def get_model(name, /, pretrained=False, **overrides):
    """Builds the registered model `name`; keyword arguments override its configuration.

    `name` is positional-only, so `name=` among the overrides names the built
    model (`get_model("vit_tiny_patch16_224", name="my_vit")`); the model is
    named after its registry entry otherwise.

    With `pretrained=True` the weights come from the Hugging Face Hub: `name`
    may carry a timm tag (`"vit_base_patch16_224.augreg2_in21k_ft_in1k"`,
    see `list_models(pretrained=True)`), else the first known tag is taken;
    it is the same as `weights="hf://timm/<name>.<tag>"`. The model then
    takes pixels in [0, 255] (`include_preprocessing`), and the repo's
    configuration decides classes, input size and preprocessing unless
    overridden. Any `weights="hf://ORG/REPO"` works the same way; a repo of
    another architecture than `name` raises an error naming both.

    Example:
        >>> model = get_model("vit_tiny_patch16_224", classes=10, input_shape=(64, 64, 3))
        >>> model = get_model("vit_base_patch16_224.augreg2_in21k_ft_in1k", pretrained=True)
    """
    base, dot, tag = str(name).partition(".")
    if pretrained:
        from keras_vit import hub

        _check_name(base)
        if overrides.get("weights") is not None:
            raise ValueError(
                f"Give `pretrained=True` or `weights`, not both. Received: weights={overrides['weights']!r}"
            )
        overrides["weights"] = hub.pretrained_uri(name)
        name = base
    elif dot:
        _check_name(base)
        raise ValueError(
            f"A name with a pretrained tag needs `pretrained=True` (or weights='hf://timm/{name}'). Received: name={name!r}"
        )
    _check_name(name)
    entry = _REGISTRY[name]
    kwargs = {**entry["defaults"], **overrides}
    kwargs.setdefault("name", name)
    return entry["builder"](**kwargs)
