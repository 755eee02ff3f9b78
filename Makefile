# Developer and CI entry points for pygearman. CI runs `make test` (see .ci/run).
#   make setup   system packages, .venv, build + install the package (idempotent, quick when done)
#   make test    run the test suite against the installed package   (PYTEST_ARGS=-q by default)
#   make demo    python -m pygearman demo
#   make clean   remove build products and the venv
#   make wheel       sdist + wheel into dist/, auditwheel-repaired (libgearman bundled) into wheelhouse/
#   make wheel-test  build the wheel, install it alone into a fresh venv, check it loads the bundled
#                    libgearman, run the core tests against it (scripts/wheel-test.sh)
#   make docs    the HTML documentation in docs/_build/html (sphinx-build -W: warnings are errors)

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?= -q

SHELL := /bin/bash
# gearmand lives in /usr/sbin, which is not on a normal user's PATH; appended so nothing is shadowed.
export PATH := $(PATH):/usr/sbin:/sbin

# Inputs of the build. Generated C/.so files and caches are left out so a build does not
# make itself out of date.
PKG_SOURCES := $(shell find src -type f -not -name '*.c' -not -name '*.so' \
                 -not -path '*/__pycache__/*' -not -path '*.egg-info/*' 2>/dev/null)
# wildcard: a missing file must not stop make; pip reports it more clearly.
BUILD_FILES := $(wildcard setup.py pyproject.toml)

DEPS_STAMP := $(VENV)/.dev-requirements-installed
INSTALL_STAMP := $(VENV)/.pygearman-installed

.PHONY: setup system-deps demo test clean wheel wheel-test

setup: system-deps $(INSTALL_STAMP)

# Always run: it is a quick no-op when the Debian packages are present, and the system can
# change behind make's back, so a stamp file would lie.
system-deps:
	PYTHON='$(PYTHON)' bash scripts/install-system-deps.sh

# Order-only (|) on system-deps: it must run first (python3-venv, headers) without forcing a
# reinstall of the pip packages every time. Re-runs only when requirements-dev.txt (or the
# docs/requirements.txt it includes) changes.
$(DEPS_STAMP): requirements-dev.txt docs/requirements.txt | system-deps
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -r requirements-dev.txt
	touch $@

# Non-editable install: the tests must exercise the installed package, not src/.
# --no-build-isolation reuses the venv's Cython/setuptools instead of fetching them per build.
$(INSTALL_STAMP): $(DEPS_STAMP) $(PKG_SOURCES) $(BUILD_FILES)
	@# the distribution used to be called "pygearman" (a name taken on PyPI): drop an old install
	-$(VENV)/bin/python -m pip uninstall -y -q pygearman 2>/dev/null
	$(VENV)/bin/python -m pip install --no-build-isolation .
	touch $@

demo: setup
	$(VENV)/bin/python -m pygearman demo

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf build/ *.egg-info src/*.egg-info src/pygearman/*.c src/pygearman/*.so $(VENV)

# Both scripts install what they miss (patchelf, libgearman-dev, gearmand) and keep build/wheel-tools-*
# (build, auditwheel) between runs; PYTHON picks the interpreter the wheel is built for.
wheel:
	PYTHON='$(PYTHON)' bash scripts/wheel-build.sh

# Builds the wheel itself, so it does not depend on `wheel`.
wheel-test:
	PYTHON='$(PYTHON)' bash scripts/wheel-test.sh

# The whole test suite against the pinned upstream release the wheels bundle (vendor/libgearman.pin),
# built from a local source tree of it into build/pinned/ (not run by CI; scripts/test-pinned-libgearman.sh):
#   make test-pinned SRC=/path/to/gearmand-1.1.22   (a checkout or `git archive` of the pinned tag)
.PHONY: test-pinned
test-pinned:
	SRC='$(SRC)' PYTHON='$(PYTHON)' PYTEST_ARGS='$(PYTEST_ARGS)' bash scripts/test-pinned-libgearman.sh

# The documentation, from the installed package (setup builds and installs it, and installs
# docs/requirements.txt through requirements-dev.txt). -W: any warning fails the build;
# tests/test_docs.py runs the same build, so `make test` checks the docs too.
.PHONY: docs
docs: setup
	$(VENV)/bin/python -c 'import sphinx, myst_parser' 2>/dev/null || \
		$(VENV)/bin/python -m pip install -r docs/requirements.txt
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html
