# autobuild — developer entry points. Every target installs what it needs, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test unit lint crds check-crds

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

# The whole suite: unit tests and the @pytest.mark.k8s tests on the real local control plane.
# pytest exits 5 when it collects no test; that is not a failure of the suite itself.
test: install
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

# Only the tests that need no cluster.
unit: install
	$(PY) -m pytest -m 'not k8s' $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator tests
	$(VENV)/bin/mypy

# Regenerate the CRD from the pydantic models (the single source of truth).
crds: install
	$(PY) -m autobuild.api.crd > crds/automatedbuild.yaml
