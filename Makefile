# The two commands of the README: `make demo` and `make test`. Everything they need is
# installed on first use and reused afterwards.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .cache/uv-venv/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: help demo test deps venv kafka lint typecheck pytest stack bench bench-national

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

demo: deps venv kafka ## run the tracker end to end on a local Kafka with simulated referrals
	@$(BIN)/python -m deploy.local.demo $(DEMO_ARGS)

test: deps venv kafka lint typecheck pytest ## all checks: ruff, mypy, pytest on the real services

deps: ## install missing system packages (Java, Maven, PostgreSQL, Prometheus)
	@bash deploy/local/install-system-deps.sh

$(UV):
	@echo "==> bootstrapping uv $(UV_VERSION) into .cache/uv-venv"
	@$(PYTHON) -m venv .cache/uv-venv
	@.cache/uv-venv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@echo "==> installing Python dependencies from uv.lock into $(VENV)"
	@$(UV) sync --frozen --quiet
	@touch $@

venv: $(VENV)/.synced ## create or update .venv from uv.lock

kafka: venv ## fetch the Apache Kafka broker jars from Maven Central (once)
	@echo "==> Kafka jars: $$($(BIN)/python -m deploy.local fetch)"

lint: venv ## ruff lint and format check
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

typecheck: venv ## mypy --strict
	@echo "==> mypy"
	@$(BIN)/mypy

pytest: venv kafka ## the test suite (starts its own Kafka, PostgreSQL and Prometheus)
	@echo "==> pytest (real Kafka, PostgreSQL and Prometheus start on free loopback ports)"
	@$(BIN)/pytest $(PYTEST_ARGS)

stack: deps venv kafka ## run Kafka, PostgreSQL and Prometheus until Ctrl-C (for a developer)
	@$(BIN)/python -m deploy.local up

bench: venv kafka ## run the benchmarks; figures go to bench/results/
	@for b in bench/bench_*.py; do m=$$(basename $$b .py); echo "==> bench.$$m"; $(BIN)/python -m bench.$$m || exit 1; done

bench-national: deps venv kafka ## a simulated year for slices of England (about 25 minutes); figures and plots to bench/results/
	@$(BIN)/python -m bench.national --teams 60 --teams 200 --teams 600
