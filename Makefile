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
# The sidebar (TypeScript): jlpm is Yarn shipped with jupyter_builder; it fetches from the registry
# npm is configured for (no file names a host). Playwright drives Debian's Chromium, never its own.
JLPM     := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/jlpm
CHROMIUM ?= /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NPM_REGISTRY := $(shell npm config get registry 2>/dev/null)
ifneq ($(NPM_REGISTRY),)
export YARN_NPM_REGISTRY_SERVER ?= $(NPM_REGISTRY)
endif
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install lab test test-python cluster-start cluster-stop bench clean sidebar hub hub-env

install: $(VENV)/.installed

# uv resolves and installs the dependency tree in seconds where pip takes minutes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade uv
	# pip, not uv, for torch: pip takes the CPU build; uv would download a multi-GB CUDA one.
	$(PY) -m pip install -q torch==2.13.0
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[test]'
	touch $@

lab: install
	$(MAKE) sidebar || echo "The sidebar was not built (is node installed?): JupyterLab starts without it."
	$(CS) compute initialize $(CS_USER)
	$(CS) storage initialize $(CS_USER)
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --no-browser $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

cluster-start:
	bash $(CLUSTER) start

cluster-stop:
	bash $(CLUSTER) stop

# The sidebar: node modules, a build, and a link so this venv's JupyterLab loads src/ as built.
sidebar: install
	$(JLPM) install
	$(JLPM) build
	rm -rf $(VENV)/share/jupyter/labextensions/jupyterlab-cybershuttle
	mkdir -p $(VENV)/share/jupyter/labextensions
	ln -s "$(CURDIR)/jupyterlab_cybershuttle/labextension" $(VENV)/share/jupyter/labextensions/jupyterlab-cybershuttle

# Debian's Chromium for the browser tests (apt's index is refreshed only if the first try fails).
$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || \
	  { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# Starts the loopback cluster, runs the three suites (pytest; jest for the sidebar's components;
# Playwright for the sidebar in a real JupyterLab), always stops the cluster, and fails if any failed.
# pytest runs as two processes: the tests marked `waits` (most of their time spent waiting, for
# Slurm's clock or a timeout) beside all the others; their report follows the others' (tests/conftest.py says how
# the two sides keep out of each other's way). Exit 5 is pytest's "PYTEST_ARGS selected none of mine".
test: install sidebar $(CHROMIUM)
	bash $(CLUSTER) start
	status=0; waits_log=$$(mktemp); \
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS) -m waits > "$$waits_log" 2>&1 & waits=$$!; \
	$(PY) -m pytest $(PYTEST_ARGS) -m "not waits"; rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ] || status=$$rc; \
	wait $$waits; rc=$$?; [ $$rc = 0 ] || [ $$rc = 5 ] || status=$$rc; \
	echo "== pytest -m waits (ran beside the rest) =="; cat "$$waits_log"; rm -f "$$waits_log"; \
	$(JLPM) test || status=$$?; \
	CS_CHROMIUM=$(CHROMIUM) $(JLPM) test:ui || status=$$?; \
	bash $(CLUSTER) stop || true; \
	exit $$status

# The site's JupyterHub (deploy/jupyterhub/README.md), as root on 127.0.0.1:$(HUB_PORT): PAM logins,
# each user's server as that user from the shared install $(HUB_ENV), the site catalog on PostgreSQL.
# Who may log in: CS_HUB_USERS or CS_HUB_GROUPS (comma-separated).
HUB_ENV  ?= /opt/cybershuttle
HUB_PORT ?= 8000
HUB_VARS := CS_HUB_USERS CS_HUB_GROUPS CS_HUB_ADMINS CS_HUB_STATE CS_HUB_API_PORT CS_HUB_PROXY_API_PORT \
            CS_HUB_PROXY CYBERSHUTTLE_SITE_CATALOG

# The shared install: a venv from the system python (users cannot run one under root's home),
# readable by all, Cybershuttle as a wheel (not editable: users may not read this checkout).
hub-env: sidebar
	test -x $(HUB_ENV)/bin/python || $(SUDO) /usr/bin/python3 -m venv $(HUB_ENV)
	$(SUDO) $(VENV)/bin/uv pip install -q --python $(HUB_ENV)/bin/python --reinstall-package cybershuttle '.[hub]'
	$(SUDO) chmod -R a+rX $(HUB_ENV)

hub: sidebar
	test -x $(HUB_ENV)/bin/jupyterhub-singleuser || $(MAKE) hub-env
	$(SUDO) env CS_HUB_ENV=$(HUB_ENV) CS_HUB_PORT=$(HUB_PORT) \
	  $(foreach v,$(HUB_VARS),$(if $($(v)),$(v)='$($(v))')) bash deploy/jupyterhub/start.sh

bench: install
	$(PY) benchmarks/cli_startup.py

clean:
	rm -rf $(VENV) build dist *.egg-info node_modules lib tsconfig.tsbuildinfo jupyterlab_cybershuttle/labextension
