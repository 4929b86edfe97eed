# The two commands the README gives:
#   python3 hastexo_xblock/demo/run.py     the demo (creates .venv itself)
#   make test                              every test, installs included
#
# `make test` installs the system packages the tests drive (Chromium,
# bubblewrap, OpenSSH's sshd, the MariaDB client headers) when run as root, creates .venv
# from the pinned requirements, lints, runs the whole suite on SQLite, then
# the database tests again on every database in HASTEXO_TEST_DATABASE_URLS.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := chromium bubblewrap libmariadb-dev pkg-config openssh-server
export HASTEXO_TEST_OUTPUT ?= $(CURDIR)/test-output

.PHONY: test lint test-suite test-databases venv system-deps demo vendor requirements clean gateway-benchmarks gateway-profile

test: system-deps venv lint test-suite test-databases

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing (install them as root: apt-get install$$missing)"; \
	  fi; \
	fi

$(VENV)/.installed: requirements/test.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/test.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(PY) -m ruff check hastexo_xblock tests
	$(PY) -m ruff format --check hastexo_xblock tests
	node --check hastexo_xblock/static/js/hastexo.js 2>/dev/null || ! command -v node >/dev/null

test-suite: venv
	$(PY) -m pytest

test-databases: venv
	@set -e; for url in $$HASTEXO_TEST_DATABASE_URLS; do \
	  echo "== database tests on $${url%%:*}"; \
	  HASTEXO_TEST_DATABASE_URL=$$url $(PY) -m pytest -m db --create-db -q; \
	done

demo:
	$(PYTHON) hastexo_xblock/demo/run.py

# The gateway against webssh and direct SSH on one OpenSSH sshd (about 30 min; the README's
# table quotes its output, test-output/benchmarks/gateway-sweep.json). The suite runs a reduced one.
gateway-benchmarks: venv
	$(PY) -m tests.gatewaybench.sweep

# py-spy profiles of the gateway under 200 typing sessions and under bulk output (test-output/profiles/).
gateway-profile: venv
	$(PY) -m tests.gatewaybench.profile --scenario typing --sessions 200
	$(PY) -m tests.gatewaybench.profile --scenario bulk --sessions 1

vendor:
	bash hastexo_xblock/static/vendor/build.sh

requirements: venv
	$(PY) -m pip install -q pip-tools
	cd requirements && for name in base demo test; do \
	  ../$(PY) -m piptools compile -q --strip-extras --allow-unsafe --no-emit-index-url -o $$name.txt $$name.in; done

clean:
	rm -rf $(VENV) var test-output build *.egg-info
