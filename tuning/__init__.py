"""KerasTuner hypermodels and the search runner."""

from keras_vit.tuning.hypermodels import (
    SPEC_FORMS,
    VIT_SEARCH_SPACE,
    CNNHybridViTHyperModel,
    ViTHyperModel,
    patch_size_choices,
)
from keras_vit.tuning.search import (
    TUNERS,
    SearchResult,
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
    "TUNERS",
    "VIT_SEARCH_SPACE",
    "SearchResult",
    "ViTHyperModel",
    "make_tuner",
    "markdown_table",
    "patch_size_choices",
    "resolve_mixed_precision",
    "results_rows",
    "run_search",
    "select_strategy",
    "write_results",
]
