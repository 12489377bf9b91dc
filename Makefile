# Developer tasks. `make check` is what CI runs before the full test suite (.ci/run); see CONTRIBUTING.md.
VENV ?= .venv
PY ?= $(VENV)/bin/python
PKG := generator/n2g_site
export PYTHONPATH := $(CURDIR)/generator$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: check lint format-check types docs-check test test-fast test-slow format docs

check: lint format-check types docs-check test-fast  ## everything a commit must pass (a few minutes)

lint:
	$(PY) -m ruff check generator tests benchmarks scripts

format-check:
	$(PY) -m ruff format --check generator tests benchmarks scripts

types:
	$(PY) -m mypy $(PKG)

docs-check:  ## the option tables of README.md and docs/options.md match config.py
	$(PY) -m n2g_site.docgen --check

test-fast:  ## unit and integration tests, no slow ones (about a minute on 2 cores)
	$(PY) -m pytest -q -x

test: test-slow

test-slow:  ## every test, the embedded-model builds included (several minutes; the README's test command)
	$(PY) -m pytest -q --slow

format:  ## rewrite the code in the project's format, and fix what ruff can fix
	$(PY) -m ruff format generator tests benchmarks scripts
	$(PY) -m ruff check --fix generator tests benchmarks scripts

docs:  ## regenerate the option tables from config.py
	$(PY) -m n2g_site.docgen
