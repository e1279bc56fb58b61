"""jaxtune.sklearn: the estimators, JaxtuneSearchCV against scikit-learn's GridSearchCV, and
scikit-learn's own estimator checks.

Compile time dominates: every new data shape and population size is a new program. So the
classification checks share one test (one process): 120 rows and 3 folds of 80 training rows
put every solo fit (GridSearchCV's per-fold fits and every refit) in one padded shape, and
every search has 4 candidates x 3 folds = 12 members over the same pooled rows, so the whole
test compiles 3 programs. A linear model with 20 steps.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn", minversion="1.6")

from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, ParameterSampler
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import estimator_checks_generator

from jaxtune.sklearn import (
    JaxtuneClassifier,
    JaxtuneRegressor,
    JaxtuneSearchCV,
    member_config,
)
from jaxtune.sklearn_estimators import padded_size

#: Split scores of a member and of GridSearchCV's solo fit of the same candidate on the same
#: fold: the same arithmetic on the same rows (both row tables padded to the same width), so
#: they agree to float rounding. Accuracy is a count over 40 rows, so this tolerance demands
#: identical predictions; MSE and R^2 agree to float32 rounding.
SCORE_ATOL = 1e-6
REGRESSION_RTOL = 1e-5
CV = KFold(3, shuffle=True, random_state=0)
NUM_ROWS = 120
#: 2 x 2 candidates: with 3 folds, every search below is a population of 12 members.
GRID = {"learning_rate": [0.003, 0.1], "l2": [0.0, 0.05]}
#: scikit-learn's checks that these estimators fail: none. Passed to ``check_estimator`` so a
#: future expected failure is named here, with its reason.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return x[:NUM_ROWS], y[:NUM_ROWS]


def _same_split_scores(ours, theirs, metrics, rtol=0.0, atol=SCORE_ATOL):
    for metric in metrics:
        for fold in range(CV.get_n_splits()):
            key = f"split{fold}_test_{metric}"
            np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol, atol=atol, err_msg=key)
        for key in (f"mean_test_{metric}", f"std_test_{metric}"):
            np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol, atol=atol, err_msg=key)
        np.testing.assert_array_equal(ours[f"rank_test_{metric}"], theirs[f"rank_test_{metric}"])


def test_classifier_search(cancer):
    """Members equal GridSearchCV's solo fits; scikit-learn's format; delegation; pipelines
    both ways; randomized and multi-metric search; a diverging member."""
    x_raw, y = cancer
    x = StandardScaler().fit_transform(x_raw)
    estimator = JaxtuneClassifier(num_steps=20)
    ours = JaxtuneSearchCV(estimator, GRID, cv=CV).fit(x, y)
    theirs = GridSearchCV(estimator, GRID, cv=CV).fit(x, y)
    assert set(ours.cv_results_) == set(theirs.cv_results_)
    _same_split_scores(ours.cv_results_, theirs.cv_results_, ["score"])
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    for name in ("param_l2", "param_learning_rate"):
        assert isinstance(ours.cv_results_[name], np.ma.MaskedArray)
        assert list(ours.cv_results_[name]) == list(theirs.cv_results_[name])
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_index_ == theirs.best_index_
    assert ours.best_score_ == pytest.approx(theirs.best_score_, abs=SCORE_ATOL)
    assert ours.n_splits_ == 3 and len(ours.jaxtune_results_) == 1
    assert len(ours.jaxtune_results_[0]) == 4 * 3  # one population: every candidate x fold
    frame = pd.DataFrame(ours.cv_results_)
    assert frame.shape[0] == 4 and frame["rank_test_score"].min() == 1
    # The refitted best estimator answers, and the search delegates to it.
    best = theirs.best_estimator_
    np.testing.assert_allclose(ours.predict_proba(x), best.predict_proba(x), atol=1e-6)
    np.testing.assert_array_equal(ours.predict(x), best.predict(x))
    np.testing.assert_allclose(ours.decision_function(x), best.decision_function(x), atol=1e-5)
    assert ours.score(x, y) == pytest.approx(best.score(x, y))
    np.testing.assert_array_equal(ours.classes_, [0, 1])
    assert ours.n_features_in_ == 30

    # The search inside a Pipeline: the same members on the same (scaled) rows.
    outer = make_pipeline(StandardScaler(), JaxtuneSearchCV(estimator, GRID, cv=CV))
    outer.fit(x_raw, y)
    _same_split_scores(outer[-1].cv_results_, ours.cv_results_, ["score"], atol=1e-5)

    # The estimator inside a Pipeline inside the search: scaling fitted per fold.
    pipeline = Pipeline([("scale", StandardScaler()), ("est", estimator)])
    grid = {f"est__{name}": values for name, values in GRID.items()}
    ours_p = JaxtuneSearchCV(pipeline, grid, cv=CV).fit(x_raw, y)
    theirs_p = GridSearchCV(pipeline, grid, cv=CV).fit(x_raw, y)
    _same_split_scores(ours_p.cv_results_, theirs_p.cv_results_, ["score"])
    assert ours_p.best_params_ == theirs_p.best_params_
    assert isinstance(ours_p.best_estimator_, Pipeline)

    # Randomized search and several metrics.
    distributions = {"learning_rate": loguniform(1e-3, 1e-1), "l2": [0.0, 0.01]}
    search = JaxtuneSearchCV(
        estimator, param_distributions=distributions, n_iter=4, random_state=0,
        scoring=["accuracy", "neg_log_loss"], refit="neg_log_loss", cv=CV,
    ).fit(x, y)
    assert search.cv_results_["params"] == list(ParameterSampler(distributions, 4,
                                                                 random_state=0))
    for metric in ("accuracy", "neg_log_loss"):
        assert search.cv_results_[f"mean_test_{metric}"].shape == (4,)
    assert search.best_index_ == int(np.argmax(search.cv_results_["mean_test_neg_log_loss"]))
    assert search.multimetric_ and set(search.scorer_) == {"accuracy", "neg_log_loss"}

    # A member that diverges gets error_score and ranks last; the others are unaffected.
    grid = {"learning_rate": [0.1, 1e38], "l2": [0.0, 0.05]}
    diverging = JaxtuneSearchCV(estimator, grid, cv=CV, refit=False).fit(x, y)
    means = diverging.cv_results_["mean_test_score"]
    np.testing.assert_array_equal(np.isnan(means), [False, True, False, True])
    assert list(diverging.cv_results_["rank_test_score"][[1, 3]]) == [3, 3]
    np.testing.assert_allclose(means[[0, 2]], ours.cv_results_["mean_test_score"][[1, 3]])
    with pytest.raises(ValueError, match="error_score='raise'"):
        diverging.set_params(error_score="raise").fit(x, y)
    with pytest.warns(ConvergenceWarning, match="diverged"):
        JaxtuneClassifier(num_steps=20, learning_rate=1e38).fit(x, y)

    # scikit-learn's fitting conventions (its full checks: benchmarks/sklearn_checks.py).
    fresh = clone(best)
    with pytest.raises(NotFittedError):
        fresh.predict(x)
    params = fresh.get_params()
    assert fresh.fit(x, y) is fresh and fresh.get_params() == params
    assert fresh.n_features_in_ == 30
    with pytest.raises(ValueError, match="features"):
        fresh.predict(x[:, :5])

    # Any labels: encoded through classes_ (sorted), so the same member as with 0/1.
    named = clone(best).fit(x, np.where(y == 1, "yes", "no"))
    np.testing.assert_array_equal(named.classes_, ["no", "yes"])
    np.testing.assert_array_equal(named.predict(x), np.where(best.predict(x) == 1, "yes", "no"))
    np.testing.assert_array_equal(named.predict_proba(x), best.predict_proba(x))


def test_regressor_search_equals_gridsearchcv():
    x, y = load_diabetes(return_X_y=True)
    x, y = StandardScaler().fit_transform(x[:NUM_ROWS]), y[:NUM_ROWS]
    y = (y - y.mean()) / y.std()
    estimator = JaxtuneRegressor(num_steps=20)
    grid = {"learning_rate": [0.01, 0.1]}
    scoring = {"r2": "r2", "mse": "neg_mean_squared_error"}
    ours = JaxtuneSearchCV(estimator, grid, cv=CV, scoring=scoring, refit="mse").fit(x, y)
    theirs = GridSearchCV(estimator, grid, cv=CV, scoring=scoring, refit="mse").fit(x, y)
    _same_split_scores(ours.cv_results_, theirs.cv_results_, ["r2", "mse"],
                       rtol=REGRESSION_RTOL, atol=0.0)
    assert ours.best_params_ == theirs.best_params_
    assert ours.score(x, y) == pytest.approx(theirs.score(x, y), rel=REGRESSION_RTOL)


@pytest.mark.parametrize("change, match", [
    ({"model": "cnn"}, "model='cnn'"),
    ({"optimizer": "lbfgs"}, "optimizer='lbfgs'"),
    ({"learning_rate": 0.0}, "learning_rate=0.0"),
    ({"num_steps": 0}, "num_steps=0"),
    ({"batch_size": 2.5}, "batch_size=2.5"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"model": "mlp", "hidden_sizes": (8, 0)}, r"hidden_sizes\[1\]=0"),
])
def test_bad_parameters_are_refused_before_training(cancer, change, match):
    x, y = cancer
    with pytest.raises(ValueError, match=match):
        JaxtuneClassifier(**change).fit(x, y)


def test_search_argument_errors(cancer):
    x, y = cancer
    estimator = JaxtuneClassifier()
    assert clone(estimator).get_params() == estimator.get_params()
    mlp = JaxtuneClassifier("mlp", hidden_sizes=(8, 4), dropout=0.1, l1=1e-3)
    assert member_config(mlp) == {"optimizer": "adam", "learning_rate": 0.01, "l1": 1e-3,
                                  "l2": 0.0, "dropout": 0.1, "hidden_sizes": [8, 4]}
    assert "hidden_sizes" not in member_config(estimator)
    with pytest.raises(ValueError, match="exactly one of param_grid"):
        JaxtuneSearchCV(estimator).fit(x, y)
    with pytest.raises(TypeError, match="GridSearchCV for other estimators"):
        JaxtuneSearchCV(LogisticRegression(), {"C": [1.0]}).fit(x, y)
    with pytest.raises(ValueError, match="refit names the one"):
        JaxtuneSearchCV(estimator, {"l2": [0.0]}, scoring=["accuracy", "f1"]).fit(x, y)
    with pytest.raises(ValueError, match="1 class"):
        JaxtuneSearchCV(estimator, {"l2": [0.0]}).fit(x, np.zeros(len(y)))
    with pytest.raises(ValueError, match="model='cnn'"):
        JaxtuneSearchCV(estimator, {"model": ["cnn"]}).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = JaxtuneSearchCV(estimator, {"l2": [0.0]})
        assert not hasattr(search, "best_estimator_")


#: scikit-learn's checks that never fit: they run here. The other checks (48 of 55 for the
#: classifier) fit on about a dozen differently shaped datasets, one compilation apiece (about
#: 30 s of CPU per estimator), so ``benchmarks/sklearn_checks.py`` runs them all (docs/sklearn.md
#: records the run: every check passes, both estimators); the fitting conventions they cover
#: most directly (fit returns self, parameters untouched, n_features_in_, unfitted errors) are
#: also asserted in test_classifier_search on programs compiled there anyway.
NON_FITTING_CHECKS = (
    "check_estimator_cloneable", "check_estimator_tags_renamed", "check_valid_tag_types",
    "check_estimator_repr", "check_no_attributes_set_in_init",
    "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
    "check_parameters_default_constructible", "check_get_params_invariance", "check_set_params",
)


@pytest.mark.parametrize("estimator", [JaxtuneClassifier(), JaxtuneRegressor()],
                         ids=["classifier", "regressor"])
def test_sklearn_checks_that_do_not_fit(estimator):
    ran = []
    for instance, check in estimator_checks_generator(
            estimator, legacy=True, expected_failed_checks=EXPECTED_FAILED_CHECKS):
        name = getattr(check, "func", check).__name__
        if name in NON_FITTING_CHECKS:
            check(instance)
            ran.append(name)
    assert sorted(ran) == sorted(NON_FITTING_CHECKS)


def test_padded_size():
    """Row padding: powers of two from 32, then multiples of 4096; never below the rows."""
    assert [padded_size(n) for n in (1, 32, 33, 80, 120, 4096, 4097)] == [
        32, 32, 64, 128, 128, 4096, 8192]
