# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_MINUTES ?= 5
DEMO_OUT ?= runs/demo

.PHONY: install demo test test-fast lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# constraints.txt pins the torch build tested here; pyproject keeps open ranges for users' own builds.
$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch torchvision
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mobilevision demo --out $(DEMO_OUT) --minutes $(DEMO_MINUTES)

# ruff (lint and format check) first: a style finding fails in seconds, before the 15-minute suite.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) -m pytest -q

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs data_cache .pytest_cache
