"""``JaxtuneSearchCV``: scikit-learn's grid/randomized search, every candidate x fold in one run.

scikit-learn's ``GridSearchCV`` fits a clone of the estimator once per ``candidate x fold``, one
after the other. :class:`JaxtuneSearchCV` takes the same arguments and gives the same
attributes (``cv_results_`` in scikit-learn's format, ``best_params_``, ``best_estimator_``...),
but trains all those fits as the members of ONE jaxtune population: the folds of the given
splitter become a :class:`jaxtune.folds.Folds` (:func:`jaxtune.folds.folds_from_indices`), each
member trains on its fold's rows through the engine's row tables, and the scores are computed
on the host by scikit-learn's own scorers on each member's held-out rows.

A member's key depends only on its config and ``random_state`` (as a clone's would), never on
its fold, so member ``(candidate, fold)`` trains exactly as ``estimator.set_params(**candidate)
.fit`` on that fold's rows: ``GridSearchCV(estimator, grid, cv=same splitter)`` gives the same
split scores up to float summation order.

The estimator is a :class:`~jaxtune.sklearn_estimators.JaxtuneClassifier` /
:class:`~jaxtune.sklearn_estimators.JaxtuneRegressor`, or a ``Pipeline`` ending in one. A
pipeline's earlier steps are fitted on the host, once per fold and distinct setting of their
parameters, and every row is transformed with them (``fit`` on the fold's training rows, then
``transform`` of all rows), so that each member trains on its own fold's transformed rows.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy import ma
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing, indexable
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted

from jaxtune.folds import folds_from_indices
from jaxtune.sklearn_estimators import (
    JaxtuneEstimator,
    member_config,
    train_members,
)

__all__ = ["JaxtuneSearchCV"]


def _final_step(estimator: Any) -> tuple[JaxtuneEstimator, Pipeline | None]:
    """The jaxtune estimator that trains, and the pipeline steps before it (or None)."""
    if isinstance(estimator, JaxtuneEstimator):
        return estimator, None
    if isinstance(estimator, Pipeline) and isinstance(estimator.steps[-1][1], JaxtuneEstimator):
        return estimator.steps[-1][1], Pipeline(estimator.steps[:-1])
    raise TypeError(
        f"JaxtuneSearchCV needs a JaxtuneClassifier, a JaxtuneRegressor or a Pipeline ending in "
        f"one, got {type(estimator).__name__}; use sklearn's GridSearchCV for other estimators."
    )


def _head_key(head: Pipeline | None) -> str:
    """The identity of a candidate's preprocessing: equal keys share transformed rows."""
    if head is None:
        return ""
    return repr(sorted(head.get_params(deep=True).items(), key=lambda item: item[0]))


class _Block:
    """The rows of one (preprocessing, fold) pair: transformed, at an offset of the pool."""

    def __init__(self, x: np.ndarray, head: Pipeline | None) -> None:
        self.x = x
        self.head = head
        self.offset = 0


def _best_has(name: str) -> Callable[[Any], bool]:
    """``available_if``'s check: the best estimator (or, before fit, the estimator) has ``name``."""

    def check(search: Any) -> bool:
        if hasattr(search, "best_estimator_"):
            return hasattr(search.best_estimator_, name)
        return hasattr(search.estimator, name)

    return check


class JaxtuneSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Grid or randomized search over a jaxtune estimator, all fits as one population.

    Args:
      estimator: a ``JaxtuneClassifier``, ``JaxtuneRegressor`` or a ``Pipeline`` ending in one.
      param_grid: as ``GridSearchCV``'s (a dict or a list of dicts of value lists).
      param_distributions: as ``RandomizedSearchCV``'s (lists or scipy distributions);
        give exactly one of the two.
      n_iter: candidates drawn from ``param_distributions``.
      scoring: None (the estimator's ``score``), a scorer name (``"accuracy"``,
        ``"neg_mean_squared_error"``, ``"neg_log_loss"``...), a callable
        ``scorer(estimator, X, y)``, or a list/dict of them (multi-metric).
      cv: as ``GridSearchCV``'s (an int, a splitter, or an iterable of index pairs).
      refit: True (refit the best candidate on all rows), False, a metric name (multi-metric),
        or a callable ``cv_results_ -> best_index``.
      random_state: seed of ``ParameterSampler``.
      return_train_score: also score every member on its training rows.
      error_score: the score of a member that diverged, or ``"raise"``.

    Attributes:
      cv_results_: dict of numpy arrays in scikit-learn's format (``params``,
        ``param_<name>`` masked arrays, ``split<i>_test_<metric>``, ``mean_test_<metric>``,
        ``std_test_<metric>``, ``rank_test_<metric>``, ``mean_fit_time``...; the metric is
        ``score`` for a single metric). ``mean_fit_time`` is each member's share of its
        population's wall time.
      best_index_, best_params_, best_score_, best_estimator_, refit_time_, scorer_,
      multimetric_, n_splits_, classes_, n_features_in_: as ``GridSearchCV``'s.
      jaxtune_results_: the :class:`~jaxtune.results.Results` of each population trained
        (one per distinct model / number of features / ``num_steps`` / ``batch_size``).

    Example:
      >>> search = JaxtuneSearchCV(JaxtuneClassifier(), {"learning_rate": [0.01, 0.1]},
      ...                          cv=5)  # doctest: +SKIP
      >>> search.fit(x, y).best_params_  # doctest: +SKIP
    """

    def __init__(
        self,
        estimator: Any,
        param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]] | None = None,
        *,
        param_distributions: Mapping[str, Any] | None = None,
        n_iter: int = 10,
        scoring: str | Callable | Sequence[str] | Mapping[str, Any] | None = None,
        cv: Any = None,
        refit: bool | str | Callable = True,
        random_state: int | None = None,
        return_train_score: bool = False,
        error_score: float | str = np.nan,
    ) -> None:
        self.estimator = estimator
        self.param_grid = param_grid
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.random_state = random_state
        self.return_train_score = return_train_score
        self.error_score = error_score

    # ----------------------------------------------------------------------------------------
    # Arguments

    def _candidates(self) -> list[dict[str, Any]]:
        if (self.param_grid is None) == (self.param_distributions is None):
            raise ValueError("give exactly one of param_grid (grid search) and "
                             "param_distributions (randomized search).")
        if self.param_grid is not None:
            return list(ParameterGrid(self.param_grid))
        return list(ParameterSampler(self.param_distributions, self.n_iter,
                                     random_state=self.random_state))

    def _scorers(self) -> dict[str, Callable]:
        scoring = self.scoring
        if scoring is None or isinstance(scoring, str) or callable(scoring):
            self.multimetric_ = False
            return {"score": check_scoring(self.estimator, scoring)}
        self.multimetric_ = True
        if isinstance(scoring, Mapping):
            items = list(scoring.items())
        else:
            items = [(name, name) for name in scoring]
        if not items:
            raise ValueError("scoring is empty; give a scorer name or None.")
        scorers = {name: check_scoring(self.estimator, s) for name, s in items}
        if self.refit is not False and not callable(self.refit) and self.refit not in scorers:
            raise ValueError(f"refit={self.refit!r}: with several metrics, refit names the one "
                             f"that picks the best candidate: one of {sorted(scorers)} (or "
                             "False, or a callable).")
        return scorers

    # ----------------------------------------------------------------------------------------
    # Fit

    def fit(self, X: Any, y: Any) -> JaxtuneSearchCV:
        """Cross-validates every candidate (all fits as one population), then refits the best.

        Raises:
          ValueError, TypeError: bad arguments or data, before anything is trained.
        """
        candidates = self._candidates()
        scorers = self._scorers()
        X, y = indexable(X, y)
        y = np.asarray(y)
        encoded, classes = self._targets(y)
        splits = list(check_cv(self.cv, y, classifier=is_classifier(self.estimator))
                      .split(X, y))
        self.n_splits_ = len(splits)
        estimators = [clone(self.estimator).set_params(**params) for params in candidates]
        for estimator in estimators:  # every candidate checked before anything trains
            _final_step(estimator)[0].check_params()
        blocks = self._blocks(estimators, X, y, splits)
        members = self._train(estimators, blocks, encoded, classes, splits)
        scores = self._score(members, estimators, X, y, splits, scorers)
        self.cv_results_ = self._results(candidates, members, scores, list(scorers))
        self.scorer_ = scorers if self.multimetric_ else scorers["score"]
        self._choose_and_refit(X, y)
        return self

    def _targets(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels encoded over all rows (every member knows every class), or float targets."""
        if not is_classifier(self.estimator):
            return np.asarray(y, np.float32), None
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has 1 class ({classes[0]!r}); a classifier needs at least 2.")
        return encoded.astype(np.int32), classes

    def _blocks(self, estimators, X, y, splits) -> dict[tuple[str, int], _Block]:
        """The transformed rows of every (preprocessing, fold) pair the candidates need."""
        blocks: dict[tuple[str, int], _Block] = {}
        shared = None
        for estimator in estimators:
            _, head = _final_step(estimator)
            key = _head_key(head)
            for fold, (train, _) in enumerate(splits):
                if (key, fold) in blocks:
                    continue
                if head is None:
                    if shared is None:
                        shared = _Block(check_array(X, dtype=np.float32), None)
                    blocks[(key, fold)] = shared
                    continue
                fitted = clone(head).fit(_safe_indexing(X, train), y[train])
                blocks[(key, fold)] = _Block(check_array(fitted.transform(X), dtype=np.float32),
                                             fitted)
        return blocks

    def _train(self, estimators, blocks, encoded, classes, splits) -> list[dict[str, Any]]:
        """Trains every candidate x fold; returns one record per member (candidate-major)."""
        groups: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for c, estimator in enumerate(estimators):
            final, head = _final_step(estimator)
            for fold in range(len(splits)):
                block = blocks[(_head_key(head), fold)]
                group = (type(final), final.model, block.x.shape[1], final.num_steps,
                         final.batch_size)
                groups[group].append((c, fold))
        members: dict[tuple[int, int], dict[str, Any]] = {}
        self.jaxtune_results_ = []
        for slots in groups.values():
            members.update(self._train_group(slots, estimators, blocks, encoded, classes,
                                             splits))
        return [members[(c, f)] for c in range(len(estimators)) for f in range(len(splits))]

    def _train_group(self, slots, estimators, blocks, encoded, classes, splits):
        """One engine call: the members ``slots`` (candidate, fold) of one task and shape."""
        finals, member_blocks, pool = [], [], []
        for c, fold in slots:
            final, head = _final_step(estimators[c])
            block = blocks[(_head_key(head), fold)]
            if not any(block is seen for seen in pool):
                block.offset = sum(len(seen.x) for seen in pool)
                pool.append(block)
            finals.append(final)
            member_blocks.append(block)
        x = np.concatenate([block.x for block in pool])
        y = np.concatenate([encoded] * len(pool))
        pairs = [(block.offset + splits[fold][0], block.offset + splits[fold][1])
                 for block, (_, fold) in zip(member_blocks, slots, strict=True)]
        num_classes = None if classes is None else len(classes)
        kind = "regression" if classes is None else "classification"
        results, params = train_members(
            finals[0].make_task(x.shape[1], num_classes),
            [member_config(final) for final in finals], (x, y, kind, num_classes),
            folds_from_indices(pairs, len(x)).member_rows(list(range(len(slots)))),
            num_steps=int(finals[0].num_steps), batch_size=finals[0].batch_size,
            member_seeds=[final.member_seed for final in finals],
        )
        self.jaxtune_results_.append(results)
        out = {}
        for i, (c, fold) in enumerate(slots):
            fitted = clone(finals[i])
            if classes is not None:
                fitted.classes_ = classes
            fitted.n_features_in_ = x.shape[1]
            fitted.set_fitted(params[i], results[i].status, results[i].diverged_step)
            out[(c, fold)] = {"estimator": fitted, "status": results[i].status,
                              "fit_time": results[i].wall_time_s,
                              "head": member_blocks[i].head}
        return out

    # ----------------------------------------------------------------------------------------
    # Scores and results

    def _score(self, members, estimators, X, y, splits, scorers) -> list[dict[str, Any]]:
        """Every member scored by scikit-learn's scorers on its fold's raw rows."""
        scored = []
        for i, member in enumerate(members):
            fold = i % len(splits)
            fitted = member["estimator"]
            if member["head"] is not None:
                fitted = Pipeline([*member["head"].steps,
                                   (estimators[i // len(splits)].steps[-1][0], fitted)])
            parts = [("test", splits[fold][1])]
            if self.return_train_score:
                parts.append(("train", splits[fold][0]))
            start = time.perf_counter()
            record = {}
            for part, rows in parts:
                x_part, y_part = _safe_indexing(X, rows), y[rows]
                for name, scorer in scorers.items():
                    record[(part, name)] = self._member_score(member, scorer, fitted, x_part,
                                                              y_part)
            record["score_time"] = time.perf_counter() - start
            scored.append(record)
        return scored

    def _member_score(self, member, scorer, fitted, x, y) -> float:
        if member["status"] == "diverged":
            if self.error_score == "raise":
                raise ValueError("a member diverged (non-finite loss) and error_score='raise'; "
                                 "lower the learning rates or set error_score=np.nan.")
            return float(self.error_score)
        return float(scorer(fitted, x, y))

    def _results(self, candidates, members, scores, metrics) -> dict[str, Any]:
        """``cv_results_`` in scikit-learn's layout."""
        num_candidates, num_splits = len(candidates), self.n_splits_
        results: dict[str, Any] = {}

        def store(key, values):
            array = np.asarray(values, np.float64).reshape(num_candidates, num_splits)
            results[f"mean_{key}"] = array.mean(axis=1)
            results[f"std_{key}"] = array.std(axis=1)
            return array

        store("fit_time", [m["fit_time"] for m in members])
        store("score_time", [s["score_time"] for s in scores])
        names = sorted({name for params in candidates for name in params})
        for name in names:
            column = ma.MaskedArray(np.empty(num_candidates, dtype=object),
                                    mask=[name not in params for params in candidates])
            for c, params in enumerate(candidates):
                if name in params:
                    column[c] = params[name]
            results[f"param_{name}"] = column
        results["params"] = candidates
        parts = ["test", "train"] if self.return_train_score else ["test"]
        for metric in metrics:
            for part in parts:
                array = np.asarray([s[(part, metric)] for s in scores], np.float64)
                array = array.reshape(num_candidates, num_splits)
                for fold in range(num_splits):
                    results[f"split{fold}_{part}_{metric}"] = array[:, fold]
                results[f"mean_{part}_{metric}"] = array.mean(axis=1)
                results[f"std_{part}_{metric}"] = array.std(axis=1)
                if part == "test":
                    results[f"rank_test_{metric}"] = _rank(results[f"mean_test_{metric}"])
        return results

    def _choose_and_refit(self, X, y) -> None:
        refit = self.refit
        if refit is False:
            return
        if callable(refit):
            self.best_index_ = int(refit(self.cv_results_))
        else:
            metric = refit if self.multimetric_ else "score"
            self.best_index_ = int(self.cv_results_[f"rank_test_{metric}"].argmin())
            self.best_score_ = float(self.cv_results_[f"mean_test_{metric}"][self.best_index_])
        self.best_params_ = self.cv_results_["params"][self.best_index_]
        start = time.perf_counter()
        self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_).fit(X, y)
        self.refit_time_ = time.perf_counter() - start

    # ----------------------------------------------------------------------------------------
    # The refitted best estimator

    def _best(self):
        check_is_fitted(self, "best_estimator_",
                        msg="call fit with refit=True before using the best estimator.")
        return self.best_estimator_

    @available_if(_best_has("predict"))
    def predict(self, X: Any) -> np.ndarray:
        """``best_estimator_.predict(X)``."""
        return self._best().predict(X)

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """``best_estimator_.predict_proba(X)``."""
        return self._best().predict_proba(X)

    @available_if(_best_has("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``best_estimator_.predict_log_proba(X)``."""
        return self._best().predict_log_proba(X)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """``best_estimator_.decision_function(X)``."""
        return self._best().decision_function(X)

    def score(self, X: Any, y: Any) -> float:
        """The refit metric's scorer on ``best_estimator_`` (as ``GridSearchCV.score``)."""
        best = self._best()
        scorer = self.scorer_[self.refit] if self.multimetric_ else self.scorer_
        return float(scorer(best, X, y))

    @property
    def classes_(self) -> np.ndarray:
        """The best estimator's class labels."""
        return self._best().classes_

    @property
    def n_features_in_(self) -> int:
        """Number of features the search was fitted on."""
        return self._best().n_features_in_


def _rank(means: np.ndarray) -> np.ndarray:
    """scikit-learn's ranking of mean scores: 1 is best, ties share the lowest rank, NaN last."""
    if np.isnan(means).all():
        return np.ones(len(means), np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return rankdata(-filled, method="min").astype(np.int32)
