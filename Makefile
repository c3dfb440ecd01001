# Entry points for people and CI. Every target that needs the venv goes through
# `setup` first: scripts/setup.sh is idempotent, and its warm run takes well
# under a second, so this costs nothing once the machine is set up.
#
#   make setup   SETUP_FLAGS="--quiet --with-chromium --with-docker"
#   make test    PYTEST_ARGS="-k procs -x"
#   make run     the whole scenario catalog against the reference worker
#   make demo | lint | chaos

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV := .venv
SETUP_FLAGS ?=
PYTEST_ARGS ?=

.PHONY: setup run demo test lint chaos

setup:
	bash scripts/setup.sh $(SETUP_FLAGS)

# The main job: every catalog scenario, on the process runtime, embedded defaults.
run: setup
	$(VENV)/bin/crashlab run --all --runtime process

demo: setup
	$(VENV)/bin/crashlab demo

# tox runs pytest from .venv (see tox.ini); its exit status, including
# pytest's 5 for "no tests collected", is make's.
test: setup
	$(VENV)/bin/tox -e py -- $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/tox -e lint

chaos: setup
	$(VENV)/bin/tox -e chaos
