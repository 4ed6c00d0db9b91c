# Force sign-out service: local run, tests, checks. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
RUFF := $(VENV)/bin/ruff
PYTEST_WORKERS ?= 2
PY_SOURCES := shared tools tests bench function_app.py

.PHONY: help install browser run test unit screenshots format lint typecheck lint-infra audit audit-ci ci bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed node_modules/.installed browser ## Create .venv and install Python and npm (Azurite) dependencies, and the browser

# The browser tests drive Debian's Chromium with Debian's chromedriver: no browser is ever downloaded.
browser: ## Debian's chromium and chromium-driver for tests/browser, where missing (apt-get, sudo when not root)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  command -v apt-get >/dev/null || { echo "no apt-get: install Chromium and chromedriver at /usr/bin to run tests/browser"; exit 0; }; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo"; \
	  echo "installing from Debian packages: chromium chromium-driver"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

run: install ## Run the service on http://127.0.0.1:7071 (REAL_TENANT=azure_cli: real Graph via your az login)
	$(PY) -m tools.local_stack --port 7071 $(if $(REAL_TENANT),--real-tenant $(REAL_TENANT))

# --dist loadfile: a file's tests run on one worker, so a module-scoped stack starts once
# (pytest-xdist's loadgroup does not group under pytest 9: docs/security.md).
test: install ## Run every tier (unit, integration, devhost, tools, fuzz, infra, browser) in parallel
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

unit: install ## The fast tier only (tests/unit: no network, no services)
	$(PY) -m pytest -m unit tests/unit

screenshots: install ## The browser tests (screenshots in .run/screenshots/), then README's two in docs/images/
	$(PY) -m pytest -m browser tests/browser
	mkdir -p docs/images
	cp .run/screenshots/log.png docs/images/console-log.png
	cp .run/screenshots/job.png docs/images/console-job.png

# Fixes first (they can leave code to reformat); what is left to fix by hand `make lint` lists.
format: install ## Apply ruff's safe fixes and format the Python code
	$(RUFF) check --fix --exit-zero --quiet $(PY_SOURCES)
	$(RUFF) format $(PY_SOURCES)

lint: install ## ruff with the rules in pyproject.toml, and the format check
	$(RUFF) check $(PY_SOURCES)
	$(RUFF) format --check $(PY_SOURCES)

typecheck: install ## mypy --strict on shared/ and function_app.py (config in pyproject.toml)
	$(VENV)/bin/mypy

audit: ## pip-audit of the runtime requirements (exit 1: known vulnerability, 2: could not reach the service)
	bash tools/audit.sh

# Exit 2 of tools/audit.sh means the audit could not run: said loudly, never passed off as clean.
audit-ci: ## audit as CI runs it: a known vulnerability fails; an unreachable service is a warning
	@status=0; bash tools/audit.sh || status=$$?; \
	if [ $$status -eq 2 ]; then \
	  echo "WARNING: SUPPLY-CHAIN AUDIT DID NOT RUN: the vulnerability service is unreachable from this machine" >&2; \
	elif [ $$status -ne 0 ]; then exit $$status; fi

lint-infra: ## Parse every Bicep file and scan infra/ with checkov
	bash tools/lint_infra.sh

# One make call a step, in this order; .ci/run runs the same steps (tests/unit/test_tooling.py).
ci: ## What .ci/run runs: lint-infra, lint, typecheck, audit, test
	$(MAKE) lint-infra
	$(MAKE) lint
	$(MAKE) typecheck
	$(MAKE) audit-ci
	$(MAKE) test

bench: install ## Pipeline benchmark (prints figures; see docs/performance.md)
	$(PY) -m bench.pipeline

clean: ## Remove local environments and run logs
	rm -rf $(VENV) .venv-infra node_modules .run .pytest_cache .mypy_cache .ruff_cache
