# Chronoverse developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
export CHRONOVERSE_RUN_DIR ?= $(CURDIR)/.run

.PHONY: help install services services-down up down test test-unit browser chaos soak bench lint format protos image docs clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## Create .venv from uv.lock.

$(VENV)/.installed: pyproject.toml uv.lock scripts/bootstrap.sh
	scripts/bootstrap.sh
	touch $@

services: install  ## Install (if missing) and start Postgres, Redis, the broker and Docker; build local images.
	scripts/services.sh

services-down:  ## Stop the infrastructure processes `make services` started.
	scripts/services-down.sh

up: services  ## Run the whole stack in the background (logs and pids in .run/).
	scripts/up.sh

down:  ## Stop what `make up` started.
	scripts/down.sh

test: services  ## Start the infrastructure, then run every test tier (browser, then chaos, last).
	scripts/test.sh

test-unit: install  ## Unit tests only (no infrastructure).
	$(VENV)/bin/pytest tests/unit

browser: services  ## The browser tier only (part of `make test`): the dashboard in Debian's Chromium.
	scripts/test.sh tests/browser

chaos: services  ## The chaos tier only (part of `make test`): faults on a private Postgres, Redis, broker and dockerd.
	scripts/test.sh tests/chaos

soak: services  ## 10,000 interval-1 liveness workflows for 10 minutes (not in `make test`). SOAK_ARGS="--help" for options.
	$(VENV)/bin/python -m bench.soak $(SOAK_ARGS)

bench: services  ## Benchmarks (not part of `make test`): a table, and JSON in bench/results/. BENCH_ARGS="--help" for options.
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

lint: install  ## ruff, mypy strict on the source, and the import rules (lint-imports).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

format: install  ## Apply ruff's formatting and fixes.
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

protos: install  ## Regenerate chronoverse/v1 from proto/.
	$(VENV)/bin/python scripts/gen_protos.py

image: services  ## Build the Docker image chronoverse:dev (stand-ins for base images that cannot be pulled).
	scripts/image.sh chronoverse:dev

docs: install  ## Regenerate docs/configuration.md and docs/openapi.json from the code.
	$(VENV)/bin/python scripts/gen_docs.py

clean: down  ## Remove .venv and .run (stops the services first).
	rm -rf $(VENV) .run
