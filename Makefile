# `make serve` and `make test` are all a fresh machine needs: both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SAM_VENV ?= .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_ARGS ?=
# Images are tagged <version>-<short commit> (with -dirty for uncommitted changes), never only a fixed tag, so a
# running image always names the code it was built from.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
GIT_SHA := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo nogit)
GIT_DIRTY := $(shell git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo -dirty)
IMAGE_TAG ?= $(VERSION)-$(GIT_SHA)$(GIT_DIRTY)
IMAGE ?= tts-service
FRONTEND_IMAGE ?= tts-frontend
BASE_IMAGE ?= tts-service/piper-base:$(IMAGE_TAG)
URL ?= http://127.0.0.1:8085
SMOKE_ARGS ?=

.PHONY: help install serve lint format test test-slow test-browser test-reliability bench bench-quick verify-voices docs clean \
	sam-venv sam-build deploy image image-tag compose-up smoke frontend frontend-image

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

serve: $(STAMP)  ## Serve every endpoint and the web console (http://localhost:8085/) on $$PORT (8085)
	$(PY) local/serve.py

frontend:  ## The console with content-hashed asset names in build/frontend (what the tts-frontend image serves)
	$(PYTHON) frontend/build.py --out build/frontend

frontend-image:  ## The tts-frontend image (frontend/Dockerfile: nginx, non-root; needs Docker)
	docker build -t tts-frontend:0.1.0 frontend

lint: $(STAMP)  ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)  ## Apply ruff's formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint $(SAM_STAMP)  ## Lint, type-check and run the default test suite (template checks need .venv-sam)
	$(PY) -m pytest -m "not slow"

test-browser: $(STAMP)  ## Only the web console's tests in chromium (apt-get install chromium nginx; part of `make test`)
	$(PY) -m pytest -m browser tests/console

test-slow: $(STAMP)  ## The slow suites (memory bounds, load); CI runs them after `make test`
	$(PY) -m pytest -m "slow and not reliability"

test-reliability: $(STAMP)  ## Schema fuzzing, dependency faults and a soak against the shim on loopback (~8 min; needs redis-server)
	$(PY) -m pytest -m reliability

$(SAM_STAMP): infra/requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet -r infra/requirements-sam.txt
	touch $(SAM_STAMP)

sam-venv: $(SAM_STAMP)  ## aws-sam-cli in its own venv (.venv-sam)

sam-build: $(SAM_STAMP)  ## Build the shared Piper base image, then every function image, tagged $$(IMAGE_TAG)
	docker build --label org.opencontainers.image.revision=$(GIT_SHA) -t $(BASE_IMAGE) layers/piper
	$(SAM_VENV)/bin/sam build --parameter-overrides ImageTag=$(IMAGE_TAG)

deploy: sam-build  ## sam deploy --guided (asks for the parameters; docs/deploy.md)
	$(SAM_VENV)/bin/sam deploy --guided

image:  ## The shim image (infra/Dockerfile) and, when frontend/ exists, the console's, tagged $$(IMAGE_TAG)
	docker build -f infra/Dockerfile --build-arg VERSION=$(VERSION) --build-arg REVISION=$(GIT_SHA) \
		-t $(IMAGE):$(IMAGE_TAG) .
	$(if $(wildcard frontend/Dockerfile),docker build -t $(FRONTEND_IMAGE):$(IMAGE_TAG) frontend)

image-tag:  ## Print the tag images get: <version>-<short commit>[-dirty]
	@echo $(IMAGE_TAG)

compose-up: image  ## The Docker host layout (infra/compose.yaml): server, console, TLS proxy on these images
	IMAGE_TAG=$(IMAGE_TAG) docker compose -f infra/compose.yaml up -d

smoke: $(STAMP)  ## Post-deploy checks against URL=... (SMOKE_ARGS=--api-key ... --ws-url ...); exit 1 on any failure
	$(VENV)/bin/tts-smoke $(URL) $(SMOKE_ARGS)

docs: $(STAMP)  ## Rewrite docs/configuration.md from the Settings fields and their docstrings
	$(PY) -m tts_service.config_doc --write

verify-voices: $(STAMP)  ## Check every voice in models/map.json (files, hashes, configs)
	$(VENV)/bin/tts-voices verify

bench: $(BENCH_STAMP)  ## Ours vs stock Piper's server vs raw Piper -> docs/performance.md (~10-15 min; BENCH_ARGS=...)
	$(PY) bench/run.py $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)  ## The same report from a few rounds (a few minutes), for development
	$(PY) bench/run.py --quick $(BENCH_ARGS)

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) $(SAM_VENV) .mypy_cache .ruff_cache .pytest_cache .cache/bench build/frontend artifacts
