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

from keras_vit import _startup  # noqa: E402


def register_all():
    """Imports every module that registers serializable classes (`register_keras_serializable`).

    `import keras_vit` calls it; the `keras-vit` command calls it once it has
    read its arguments, so that `keras-vit --help` answers without loading
    TensorFlow. Native start-up log lines below `TF_CPP_MIN_LOG_LEVEL` are held
    back while the frameworks load (see `keras_vit._startup`).
    """
    with _startup.native_logs_filtered():
        from keras_vit import (  # noqa: F401
            applications,
            distillation,
            layers,
            training,
            translation,
        )


if not _startup.launched_as_cli():
    register_all()
