# Two commands set up a fresh machine: `make run` (the app on the shipped weights) and `make test`.
PYTHON ?= python3
VENV ?= .venv
ARGS ?=
PYTEST_ARGS ?=

# The first run installs about 2 GB (TensorFlow is most of it): say so, and let pip show its progress.
$(VENV)/.installed: requirements.txt
	@echo "Setting up $(VENV) with $$($(PYTHON) --version 2>&1) ($(PYTHON); choose another with make PYTHON=python3.11)."
	@echo "First time only: pip installs about 2 GB into $(VENV) (TensorFlow is most of it); this takes minutes."
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -r requirements.txt
	touch $@
	@echo "Installed. Run this project's Python as $(VENV)/bin/python, or after: source $(VENV)/bin/activate"

.PHONY: setup run test test-fast bench bench-load
setup: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/python -m webapp $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# For everyday edits: everything but the tests marked slow (training, servers in subprocesses) or
# browser; `make test` is the full suite that CI runs.
test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/bench_train.py
	$(VENV)/bin/python bench/bench_webapp.py

# N simulated webcams against gunicorn (docs/benchmarks.md); ARGS e.g. "--clients 30 --soak 600".
bench-load: $(VENV)/.installed
	$(VENV)/bin/python bench/bench_load.py $(ARGS)
