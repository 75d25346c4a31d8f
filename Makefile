# The two commands: `make demo` and `make test`. Both build .venv from scratch when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL := 3
# The tests run with oneDNN off for fixed numerics; `make demo` and `make bench` run TensorFlow as
# its users do.
TEST_ENV := TF_ENABLE_ONEDNN_OPTS=0
# Tests marked `backends` (setup.cfg [tool:pytest]) also run on the JAX and PyTorch backends.
BACKEND_MARK := backends and not slow

.PHONY: demo test test-fast lint format bench bench-train bench-gpu install clean bench-cifar mutants

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
	$(TEST_ENV) KERAS_BACKEND=jax $(BIN)/python -m pytest tests -m "$(BACKEND_MARK)" -q
	$(TEST_ENV) KERAS_BACKEND=torch $(BIN)/python -m pytest tests -m "$(BACKEND_MARK)" -q

# The suite without the tests marked slow (real data, large models), TensorFlow backend only.
test-fast: $(VENV)/.installed-test
	$(TEST_ENV) $(BIN)/python -m pytest tests -m "not slow" -q

# Mutation testing (mutmut 3, the `mutants` extra) of the modules that carry the math: the files are listed
# in setup.cfg [mutmut], the functions that compute here (about 1,510 mutants). It runs in a copy
# under build/mutation (kept between runs: unchanged mutants are not run again); each mutant runs the fast
# tests that reach its function, in a process forked from one that imported TensorFlow once.
MUTANTS ?= keras_vit.layers.multi_head_self_attention.x_scaled_dot_product_attention__* \
	keras_vit.layers.multi_head_self_attention.x*attend__* keras_vit.layers.patch_encoder.x_resample_position_embedding__* \
	keras_vit.layers.patch_encoder.x*PatchEncoder*call__* keras_vit.layers.pooling_attention.x_relative_distance_index__* \
	keras_vit.layers.pooling_attention.x*relative_position_bias__* keras_vit.layers.pooling_attention.x*_pool__* \
	keras_vit.layers.pooling_attention.x*PoolingAttention*call__* keras_vit.layers.token_pooling.x*call__* \
	keras_vit.convert.vit.x_fit_* keras_vit.convert.engine.x__linear__* keras_vit.convert.engine.x__conv__* \
	keras_vit.convert.engine.x__depthwise__* keras_vit.convert.engine.x__flax_heads_* keras_vit.convert.engine.x__split_leaf__* \
	keras_vit.translation.decoding.x__beam__* keras_vit.translation.decoding.x__greedy__* \
	keras_vit.translation.decoding.x__log_softmax__* keras_vit.explain.legrad.x_legrad__* \
	keras_vit.explain.legrad.x_attention_gradients__* keras_vit.distillation.x*compute_loss__* \
	keras_vit.distillation.x*_cross_entropy__* keras_vit.training.x_warmup_steps__* keras_vit.training.x_learning_rate_schedule__*
MUTANT_JOBS ?= 2

$(VENV)/.installed-mutants: $(VENV)/.installed-test
	$(BIN)/python -m pip install -e ".[mutants]"
	touch $@

mutants: $(VENV)/.installed-mutants
	mkdir -p build/mutation
	cp -rp keras_vit tests setup.cfg pyproject.toml build/mutation/
	$(BIN)/python tests/mutants.py prepare build/mutation
	cd build/mutation && $(TEST_ENV) $(CURDIR)/$(BIN)/mutmut run --max-children $(MUTANT_JOBS) $(foreach m,$(MUTANTS),'$(m)'); \
		$(CURDIR)/$(BIN)/mutmut results --all true > results.txt; \
		$(CURDIR)/$(BIN)/python $(CURDIR)/tests/mutants.py score results.txt

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

# Inference (ViT-B/16) and training (CIFAR ViT, ViT-S/16; `keras-vit train` on cifar10/train.npz
# under KERAS_VIT_DATA) side by side with timm and keras-hub: benchmarks/results/*.md.
bench: $(VENV)/.installed-bench $(TIMM_VENV)/.installed
	KERAS_VIT_DATA=$${KERAS_VIT_DATA:-../shared/data} \
		$(BIN)/python benchmarks/run_all.py --timm-python $(TIMM_VENV)/bin/python $(BENCH_ARGS)

# Training throughput alone (BENCH_TRAIN_ARGS, e.g. --models cifar --repeats 7).
bench-train: $(VENV)/.installed-bench $(TIMM_VENV)/.installed
	KERAS_VIT_DATA=$${KERAS_VIT_DATA:-../shared/data} $(BIN)/python benchmarks/train_speed.py \
		--timm-python $(TIMM_VENV)/bin/python --output benchmarks/results/train_cpu.md $(BENCH_TRAIN_ARGS)

# On a GPU machine: training img/s and MFU against timm AMP + torch.compile, then the patch × depth
# search (benchmarks/gpu.sh; `GPU_ARGS=--quick` checks the script on CPU).
bench-gpu: $(VENV)/.installed-bench $(TIMM_VENV)/.installed
	KERAS_VIT_DATA=$${KERAS_VIT_DATA:-../shared/data} benchmarks/gpu.sh $(GPU_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

# Small-data table: every registered family trained from scratch on CIFAR-10 with one recipe
# and a fixed wall-clock budget per model (needs KERAS_VIT_DATA, default ../shared/data).
# TensorFlow as its users run it (oneDNN on by default): its CPU convolutions are several times slower without.
bench-cifar: $(VENV)/.installed
	KERAS_VIT_DATA=$${KERAS_VIT_DATA:-../shared/data} \
		$(BIN)/python benchmarks/cifar_small_data.py $(BENCH_CIFAR_ARGS)
