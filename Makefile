# Two commands cover a fresh machine with Python 3.11:
#   make demo   builds the demo data set and trains AlexNet on it
#   make test   runs the linter, then the whole test suite
#   make lint   runs the linter only (ruff, configured in ruff.toml)
# Each creates ./.venv and installs the package into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install clean

install: $(STAMP)

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m trainer.task --demo

# The linter first: a style error fails in seconds, before the long suite starts.
test: lint
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
