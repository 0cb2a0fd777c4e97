# avf: two commands do everything on a fresh machine (Python 3.11 is the only prerequisite).
#   make demo   set up if needed, then `dvc repro` of the default pipeline (embedded demo data)
#   make test   set up if needed, then the test suite
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.avf-setup-stamp
# recipes (and the commands dvc.yaml runs: `avf ...`) find the project's tools without an activated venv
export PATH := $(CURDIR)/$(BIN):$(PATH)
UV_VERSION := 0.13.9
export UV_COMPILE_BYTECODE := 1
include infra/env.mk

.PHONY: help setup demo test test-fast test-durations lint format bench clean-venv

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock models/assets/SHA256SUMS
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "avf needs Python 3.11 (set PY=/path/to/python3.11)")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip sync -q requirements.lock
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install -q --no-deps -e .
	$(BIN)/python -m avf.assets
	touch $(STAMP)

setup: $(STAMP) ## Create .venv with the locked stack and the face model assets (idempotent)

demo: setup ## Run the default pipeline on the embedded demo dataset (dvc repro)
	$(BIN)/dvc repro

# Test files run on TEST_WORKERS parallel pytest workers (pytest-xdist), one whole file per worker at a time
# (module fixtures such as the e2e pipeline run once); `TEST_WORKERS=0` runs everything in one process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: setup ## Run the test suite (everything CI runs: unit, integration, reliability)
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: setup ## Run the quick tests only (no slow integration tests)
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST)

# tests/support/durations.py runs the files longest first by these measurements; refresh them after adding or
# changing a long test file (any subset refreshes just its files: `make test-durations TESTS=tests/unit`)
TESTS ?=
test-durations: setup ## Run the test suite and record each file's duration in tests/durations.json
	$(BIN)/python -m pytest -q $(XDIST) --record-durations $(TESTS)

lint: setup ## Ruff lint and format check, and the import contracts of docs/architecture.md
	$(BIN)/ruff check avf pipelines tests benchmarks
	$(BIN)/ruff format --check avf pipelines tests benchmarks
	$(BIN)/lint-imports --no-cache

format: setup ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix avf pipelines tests benchmarks
	$(BIN)/ruff format avf pipelines tests benchmarks

bench: setup ## Quick benchmarks (prints ratios, writes reports/bench/)
	$(BIN)/python -m benchmarks --quick

clean-venv: ## Remove the virtual environment
	rm -rf $(VENV)
