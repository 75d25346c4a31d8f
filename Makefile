# The two commands: `make demo` and `make test`. Both build .venv from scratch when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS := 0
# Layer and small-ViT tests that also run on the JAX and PyTorch backends.
BACKEND_TESTS := tests/test_layers.py tests/test_vit.py
BACKEND_TESTS += tests/test_window_attention.py tests/test_swin_block.py tests/test_patch_merging.py \
	tests/test_pooling_attention.py tests/test_multiscale_block.py

.PHONY: demo test test-tf test-backends bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[test]" jax "torch==2.13.0"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m keras_vit.demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests -v --durations=15
	KERAS_BACKEND=jax $(BIN)/python -m pytest $(BACKEND_TESTS) -m "not slow" -q
	KERAS_BACKEND=torch $(BIN)/python -m pytest $(BACKEND_TESTS) -m "not slow" -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
