# Every target creates or updates the virtualenv it needs; nothing is done by hand.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
# pyssm-client, the third-party client the tests use as an oracle, needs Python 3.12.
PYSSM_VENV ?= .venv-pyssm
PYSSM_CLIENT ?= pyssm-client==0.2.0
# pyenv shims exist for every version but fail for ones not selected, so look in pyenv first.
PY312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))
HOME_DIR ?= .hatchway
# Where `make run` listens: make run LISTEN=127.0.0.1:8181 when 8080 is taken.
LISTEN ?= 127.0.0.1:8080
PYTEST_ARGS ?=
WEB := hatchway/web

.PHONY: help run test test-loaded lint bench clean openssh-server chromium postgresql haproxy

help:
	@echo "make run    - server plus a local agent on $(LISTEN) (home: $(HOME_DIR); LISTEN=HOST:PORT)"
	@echo "make test   - every test, after installing what the tests need"
	@echo "make test-loaded RUNS=3 - the suite RUNS times in a row with every core kept busy"
	@echo "make lint   - ruff and mypy --strict on protocol/ and aws/"
	@echo "make bench  - the benchmarks in bench/"

$(VENV)/.run-stamp: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[cli]'
	@touch $@

$(VENV)/.test-stamp: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[test,postgres,cli]'
	@touch $@ $(VENV)/.run-stamp

$(PYSSM_VENV)/.stamp: Makefile
	@test -n "$(PY312)" || { echo "Python 3.12 is needed for pyssm-client (pyenv install 3.12)"; exit 1; }
	@test -x $(PYSSM_VENV)/bin/python || $(PY312) -m venv $(PYSSM_VENV)
	$(PYSSM_VENV)/bin/python -m pip install -q --disable-pip-version-check '$(PYSSM_CLIENT)'
	@touch $@

# The console's npm packages (xterm.js and its addons, @noble/hashes), as the lock file pins.
$(WEB)/node_modules/.stamp: $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the web console (apt-get install npm)"; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The browser tests drive Debian's Chromium with Playwright (it never downloads a browser).
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-noto-color-emoji; }

# The PostgreSQL tests start their own server from Debian's binaries (tests/postgres.py).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql; }

# The cluster tests put Debian's HAProxy in front of their nodes (tests/cluster.py); it runs
# as the tests' own process, so the service the package installs is not used.
haproxy:
	@test -x /usr/sbin/haproxy || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq haproxy; }

# The tests and bench/port_forward.py run a real sshd on loopback; Debian ships it apart
# from the ssh client. Checked on every run (cheap), installed only when missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
openssh-server:
	@test -x /usr/sbin/sshd || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openssh-server openssh-client; }

run: $(VENV)/.run-stamp $(WEB)/node_modules/.stamp
	$(VENV)/bin/hatchway up --home $(HOME_DIR) --listen $(LISTEN)

lint: $(VENV)/.test-stamp
	$(VENV)/bin/ruff check hatchway tests bench
	$(VENV)/bin/mypy

test: $(VENV)/.test-stamp $(PYSSM_VENV)/.stamp $(WEB)/node_modules/.stamp openssh-server chromium \
		postgresql haproxy lint
	cd $(WEB) && npm test
	HATCHWAY_PYSSM_PYTHON=$(abspath $(PYSSM_VENV))/bin/python \
		$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The suite on a busy machine: CPU-bound burners on every core while it runs RUNS times.
RUNS ?= 3
test-loaded: $(VENV)/.test-stamp $(PYSSM_VENV)/.stamp $(WEB)/node_modules/.stamp openssh-server \
		chromium postgresql haproxy
	HATCHWAY_PYSSM_PYTHON=$(abspath $(PYSSM_VENV))/bin/python bash tests/under_load.sh $(RUNS)

bench: $(VENV)/.test-stamp $(WEB)/node_modules/.stamp openssh-server chromium postgresql haproxy
	$(VENV)/bin/python bench/protocol.py
	$(VENV)/bin/python bench/port_forward.py
	$(VENV)/bin/python bench/session.py
	$(VENV)/bin/python bench/console.py
	$(VENV)/bin/python bench/signin.py
	$(VENV)/bin/python bench/cluster.py

clean:
	rm -rf $(VENV) $(PYSSM_VENV) $(WEB)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts
