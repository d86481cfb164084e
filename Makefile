# ec2gw: `make serve` and `make test` set everything up on a fresh Debian 12 machine.
# Python packages come from requirements.lock (every version pinned, with hashes); `make lock`
# writes it again from setup.cfg, `make test-latest` runs the suite on the newest releases instead.
SHELL := /bin/bash
VENV ?= .venv
LATEST_VENV ?= .venv-latest
PYTHON ?= python3
DATA_DIR ?= ./data
PYTEST_ARGS ?=
PY := $(VENV)/bin/python
LOCK := requirements.lock

.PHONY: setup system-deps serve test test-latest lint lock unit functional bench clean

setup: system-deps $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

$(VENV)/.installed: $(LOCK) setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

serve: setup
	$(VENV)/bin/ec2gw --data-dir $(DATA_DIR) serve

test: setup
	@scripts/run-tests.sh $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check ec2gw storage backends certs tests bench wsgi.py
	$(VENV)/bin/mypy ec2gw storage backends certs wsgi.py
	$(VENV)/bin/lint-imports --no-cache

# The lock is made by uv (pinned in the lock itself) for CPython 3.11 on x86_64 Linux.
lock: setup
	$(VENV)/bin/uv pip compile setup.cfg --extra dev --generate-hashes --no-header \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu -o $(LOCK) $(LOCK_ARGS)

# The newest releases that setup.cfg's ranges admit, in a venv of their own: a breaking release
# shows up here first. Upgrading everything in the lock is `make lock LOCK_ARGS=--upgrade`.
test-latest: system-deps
	@test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q -U --upgrade-strategy eager -e '.[dev]'
	@PY=$(LATEST_VENV)/bin/python scripts/run-tests.sh $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

functional: setup
	$(PY) -m pytest -q tests/functional $(PYTEST_ARGS)

bench: setup
	$(PY) bench/ec2_api.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) *.egg-info .pytest_cache
