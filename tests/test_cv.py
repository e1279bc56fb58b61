"""Tests of jaxtune.cv: splitters, leakage-free per-fold preprocessing, agreement with
scikit-learn and closed forms on convex problems, selection rules, model selection, nested CV."""

from __future__ import annotations

import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import cv
from jaxtune import data as data_lib
from jaxtune import folds as folds_lib

DOCS = Path(__file__).resolve().parents[1] / "docs"


# ------------------------------------------------------------------------------ splitters


def _check_partition(folds: cv.Folds) -> None:
    """Every fold's training and validation rows are disjoint and cover all rows."""
    for f in range(folds.num_folds):
        train, valid = folds.train_indices(f), folds.valid_indices(f)
        assert np.intersect1d(train, valid).size == 0
        np.testing.assert_array_equal(np.union1d(train, valid), np.arange(folds.num_rows))


def test_kfold_holds_every_row_out_once():
    folds = cv.kfold(23, 5, seed=3)
    _check_partition(folds)
    held_out = np.concatenate([folds.valid_indices(f) for f in range(5)])
    np.testing.assert_array_equal(np.sort(held_out), np.arange(23))
    assert folds.valid_counts.tolist() == [5, 5, 5, 4, 4]
    assert folds.valid_weight.sum() == 23
    assert folds.train_rows.shape == (5, 19) and folds.train_rows.dtype == np.int32


def test_stratified_kfold_keeps_class_shares():
    labels = np.array([0] * 30 + [1] * 10 + [2] * 5)
    folds = cv.stratified_kfold(labels, 5, seed=0)
    _check_partition(folds)
    for f in range(5):
        counts = np.bincount(labels[folds.valid_indices(f)], minlength=3)
        np.testing.assert_array_equal(counts, [6, 2, 1])


def test_repeated_kfold_and_holdout():
    folds = cv.repeated_kfold(20, 4, repeats=3, seed=1)
    assert folds.num_folds == 12
    assert folds.repeat.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    _check_partition(folds)
    first = cv.kfold(20, 4, seed=1)
    np.testing.assert_array_equal(folds.valid_rows[:4], first.valid_rows)
    assert not np.array_equal(folds.valid_rows[4:8], folds.valid_rows[:4])
    one = cv.holdout(labels=np.array([0] * 50 + [1] * 50), valid_fraction=0.2, seed=0)
    assert one.num_folds == 1 and one.valid_counts.tolist() == [20]
    _check_partition(one)


def test_folds_from_indices_rejects_leaks():
    with pytest.raises(ValueError, match="both training and validation"):
        cv.folds_from_indices([([0, 1, 2], [2, 3])], 4)
    with pytest.raises(ValueError, match="outside"):
        cv.folds_from_indices([([0, 1], [9])], 4)
    with pytest.raises(ValueError, match="no validation rows"):
        cv.folds_from_indices([([0, 1], [])], 4)


def test_nested_folds_never_touch_outer_held_out_rows():
    labels = np.arange(60) % 3
    outer, inner = cv.nested_folds(60, 4, 3, labels=labels, seed=0)
    assert inner.num_folds == 12
    for o in range(4):
        outer_train = outer.train_indices(o)
        for i in range(3):
            f = o * 3 + i
            assert inner.repeat[f] == o
            rows = np.union1d(inner.train_indices(f), inner.valid_indices(f))
            np.testing.assert_array_equal(rows, outer_train)
            assert np.intersect1d(inner.train_indices(f), inner.valid_indices(f)).size == 0


def test_member_layout_is_config_major():
    folds = cv.kfold(10, 2)
    layout = cv.member_layout([{"a": 1.0}, {"a": 2.0}], [0, 7], folds)
    assert layout.config_index == [0, 0, 0, 0, 1, 1, 1, 1]
    assert layout.member_seeds == [0, 0, 7, 7, 0, 0, 7, 7]
    assert layout.folds == [0, 1] * 4
    np.testing.assert_array_equal(layout.member_rows.train_rows[3], folds.train_rows[1])


