"""KerasTuner hypermodels and the search runner.

Modules: `hypermodels` (the search spaces and the hypermodels), `devices`
(GPUs, strategy, mixed precision), `data` (what a search trains on),
`tuners` (the reporting tuners), `results` (table, plot, best trial),
`distributed` (the leasing chief/worker mode) and `search` (`run_search`).
"""

from keras_vit.tuning.devices import gpu_devices, resolve_mixed_precision, select_strategy
from keras_vit.tuning.hypermodels import (
    SPEC_FORMS,
    TRANSFORMER_SEARCH_SPACE,
    VIT_SEARCH_SPACE,
    CNNHybridViTHyperModel,
    TransformerHyperModel,
    ViTHyperModel,
    patch_size_choices,
)
from keras_vit.tuning.results import (
    BEST_TRIAL_FILE,
    best_trial_record,
    markdown_table,
    results_rows,
    train_command,
    write_results,
)
from keras_vit.tuning.search import SearchResult, run_search
from keras_vit.tuning.tuners import TUNERS, make_tuner

__all__ = [
    "BEST_TRIAL_FILE",
    "CNNHybridViTHyperModel",
    "SPEC_FORMS",
    "TRANSFORMER_SEARCH_SPACE",
    "TUNERS",
    "TransformerHyperModel",
    "VIT_SEARCH_SPACE",
    "SearchResult",
    "ViTHyperModel",
    "best_trial_record",
    "gpu_devices",
    "make_tuner",
    "markdown_table",
    "patch_size_choices",
    "resolve_mixed_precision",
    "results_rows",
    "run_search",
    "select_strategy",
    "train_command",
    "write_results",
]
