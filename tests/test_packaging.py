"""What a user's install gets: typed package, one version, true floors, licences, BLAS threads."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import jaxtune
from jaxtune.results import Results

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONSTRAINTS = ROOT / ".ci" / "constraints-min.txt"
#: The extras `make test-min` installs at their floors (the others are named in the report).
MIN_EXTRAS = ("checkpoint", "plot", "yaml", "pandas")
#: Set by `make test-min`: this run is in the venv that holds exactly the floors.
MIN_ENV = "JAXTUNE_TEST_MIN"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _floors(requirements: list[str]) -> dict[str, str]:
    floors = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)>=([0-9][0-9A-Za-z.]*)", requirement.strip())
        assert match, f"{requirement!r}: every requirement needs one plain '>=' floor"
        floors[_canonical(match[1])] = match[2]
    return floors


def _pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name)] = version.strip()
    return pins


def test_floors_match_the_min_constraints():
    project = PYPROJECT["project"]
    declared = _floors(project["dependencies"])
    for extra in MIN_EXTRAS:
        declared.update(_floors(project["optional-dependencies"][extra]))
    assert _pins() == declared
    # The floors the jaxtune code needs (issue 11): older versions fail in every jt.train.
    assert project["requires-python"] == ">=3.11"
    needed = {"jax": "0.8.1", "jaxlib": "0.8.1", "optax": "0.2.5", "numpy": "2.0.0"}
    assert {name: declared[name] for name in needed} == needed
    # chex stays: the PRNG-key type and the trace counting of tests/test_retrace.py.
    assert "chex" in declared
    # The dev extra never asks for less than the others.
    dev = _floors(project["optional-dependencies"]["dev"])
    for name, floor in dev.items():
        if name in declared:
            assert floor == declared[name], name


@pytest.mark.skipif(not os.environ.get(MIN_ENV), reason="only in `make test-min`'s venv")
def test_this_run_is_at_the_floors():
    installed = {name: importlib.metadata.version(name) for name in _pins()}
    assert installed == _pins()


def test_version_has_one_source():
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert "version" not in PYPROJECT["project"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "jaxtune.__version__"}
    assert jaxtune.__version__ == importlib.metadata.version("jaxtune")


def test_cli_prints_the_version():
    out = subprocess.run(
        [sys.executable, "-m", "jaxtune.cli", "--version"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == f"jaxtune {jaxtune.__version__}"


def test_py_typed_ships():
    assert (ROOT / "jaxtune" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["jaxtune"]
    assert "Typing :: Typed" in PYPROJECT["project"]["classifiers"]


def test_license_has_both_notices():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole text, not a pointer to it
    assert "BSD 3-Clause License" in text and "The scikit-learn developers" in text
    for name in os.listdir(ROOT / "jaxtune" / "datasets"):
        if name.endswith((".csv", ".csv.gz")):
            assert name in text, f"LICENSE does not name the embedded {name}"
    assert PYPROJECT["project"]["license"] == "Apache-2.0 AND BSD-3-Clause"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


def test_pandas_is_an_extra_named_by_to_pandas(monkeypatch):
    assert _floors(PYPROJECT["project"]["optional-dependencies"]["pandas"]).keys() == {"pandas"}
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    with pytest.raises(ImportError, match=re.escape("pip install 'jaxtune[pandas]'")):
        Results([], {}).to_pandas()


def test_bayes_pins_blas_threads_without_scikit_learn(monkeypatch):
    # threadpoolctl is jaxtune's own dependency: the GP's one-BLAS-thread limit does not
    # depend on scikit-learn being installed (`make test-min` has no scikit-learn at all).
    assert "threadpoolctl" in _floors(PYPROJECT["project"]["dependencies"])
    monkeypatch.setitem(sys.modules, "sklearn", None)
    import threadpoolctl  # an ImportError here is the failure: it must come with jaxtune

    from jaxtune.strategies import gp

    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert blas, "numpy's BLAS should be visible to threadpoolctl"
    with gp.gp_precision(rows=8):
        inside = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert [i["num_threads"] for i in inside] == [1] * len(inside)
