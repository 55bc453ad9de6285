# `make serve` and `make test` are all a fresh machine needs: both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAM_VENV ?= .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_ARGS ?=
BASE_IMAGE ?= tts-service/piper-base:1

.PHONY: help install serve lint format test test-slow test-reliability bench bench-quick verify-voices clean sam-venv sam-build deploy image

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install the service with its dev tools

# The bench extra (matplotlib) on top of the dev install; redone whenever the dev install is.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

serve: $(STAMP)  ## Serve every endpoint with the default voice on $$PORT (8085)
	$(PY) local/serve.py

lint: $(STAMP)  ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)  ## Apply ruff's formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint $(SAM_STAMP)  ## Lint, type-check and run the default test suite (template checks need .venv-sam)
	$(PY) -m pytest -m "not slow"

test-slow: $(STAMP)  ## The slow suites (memory bounds, load); CI runs them after `make test`
	$(PY) -m pytest -m "slow and not reliability"

test-reliability: $(STAMP)  ## Schema fuzzing, dependency faults and a soak against the shim on loopback (~8 min; needs redis-server)
	$(PY) -m pytest -m reliability

$(SAM_STAMP): infra/requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet -r infra/requirements-sam.txt
	touch $(SAM_STAMP)

sam-venv: $(SAM_STAMP)  ## aws-sam-cli in its own venv (.venv-sam)

sam-build: $(SAM_STAMP)  ## Build the shared Piper base image, then every function image (needs Docker)
	docker build -t $(BASE_IMAGE) layers/piper
	$(SAM_VENV)/bin/sam build

deploy: sam-build  ## sam deploy --guided (asks for the parameters; README "Deploy")
	$(SAM_VENV)/bin/sam deploy --guided

image:  ## The self-hosting image of the shim (infra/Dockerfile; needs Docker)
	docker build -f infra/Dockerfile -t tts-service:0.1.0 .

verify-voices: $(STAMP)  ## Check every voice in models/map.json (files, hashes, configs)
	$(VENV)/bin/tts-voices verify

bench: $(BENCH_STAMP)  ## Ours vs stock Piper's server vs raw Piper -> docs/performance.md (~10-15 min; BENCH_ARGS=...)
	$(PY) bench/run.py $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)  ## The same report from a few rounds (a few minutes), for development
	$(PY) bench/run.py --quick $(BENCH_ARGS)

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) $(SAM_VENV) .mypy_cache .ruff_cache .pytest_cache .cache/bench
