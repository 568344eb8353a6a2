# Everything installs from PyPI, Debian and the Go module proxy into .venv and $(GEMMA4_TOOLS_CACHE); nothing
# system-wide, nothing under /etc, no root needed (see the README's "Tests" section for exactly what goes where).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE ?= manifests/examples/31b-h100-bf16-tp2.yaml
export GEMMA4_TOOLS_CACHE ?= $(HOME)/.cache/gemma4-operator
# Test tiers, one pytest run each (directories under tests/). Empty: all of them, in run_tiers.py's order (unit
# integration packaging engine tools e2e benchmarks, then any other tests/ directory with test files).
TIERS ?=
FAST_TIERS ?= unit integration

.PHONY: setup demo test test-fast tools tiers lint typecheck pytest bench crd clean

$(VENV)/.installed: pyproject.toml
	@echo "setup: creating $(VENV) and installing the project with its test and dev extras (PyPI)"
	@t0=$$(date +%s); \
	$(PYTHON) -m venv $(VENV) && \
	$(BIN)/pip install --quiet --upgrade pip && \
	$(BIN)/pip install --progress-bar off -e '.[test,dev]' | grep -E '^(Collecting|Successfully)' && \
	echo "setup took $$(( $$(date +%s) - t0 )) s"
	touch $@

setup: $(VENV)/.installed

## demo: plan and render an example offline (no cluster needed)
demo: setup
	$(BIN)/gemma4-operator plan $(EXAMPLE)
	$(BIN)/gemma4-operator render $(EXAMPLE)

## test: lint, type-check, fetch/build the test tools (before pytest, with progress), then every tier
## (unit, integration, packaging, engine, tools, e2e, benchmarks), one pytest run and one "tier X took N s" each
test: lint typecheck tools tiers

## test-fast: the inner loop, unit + integration only (no tools needed; well under 2 minutes warm)
test-fast: setup
	$(BIN)/python tests/tools/run_tiers.py $(FAST_TIERS)

lint: setup
	@t0=$$(date +%s); $(BIN)/ruff check operator tests && $(BIN)/lint-imports && \
		echo "lint took $$(( $$(date +%s) - t0 )) s"

typecheck: setup
	@t0=$$(date +%s); $(BIN)/mypy && echo "typecheck took $$(( $$(date +%s) - t0 )) s"

## tools: fetch or build everything the tiers use into $(GEMMA4_TOOLS_CACHE) (instant when cached)
tools: setup
	GEMMA4_TOOLS_PYTHON=$(PYTHON) bash tests/tools/fetch_tools.sh

## tiers: run the tiers in $(TIERS), e.g. `make tiers TIERS="packaging e2e"`
tiers: setup tools
	$(BIN)/python tests/tools/run_tiers.py $(TIERS)

pytest: tiers

## bench: planner throughput (BENCH_AGAINST=REF: side by side with commit REF), reconcile load and the
## autoscaling trace benchmark (the shared Azure trace as recorded and x24, when ../shared/data/traces/
## holds it, and the synthetic traces; every policy x trace vs the oracle and static peak), and the scraper's
## memory while 20 hostile pods answer endless /metrics bodies against 20 well-behaved ones
bench: setup tools
	$(BIN)/python -m tests.benchmarks.planner.run $(if $(BENCH_AGAINST),--against $(BENCH_AGAINST))
	$(BIN)/python -m tests.benchmarks.reconcile.run $(if $(BENCH_AGAINST),--against $(BENCH_AGAINST))
	$(BIN)/python -m tests.benchmarks.autoscaling.run
	$(BIN)/python -m tests.benchmarks.scrape.run

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
