# The README's two commands: `make serve` (set up, then serve the default engine) and `make test`.
# Everything installs into .venv in the repo root; re-running only reinstalls when the
# dependency files change.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKED := src tests benchmarks deploy

.PHONY: setup serve test lint typecheck unit clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,deploy,kyutai,cpu]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $$($(BIN)/python -c \
		'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["stt"]["no-deps"]))')
	touch $(STAMP)

setup: $(STAMP)

serve: setup
	$(BIN)/stt serve

lint: setup
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)

typecheck: setup
	$(BIN)/mypy
	$(BIN)/mypy deploy/modal_app.py

unit: setup
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
