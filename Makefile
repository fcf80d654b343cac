# water: the two commands README promises (`make run`, `make test`) and the chores around them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed
# The IAM evaluator the contract tests run under node (tests/contract/iam_simulator.py).
IAM_SIMULATE := tests/contract/iam_simulate
IAM_STAMP := $(IAM_SIMULATE)/node_modules/.installed

.PHONY: setup run test test-fast bench lock clean

setup: $(STAMP) $(IAM_STAMP)

# npm ci: exactly package-lock.json's versions. Without node the IAM simulation tests skip.
$(IAM_STAMP): $(IAM_SIMULATE)/package.json $(IAM_SIMULATE)/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix $(IAM_SIMULATE) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the IAM policy simulation tests will skip (install Node.js to run them)"; fi

# The virtualenv from the fully pinned requirements (what water runs on, and the test tools),
# plus water itself (editable).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v java >/dev/null || { echo "Java 17 is needed for local Spark (apt-get install openjdk-17-jre-headless)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# The demo pipeline end to end on the local target.
run: setup
	$(BIN)/water run recipe_engagement --date 2026-11-01

# lint-imports first: the runtime never imports water.cli (pyproject.toml [tool.importlinter]).
test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# Everything but the end-to-end runs.
test-fast: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "not e2e"

bench: setup
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/sizing.py
	$(BIN)/python benchmarks/parse_cost.py

# Recompile requirements.txt and requirements-dev.txt from their .in files (needs the registry).
lock: setup
	$(BIN)/uv pip compile requirements.in -o requirements.txt --python-version 3.11 --no-header
	$(BIN)/uv pip compile requirements-dev.in -o requirements-dev.txt --python-version 3.11 --no-header

clean:
	rm -rf .water
