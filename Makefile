# mlinfra: `make run` (the embedded Airflow) and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ROOT := $(CURDIR)
AIRFLOW_HOME ?= $(ROOT)/.airflow
AIRFLOW_PORT ?= 8080
STAMP := $(VENV)/.installed

# The embedded default: this checkout's dags/ and plugins/, SQLite, LocalExecutor.
AIRFLOW_ENV := AIRFLOW_HOME=$(AIRFLOW_HOME) \
	AIRFLOW__CORE__DAGS_FOLDER=$(ROOT)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(ROOT)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__EXECUTOR=LocalExecutor \
	AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://localhost:$(AIRFLOW_PORT)/execution/ \
	PATH=$(ROOT)/$(BIN):$$PATH

.PHONY: help setup run demo test test-fast lint format bench clean compose-models compose-up

help:
	@echo "make run    - start Airflow (standalone) with this checkout's DAGs on http://localhost:$(AIRFLOW_PORT)"
	@echo "make test   - lint, type-check and run every test suite in random order (SEED=N replays an order)"
	@echo "make test-fast - the tests that start no server, doctests included (SEED=N replays an order)"
	@echo "make demo   - make run + a SIMULATED cluster (Kubernetes API + TF Serving stand-ins, simulated GPUs)"
	@echo "make setup  - create $(VENV) and install the pinned dependencies (uv, pip as fallback; caches reused)"
	@echo "make lint   - ruff (with Airflow's AIR rules) and mypy on plugins/mlinfra"
	@echo "make bench  - run the benchmarks in bench/ and print their ratios"

setup: $(STAMP)

# A thin .venv whose shared environment is gone (a cleaned ~/.cache) is set up again.
ifneq ($(wildcard $(VENV)/.mlinfra-shared-env),)
ifeq ($(wildcard $(shell cat $(VENV)/.mlinfra-shared-env)/.complete),)
$(shell rm -f $(STAMP))
endif
endif

# Re-install only when a requirements file changed. The pins are installed and compiled once
# per set of pins in a shared environment (~/.cache/mlinfra/envs), which .venv sits on top of
# (scripts/install_env.sh says how; MLINFRA_SHARED_ENV=0 installs everything into .venv). uv
# (pinned) installs, pip is the fallback (MLINFRA_INSTALLER=pip forces it); both reuse caches.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	PYTHON=$(PYTHON) scripts/install_env.sh $(VENV)
	@touch $(STAMP)

run: setup
	@mkdir -p $(AIRFLOW_HOME)
	@echo "Airflow UI:  http://localhost:$(AIRFLOW_PORT)   (user: admin)"
	@echo "Password:    $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated (written on first start)"
	@echo "Metrics store (default): $(AIRFLOW_HOME)/mlinfra/store.db"
	$(AIRFLOW_ENV) $(BIN)/airflow standalone

# The embedded Airflow wired to local stand-ins: nothing touches a real cluster. exec: the
# script itself is make's child, so the SIGTERM or SIGINT make passes on reaches its trap.
demo: setup
	@exec env AIRFLOW_PORT=$(AIRFLOW_PORT) scripts/demo.sh

compose-models: setup
	scripts/build_compose_models.sh

compose-up: compose-models
	scripts/compose_env.sh
	docker compose up --build -d

# Tests run in a random order (pytest-randomly) so that no test leans on another. The seed is
# chosen here, printed before and after the run, and `make test SEED=N` replays that order
# (`-p no:randomly` in PYTEST_ARGS gives the files' own order).
ifeq ($(SEED),)
SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
PYTEST := $(BIN)/pytest -p randomly --randomly-seed=$(SEED)
SEED_NOTE = echo "test order seed: $(SEED) (replay: make $@ SEED=$(SEED), or .venv/bin/pytest -p randomly --randomly-seed=$(SEED) ...)"

test: setup lint
	@$(SEED_NOTE)
	@set +e; MLINFRA_REQUIRE_INTEGRATION=$${MLINFRA_REQUIRE_INTEGRATION:-0} $(PYTEST) $(PYTEST_ARGS); rc=$$?; \
	$(SEED_NOTE); \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi; exit $$rc

# The fast loop: everything not marked integration (no servers, no Airflow database) or slow,
# the docstrings' examples included; under a minute. `make test` runs all of it too.
test-fast: setup
	@$(SEED_NOTE)
	@set +e; $(PYTEST) -m "not integration and not slow" $(PYTEST_ARGS); rc=$$?; $(SEED_NOTE); exit $$rc

lint: setup
	$(BIN)/ruff check conftest.py plugins dags tests bench
	$(BIN)/ruff format --check conftest.py plugins dags tests bench
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format conftest.py plugins dags tests bench
	$(BIN)/ruff check --fix conftest.py plugins dags tests bench

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .demo .airflow-test .pytest_cache .mypy_cache .ruff_cache build *.egg-info plugins/*.egg-info
