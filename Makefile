# liveroom: `make run` starts the demo server, `make test` runs the whole suite.
# Both install what they need on a fresh Debian machine (apt when missing and root,
# pip from requirements.lock, npm from web/package-lock.json) and are idempotent.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB_STAMP := web/node_modules/.installed
ARGS ?=

.PHONY: run test test-fast lint lint-js typecheck pytest system-deps redis-deps postgres-deps browser-deps nginx-deps venv web-deps wheel clean bench

run: redis-deps venv web-deps
	$(BIN)/liveroom serve --demo $(ARGS)

test: system-deps venv web-deps lint typecheck pytest

pytest:
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The unit layer: no redis-server, browser or process of their own (tests/conftest.py).
test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration" $(PYTEST_ARGS)

lint: venv lint-js
	$(BIN)/ruff check .

# The pages' scripts: ESLint, then tsc on their JSDoc types (web/package.json scripts; offline).
lint-js: web-deps
	cd web && npm run --silent lint && npm run --silent typecheck

typecheck: venv
	$(BIN)/mypy

system-deps: redis-deps postgres-deps browser-deps nginx-deps

# redis-sentinel: the sentinels of a deployment with a replica (docs/deploy.md); the tests run
# the same program as redis-server --sentinel.
redis-deps:
	@scripts/ensure-apt.sh redis-server redis-server
	@scripts/ensure-apt.sh redis-sentinel redis-sentinel

# The tests' throwaway PostgreSQL clusters (initdb + pg_ctl of Debian's package; the
# server's own --database-url may point anywhere).
postgres-deps:
	@scripts/ensure-apt.sh postgresql

# Debian's nginx, the HTTP cache in front of LL-HLS (docs/deploy.md, tests/test_nginx_cache.py).
nginx-deps:
	@scripts/ensure-apt.sh nginx nginx

browser-deps:
	@scripts/ensure-apt.sh libcairo2
	@scripts/ensure-apt.sh chromium chromium

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || scripts/ensure-apt.sh python3-venv
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
		|| $(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

web-deps: $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	@scripts/ensure-apt.sh npm npm
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $(WEB_STAMP)

# A wheel in dist/ that carries the pages and their npm assets (package data: pyproject.toml);
# build/ goes first so that no file of an earlier build slips in.
wheel: venv web-deps
	rm -rf build
	$(BIN)/python -m pip wheel . --no-deps -w dist

bench: venv
	$(BIN)/python -m loadtests.bench_buy

clean:
	rm -rf $(VENV) web/node_modules .mypy_cache .ruff_cache .pytest_cache build dist
