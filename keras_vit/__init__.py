"""keras_vit: Transformers and Vision Transformers for Keras 3.

Subpackages: `keras_vit.layers` (building blocks), `keras_vit.applications`
(model factories and the registry), `keras_vit.tuning` (KerasTuner
hypermodels), `keras_vit.convert` (checkpoint conversion), `keras_vit.explain`
(attention maps, rollout, LeGrad), `keras_vit.translation` (seq2seq training
and decoding), `keras_vit.data` (input pipelines), `keras_vit.cli` (the
`keras-vit` command).

Importing `keras_vit` registers every serializable class the package defines
(layers, models, losses, schedules), so that `keras.saving.load_model` reads any
`.keras` file the package or its command line wrote, in a fresh process, with
nothing else imported.
"""

__version__ = "0.1.0"

# Imported for their registration side effect (`register_keras_serializable`).
from keras_vit import (
    applications,  # noqa: E402,F401
    distillation,  # noqa: E402,F401
    layers,  # noqa: E402,F401
    training,  # noqa: E402,F401
    translation,  # noqa: E402,F401
)
