# Force sign-out service: local run, tests, checks. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: help install run test unit lint lint-infra audit bench clean

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

install: $(VENV)/.installed node_modules/.installed ## Create .venv and install Python and npm (Azurite) dependencies

run: install ## Run the service on http://127.0.0.1:7071 (REAL_TENANT=azure_cli: real Graph via your az login)
	$(PY) -m tools.local_stack --port 7071 $(if $(REAL_TENANT),--real-tenant $(REAL_TENANT))

test: install ## Run every test (unit, dev host, tools, integration, infra) in parallel
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

unit: install ## Unit tests only (no I/O)
	$(PY) -m pytest tests/unit

lint: install ## Static checks of the Python code (pyflakes rules: unused or undefined names)
	$(VENV)/bin/ruff check --select F,E9 shared tools tests bench function_app.py

audit: ## pip-audit of the runtime requirements (exit 1: known vulnerability, 2: could not reach the service)
	bash tools/audit.sh

lint-infra: ## Parse every Bicep file and scan infra/ with checkov
	bash tools/lint_infra.sh

bench: install ## Pipeline benchmark (prints figures; see README, Performance)
	$(PY) -m bench.pipeline

clean: ## Remove local environments and run logs
	rm -rf $(VENV) .venv-infra node_modules .run .pytest_cache