def test_folds_give_the_engines_member_rows():
    folds = cv.kfold(10, 3, seed=2)
    rows = folds.member_rows([2, 0, 2])
    assert isinstance(rows, jt.engine.MemberRows)
    np.testing.assert_array_equal(rows.train_rows[0], folds.train_rows[2])
    np.testing.assert_array_equal(rows.valid_weight[1], folds.valid_weight[0])
    assert cv.Folds is folds_lib.Folds and data_lib.kfold_rows is folds_lib.kfold_rows


def test_options_value_equals_the_keywords():
    """``options=EngineOptions(...)`` and the older keywords train bit-identical members."""
    ds = jt.load_dataset("wine")
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    configs = [{"learning_rate": 0.1, "optimizer": "adam"}]
    keywords = cv.cross_validate(task, ds, configs, num_steps=10, batch_size=16, num_folds=2,
                                 steps_per_segment=10)
    options = jt.engine.EngineOptions(num_steps=10, batch_size=16, steps_per_segment=10,
                                      standardize=True)
    valued = cv.cross_validate(task, ds, configs, num_folds=2, options=options)
    assert [r.metrics for r in valued] == [r.metrics for r in keywords]
    assert valued.metadata["num_steps"] == 10 and valued.metadata["standardize"] is True
    with pytest.raises(ValueError, match="num_steps"):
        cv.cross_validate(task, ds, configs, num_steps=5, options=options)


# ------------------------------------------------------------------------------ leakage


def _probe_task(num_features: int) -> jt.Task:
    """A linear model whose evaluation reports the first two (preprocessed) input rows.

    Evaluated on the probe rows 0 and 1 of the test set, it reveals each member's fitted
    standardization: z(0) = -mean * scale, z(1) = (1 - mean) * scale.
    """

    def init(key, hp):
        return {"w": jnp.zeros((num_features, 1))}

    def loss(params, batch, key, hp):
        err = (batch["x"] @ params["w"])[:, 0] - batch["y"]
        weight = batch.get("weight", jnp.ones_like(err))
        return jnp.sum(weight * err**2) / jnp.sum(weight), {}

    def evaluate(params, data, hp):
        out = {"mse": loss(params, data, None, hp)[0]}
        for j in range(num_features):
            out[f"z0_{j}"] = data["x"][0, j]
            out[f"z1_{j}"] = data["x"][1, j]
        return out

    modes = {"mse": "min", **{f"z{r}_{j}": "min" for r in (0, 1) for j in range(num_features)}}
    return jt.Task(init, loss, evaluate, name="probe", metric_modes=modes)


def _probe_split(x: np.ndarray, y: np.ndarray) -> jt.Split:
    probes = np.stack([np.zeros(x.shape[1]), np.ones(x.shape[1])]).astype(np.float32)
    n = len(y) // 2
    return jt.Split(x[:n], y[:n], x[n:], y[n:], probes, np.zeros(2, np.float32),
                    "regression", None, "probe")


