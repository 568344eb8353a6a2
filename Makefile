# Everything installs from PyPI/Debian into .venv and $(GEMMA4_TOOLS_CACHE); nothing by hand.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE ?= manifests/examples/31b-h100-bf16-tp2.yaml
export GEMMA4_TOOLS_CACHE ?= $(HOME)/.cache/gemma4-operator

.PHONY: setup demo test lint typecheck pytest bench crd clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

setup: $(VENV)/.installed

## demo: plan and render an example offline (no cluster needed)
demo: setup
	$(BIN)/gemma4-operator plan $(EXAMPLE)
	$(BIN)/gemma4-operator render $(EXAMPLE)

## test: lint, type-check and run every test tier (unit, integration, tools, e2e, engine)
test: lint typecheck pytest

lint: setup
	$(BIN)/ruff check operator tests
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest -q tests

## bench: planner throughput (BENCH_AGAINST=REF: side by side with commit REF), reconcile load and the
## autoscaling trace benchmark (the shared Azure trace as recorded and x24, when ../shared/data/traces/
## holds it, and the synthetic traces; every policy x trace vs the oracle and static peak)
bench: setup
	$(BIN)/python -m tests.benchmarks.planner.run $(if $(BENCH_AGAINST),--against $(BENCH_AGAINST))
	$(BIN)/python -m tests.benchmarks.reconcile.run
	$(BIN)/python -m tests.benchmarks.autoscaling.run

## crd: regenerate the committed CRD from api.py
crd: setup
	$(BIN)/gemma4-operator crd > crds/gemma4deployments.serving.gemma4.dev.yaml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

## manifests: regenerate the CRD, its copy in the Helm chart, manifests/install.yaml (the chart
## rendered with default values), manifests/argocd/argocd-cm.yaml (from health.lua) and the chart's
## Grafana dashboards (tests/packaging/dashboards.py)
.PHONY: manifests
manifests: crd
	$(BIN)/python -m tests.packaging.chart
