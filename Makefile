# Developer tasks. `make test` is what CI runs (see .ci/run and README.md).
PYTHON ?= python3
PIP    ?= $(PYTHON) -m pip

.PHONY: help install install-dev lint typecheck test test-fast bench docs check-docs run

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install:  ## Install the package
	$(PIP) install -q -e .

install-dev:  ## Install the package with test and lint tools
	$(PIP) install -q -e '.[dev]'

lint:  ## Style checks: ruff, and our own linter on the shipped rules
	$(PYTHON) -m ruff check monitoring tests bench
	$(PYTHON) -m monitoring lint rules/

typecheck:  ## mypy --strict on the package
	$(PYTHON) -m mypy

test: install-dev lint typecheck  ## Everything CI runs: lint, types, the whole test suite
	$(PYTHON) -m pytest -q

test-fast:  ## The test suite without the slow tests
	$(PYTHON) -m pytest -q -m "not slow"

bench:  ## Benchmarks (they print ratios against promtool / Prometheus; see bench/)
	$(PYTHON) bench/lint.py
	$(PYTHON) bench/eval.py
	$(PYTHON) bench/dryrun.py
	$(PYTHON) bench/conditions.py
	$(PYTHON) bench/ledger.py
	$(PYTHON) bench/nab/run --jobs 2

docs:  ## Regenerate docs/functions.md, docs/checks.md and docs/conditions/
	$(PYTHON) -m monitoring.docgen

HISTORY ?= var/history.duckdb
DEMO    ?= var/demo.duckdb

SERVE_ARGS ?=

run: install  ## The main job: check and backtest the shipped rules, then run the engine on live demo metrics
	$(PYTHON) -m monitoring lint rules/
	$(PYTHON) -m monitoring test examples/ruletests/*.yml
	@mkdir -p $(dir $(DEMO)) && rm -f $(DEMO) $(DEMO).wal
	$(PYTHON) -m monitoring demo-data --db $(DEMO) --days 7
	$(PYTHON) -m monitoring dry-run rules/ --db $(DEMO) --html var/dry-run.html
	@echo "HTML report: var/dry-run.html"
	@rm -f $(HISTORY) $(HISTORY).wal
	$(PYTHON) -m monitoring import examples/history.om --db $(HISTORY)
	$(PYTHON) -m monitoring query 'sum by (job) (rate(c_total[5m]))' --db $(HISTORY) --step 15m
	@echo "Running the engine on live demo metrics; alerts print below, Ctrl-C stops it."
	$(PYTHON) -m monitoring serve rules/ --demo $(SERVE_ARGS)
