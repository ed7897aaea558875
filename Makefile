# Set-up and everyday commands. Every target creates .venv and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
PLUGINS := $(wildcard plugins/*/pyproject.toml)
LINT_PATHS := recsys tests benchmarks examples $(dir $(PLUGINS))
PYTEST_FLAGS ?=

.PHONY: install demo test test-slow test-all test-cuda lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml $(PLUGINS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# the CPU wheel of torch first, so nothing below pulls a CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"
	# RecBole only for the MovieLens-100k atomic files its wheel ships; never imported
	$(PIP) install -q --no-deps recbole==1.2.1
	for p in $(dir $(PLUGINS)); do $(PIP) install -q --no-deps -e $$p || exit 1; done
	touch $(STAMP)

demo: install
	$(VENV)/bin/recsys train --dataset ml-100k --model pop --model itemknn --model bpr --model lightgcn

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: install
	$(VENV)/bin/ruff format $(LINT_PATHS)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)

test: lint
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_FLAGS)

test-slow: install
	$(VENV)/bin/pytest -m slow $(PYTEST_FLAGS)

test-all: lint
	$(VENV)/bin/pytest $(PYTEST_FLAGS)

# the tests that need a GPU (CI has none and skips them): every model trained on CUDA
CUDA_TESTS := tests/cli/test_cuda_models.py tests/train/test_trainer.py tests/eval/test_evaluator.py

test-cuda: install
	$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make test-cuda: torch sees no CUDA device')"
	$(VENV)/bin/pytest $(CUDA_TESTS) $(PYTEST_FLAGS)

bench: install
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
