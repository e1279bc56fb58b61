"""The research experiments in experiments/: each --smoke run in-process (tiny budgets), writing
its markdown table and PNG figure into tmp_path; numbers checked against closed forms and
against each other where the experiment allows it."""

from __future__ import annotations

import gzip
import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxtune as jt

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiments():
    sys.path.insert(0, str(EXPERIMENTS))
    yield lambda name: importlib.import_module(name)
    sys.path.remove(str(EXPERIMENTS))


def _tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table of ``text`` as a list of {header: cell} rows."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(header, (c.strip() for c in lines[i].strip("|").split("|")),
                                     strict=True)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def _run(module, name: str, out: Path, *extra: str) -> tuple[str, list[list[dict[str, str]]]]:
    assert module.main(["--smoke", "--out", str(out), *extra]) == 0
    text = (out / f"{name}.md").read_text()
    png = (out / f"{name}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert f"python experiments/{name}.py --smoke" in text
    assert f"![{name}]({name}.png)" in text
    return text, _tables(text)


def test_linear_regression_recovers_the_slope_of_each_objective(experiments, tmp_path):
    module = experiments("linear_regression")
    # The closed forms the table compares with, against scikit-learn's solvers.
    linear_model = pytest.importorskip("sklearn.linear_model")
    ds = jt.make_linear(num_samples=200, seed=3)
    x, y = ds.x.astype(np.float64), ds.y.astype(np.float64)
    n = len(y)
    ols = linear_model.LinearRegression().fit(x, y).coef_[0]
    assert module.optimal_slope(x[:, 0], y, "none", 0.0) == pytest.approx(ols, rel=1e-9)
    # ours: mean((wx + b - y)^2) + l2 * 0.5 w^2 == (|Xw + b - y|^2 + (n l2 / 2) w^2) / n
    ridge = linear_model.Ridge(alpha=n * 0.3 / 2).fit(x, y).coef_[0]
    assert module.optimal_slope(x[:, 0], y, "l2", 0.3) == pytest.approx(ridge, rel=1e-9)
    # ours / 2: |Xw + b - y|^2 / (2n) + (l1 / 2) |w|, sklearn's Lasso with alpha = l1 / 2
    lasso = linear_model.Lasso(alpha=0.3 / 2, tol=1e-12, max_iter=100_000).fit(x, y).coef_[0]
    assert module.optimal_slope(x[:, 0], y, "l1", 0.3) == pytest.approx(lasso, rel=1e-6)
    assert module.optimal_slope(x[:, 0], y, "l1", 100.0) == 0.0

    _, (table,) = _run(module, "linear_regression", tmp_path)
    assert {(r["optimizer"], r["learning rate"]) for r in table} == {
        ("GD (full batch)", "fixed"), ("Adam (batch 16)", "inverse-time")}
    assert [r["penalty"] for r in table] == ["none", "l1", "l2"] * 2
    for row in table:
        if row["optimizer"].startswith("GD"):
            # 40 full-batch steps at the picked rate converge to the objective's own optimum,
            # which the penalties shrink below the least-squares slope.
            assert float(row["slope (mean over seeds)"]) == pytest.approx(
                float(row["optimal slope of the objective"]), abs=0.05)
        assert 0.2 < float(row["test MSE"]) < 1.0  # noise variance 0.25
    optimum = {r["penalty"]: float(r["optimal slope of the objective"]) for r in table}
    assert optimum["l2"] < optimum["l1"] < optimum["none"]


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_mnist_files_are_read_and_missing_ones_named(experiments, tmp_path):
    module = experiments("digits_mlp")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 3))
    labels = np.array([3, 1, 4, 1, 5])
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz=False)
    np.testing.assert_array_equal(module.read_idx(tmp_path / "train-images-idx3-ubyte.gz"),
                                  images)
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte.*t10k-labels-idx1"):
        module.load_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:2], gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:2], gz=True)
    arrays = module.load_mnist(tmp_path)
    np.testing.assert_allclose(arrays["x_train"], images.reshape(5, 12) / 255.0, rtol=1e-6)
    assert arrays["y_test"].tolist() == [3, 1] and arrays["x_test"].dtype == np.float32
    np.savez(tmp_path / "m.npz", x_train=images, y_train=labels, x_test=images, y_test=labels)
    assert module.load_mnist(tmp_path / "m.npz")["x_test"].shape == (5, 12)
    np.savez(tmp_path / "bad.npz", x_train=images)
    with pytest.raises(FileNotFoundError, match="y_train"):
        module.load_mnist(tmp_path / "bad.npz")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        module.read_idx(tmp_path / "junk")


