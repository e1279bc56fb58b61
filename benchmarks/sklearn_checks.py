"""scikit-learn's full estimator checks on jaxtune's estimators, and a search timed side by side.

1. Runs ``sklearn.utils.estimator_checks.check_estimator`` (every check, ``legacy=True``) on
   ``JaxtuneClassifier`` (linear and MLP) and ``JaxtuneRegressor``, and prints each check's
   status and CPU time. The CI runs only the checks that never fit (``tests/test_sklearn.py``)
   because the others fit on about a dozen differently shaped datasets per estimator, one
   compilation apiece; this script is where the whole set runs.
2. Times ``JaxtuneSearchCV`` against scikit-learn's ``GridSearchCV`` over the same
   ``JaxtuneClassifier``, grid and folds (one population against one fit after another), each
   in a fresh process with an empty compilation cache, and checks that their split scores agree.

    python benchmarks/sklearn_checks.py            # both parts
    python benchmarks/sklearn_checks.py --smoke    # the linear classifier's checks, a 2x2 grid

The last line is machine-readable: ``checks_failed=<n> checks_passed=<n> search_s=<jaxtune>
gridsearch_s=<sklearn> same_scores=<bool>``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

SEARCH = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import StandardScaler
from jaxtune.sklearn import JaxtuneClassifier, JaxtuneSearchCV
x, y = load_breast_cancer(return_X_y=True)
x = StandardScaler().fit_transform(x)
size = int(sys.argv[2])
grid = {"learning_rate": list(np.geomspace(1e-3, 0.3, size)),
        "l2": list(np.geomspace(1e-4, 1e-1, size))}
cls = JaxtuneSearchCV if sys.argv[1] == "jaxtune" else GridSearchCV
search = cls(JaxtuneClassifier(num_steps=200), grid, cv=KFold(5, shuffle=True, random_state=0))
search.fit(x, y)
scores = [search.cv_results_[f"split{i}_test_score"].tolist() for i in range(5)]
print(json.dumps({"seconds": time.perf_counter() - start, "scores": scores,
                  "best": {k: float(v) for k, v in search.best_params_.items()}}))
"""


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_checks(estimators) -> tuple[int, int]:
    """Every check on every estimator; prints one line per check; returns (failed, passed)."""
    from sklearn.utils.estimator_checks import estimator_checks_generator

    failed = passed = 0
    for estimator in estimators:
        label = repr(estimator)
        total = _cpu_s()
        for instance, check in estimator_checks_generator(estimator, legacy=True):
            name = getattr(check, "func", check).__name__
            start = _cpu_s()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    check(instance)
                status = "passed"
                passed += 1
            except Exception as error:
                skipped = type(error).__name__ == "SkipTest"
                status = f"skipped: {error}" if skipped else f"FAILED: {error!r}"[:200]
                failed += 0 if skipped else 1
            print(f"{label:60s} {name:45s} {_cpu_s() - start:6.1f} s  {status}", flush=True)
        print(f"{label}: {_cpu_s() - total:.1f} s of CPU for its checks", flush=True)
    return failed, passed


def time_search(tool: str, size: int) -> dict:
    """One search in a fresh process with an empty compilation cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, "-c", SEARCH, tool, str(size)], env=env,
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a small part, for a quick look")
    args = parser.parse_args()
    from jaxtune.sklearn import JaxtuneClassifier, JaxtuneRegressor

    estimators = [JaxtuneClassifier(num_steps=50, learning_rate=0.1)]
    if not args.smoke:
        estimators += [
            JaxtuneClassifier("mlp", hidden_sizes=(8,), batch_size=16, dropout=0.1,
                              num_steps=50, learning_rate=0.1),
            JaxtuneRegressor(num_steps=50, learning_rate=0.1),
        ]
    failed, passed = run_checks(estimators)
    size = 2 if args.smoke else 4
    start = time.perf_counter()
    ours, theirs = time_search("jaxtune", size), time_search("sklearn", size)
    same = all(abs(a - b) <= 1e-6 for fold_a, fold_b in zip(ours["scores"], theirs["scores"],
                                                             strict=True)
               for a, b in zip(fold_a, fold_b, strict=True)) and ours["best"] == theirs["best"]
    print(f"grid {size}x{size} x 5 folds: JaxtuneSearchCV {ours['seconds']:.1f} s, "
          f"GridSearchCV {theirs['seconds']:.1f} s "
          f"(ratio {theirs['seconds'] / ours['seconds']:.2f}),"
          f" same split scores and best_params_: {same} ({time.perf_counter() - start:.0f} s)")
    print(f"checks_failed={failed} checks_passed={passed} search_s={ours['seconds']:.1f} "
          f"gridsearch_s={theirs['seconds']:.1f} same_scores={same}")


if __name__ == "__main__":
    main()
