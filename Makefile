# The two commands a newcomer needs: `make demo` and `make test` (`make test-fast` while you work).
# Both create .venv when it is missing and (re)install the project when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Prefect runs offline here: no analytics, no version checks.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# a fresh virtual environment's first ephemeral Prefect server start can exceed Prefect's 20 s default
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export DO_NOT_TRACK := 1

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python flows/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)  # the loop while you work: everything but the tests marked slow (processes, Prefect server, training)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests flows bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

bench: $(STAMP)  # by hand, on a quiet machine; results go to docs/benchmarks.md
	$(BIN)/python bench/task_overhead.py
	$(BIN)/python bench/store_writes.py
	$(BIN)/python bench/import_runs.py
	$(BIN)/python bench/import_backtest.py
	$(BIN)/python bench/scoring_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
