"""Tests of the strategy <-> engine loop."""

from __future__ import annotations

import numpy as np
import pytest

import jaxtune as jt
from jaxtune import tuning as tune_lib


@pytest.fixture(scope="module")
def wine_split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))


@pytest.fixture(scope="module")
def wine_task():
    return jt.classification_task("mlp", num_classes=3, input_shape=(13,))


SPACE = jt.Space(
    {
        "learning_rate": jt.Float(1e-3, 1e-1, log=True),
        "width": jt.Choice([8, 16]),
        "depth": jt.Fixed(1),
        "optimizer": jt.Fixed("adam"),
    }
)


def test_random_search_rounds_seeds_and_ids(wine_split, wine_task):
    rounds = []
    results = jt.tune(
        wine_task, wine_split, SPACE, jt.random_search(),
        num_configs=6, population_size=4, seeds=(0, 1), num_steps=40, batch_size=16,
        steps_per_segment=20, on_round=rounds.append,
    )
    assert len(rounds) == 2
    assert len(results) == 12
    assert sorted(r.member_id for r in results) == list(range(12))
    # Seeds are part of each member's identity: the same config with two seeds differs.
    by_config: dict[float, list] = {}
    for row in results:
        by_config.setdefault(row.config["learning_rate"], []).append(row)
    assert all(len(rows) == 2 for rows in by_config.values())
    assert all({r.seed for r in rows} == {0, 1} for rows in by_config.values())
    assert results.metadata["metric"] == "valid_accuracy"
    assert results.metadata["mode"] == "max"
    best = results.best("valid_accuracy")
    assert best.metrics["valid_accuracy"] > 0.8


def test_tune_is_reproducible(wine_split, wine_task):
    kwargs = dict(num_configs=4, num_steps=20, batch_size=16, steps_per_segment=10, seed=3)
    a = jt.tune(wine_task, wine_split, SPACE, jt.random_search(), **kwargs)
    b = jt.tune(wine_task, wine_split, SPACE, jt.random_search(), **kwargs)
    assert [r.config for r in a] == [r.config for r in b]
    assert [r.metrics for r in a] == [r.metrics for r in b]


def test_grid_search_stops_when_exhausted(wine_split, wine_task):
    space = jt.Space({"learning_rate": jt.Float(1e-2, 1e-1, log=True),
                      "optimizer": jt.Fixed("sgd")})
    results = jt.tune(wine_task, wine_split, space, jt.grid_search(num_float_points=3),
                      num_configs=10, num_steps=10, batch_size=16, steps_per_segment=10)
    assert len(results) == 3
    np.testing.assert_allclose(sorted(r.config["learning_rate"] for r in results),
                               [1e-2, 10**-1.5, 1e-1], rtol=1e-9)


def test_scores_for_tell_are_losses_with_failures_inf():
    rows = [
        jt.MemberResult(i, {"learning_rate": 0.1}, i % 2, None, "g", status, None,
                        {"valid_accuracy": acc}, [10], {}, 0.0)
        for i, (status, acc) in enumerate(
            [("completed", 0.9), ("completed", 0.7), ("diverged", 0.95), ("completed", 0.5)]
        )
    ]
    scores = tune_lib.scores_from_results(jt.Results(rows), 2, 2, "valid_accuracy", "max")
    np.testing.assert_allclose(scores[0], -0.8)
    assert scores[1] == np.inf


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(metric="accuracy"), ValueError, "metric"),
        (dict(metric="valid_f1"), ValueError, "valid_f1"),
        (dict(mode="best"), ValueError, "mode"),
        (dict(num_configs=0), ValueError, "num_configs"),
        (dict(seeds=()), ValueError, "seeds"),
    ],
)
def test_bad_tune_arguments(wine_split, wine_task, kwargs, error, match):
    arguments = dict(num_configs=2, num_steps=10)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        jt.tune(wine_task, wine_split, SPACE, jt.random_search(), **arguments)


def test_regression_task_tunes_by_mse():
    split = jt.train_valid_test_split(jt.make_linear(num_samples=128, noise=0.1), stratify=False)
    task = jt.regression_task("linear", input_shape=(1,))
    space = jt.Space({"learning_rate": jt.Float(1e-2, 3e-1, log=True),
                      "optimizer": jt.Fixed("sgd")})
    results = jt.tune(task, split, space, num_configs=4, num_steps=100, batch_size=None,
                      steps_per_segment=50, metric="valid_mse")
    assert results.metadata["mode"] == "min"
    best = results.best("valid_mse", mode="min")
    assert best.metrics["valid_mse"] < 0.05
