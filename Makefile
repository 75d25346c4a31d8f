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

.PHONY: demo test test-tf test-backends bench install clean bench-cifar

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

# oneDNN on, as TensorFlow runs for its users on x86 (the test suite turns it off only to keep
# its start-up quiet and its numerics fixed).
bench: $(VENV)/.installed-bench $(TIMM_VENV)/.installed
	TF_ENABLE_ONEDNN_OPTS=1 $(BIN)/python benchmarks/run_all.py --timm-python $(TIMM_VENV)/bin/python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

# Small-data table: every registered family trained from scratch on CIFAR-10 with one recipe
# and a fixed wall-clock budget per model (needs KERAS_VIT_DATA, default ../shared/data).
# oneDNN on: TensorFlow's CPU convolutions (ResNet, hybrids) are several times slower without it.
bench-cifar: $(VENV)/.installed
	TF_ENABLE_ONEDNN_OPTS=1 KERAS_VIT_DATA=$${KERAS_VIT_DATA:-../shared/data} \
		$(BIN)/python benchmarks/cifar_small_data.py $(BENCH_CIFAR_ARGS)
