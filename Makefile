# `make serve` and `make test` are all a fresh machine needs: both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: help install serve lint format test test-slow bench verify-voices clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install the service with its dev tools

serve: $(STAMP)  ## Serve every endpoint with the default voice on $$PORT (8085)
	$(PY) local/serve.py

lint: $(STAMP)  ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)  ## Apply ruff's formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint  ## Lint, type-check and run the default test suite
	$(PY) -m pytest -m "not slow"

test-slow: $(STAMP)  ## The slow suites (memory bounds, load); CI runs them after `make test`
	$(PY) -m pytest -m slow

verify-voices: $(STAMP)  ## Check every voice in models/map.json (files, hashes, configs)
	$(VENV)/bin/tts-voices verify

bench: $(STAMP)  ## Benchmarks; numbers are ratios against a baseline in the same run
	$(PY) bench/bench_tts.py

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