def test_digits_mlp_cv_search_and_the_same_images_as_mnist_files(experiments, tmp_path,
                                                                   capsys):
    module = experiments("digits_mlp")
    _, (summary, ranked) = _run(module, "digits_mlp", tmp_path / "digits")
    values = {r[""]: r["value"] for r in summary}
    assert values["configs x folds (members)"] == "3 x 2 (6)"
    best = float(values["best CV accuracy (mean over folds)"])
    assert 0.3 < best <= 1.0
    assert float(ranked[0]["2-fold CV accuracy"]) == best
    assert "best mean" in ranked[0]["chosen by"]
    # The refit of the best config is scored once on the test rows: a count of rows out of the
    # held-out test set (values are printed to 4 significant digits).
    num_test = len(jt.train_valid_test_split(jt.load_dataset("digits"), 0.0, 0.2,
                                             seed=0).y_test)
    refit = float(values["its test accuracy, refit on all CV rows"])
    assert 0.3 < refit <= 1.0
    assert abs(refit * num_test - round(refit * num_test)) < 0.02
    assert float(values["its test accuracy, mean of the fold models"]) == pytest.approx(
        float(ranked[0]["test acc. (fold models)"]), abs=1e-4)
    assert [float(r["2-fold CV accuracy"]) for r in ranked] == sorted(
        (float(r["2-fold CV accuracy"]) for r in ranked), reverse=True)

    # The same rows written as IDX files (pixel values 0..16, read back as /255): per-fold
    # standardization makes the scale irrelevant, so the search must find the same accuracies.
    split = jt.train_valid_test_split(jt.load_dataset("digits"), 0.0, 0.2, seed=0)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for part, x, y in (("train", split.x_train, split.y_train), ("t10k", split.x_test,
                                                                split.y_test)):
        _write_idx(mnist / f"{part}-images-idx3-ubyte", x.reshape(-1, 8, 8), gz=part == "t10k")
        _write_idx(mnist / f"{part}-labels-idx1-ubyte", y, gz=False)
    text_mnist, (summary_mnist, _) = _run(module, "digits_mlp", tmp_path / "m", "--mnist",
                                          str(mnist))
    assert "MNIST from `mnist`" in text_mnist
    values_mnist = {r[""]: r["value"] for r in summary_mnist}
    assert float(values_mnist["best CV accuracy (mean over folds)"]) == pytest.approx(best,
                                                                                       abs=0.01)
    with pytest.raises(SystemExit):
        module.main(["--smoke", "--out", str(tmp_path), "--mnist", str(tmp_path / "none")])
    assert "train-images-idx3-ubyte" in capsys.readouterr().err


def test_binary_classifier_searches_at_equal_budget(experiments, tmp_path):
    module = experiments("binary_classifier")
    _, (table,) = _run(module, "binary_classifier", tmp_path)
    by_name = {r["search"]: r for r in table}
    assert by_name["manual (1 config)"]["configs"] == "1"
    searches = [name for name in by_name if not name.startswith("manual")]
    assert searches == ["grid", "random", "bayesian"]
    for name in searches:
        assert by_name[name]["configs"] == "8"  # 2^3 grid, the same budget for every search
    for row in table:
        for column in ("valid accuracy of pick", "test accuracy of pick"):
            assert 0.5 < float(row[column].split(" ")[0]) <= 1.0
    # The grid holds its corners; the pick is one of them.
    grid_pick = by_name["grid"]["pick (first repeat)"]
    assert re.match(r"lr (0\.0001|1), l2 (1e-05|0\.1), dropout (0\.00|0\.60)$", grid_pick)


def test_lr_schedules_tunes_each_schedule(experiments, tmp_path):
    module = experiments("lr_schedules")
    space = module.schedule_space("warmup_cosine", 100)
    assert {"schedule", "warmup_steps", "optimizer"} <= set(space.static_names)
    config = {**space.sample(__import__("jax").random.PRNGKey(0), 1)[0]}
    rates = np.asarray(jt.make_schedule(config, 100)(np.arange(100)))
    assert rates[0] == 0.0 and rates[10] == pytest.approx(config["learning_rate"], rel=1e-6)
    # Common random numbers: config i of every schedule has the same peak rate, although the
    # spaces differ in dimension; the schedule parameters vary and stay inside their spaces.
    drawn = {name: module.schedule_configs(name, 100, 6, 0) for name in module.SCHEDULE_PARAMS}
    rates = [c["learning_rate"] for c in drawn["constant"]]
    assert len(set(rates)) == 6 and all(1e-3 <= r <= 1.0 for r in rates)
    for name, configs in drawn.items():
        assert [c["learning_rate"] for c in configs] == rates
        for config in configs:
            module.schedule_space(name, 100).validate_config(config)
    assert len({c["lr_decay"] for c in drawn["inverse_time"]}) == 6
    _, (table,) = _run(module, "lr_schedules", tmp_path)
    assert [r["schedule"] for r in table] == list(module.SCHEDULE_PARAMS)
    smoke_rates = [c["learning_rate"] for c in module.schedule_configs("constant", 30, 3, 0)]
    for row in table:
        assert any(float(row["tuned peak lr"]) == pytest.approx(r, rel=1e-3)
                   for r in smoke_rates)
        assert row["tuned schedule parameters"].startswith(
            module.SCHEDULE_PARAMS[row["schedule"]] or "-")
        assert 0.0 <= float(row["test accuracy"]) <= 1.0
    with pytest.raises(SystemExit):
        module.main(["--smoke", "--out", str(tmp_path), "--schedules", "linear"])


def test_model_selection_nested_cv_scores_the_whole_procedure(experiments, tmp_path):
    module = experiments("model_selection")
    _, (table, per_fold) = _run(module, "model_selection", tmp_path)
    assert [r["candidate"] for r in table] == ["logistic", "mlp", "cnn",
                                               "pick family and config by inner CV"]
    # The procedure's outer score in each fold is the outer score of the family it chose.
    scores = [float(r[f"{r['chosen family']} outer score"]) for r in per_fold]
    mean = float(table[-1]["nested CV accuracy (outer mean ± sem)"].split(" ± ")[0])
    assert mean == pytest.approx(np.mean(scores), abs=1e-4)
    for row in table[:3]:
        outer = float(row["nested CV accuracy (outer mean ± sem)"].split(" ± ")[0])
        column = f"{row['candidate']} outer score"
        assert outer == pytest.approx(np.mean([float(r[column]) for r in per_fold]), abs=1e-4)
        assert float(row["inner - outer"]) == pytest.approx(
            float(row["inner CV accuracy of the picks"]) - outer, abs=2e-4)
