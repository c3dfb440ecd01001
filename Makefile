# Entry points for people and CI. Every target that needs the venv goes through
# `setup` first: scripts/setup.sh is idempotent, and its warm run takes well
# under a second, so this costs nothing once the machine is set up.
#
#   make setup   SETUP_FLAGS="--quiet --with-chromium --with-docker"
#   make test    PYTEST_ARGS="-k procs -x"   (its setup adds TEST_SETUP_FLAGS)
#   make run     the whole scenario catalog against the reference worker
#   make docker  the docker runtime: its tests and the catalog in containers
#   make demo | lint | chaos

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV := .venv
SETUP_FLAGS ?=
# The test suite opens a real report in headless Chromium (tests/reports), so
# its setup also installs Debian's chromium.
TEST_SETUP_FLAGS ?= --with-chromium
PYTEST_ARGS ?=

.PHONY: setup run demo test docker lint chaos diagrams quick

setup:
	bash scripts/setup.sh $(SETUP_FLAGS)

# The main job: every catalog scenario, on the process runtime, embedded defaults.
run: setup
	$(VENV)/bin/crashlab run --all --runtime process

demo: setup
	$(VENV)/bin/crashlab demo

# tox runs pytest from .venv (see tox.ini); its exit status, including
# pytest's 5 for "no tests collected", is make's.
test:
	bash scripts/setup.sh $(SETUP_FLAGS) $(TEST_SETUP_FLAGS)
	$(VENV)/bin/tox -e py -- $(PYTEST_ARGS)

# The docker runtime end to end: setup also installs Debian's docker.io and
# debootstrap and starts dockerd if no engine answers; tox builds the worker
# image (reused when up to date), runs the tests marked docker, then the
# whole catalog in containers. A missing engine fails, never skips.
docker:
	bash scripts/setup.sh $(SETUP_FLAGS) --with-docker
	$(VENV)/bin/tox -e docker

lint: setup
	$(VENV)/bin/tox -e lint

chaos: setup
	$(VENV)/bin/tox -e chaos

# docs/diagrams/*.svg from the .dot beside each (Debian's graphviz, installed by
# setup), each stamped with its source's sha256; tests/test_docs.py fails when an
# SVG's stamp or drawing no longer matches its source.
diagrams: setup
	$(VENV)/bin/python scripts/render_diagrams.py

# The catalog's scenarios tagged quick: under 30 s.
quick: setup
	$(VENV)/bin/crashlab run --quick
