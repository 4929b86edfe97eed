# The two commands the README gives:
#   python3 hastexo_xblock/demo/run.py     the demo (creates .venv itself)
#   make test                              every test, installs included
#
# `make test` installs the system packages the tests drive (Chromium,
# bubblewrap and slirp4netns for the local labs' sandbox, the MariaDB client
# headers) when run as root, creates .venv from the pinned requirements,
# lints, runs the whole suite on SQLite, the local provider's tests again as
# an unprivileged worker, then the database tests again on every database in
# HASTEXO_TEST_DATABASE_URLS.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := chromium bubblewrap slirp4netns python3-venv libmariadb-dev pkg-config
export HASTEXO_TEST_OUTPUT ?= $(CURDIR)/test-output

.PHONY: test lint test-suite test-local-unprivileged test-databases venv system-deps demo vendor requirements clean

test: system-deps venv lint test-suite test-local-unprivileged test-databases

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

# The local provider isolates labs differently for a root worker (a user per
# lab, cgroups, home images) and for an unprivileged one: as root, run its
# tests once more as an unprivileged user (see the script).
test-local-unprivileged:
	bash tests/local/run_unprivileged.sh -q

test-databases: venv
	@set -e; for url in $$HASTEXO_TEST_DATABASE_URLS; do \
	  echo "== database tests on $${url%%:*}"; \
	  HASTEXO_TEST_DATABASE_URL=$$url $(PY) -m pytest -m db --create-db -q; \
	done

demo:
	$(PYTHON) hastexo_xblock/demo/run.py

vendor:
	bash hastexo_xblock/static/vendor/build.sh

requirements: venv
	$(PY) -m pip install -q pip-tools
	cd requirements && for name in base demo test; do \
	  ../$(PY) -m piptools compile -q --strip-extras --allow-unsafe --no-emit-index-url -o $$name.txt $$name.in; done

clean:
	rm -rf $(VENV) var test-output build *.egg-info
