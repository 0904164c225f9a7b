# The two commands: `make lab` (start working) and `make test` (everything CI runs).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
CS    := $(VENV)/bin/cybershuttle
PYTHON ?= python3
CS_USER ?= $(shell id -un)
LAB_PORT ?= 8888
CLUSTER := tests/cluster/cluster.sh
PYTEST_ARGS ?=

.PHONY: install lab test test-python cluster-start cluster-stop bench clean

install: $(VENV)/.installed

# uv resolves and installs the dependency tree in seconds where pip takes minutes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[test]'
	touch $@

lab: install
	$(CS) compute initialize $(CS_USER)
	$(CS) storage initialize $(CS_USER)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --no-browser $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

cluster-start:
	bash $(CLUSTER) start

cluster-stop:
	bash $(CLUSTER) stop

# Starts the loopback cluster, runs every suite, always stops the cluster,
# and fails if any suite failed.
test: install
	bash $(CLUSTER) start
	status=0; \
	$(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	bash $(CLUSTER) stop || true; \
	exit $$status

bench: install
	$(PY) benchmarks/cli_startup.py

clean:
	rm -rf $(VENV) build dist *.egg-info
