# ec2gw: `make serve` and `make test` set everything up on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
DATA_DIR ?= ./data
PYTEST_ARGS ?=
PY := $(VENV)/bin/python

.PHONY: setup system-deps serve test unit functional bench clean

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

serve: setup
	$(VENV)/bin/ec2gw --data-dir $(DATA_DIR) serve

test: setup
	@scripts/run-tests.sh $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

functional: setup
	$(PY) -m pytest -q tests/functional $(PYTEST_ARGS)

bench: setup
	$(PY) bench/ec2_api.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
