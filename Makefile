# The two commands the README gives:
#   python3 hastexo_xblock/demo/run.py     the demo (creates .venv itself)
#   make test                              every test, installs included
#
# `make test` installs the system packages the tests drive (Chromium,
# bubblewrap and slirp4netns for the local labs' sandbox, TigerVNC, twm and
# xterm for their desktops, OpenSSH's sshd for the gateway benchmarks, the MariaDB client headers,
# gettext) when run as root, creates .venv from the pinned
# requirements and .venv-tutor with the real Tutor, lints, runs the whole
# suite on SQLite, the local provider's tests again as an unprivileged
# worker, the database tests again on every database in
# HASTEXO_TEST_DATABASE_URLS, then the suite under each Open edX release's
# pins (requirements/platform-*.txt, one venv each: .venv-<release>).
# The learner view's JavaScript (ES modules in hastexo_xblock/static/js/src,
# bundled into the committed static/js/hastexo.js) is linted with eslint,
# checked against a fresh build, and unit-tested with Node's test runner;
# its pinned dev tools (js/package-lock.json) are installed with `npm ci`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PACKAGES := nodejs chromium bubblewrap slirp4netns python3-venv libmariadb-dev pkg-config gettext \
	tigervnc-standalone-server tigervnc-tools twm xterm x11-xkb-utils xfonts-base x11-utils openssh-server
TUTOR_VENV ?= .venv-tutor
# Open edX releases whose pins the suite also runs under (requirements/platform-<release>.txt).
PLATFORM_RELEASES ?= ulmo sumac
export HASTEXO_TEST_OUTPUT ?= $(CURDIR)/test-output
export HASTEXO_TUTOR ?= $(CURDIR)/$(TUTOR_VENV)/bin/tutor

NODE_MODULES := js/node_modules/.installed

.PHONY: test lint test-js js-deps js-build test-suite test-local-unprivileged test-databases test-pins venv tutor-venv system-deps demo \
	vendor requirements clean extract_translations compile_translations translations-de gateway-benchmarks gateway-profile

test: system-deps venv tutor-venv lint test-js test-suite test-local-unprivileged test-databases test-pins

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

# The real Tutor from PyPI in its own virtualenv (its dependencies are not ours), with our plugin.
$(TUTOR_VENV)/.installed: requirements/tutor.txt tutor-contrib-hastexo/pyproject.toml
	test -x $(TUTOR_VENV)/bin/python || $(PYTHON) -m venv $(TUTOR_VENV)
	$(TUTOR_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/tutor.txt
	$(TUTOR_VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e tutor-contrib-hastexo
	touch $@

tutor-venv: $(TUTOR_VENV)/.installed

lint: venv js-deps
	$(PY) -m ruff check hastexo_xblock tests scripts tutor-contrib-hastexo
	$(PY) -m ruff format --check hastexo_xblock tests scripts tutor-contrib-hastexo
	js/node_modules/.bin/eslint --max-warnings 0 -c js/eslint.config.mjs hastexo_xblock/static/js/src js
	node js/build.mjs --check

# The pinned JS dev tools (esbuild, eslint); Node and npm from Debian (SYSTEM_PACKAGES).
$(NODE_MODULES): js/package.json js/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing (Debian: apt-get install npm; NodeSource's nodejs includes it)"; exit 1; }
	cd js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

js-deps: $(NODE_MODULES)

# Rebuild the committed bundle static/js/hastexo.js after editing static/js/src.
js-build: js-deps
	node js/build.mjs

# The socket reconnect and status polling policies (js/test/*.test.mjs).
test-js: js-deps
	node --test js/test/

# --durations: the slowest tests and fixtures in every run's output, so a slow one is seen where it appears.
PYTEST_REPORT ?= --durations=25

test-suite: venv tutor-venv
	$(PY) -m pytest $(PYTEST_REPORT)

# The local provider isolates labs differently for a root worker (a user per
# lab, cgroups, home images) and for an unprivileged one: as root, run its
# tests once more as an unprivileged user (see the script).
test-local-unprivileged:
	bash tests/local/run_unprivileged.sh -q

test-databases: venv
	@set -e; for url in $$HASTEXO_TEST_DATABASE_URLS; do \
	  echo "== database tests on $${url%%:*}"; \
	  HASTEXO_TEST_DATABASE_URL=$$url $(PY) -m pytest -m db --create-db -q $(PYTEST_REPORT); \
	done

# The suite under each release's pins; the browser and real-Heat journeys run once, above.
test-pins: $(addprefix test-pins-,$(PLATFORM_RELEASES))

test-pins-%:
	bash .ci/platform-pins $*

# Translations (catalogs under hastexo_xblock/locale, see scripts/translations.py).
extract_translations: venv
	$(PY) scripts/translations.py extract

translations-de: venv
	$(PY) scripts/translations.py fill-de

compile_translations: venv
	$(PY) scripts/translations.py compile
	$(PY) scripts/translations.py check

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
	rm -rf $(VENV) $(TUTOR_VENV) $(addprefix .venv-,$(PLATFORM_RELEASES)) var test-output build *.egg-info js/node_modules
