# Two set-up-free entry points: `make demo` and `make test`. Both create .venv on first use.
# `make test-min` proves the declared floors: its own .venv-min holds exactly the lowest
# versions pyproject.toml allows (.ci/constraints-min.txt) and runs a fast part of the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
VENV_MIN ?= .venv-min
PY_MIN := $(VENV_MIN)/bin/python
STAMP_MIN := $(VENV_MIN)/.installed-stamp
MIN_CONSTRAINTS := .ci/constraints-min.txt
# train, tune, cv, the optimizers against optax, checkpoint/resume, the CLI, results/pandas,
# chex's trace counting and the packaging checks; about a minute of CPU.
MIN_TESTS := tests/test_packaging.py tests/test_retrace.py tests/test_optim.py \
	tests/test_tune.py tests/test_results.py \
	tests/test_cv.py::test_member_layout_is_config_major \
	tests/test_cv.py::test_nested_cv_runs_all_inner_folds_as_one_population \
	tests/test_checkpoint.py::test_train_resumes_to_the_uninterrupted_results \
	tests/test_cli.py::test_sweep_show_plot_end_to_end

.PHONY: demo test test-all test-min lint bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,plot,yaml]"
	touch $(STAMP)

$(STAMP_MIN): pyproject.toml $(MIN_CONSTRAINTS)
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN)
	$(PY_MIN) -m pip install -q --upgrade pip
	$(PY_MIN) -m pip install -q -c $(MIN_CONSTRAINTS) -e ".[checkpoint,plot,yaml,pandas]" \
		"pytest>=8" "pytest-xdist>=3.5"
	touch $(STAMP_MIN)

test-min: $(STAMP_MIN)
	$(PY_MIN) -c "import sys, jax, optax, flax, numpy; print('floors: Python', sys.version.split()[0], 'jax', jax.__version__, 'optax', optax.__version__, 'flax', flax.__version__, 'numpy', numpy.__version__)"
	JAXTUNE_TEST_MIN=1 $(PY_MIN) -m pytest -q -n 2 -p no:cacheprovider $(MIN_TESTS)

demo: $(STAMP)
	$(PY) -m jaxtune.demo --out runs/demo

lint: $(STAMP)
	$(PY) -m ruff check .

# CI's command: the suite without the slow tier (tests/conftest.py: SLOW_TESTS); about ten
# minutes on 2 cores. `make test-all` runs every test (about twice as long).
test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 -m "not slow" --durations=15

test-all: $(STAMP) lint
	$(PY) -m pytest -q -n 2 --durations=15

bench: $(STAMP)
	$(PY) -m pip install -q ".[bench]"
	$(PY) benchmarks/population.py

bench-quick: $(STAMP)
	$(PY) benchmarks/population.py --quick

clean:
	rm -rf $(VENV) $(VENV_MIN) runs build *.egg-info
