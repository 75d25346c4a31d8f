"""KerasTuner hypermodels and the search runner."""
