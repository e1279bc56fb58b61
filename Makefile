# Two set-up-free entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,plot,yaml]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m jaxtune.demo --out runs/demo

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 --durations=15

bench: $(STAMP)
	$(PY) -m pip install -q ".[bench]"
	$(PY) benchmarks/population.py

bench-quick: $(STAMP)
	$(PY) benchmarks/population.py --quick

clean:
	rm -rf $(VENV) runs build *.egg-info
