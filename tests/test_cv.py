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
