"""keras_vit: Transformers and Vision Transformers for Keras 3.

Subpackages: `keras_vit.layers` (building blocks), `keras_vit.applications`
(model factories and the registry), `keras_vit.tuning` (KerasTuner
hypermodels), `keras_vit.data` (input pipelines).
"""

__version__ = "0.1.0"