def _fitted_stats(results: jt.Results, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    z0 = np.array([[r.metrics[f"test_z0_{j}"] for j in range(num_features)] for r in results])
    z1 = np.array([[r.metrics[f"test_z1_{j}"] for j in range(num_features)] for r in results])
    scale = z1 - z0
    return -z0 / scale, scale


def test_standardization_is_fitted_on_each_training_fold_only():
    rng = np.random.default_rng(0)
    num_features = 3
    x = rng.normal(size=(40, num_features)).astype(np.float32) * [1.0, 5.0, 0.1] + [0, 10, -2]
    y = x[:, 0].astype(np.float32)
    folds = cv.kfold(40, 4, seed=0)
    task = _probe_task(num_features)
    kwargs = dict(folds=folds, num_steps=2, batch_size=None, steps_per_segment=2,
                  metric="valid_mse")
    config = [{"learning_rate": 0.01, "optimizer": "sgd"}]
    clean = cv.cross_validate(task, _probe_split(x, y), config, **kwargs)
    mean, scale = _fitted_stats(clean, num_features)
    for f in range(4):
        rows = x[folds.train_indices(f)].astype(np.float64)
        np.testing.assert_allclose(mean[f], rows.mean(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(scale[f], 1 / rows.std(0), rtol=1e-4)

    # Rows held out by fold 0 become huge outliers in feature 0: fold 0's statistics must not
    # move (its training rows are unchanged), while every other fold, which trains on them, does.
    poisoned = x.copy()
    poisoned[folds.valid_indices(0), 0] = 1e6
    dirty = cv.cross_validate(task, _probe_split(poisoned, y), config, **kwargs)
    dirty_mean, dirty_scale = _fitted_stats(dirty, num_features)
    np.testing.assert_array_equal(dirty_mean[0], mean[0])
    np.testing.assert_array_equal(dirty_scale[0], scale[0])
    assert np.all(dirty_mean[1:, 0] > 1e4)


def test_split_test_rows_stay_out_of_the_folds():
    split = jt.train_valid_test_split(jt.load_dataset("wine"), seed=0)
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    results = cv.cross_validate(task, split, [{"learning_rate": 0.1, "optimizer": "adam"}],
                                num_steps=20, batch_size=None, num_folds=3, steps_per_segment=20)
    assert results.metadata["cv_rows"] == "train+valid"
    assert results.metadata["num_cv_rows"] == len(split.y_train) + len(split.y_valid)
    assert all("test_accuracy" in r.metrics for r in results)
    assert [r.fold for r in results] == [0, 1, 2]
    with pytest.raises(ValueError, match="rows are cross-validated"):
        cv.cross_validate(task, split, [{"learning_rate": 0.1}], folds=cv.kfold(10, 2),
                          num_steps=1)


def _param_task(num_features: int) -> jt.Task:
    """A linear regression task whose evaluation also reports its parameters as metrics."""

    def init(key, hp):
        return {"w": 0.1 * jnp.arange(1.0, num_features + 1.0)[:, None], "b": jnp.zeros(())}

    def loss(params, batch, key, hp):
        err = (batch["x"] @ params["w"])[:, 0] + params["b"] - batch["y"]
        weight = batch.get("weight", jnp.ones_like(err))
        return jnp.sum(weight * err**2) / jnp.sum(weight), {}

    def evaluate(params, data, hp):
        out = {f"w{j}": params["w"][j, 0] for j in range(num_features)}
        return {"mse": loss(params, data, None, hp)[0], "b": params["b"], **out}

    modes = {"mse": "min", "b": "min", **{f"w{j}": "min" for j in range(num_features)}}
    return jt.Task(init, loss, evaluate, name="params", metric_modes=modes)


@pytest.mark.parametrize("batch_size", [None, 8])
def test_training_never_reads_the_held_out_rows(batch_size):
    """Poisoning x and y on fold 0's held-out rows leaves fold 0's training untouched."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0]) + 0.1 * rng.normal(size=60)).astype(np.float32)
    x_test = rng.normal(size=(10, 2)).astype(np.float32)
    y_test = (x_test @ np.array([2.0, -1.0])).astype(np.float32)
    folds = cv.kfold(60, 3, seed=0)
    task = _param_task(2)
    names = ["train_loss", "w0", "w1", "b", "test_mse"]

    def run(x_all, y_all):
        split = jt.Split(x_all[:30], y_all[:30], x_all[30:], y_all[30:], x_test, y_test,
                         "regression", None, "poison")
        results = cv.cross_validate(
            task, split, [{"learning_rate": 0.05, "optimizer": "sgd"}], folds=folds,
            num_steps=20, batch_size=batch_size, steps_per_segment=10, metric="valid_mse")
        assert [r.fold for r in results] == [0, 1, 2]
        # w and b are reported by evaluate: the fitted parameters themselves.
        return [{n: r.metrics[n if n.startswith(("train", "test")) else "valid_" + n]
                 for n in names} | {"valid_mse": r.metrics["valid_mse"],
                                    "curve": np.asarray(r.curves["train_loss"])}
                for r in results]

    clean = run(x, y)
    held_out = folds.valid_indices(0)
    x_bad, y_bad = x.copy(), y.copy()
    x_bad[held_out] = 1e3
    y_bad[held_out] = -1e3
    dirty = run(x_bad, y_bad)
    for name in names:
        assert dirty[0][name] == clean[0][name], name  # bit for bit
    np.testing.assert_array_equal(dirty[0]["curve"], clean[0]["curve"])
    assert dirty[0]["valid_mse"] > 1e5 * clean[0]["valid_mse"]  # the poison is evaluated
    for f in (1, 2):  # folds that train on those rows do change
        assert dirty[f]["w0"] != clean[f]["w0"]


def _rows_task() -> jt.Task:
    """``loss = -w * batch rows``: after ``T`` SGD steps at rate ``lr``, ``w = T * lr * rows``.
    Evaluation reports ``w`` and the number of (real) rows it is evaluated on."""

    def init(key, hp):
        return {"w": jnp.zeros(())}

    def loss(params, batch, key, hp):
        return -params["w"] * batch["y"].shape[0], {}

    def evaluate(params, data, hp):
        return {"w": params["w"], "rows": jnp.sum(data.get("weight", jnp.ones_like(data["y"])))}

    return jt.Task(init, loss, evaluate, name="rows", metric_modes={"w": "max", "rows": "max"})


def test_each_static_batch_size_trains_with_its_own_batch():
    split = jt.train_valid_test_split(jt.make_linear(num_samples=100, seed=0), seed=0)
    space = jt.Space({"batch_size": jt.Choice([4, 16]), "learning_rate": jt.Float(0.5, 1.0),
                      "optimizer": jt.Fixed("sgd")})
    task = _rows_task()
    results = jt.tune(task, split, space, jt.grid_search(num_float_points=1), num_configs=2,
                      num_steps=3, steps_per_segment=3, metric="valid_w", batch_size=8)
    assert results.metadata["num_static_groups"] == 2
    assert sorted(r.config["batch_size"] for r in results) == [4, 16]
    for row in results:
        # 3 steps at lr 0.75: w = 3 * 0.75 * batch rows, not the call's batch_size=8.
        assert row.metrics["valid_w"] == pytest.approx(2.25 * row.config["batch_size"])
        solo = jt.train(task, [row.config], split, num_steps=3, steps_per_segment=3,
                        batch_size=32, static_names=space.static_names)
        assert solo[0].metrics["valid_w"] == row.metrics["valid_w"]

    # The same through cross-validation, on a single holdout fold of the 80 CV rows.
    folds = cv.holdout(80, 0.25, seed=1)
    configs = [{"batch_size": b, "learning_rate": 0.5, "optimizer": "sgd"} for b in (4, 16)]
    held = cv.cross_validate(task, split, configs, folds=folds, num_steps=2, batch_size=8,
                             steps_per_segment=2, metric="valid_w", space=space)
    assert [r.fold for r in held] == [0, 0] and held.metadata["num_folds"] == 1
    assert [r.metrics["valid_w"] for r in held] == [4.0, 16.0]
    assert [r.metrics["valid_rows"] for r in held] == [20.0, 20.0]  # holdout's 20 rows


# ------------------------------------------------------------------------------ agreement


def test_logistic_regression_cv_matches_sklearn_with_the_same_folds():
    model_selection = pytest.importorskip("sklearn.model_selection")
    linear_model = pytest.importorskip("sklearn.linear_model")
    pipeline = pytest.importorskip("sklearn.pipeline")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    metrics = pytest.importorskip("sklearn.metrics")
    ds = jt.load_dataset("breast_cancer")
    pairs = list(model_selection.StratifiedKFold(5, shuffle=True, random_state=0)
                 .split(ds.x, ds.y))
    folds = cv.folds_from_indices(pairs, len(ds.y))
    # sklearn minimizes 0.5|w|^2 + C sum(logloss); divided by C n, that is the task's mean loss
    # + l2 * 0.5|w|^2 with l2 = 1/(C n). One l2 per config (configs are shared by the folds);
    # each fold's sklearn C is then 1/(l2 n_fold), so both solve the same objective per fold.
    num_train = float(np.mean(folds.train_counts))
    task = jt.classification_task("linear", num_classes=2, input_shape=(30,))
    Cs = (0.01, 0.1, 1.0, 10.0)
    configs = [{"learning_rate": 0.05, "optimizer": "adam", "l2": 1 / (C * num_train)}
               for C in Cs]
    results = cv.cross_validate(task, ds, configs, folds=folds, num_steps=2000, batch_size=None,
                                steps_per_segment=1000)
    assert results.metadata["num_segment_compilations"] == 1  # 20 members, one population
    for c, config in enumerate(configs):
        rows = [r for r in results if r.extra["config_index"] == c]
        sk_accuracy = []
        for row, (train, valid) in zip(rows, pairs, strict=True):
            reference = pipeline.make_pipeline(
                preprocessing.StandardScaler(),
                linear_model.LogisticRegression(C=1 / (config["l2"] * len(train)), tol=1e-10,
                                                max_iter=10_000),
            ).fit(ds.x[train], ds.y[train])
            sk_accuracy.append(reference.score(ds.x[valid], ds.y[valid]))
            expected_loss = metrics.log_loss(ds.y[valid], reference.predict_proba(ds.x[valid]))
            # Held-out log-loss too (measured: < 1e-4 relative for C <= 1, < 3e-3 for C = 10,
            # whose weakly regularized optimum adam approaches slowly along flat directions).
            np.testing.assert_allclose(row.metrics["valid_loss"], expected_loss, rtol=5e-3)
        ours = next(g for g in results.aggregate("valid_accuracy") if g["config"] == config)
        assert abs(ours["mean"] - np.mean(sk_accuracy)) <= 0.005, (Cs[c], ours["mean"])


def _ridge_closed_form(x, y, folds, l2):
    """Per-fold ridge with the task's objective mean((xw + b - y)^2) + l2 * 0.5 |w|^2.

    Features standardized with the training fold's mean and (population) std, as the engine
    does; the intercept is not penalized, so it is the training mean of y.
    """
    mses = []
    for f in range(folds.num_folds):
        train, valid = folds.train_indices(f), folds.valid_indices(f)
        mean, std = x[train].mean(0), x[train].std(0)
        xt, xv = (x[train] - mean) / std, (x[valid] - mean) / std
        n = len(train)
        w = np.linalg.solve(xt.T @ xt / n + 0.5 * l2 * np.eye(x.shape[1]),
                            xt.T @ (y[train] - y[train].mean()) / n)
        mses.append(np.mean((xv @ w + y[train].mean() - y[valid]) ** 2))
    return np.array(mses)


def test_ridge_cv_matches_closed_form_and_sklearn():
    ds = jt.load_dataset("diabetes")
    x, y = ds.x.astype(np.float64), ds.y.astype(np.float64)
    folds = cv.kfold(len(y), 5, seed=0)
    l2s = (1e-3, 1e-2, 1e-1, 1.0)
    # Full-batch gradient descent is equivariant to the scale of y, so the large raw targets
    # (mean ~152) need no standardization; the intercept converges like the weights.
    configs = [{"learning_rate": 0.2, "optimizer": "sgd", "l2": l2} for l2 in l2s]
    task = jt.regression_task("linear", input_shape=(10,))
    results = cv.cross_validate(task, ds, configs, folds=folds, num_steps=2000, batch_size=None,
                                steps_per_segment=1000)
    assert results.metadata["mode"] == "min"
    linear_model = pytest.importorskip("sklearn.linear_model")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    pipeline = pytest.importorskip("sklearn.pipeline")
    for l2 in l2s:
        expected = _ridge_closed_form(x, y, folds, l2)
        ours = next(g for g in results.aggregate("valid_mse", "min") if g["config"]["l2"] == l2)
        assert abs(ours["mean"] / expected.mean() - 1) < 0.01
        assert abs(ours["mean"] / expected.mean() - 1) < 1e-4  # measured ~2e-6
        # sklearn Ridge minimizes |xw + b - y|^2 + alpha |w|^2: alpha = n * l2 / 2 per fold.
        sk = []
        for f in range(folds.num_folds):
            train, valid = folds.train_indices(f), folds.valid_indices(f)
            model = pipeline.make_pipeline(
                preprocessing.StandardScaler(), linear_model.Ridge(alpha=len(train) * l2 / 2)
            ).fit(x[train], y[train])
            sk.append(np.mean((model.predict(x[valid]) - y[valid]) ** 2))
        np.testing.assert_allclose(np.mean(sk), expected.mean(), rtol=1e-9)


# ------------------------------------------------------------------------------ selection


def _wine_cv(configs, **kwargs):
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    return cv.cross_validate(task, jt.load_dataset("wine"), configs, num_steps=60,
                             batch_size=None, num_folds=3, steps_per_segment=30, **kwargs)


def test_aggregation_and_selection_rules():
    configs = [{"learning_rate": 0.1, "optimizer": "adam", "l2": l2} for l2 in (0.0, 0.03, 3.0)]
    results = _wine_cv(configs, seeds=(0, 1), repeats=2)
    assert len(results) == 3 * 2 * 6
    assert results.metadata["num_folds"] == 3 and results.metadata["repeats"] == 2
    groups = results.aggregate("valid_accuracy")
    assert all(g["count"] == 12 for g in groups)
    assert {(r.seed, r.fold) for r in results} == {(s, f) for s in (0, 1) for f in range(6)}
    best = cv.best_config(results)
    assert best["rule"] == "best_mean" and best["config"] == groups[0]["config"]
    one_se = cv.best_config(results, rule="one_standard_error")
    assert one_se["rule"] == "one_standard_error"
    assert one_se["mean"] >= one_se["best_mean"] - one_se["best_sem"]
    assert one_se["config"]["l2"] >= best["config"]["l2"]
    text = cv.table(results)
    assert text.count("\n") == 4 and "best mean" in text and "1-SE" in text
    with pytest.raises(ValueError, match="rule"):
        cv.best_config(results, rule="median")


def test_select_model_compares_model_families_in_one_sweep():
    factory = cv.model_switch({"logistic": "linear", "mlp": "mlp"}, num_outputs=3,
                              input_shape=(13,))
    task = jt.classification_task(factory, num_classes=3, input_shape=(13,))
    candidates = {
        "logistic": [{"model": "logistic", "learning_rate": 0.1, "optimizer": "adam"}],
        "mlp": [{"model": "mlp", "width": 8, "depth": 1, "learning_rate": lr,
                 "optimizer": "adam"} for lr in (0.003, 0.03)],
    }
    kwargs = dict(num_steps=30, batch_size=None, num_folds=3, steps_per_segment=30)
    selection = cv.select_model(task, jt.load_dataset("wine"), candidates, **kwargs)
    assert selection.results.metadata["num_static_groups"] == 2  # one engine call
    assert len(selection.results) == 3 * 3
    assert {r.static_group for r in selection.results} == {
        "model=logistic,optimizer=adam", "depth=1,model=mlp,optimizer=adam,width=8"}
    assert [c["name"] for c in selection.candidates] == ["logistic", "mlp"]
    assert [c["num_configs"] for c in selection.candidates] == [1, 2]
    means = {c["name"]: c["mean"] for c in selection.candidates}
    assert selection.rule == "best_mean" and means[selection.chosen] == max(means.values())
    assert selection.table.count("\n") == 3 and "chosen (best_mean)" in selection.table
    # The one-SE rule prefers the first (simplest) candidate within one SE of the best.
    one_se = cv.select_model(task, jt.load_dataset("wine"), candidates,
                             rule="one_standard_error", **kwargs)
    best = max(one_se.candidates, key=lambda c: c["mean"])
    first_within = next(c for c in one_se.candidates if c["mean"] >= best["mean"] - best["sem"])
    assert one_se.chosen == first_within["name"]
    assert one_se.results.metadata["num_segment_compilations"] == 0  # same programs again


def _switch_regression_task() -> jt.Task:
    factory = cv.model_switch({"linear": "linear", "mlp": "mlp"}, num_outputs=1,
                              input_shape=(1,))
    return jt.regression_task(factory, input_shape=(1,))


STABLE = {"model": "linear", "learning_rate": 0.1, "optimizer": "sgd"}
UNSTABLE = {"model": "mlp", "width": 8, "depth": 1, "learning_rate": 1e4, "optimizer": "sgd"}


def test_select_model_reports_a_failed_candidate_and_keeps_the_others():
    data = jt.make_linear(num_samples=60, seed=0)
    task = _switch_regression_task()
    kwargs = dict(num_steps=20, batch_size=None, num_folds=3, steps_per_segment=20)
    for rule in ("best_mean", "one_standard_error"):
        selection = cv.select_model(task, data, {"linear": [STABLE], "unstable": [UNSTABLE]},
                                    rule=rule, **kwargs)
        linear, unstable = selection.candidates
        assert selection.chosen == "linear" and not linear["failed"]
        assert np.isfinite(linear["mean"]) and linear["config"] == STABLE
        assert unstable["failed"] and unstable["config"] is None
        assert all(np.isnan(unstable[k]) for k in ("mean", "std", "sem", "test_mean"))
        members = [r for r in selection.results if r.extra["candidate"] == "unstable"]
        assert sorted(unstable["members"]) == sorted(r.member_id for r in members)
        assert unstable["count"] == 3 and {r.status for r in members} == {"diverged"}
        assert "every config failed" in selection.table and f"chosen ({rule})" in selection.table
    with pytest.raises(ValueError, match="no candidate can be chosen"):
        cv.select_model(task, data, {"a": [UNSTABLE], "b": [{**UNSTABLE, "width": 4}]},
                        **kwargs)


def test_nested_cv_survives_diverged_configs():
    data = jt.make_linear(num_samples=60, seed=0)
    task = _switch_regression_task()
    kwargs = dict(num_steps=20, batch_size=None, num_outer_folds=2, num_inner_folds=2,
                  steps_per_segment=20, static_names=["model", "width", "depth", "optimizer"])
    # One diverging config among the candidates: never picked, the procedure goes on.
    mixed = cv.nested_cross_validate(task, data, [UNSTABLE, STABLE], **kwargs)
    assert [s["config_index"] for s in mixed.selections] == [1, 1]
    assert np.isfinite(mixed.mean) and not any(s["failed"] for s in mixed.selections)
    assert {r.status for r in mixed.inner if r.extra["config_index"] == 0} == {"diverged"}
    # Every config diverges: each outer fold is a failed selection with no refit, score NaN.
    failed = cv.nested_cross_validate(task, data, [UNSTABLE], **kwargs)
    assert len(failed.outer) == 0 and len(failed.inner) == 4
    assert all(s["failed"] and s["config"] is None and s["config_index"] is None
               for s in failed.selections)
    assert all(np.isnan(s["outer_score"]) for s in failed.selections)
    assert np.isnan(failed.mean) and np.isnan(failed.sem)
    assert failed.table.count("every config failed") == 2


def test_nested_cv_runs_all_inner_folds_as_one_population():
    configs = [{"learning_rate": lr, "optimizer": "adam"} for lr in (0.003, 0.1)]
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    nested = cv.nested_cross_validate(task, jt.load_dataset("wine"), configs, num_steps=40,
                                      batch_size=None, num_outer_folds=3, num_inner_folds=2,
                                      steps_per_segment=40)
    assert len(nested.inner) == 3 * 2 * 2
    assert nested.inner.metadata["num_static_groups"] == 1
    assert sorted({r.fold for r in nested.inner}) == list(range(6))
    assert len(nested.outer) == 3 and [r.fold for r in nested.outer] == [0, 1, 2]
    assert len(nested.selections) == 3
    for selection, row in zip(nested.selections, nested.outer, strict=True):
        assert row.config == configs[selection["config_index"]]
        assert selection["outer_score"] == pytest.approx(row.metrics["valid_accuracy"])
    assert nested.mean == pytest.approx(np.mean([r.metrics["valid_accuracy"]
                                                 for r in nested.outer]))
    assert nested.table.count("\n") == 5


def test_nested_cv_refits_train_and_score_on_the_outer_folds():
    """The probe task reveals each refit's rows: its fitted standardization (training rows) and,
    with weights kept at 0, its validation MSE = mean(y^2) over its held-out rows."""
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(36, 2)) * [1.0, 3.0] + [0.5, -4.0]).astype(np.float32)
    y = rng.normal(size=36).astype(np.float32)
    config = [{"learning_rate": 1e-9, "optimizer": "sgd"}]
    nested = cv.nested_cross_validate(_probe_task(2), _probe_split(x, y), config, num_steps=1,
                                      batch_size=None, num_outer_folds=3, num_inner_folds=2,
                                      steps_per_segment=1, fold_seed=4, metric="valid_mse")
    outer, inner = cv.nested_folds(36, 3, 2, seed=4)
    mean, scale = _fitted_stats(nested.outer, 2)
    assert [r.fold for r in nested.outer] == [0, 1, 2]
    for o, row in enumerate(nested.outer):
        train, held_out = outer.train_indices(o), outer.valid_indices(o)
        np.testing.assert_allclose(mean[o], x[train].mean(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(scale[o], 1 / x[train].std(0), rtol=1e-4)
        np.testing.assert_allclose(row.metrics["valid_mse"], np.mean(y[held_out] ** 2),
                                   rtol=1e-5)
        assert nested.selections[o]["outer_score"] == row.metrics["valid_mse"]
    for row in nested.inner:  # inner fold i of outer fold o: the inner table's fold o * 2 + i
        f = row.extra["outer_fold"] * 2 + row.extra["inner_fold"]
        assert row.fold == f
        np.testing.assert_allclose(row.metrics["valid_mse"],
                                   np.mean(y[inner.valid_indices(f)] ** 2), rtol=1e-5)


def test_nested_cv_with_the_one_standard_error_rule():
    configs = [{"learning_rate": 0.1, "optimizer": "adam", "l2": l2} for l2 in (0.0, 0.01, 0.1)]
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    nested = cv.nested_cross_validate(task, jt.load_dataset("wine"), configs, num_steps=40,
                                      batch_size=None, num_outer_folds=2, num_inner_folds=3,
                                      seeds=(0, 1), rule="one_standard_error",
                                      steps_per_segment=40)
    assert nested.rule == "one_standard_error" and len(nested.outer) == 2 * 2
    for o, selection in enumerate(nested.selections):
        # The rule recomputed from the inner results: the largest l2 within one SE of the best.
        groups = nested.inner.filter(
            predicate=lambda r, o=o: r.extra["outer_fold"] == o).aggregate("valid_accuracy")
        assert all(g["count"] == 2 * 3 for g in groups)
        threshold = groups[0]["mean"] - groups[0]["sem"]
        expected = max((g for g in groups if g["mean"] >= threshold),
                       key=lambda g: g["config"]["l2"])
        assert selection["rule"] == "one_standard_error"
        assert selection["config"] == expected["config"]
        assert selection["threshold"] == pytest.approx(threshold)
        assert configs[selection["config_index"]] == expected["config"]
        refits = [r for r in nested.outer if r.extra["outer_fold"] == o]
        assert [r.config for r in refits] == [expected["config"]] * 2
        assert selection["outer_score"] == pytest.approx(
            np.mean([r.metrics["valid_accuracy"] for r in refits]))
    # Measured: 3 configs within one SE in outer fold 0, so the rule had a choice to make.
    assert max(s["num_candidates"] for s in nested.selections) > 1


# ------------------------------------------------------------------------------ docs


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("name", ["cross_validation.md"])
def test_doc_examples_run(name):
    blocks = _python_blocks(DOCS / name)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, f"{name}", "exec"), namespace)
