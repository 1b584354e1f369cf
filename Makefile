# The ONE set-up command is `make setup`; `make test` runs the tests; `make repro` reproduces the bug.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# LiteLLM versions whose environments `make setup` builds (CI builds every supported one).
SETUP_VERSIONS ?= 1.84.0 1.108.7
SCENARIO ?= scenarios/phantom-budget.yaml
LITELLM ?=
BACKEND ?= local
PYTEST_ARGS ?=

.PHONY: setup system venv engine litellm-envs setup-compose test test-fast lint repro down doctor clean

setup: system venv engine litellm-envs
	@echo "setup: done"

system:
	@scripts/setup-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

engine: harness/engine/node_modules/.installed

harness/engine/node_modules/.installed: harness/engine/package.json harness/engine/package-lock.json
	cd harness/engine && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

litellm-envs: venv engine
	$(BIN)/harness env build $(SETUP_VERSIONS)

# --durations: every run says where its time went (the budget is 10 min on a quiet 2-core machine).
test: setup
	$(BIN)/pytest --durations=15 $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/pytest -m "not e2e and not conformance" $(PYTEST_ARGS)

# The unit tests on Python 3.13 as well (the harness supports 3.11-3.13; LiteLLM's environments stay on 3.11).
# PY313: a working python3.13 on PATH (a pyenv shim may be there and not work), else pyenv's newest 3.13.
PY313 ?= $(or $(shell python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null),$(shell ls -d /root/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | sort -V | tail -n 1))
VENV313 := .venv313
.PHONY: test-py313
test-py313: $(VENV313)/.installed
	$(VENV313)/bin/pytest -m "not e2e and not conformance" $(PYTEST_ARGS)

$(VENV313)/.installed: pyproject.toml
	@test -n "$(PY313)" || { echo "test-py313: no Python 3.13 (python3.13 on PATH or /root/.pyenv/versions/3.13*); pass PY313=/path/to/python3.13" >&2; exit 2; }
	@test -x $(VENV313)/bin/python || $(PY313) -m venv $(VENV313)
	$(VENV313)/bin/pip install -q -e '.[dev]'
	@touch $@

lint: venv
	$(BIN)/ruff check harness tests benchmarks
	$(BIN)/mypy

# The Compose backend needs only the venv and a Docker engine (no apt packages, no local LiteLLM envs):
# `make setup-compose` installs/starts what is missing here and builds the images when none can be pulled.
COMPOSE_VERSIONS ?= 1.84.0
setup-compose: venv
	@scripts/setup-compose.sh
	$(BIN)/harness images build $(or $(LITELLM),$(COMPOSE_VERSIONS))

repro: $(if $(filter compose,$(BACKEND)),setup-compose,setup)
	$(BIN)/harness run $(SCENARIO) --backend $(BACKEND) $(if $(LITELLM),--litellm $(LITELLM),)

down: venv
	$(BIN)/harness down --all

doctor: venv
	$(BIN)/harness doctor

clean:
	rm -rf $(VENV) $(VENV313) harness/engine/node_modules .state

# Version matrix / release gate: `make matrix VERSIONS=1.83.14,1.84.0,1.108.7 SCENARIO=scenarios/phantom-budget.yaml`
VERSIONS ?= 1.83.14,1.84.0,1.89.1,1.90.0,1.108.7
REPEAT ?= 1
.PHONY: matrix
matrix: setup
	$(BIN)/harness matrix --versions $(VERSIONS) --scenario $(SCENARIO) --repeat $(REPEAT) $(if $(BASELINE),--baseline $(BASELINE),)

# The release gate: the version matrix on the Compose backend against a stored baseline, with a JUnit file and
# the JSON summary next to matrix.md (docs/release-gate.md). This is its ONE command line:
# .github/workflows/release-gate.yml runs `make release-gate-setup` and `make release-gate` with the same
# variables, and tests/test_release_gate.py checks that the workflow does and that the options exist.
# `make release-gate GATE_VERSIONS=1.84.0,1.108.7 GATE_SCENARIO="a.yaml b.yaml" GATE_BASELINE=none`
GATE_VERSIONS ?= 1.84.0,1.108.7
GATE_SCENARIO ?= scenarios/phantom-budget.yaml
GATE_BASELINE ?= baselines/release-gate
GATE_STAMP := $(shell date +%Y%m%d-%H%M%S)
GATE_OUT ?= results/release-gate-$(GATE_STAMP)
gate_comma := ,
gate_space := $(subst ,, )
.PHONY: release-gate release-gate-setup
release-gate-setup: COMPOSE_VERSIONS = $(subst $(gate_comma),$(gate_space),$(GATE_VERSIONS))
release-gate-setup: setup-compose
release-gate: release-gate-setup
	@test ! -e $(GATE_OUT)/matrix.csv || { echo "release-gate: $(GATE_OUT) already holds a matrix — pass another GATE_OUT" >&2; exit 2; }
	@mkdir -p $(GATE_OUT)
	$(BIN)/harness matrix --backend compose --versions $(GATE_VERSIONS) $(foreach s,$(GATE_SCENARIO),--scenario $(s)) $(if $(filter-out none,$(GATE_BASELINE)),--baseline $(GATE_BASELINE),) --out $(GATE_OUT) --junit $(GATE_OUT)/junit.xml --json > $(GATE_OUT)/results.json
