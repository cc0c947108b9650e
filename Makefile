# Everyday commands. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_MODE ?= offline
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib

.DEFAULT_GOAL := help
.PHONY: help install run child lint format test test-fast bench clean

help:  ## list the everyday commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install mnms with pinned dependencies

run: install  ## the main job (python train.py)
	$(PY) train.py $(ARGS)

child: install  ## train one child: make child ARGS="task=trec child.arch.encoder=words"
	$(PY) train.py mode=child $(ARGS)

lint: install  ## ruff: lint and format check (part of `make test`)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## ruff: apply the formatting and the safe lint fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Tests run on every core up to 4 (pytest-xdist; worksteal evens out the long end-to-end
# tests); TEST_ARGS adds to it, e.g. make test-fast TEST_ARGS="-n 0 -k resume" to run serially.
TEST_ARGS ?=
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses=4 --dist worksteal

test: lint  ## ruff, then the whole test suite, slow end-to-end tests included (what CI runs)
	$(PYTEST) --durations=15 $(TEST_ARGS)

test-fast: install  ## unit tests only (under 2 minutes on 2 cores)
	$(PYTEST) -m "not slow" $(TEST_ARGS)

bench: install  ## reproduce docs/benchmarks.md figures
	$(PY) -m bench.child_overhead
	$(PY) -m bench.design_choices
	$(PY) -m bench.encoder_table
	$(PY) -m bench.multitask_search --trials 400
	$(PY) -m bench.throughput --repeats 5
	$(PY) -m bench.transfer_study

clean:  ## remove run outputs and caches (not the venv)
	rm -rf outputs multirun wandb .cache .pytest_cache
