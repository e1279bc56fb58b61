"""jaxtune.sklearn: the estimators, JaxtuneSearchCV against scikit-learn's GridSearchCV, and
scikit-learn's own estimator checks.

Compile time dominates: every distinct data shape is a new program. The tests share shapes
(150 rows, 3 folds of 100 training rows) so that the solo fits of GridSearchCV and the refits
reuse programs within a test, and use a linear model with 20 steps.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, ParameterSampler
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from jaxtune.sklearn import JaxtuneClassifier, JaxtuneRegressor, JaxtuneSearchCV

#: Split scores of a member and of GridSearchCV's solo fit of the same candidate on the same
#: fold: the same program on the same rows, up to the summation order of the padded row tables
#: (a fold's table is as wide as the widest fold). Accuracy is a count over 50 rows, so this
#: tolerance demands identical predictions; MSE and R^2 agree to float32 rounding.
SCORE_ATOL = 1e-6
REGRESSION_RTOL = 1e-5
CV = KFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return x[:150], y[:150]


def _same_split_scores(ours, theirs, metrics, rtol=0.0, atol=SCORE_ATOL):
    for metric in metrics:
        for fold in range(CV.get_n_splits()):
            key = f"split{fold}_test_{metric}"
            np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol, atol=atol, err_msg=key)
        for key in (f"mean_test_{metric}", f"std_test_{metric}"):
            np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol, atol=atol, err_msg=key)
        np.testing.assert_array_equal(ours[f"rank_test_{metric}"], theirs[f"rank_test_{metric}"])


def test_search_equals_gridsearchcv_and_delegates(cancer):
    """Every member equals GridSearchCV's solo fit on its fold; the format is scikit-learn's."""
    x, y = cancer
    x = StandardScaler().fit_transform(x)
    estimator = JaxtuneClassifier(num_steps=20)
    grid = {"learning_rate": [0.003, 0.1], "l2": [0.0, 0.05]}
    ours = JaxtuneSearchCV(estimator, grid, cv=CV).fit(x, y)
    theirs = GridSearchCV(estimator, grid, cv=CV).fit(x, y)
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


def test_pipelines(cancer):
    """The estimator inside a Pipeline inside the search (per-fold scaling), and the search
    inside a Pipeline."""
    x, y = cancer
    pipeline = Pipeline([("scale", StandardScaler()), ("est", JaxtuneClassifier(num_steps=20))])
    grid = {"est__learning_rate": [0.003, 0.1]}
    ours = JaxtuneSearchCV(pipeline, grid, cv=CV).fit(x, y)
    theirs = GridSearchCV(pipeline, grid, cv=CV).fit(x, y)
    _same_split_scores(ours.cv_results_, theirs.cv_results_, ["score"])
    assert ours.best_params_ == theirs.best_params_
    assert isinstance(ours.best_estimator_, Pipeline)
    # Scaling fitted on each fold's training rows: the folds' pooled rows are three blocks.
    assert ours.jaxtune_results_[0].metadata is not None
    outer = make_pipeline(StandardScaler(), JaxtuneSearchCV(
        JaxtuneClassifier(num_steps=20), {"learning_rate": [0.003, 0.1]}, cv=CV))
    outer.fit(x, y)
    assert outer.score(x, y) == pytest.approx(theirs.score(x, y), abs=0.05)


def test_randomized_multimetric_and_divergence(cancer):
    x, y = cancer
    x = StandardScaler().fit_transform(x)
    distributions = {"learning_rate": loguniform(1e-3, 1e-1), "l2": [0.0, 0.01]}
    search = JaxtuneSearchCV(
        JaxtuneClassifier(num_steps=20), param_distributions=distributions, n_iter=3,
        random_state=0, scoring=["accuracy", "neg_log_loss"], refit="neg_log_loss", cv=CV,
    ).fit(x, y)
    assert search.cv_results_["params"] == list(ParameterSampler(distributions, 3,
                                                                 random_state=0))
    for metric in ("accuracy", "neg_log_loss"):
        assert search.cv_results_[f"mean_test_{metric}"].shape == (3,)
    best = int(np.argmax(search.cv_results_["mean_test_neg_log_loss"]))
    assert search.best_index_ == best
    assert search.multimetric_ and set(search.scorer_) == {"accuracy", "neg_log_loss"}
    # A member that diverges gets error_score and ranks last; the others are unaffected.
    grid = {"learning_rate": [0.1, 1e38]}
    diverging = JaxtuneSearchCV(JaxtuneClassifier(num_steps=20), grid, cv=CV, refit=False)
    diverging.fit(x, y)
    assert np.isnan(diverging.cv_results_["mean_test_score"][1])
    assert np.isfinite(diverging.cv_results_["mean_test_score"][0])
    assert list(diverging.cv_results_["rank_test_score"]) == [1, 2]
    assert {r.status for r in diverging.jaxtune_results_[0]} == {"completed", "diverged"}
    with pytest.raises(ValueError, match="error_score='raise'"):
        diverging.set_params(error_score="raise").fit(x, y)
    with pytest.warns(ConvergenceWarning, match="diverged"):
        JaxtuneClassifier(num_steps=20, learning_rate=1e38).fit(x, y)


def test_regressor_search_equals_gridsearchcv():
    x, y = load_diabetes(return_X_y=True)
    x, y = StandardScaler().fit_transform(x[:150]), (y[:150] - y[:150].mean()) / y.std()
    estimator = JaxtuneRegressor(num_steps=20)
    grid = {"learning_rate": [0.01, 0.1]}
    scoring = {"r2": "r2", "mse": "neg_mean_squared_error"}
    ours = JaxtuneSearchCV(estimator, grid, cv=CV, scoring=scoring, refit="mse").fit(x, y)
    theirs = GridSearchCV(estimator, grid, cv=CV, scoring=scoring, refit="mse").fit(x, y)
    _same_split_scores(ours.cv_results_, theirs.cv_results_, ["r2", "mse"],
                       rtol=REGRESSION_RTOL, atol=0.0)
    assert ours.best_params_ == theirs.best_params_
    assert ours.score(x, y) == pytest.approx(theirs.score(x, y), rel=REGRESSION_RTOL)


def test_logistic_regression_agrees_with_sklearn(cancer):
    """The linear classifier, trained long enough, is scikit-learn's LogisticRegression:
    ``l2 = 1 / (C * rows)`` is the same objective."""
    x, y = cancer
    x = StandardScaler().fit_transform(x)
    ours = JaxtuneClassifier(num_steps=400, learning_rate=0.05, l2=1.0 / len(y)).fit(x, y)
    theirs = LogisticRegression(C=1.0).fit(x, y)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), atol=0.02)


def test_estimator_conventions(cancer):
    x, y = cancer
    estimator = JaxtuneClassifier(model="mlp", hidden_sizes=(8,), learning_rate=0.05,
                                  num_steps=20, batch_size=16, dropout=0.1, random_state=3)
    assert clone(estimator).get_params() == estimator.get_params()
    labels = np.where(y == 1, "benign", "malignant")
    fitted = estimator.fit(StandardScaler().fit_transform(x), labels)
    assert fitted is estimator
    assert set(fitted.predict(x[:5])) <= {"benign", "malignant"}
    np.testing.assert_allclose(fitted.predict_proba(x[:5]).sum(axis=1), 1.0, atol=1e-6)


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
