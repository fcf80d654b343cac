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

.PHONY: setup test-setup run lint test test-fast bench lock clean

# setup: what the demo needs (`make run`); test-setup: that and what only the tests need.
setup: run-packages $(STAMP)
test-setup: setup test-packages $(IAM_STAMP)

# What pip cannot install: a JVM for local Spark (the demo and the Spark tests), Debian's
# chromium (the web-UI test drives /usr/bin/chromium), node and npm (the IAM simulation). What
# is missing is installed with apt-get when this runs as root; elsewhere the tests that need it
# skip, saying how to get it. Each entry: the command or path that must exist, then its package.
.PHONY: run-packages test-packages
APT_GET ?= apt-get
RUN_PACKAGES := java:openjdk-17-jre-headless
TEST_PACKAGES := /usr/bin/chromium:chromium npm:npm
run-packages:
	@$(call apt_install,$(RUN_PACKAGES))
test-packages:
	@$(call apt_install,$(TEST_PACKAGES))

define apt_install
missing=""; \
for need in $(1); do command -v "$${need%%:*}" >/dev/null || missing="$$missing $${need##*:}"; done; \
if [ -z "$$missing" ]; then exit 0; fi; \
if [ "$$(id -u)" != 0 ] || ! command -v $(APT_GET) >/dev/null; then \
  echo "not installed:$$missing (not root, or no apt-get): what needs it skips; on Debian: sudo apt-get install -y$$missing"; \
  exit 0; \
fi; \
echo "installing$$missing (apt-get)"; \
$(APT_GET) update -qq >/dev/null || echo "apt-get update failed: installing from the package lists there are"; \
for package in $$missing; do \
  DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$package >/dev/null \
    || echo "apt-get could not install $$package: what needs it skips"; \
done
endef

# npm ci: exactly package-lock.json's versions. Without npm the IAM simulation tests skip.
$(IAM_STAMP): $(IAM_SIMULATE)/package.json $(IAM_SIMULATE)/package-lock.json | test-packages
	@if command -v npm >/dev/null; then \
	  npm ci --prefix $(IAM_SIMULATE) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the IAM policy simulation tests will skip (install npm, then make setup)"; fi

# The virtualenv from the fully pinned requirements (what water runs on, and the test tools),
# plus water itself (editable). --compile-bytecode writes the .pyc files at install, as pip does
# and the official image has: uv leaves them out, and where PYTHONDONTWRITEBYTECODE is set nothing
# writes them later, so every process (a task, `water`, a test) compiled Airflow again: about
# 2 s more per process on 2 cores, and `make test-fast` took 137 s instead of 92 s.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# The demo pipeline end to end on the local target.
run: setup
	$(BIN)/water run recipe_engagement --date 2026-11-01

# The project's Python held to pyproject.toml's rules: ruff's lint and format, the import
# contract (the runtime never imports water.cli: [tool.importlinter]) and mypy ([tool.mypy]
# names the files). .pre-commit-config.yaml runs the same tools before a commit.
PY_SOURCES := plugins dags tests benchmarks include
lint: $(STAMP)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/lint-imports
	$(BIN)/mypy

# pytest on pytest-xdist's workers (a module on one worker; README "How long the tests take").
# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: each worker rewrites the asserts
# of every test module it imports, about 5 s a worker on 2 cores, unless pytest may cache them.
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadscope --no-loadscope-reorder

# Lint first, then every test.
test: test-setup lint
	$(PYTEST)

# Lint first, then everything but the end-to-end runs, the tests on local Spark or RabbitMQ and
# those that train a model (the SageMaker and Vertex stages, AutoML).
test-fast: test-setup lint
	$(PYTEST) -m "not e2e and not spark and not rabbitmq and not training"

bench: setup
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/sizing.py
	$(BIN)/python benchmarks/parse_cost.py
	$(BIN)/python benchmarks/control_latency.py

# Recompile requirements.txt and requirements-dev.txt from their .in files (needs the registry).
lock: setup
	$(BIN)/uv pip compile requirements.in -o requirements.txt --python-version 3.11 --no-header
	$(BIN)/uv pip compile requirements-dev.in -o requirements-dev.txt --python-version 3.11 --no-header

clean:
	rm -rf .water
