# The two commands: `make demo` and `make test`. Both build .venv from scratch when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL := 3
# The tests run with oneDNN off for fixed numerics; `make demo` and `make bench` run TensorFlow as
# its users do.
TEST_ENV := TF_ENABLE_ONEDNN_OPTS=0
# Layer and small-ViT tests that also run on the JAX and PyTorch backends.
BACKEND_TESTS := tests/test_layers.py tests/test_layer_contract.py tests/test_patch_encoder.py tests/test_vit.py \
	tests/test_explain_legrad.py tests/test_distillation.py
BACKEND_TESTS += tests/test_window_attention.py tests/test_swin_block.py tests/test_patch_merging.py \
	tests/test_pooling_attention.py tests/test_multiscale_block.py

.PHONY: demo test test-fast lint format bench install clean bench-cifar

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[test]" jax "torch==2.13.0"
	touch $@

$(VENV)/.installed-lint: $(BIN)/python
	$(BIN)/python -m pip install -q ruff
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m keras_vit.demo

test: $(VENV)/.installed-test
	$(TEST_ENV) $(BIN)/python -m pytest tests -v --durations=15
	$(TEST_ENV) KERAS_BACKEND=jax $(BIN)/python -m pytest $(BACKEND_TESTS) -m "not slow" -q
	$(TEST_ENV) KERAS_BACKEND=torch $(BIN)/python -m pytest $(BACKEND_TESTS) -m "not slow" -q

# The suite without the tests marked slow (real data, large models), TensorFlow backend only.
test-fast: $(VENV)/.installed-test
	$(TEST_ENV) $(BIN)/python -m pytest tests -m "not slow" -q

# ruff: the formatter's check and the linter (configuration in pyproject.toml), on the whole tree.
lint: $(VENV)/.installed-lint
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(VENV)/.installed-lint
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmark contestants: JAX and PyTorch backends and keras-hub in .venv (keras-hub without its
# text/hub dependencies: importing it needs only regex and tokenizers); timm in its own
# environment, since it needs another torch.
TIMM_VENV := benchmarks/.venv-timm
BENCH_ARGS ?=

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install jax "torch==2.13.0"
	$(BIN)/python -m pip install --no-deps keras-hub tokenizers
	$(BIN)/python -m pip install regex
	touch $@

$(TIMM_VENV)/.installed:
	$(PYTHON) -m venv $(TIMM_VENV)
	$(TIMM_VENV)/bin/python -m pip install -q --upgrade pip
	$(TIMM_VENV)/bin/python -m pip install "torch==2.14.1" "torchvision==0.29.1" timm numpy
	touch $@

bench: $(VENV)/.installed-bench $(TIMM_VENV)/.installed
	$(BIN)/python benchmarks/run_all.py --timm-python $(TIMM_VENV)/bin/python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

# Small-data table: every registered family trained from scratch on CIFAR-10 with one recipe
# and a fixed wall-clock budget per model (needs KERAS_VIT_DATA, default ../shared/data).
# TensorFlow as its users run it (oneDNN on by default): its CPU convolutions are several times slower without.
bench-cifar: $(VENV)/.installed
	KERAS_VIT_DATA=$${KERAS_VIT_DATA:-../shared/data} \
		$(BIN)/python benchmarks/cifar_small_data.py $(BENCH_CIFAR_ARGS)
