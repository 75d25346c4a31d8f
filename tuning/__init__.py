"""KerasTuner hypermodels and the search runner."""

from keras_vit.tuning.hypermodels import (
    SPEC_FORMS,
    TRANSFORMER_SEARCH_SPACE,
    VIT_SEARCH_SPACE,
    CNNHybridViTHyperModel,
    TransformerHyperModel,
    ViTHyperModel,
    patch_size_choices,
)
from keras_vit.tuning.search import (
    TUNERS,
    SearchResult,
    gpu_devices,
    make_tuner,
    markdown_table,
    resolve_mixed_precision,
    results_rows,
    run_search,
    select_strategy,
    write_results,
)

__all__ = [
    "CNNHybridViTHyperModel",
    "SPEC_FORMS",
    "TRANSFORMER_SEARCH_SPACE",
    "TUNERS",
    "TransformerHyperModel",
    "VIT_SEARCH_SPACE",
    "SearchResult",
    "ViTHyperModel",
    "gpu_devices",
    "make_tuner",
    "markdown_table",
    "patch_size_choices",
    "resolve_mixed_precision",
    "results_rows",
    "run_search",
    "select_strategy",
    "write_results",
]
