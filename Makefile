# Two commands set up a fresh machine: `make run` (the app on the shipped weights) and `make test`.
PYTHON ?= python3
VENV ?= .venv
ARGS ?=
PYTEST_ARGS ?=

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	touch $@

.PHONY: setup run test bench bench-load
setup: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/python -m webapp $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/bench_train.py
	$(VENV)/bin/python bench/bench_webapp.py

# N simulated webcams against gunicorn (docs/benchmarks.md); ARGS e.g. "--clients 30 --soak 600".
bench-load: $(VENV)/.installed
	$(VENV)/bin/python bench/bench_load.py $(ARGS)
