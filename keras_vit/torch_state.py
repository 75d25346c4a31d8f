"""Copy PyTorch-layout arrays (a state dict as a name → NumPy array mapping) into Keras layers.

PyTorch's `nn.Linear` stores `(out, in)`; Keras' `Dense` kernel is `(in, out)`.
Nothing here imports PyTorch: callers pass NumPy arrays (e.g. from
`numpy.load` or safetensors).
"""

import numpy as np


class StateDict:
    """A name → array mapping that records which entries were used.

    Args:
        arrays: mapping of parameter names to arrays.
        prefix: string removed from the front of every name.
    """

    def __init__(self, arrays, prefix=""):
        self.arrays = {k[len(prefix):]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}
        self.used = set()

    def __getitem__(self, name):
        if name not in self.arrays:
            raise KeyError(f"The state dict has no entry {name!r}")
        self.used.add(name)
        return self.arrays[name]

    def __contains__(self, name):
        return name in self.arrays

    def unused(self):
        """Names never read: a mismatch between the two architectures."""
        return sorted(set(self.arrays) - self.used)


def _assign(variable, value, name):
    value = np.asarray(value, dtype="float32")
    if tuple(variable.shape) != value.shape:
        raise ValueError(
            f"Shape mismatch for {name!r}: the model expects {tuple(variable.shape)}, "
            f"the state dict has {value.shape}"
        )
    variable.assign(value)


def load_linear(layer, state, name):
    """`nn.Linear` `name` → Keras `Dense` (or a 1×1 `Conv2D`) `layer`."""
    weight = state[f"{name}.weight"].T
    _assign(layer.kernel, weight.reshape(tuple(layer.kernel.shape)), f"{name}.weight")
    if f"{name}.bias" in state:
        _assign(layer.bias, state[f"{name}.bias"], f"{name}.bias")
    elif getattr(layer, "bias", None) is not None:
        raise ValueError(f"{name!r} has no bias but the Keras layer {layer.name!r} has one")


def load_layer_norm(layer, state, name):
    """`nn.LayerNorm` `name` → Keras `LayerNormalization` `layer`."""
    _assign(layer.gamma, state[f"{name}.weight"], f"{name}.weight")
    _assign(layer.beta, state[f"{name}.bias"], f"{name}.bias")


def load_array(variable, state, name, reshape=True):
    """A raw parameter `name` (a token, a table) → `variable`, reshaped to fit."""
    value = state[name]
    if reshape:
        value = value.reshape(tuple(variable.shape))
    _assign(variable, value, name)


def check_all_used(state):
    unused = state.unused()
    if unused:
        raise ValueError(f"State-dict entries with no place in the model: {unused}")
