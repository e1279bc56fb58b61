"""Tests for jaxtune.results: ranking, aggregation, the one-SE rule, persistence, combining."""

import csv
import json
import math
import os
import sys

import numpy as np
import pytest

from jaxtune.results import FORMAT, MemberResult, Results, default_complexity


def make_row(member_id, config, seed=0, fold=None, metrics=None, status="completed", **kwargs):
    metrics = {"valid_accuracy": 0.5, "valid_loss": 1.0} if metrics is None else metrics
    steps = [0, 50, 100]
    curves = {
        name: [value * 0.5, value * 0.8, value] if math.isfinite(value) else [0.1, value, value]
        for name, value in metrics.items()
    }
    defaults = {
        "member_id": member_id,
        "config": config,
        "seed": seed,
        "fold": fold,
        "static_group": "mlp-adam",
        "status": status,
        "diverged_step": 60 if status == "diverged" else None,
        "metrics": metrics,
        "curve_steps": steps,
        "curves": curves,
        "wall_time_s": 1.5,
    }
    defaults.update(kwargs)
    return MemberResult(**defaults)


# Three configs x two seeds; config C diverges for one seed; one single-member config D that
# diverged with NaN metrics.
CONFIG_A = {"learning_rate": 1e-3, "weight_decay": 0.0, "optimizer": "adam", "hidden": (64, 64)}
CONFIG_B = {"learning_rate": 1e-2, "weight_decay": 1e-4, "optimizer": "adam", "hidden": (64, 64)}
CONFIG_C = {"learning_rate": 1e-1, "weight_decay": 1e-3, "optimizer": "adam", "hidden": (64, 64)}
CONFIG_D = {"learning_rate": 1.0, "weight_decay": 0.0, "optimizer": "adam", "hidden": (64, 64)}
ACC = {0: 0.90, 1: 0.86, 2: 0.88, 3: 0.87, 4: 0.99, 5: math.nan, 6: math.nan}


@pytest.fixture
def results():
    rows = [
        make_row(0, CONFIG_A, seed=0, metrics={"valid_accuracy": 0.90, "valid_loss": 0.30}),
        make_row(1, CONFIG_A, seed=1, metrics={"valid_accuracy": 0.86, "valid_loss": 0.40}),
        make_row(2, CONFIG_B, seed=0, metrics={"valid_accuracy": 0.88, "valid_loss": 0.35}),
        make_row(3, CONFIG_B, seed=1, metrics={"valid_accuracy": 0.87, "valid_loss": 0.36}),
        # Finite metric but diverged: a diverged member is never best.
        make_row(
            4,
            CONFIG_C,
            seed=0,
            metrics={"valid_accuracy": 0.99, "valid_loss": 0.01},
            status="diverged",
        ),
        make_row(5, CONFIG_C, seed=1, metrics={"valid_accuracy": 0.95, "valid_loss": 0.10}),
        make_row(
            6,
            CONFIG_D,
            seed=0,
            metrics={"valid_accuracy": math.nan, "valid_loss": math.nan},
            status="diverged",
            wall_time_s=math.inf,
        ),
    ]
    return Results(rows, metadata={"seed": 0, "num_steps": 100, "space": {"lr": [1e-4, 1.0]}})


def assert_rows_equal(a: MemberResult, b: MemberResult):
    """Field-by-field equality, NaN equal to NaN, types included."""
    for name in MemberResult.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        assert _same(x, y), (name, x, y)


def _same(x, y):
    if type(x) is not type(y):
        return False
    if isinstance(x, float):
        return (math.isnan(x) and math.isnan(y)) or x == y
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y, strict=True))
    return x == y


# ---- MemberResult ----


def test_member_canonicalizes_numpy_values():
    row = make_row(
        np.int64(3),
        {
            "learning_rate": np.float32(0.5),
            "width": np.int32(8),
            "flag": np.bool_(True),
            "sizes": [np.int64(1), 2],
        },
        seed=np.int32(7),
        metrics={"valid_accuracy": np.float32(0.25)},
        curve_steps=np.array([0, 10, 20]),
    )
    assert type(row.member_id) is int and type(row.seed) is int
    assert type(row.config["learning_rate"]) is float
    assert type(row.config["width"]) is int and row.config["flag"] is True
    assert row.config["sizes"] == (1, 2)
    assert type(row.metrics["valid_accuracy"]) is float
    assert row.curve_steps == [0, 10, 20] and all(type(s) is int for s in row.curve_steps)


def test_member_validation():
    with pytest.raises(ValueError, match="status"):
        make_row(0, CONFIG_A, status="finished")
    with pytest.raises(ValueError, match="aligned with curve_steps"):
        make_row(0, CONFIG_A, curve_steps=[0, 1])
    with pytest.raises(TypeError, match="config"):
        make_row(0, {"fn": object()})


def test_member_dict_round_trip_is_json_safe():
    row = make_row(
        1,
        {"name": "x", "n": 3, "on": False, "nested": {"a": (1, "b")}, "clip": math.inf},
        fold=2,
        metrics={"valid_accuracy": math.nan, "valid_loss": -math.inf},
        status="diverged",
        hp_schedule=[{"step": 0, "learning_rate": 0.1}, {"step": 50, "learning_rate": 0.05}],
        extra={"note": "nan", "values": [1.0, math.nan]},
    )
    text = json.dumps(row.to_dict(), allow_nan=False)  # strict JSON
    back = MemberResult.from_dict(json.loads(text))
    assert back == row
    assert_rows_equal(back, row)
    assert back.extra["note"] == "nan"  # a string stays a string
    assert math.isnan(back.extra["values"][1])


# ---- ranking ----


def test_best_ignores_diverged_and_nan(results):
    best = results.best("valid_accuracy", "max")
    assert best.member_id == 5  # member 4 has 0.99 but diverged; member 6 is NaN
    assert results.best("valid_loss", "min").member_id == 5
    assert [row.member_id for row in results.top(3, "valid_accuracy", "max")] == [5, 0, 2]
    assert len(results.top(100)) == 5


def test_best_errors(results):
    with pytest.raises(ValueError, match=r"unknown metric 'test_accuracy'.*valid_accuracy"):
        results.best("test_accuracy")
    with pytest.raises(ValueError, match="mode"):
        results.best("valid_accuracy", "maximize")
    with pytest.raises(ValueError, match="no member has a finite"):
        results.filter(status="diverged").best("valid_accuracy")


def test_best_nan_is_never_best_even_without_diverged_status():
    rows = [
        make_row(0, CONFIG_A, metrics={"valid_loss": math.nan}),
        make_row(1, CONFIG_B, metrics={"valid_loss": 2.0}),
    ]
    assert Results(rows).best("valid_loss", "min").member_id == 1


def test_filter(results):
    assert len(results.filter(status="diverged")) == 2
    assert len(results.filter(status=["completed", "stopped"])) == 5
    assert len(results.filter(static_group="other")) == 0
    picked = results.filter(predicate=lambda row: row.seed == 1)
    assert [row.member_id for row in picked] == [1, 3, 5]
    assert picked.metadata == results.metadata
    with pytest.raises(ValueError, match="status"):
        results.filter(status="done")


def test_container_protocol(results):
    assert len(results) == 7
    assert results[0].member_id == 0
    assert isinstance(results[1:3], Results) and len(results[1:3]) == 2
    assert results.metric_names == ["valid_accuracy", "valid_loss"]
    assert results.hp_names == ["hidden", "learning_rate", "optimizer", "weight_decay"]
    with pytest.raises(TypeError):
        results.metadata["seed"] = 1


# ---- aggregation ----


def test_aggregate_matches_numpy(results):
    groups = results.aggregate("valid_accuracy", "max")
    assert [g["members"] for g in groups] == [[0, 1], [2, 3], [4, 5], [6]]
    for group, values in zip(groups[:2], ([0.90, 0.86], [0.88, 0.87]), strict=True):
        values = np.asarray(values)
        np.testing.assert_allclose(group["mean"], values.mean(), rtol=1e-12)
        np.testing.assert_allclose(group["std"], values.std(ddof=1), rtol=1e-12)
        np.testing.assert_allclose(group["sem"], values.std(ddof=1) / np.sqrt(2), rtol=1e-12)
        assert group["count"] == 2 and group["num_failed"] == 0
    assert groups[0]["config"] == CONFIG_A
    # C has one diverged member: the group failed (NaN statistics) and sorts after the others,
    # even though its surviving member (0.95) is the best single member.
    assert groups[2]["num_failed"] == 1 and math.isnan(groups[2]["mean"])
    assert groups[3]["count"] == 1 and groups[3]["num_failed"] == 1


def test_aggregate_single_member_has_nan_std():
    groups = Results([make_row(0, CONFIG_A)]).aggregate()
    assert (
        groups[0]["mean"] == 0.5 and math.isnan(groups[0]["std"]) and math.isnan(groups[0]["sem"])
    )


def test_aggregate_by_folds_and_marginal():
    rows = [
        make_row(i, {"lr": lr, "wd": wd}, seed=0, fold=fold, metrics={"valid_loss": loss})
        for i, (lr, wd, fold, loss) in enumerate(
            [
                (0.1, 0, 0, 1.0),
                (0.1, 0, 1, 2.0),
                (0.1, 1, 0, 3.0),
                (0.1, 1, 1, 4.0),
                (0.2, 0, 0, 0.5),
                (0.2, 0, 1, 0.7),
            ]
        )
    ]
    results = Results(rows)
    by_config = results.aggregate("valid_loss", "min")
    assert [g["members"] for g in by_config] == [[4, 5], [0, 1], [2, 3]]
    by_lr = results.aggregate("valid_loss", "min", by=["lr"])
    assert by_lr[0]["config"] == {"lr": 0.2} and by_lr[0]["count"] == 2
    assert by_lr[1]["config"] == {"lr": 0.1} and by_lr[1]["mean"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        results.aggregate("valid_loss", "min", by=["momentum"])


# ---- best_config and the one-standard-error rule ----


def _one_se_results():
    """Three weight decays, 4 seeds each. Means 0.90 (wd=0), 0.89 (wd=1e-3), 0.80 (wd=1e-1)."""
    noise = np.array([-0.03, -0.01, 0.01, 0.03])  # std (ddof=1) 0.0258, sem 0.0129
    rows, member_id = [], 0
    for wd, mean in ((0.0, 0.90), (1e-3, 0.89), (1e-1, 0.80)):
        for seed, delta in enumerate(noise):
            rows.append(
                make_row(
                    member_id,
                    {"learning_rate": 0.01, "weight_decay": wd},
                    seed=seed,
                    metrics={"valid_accuracy": mean + delta},
                )
            )
            member_id += 1
    return Results(rows)


def test_best_config_best_mean():
    chosen = _one_se_results().best_config("valid_accuracy", "max", rule="best_mean")
    assert chosen["rule"] == "best_mean"
    assert chosen["config"] == {"learning_rate": 0.01, "weight_decay": 0.0}
    assert chosen["mean"] == pytest.approx(0.90) and chosen["threshold"] is None


def test_best_config_one_standard_error_picks_most_regularized_within_one_sem():
    results = _one_se_results()
    chosen = results.best_config("valid_accuracy", "max", rule="one_standard_error")
    sem = np.std([-0.03, -0.01, 0.01, 0.03], ddof=1) / 2
    assert chosen["rule"] == "one_standard_error"
    assert chosen["best_sem"] == pytest.approx(sem)
    assert chosen["threshold"] == pytest.approx(0.90 - sem)
    # 0.89 >= 0.90 - 0.0129: within one SE, and more regularized than the best-mean config.
    assert chosen["config"] == {"learning_rate": 0.01, "weight_decay": 1e-3}
    assert chosen["num_candidates"] == 2
    # The row-level rule returns the best member of that config.
    assert results.best(rule="one_standard_error").member_id == 7


def test_best_config_custom_complexity_and_min_mode():
    results = _one_se_results()
    # Prefer the *least* regularized config: picks the best-mean config among the candidates.
    chosen = results.best_config(
        rule="one_standard_error", complexity=lambda config: config["weight_decay"]
    )
    assert chosen["config"]["weight_decay"] == 0.0
    rows = [
        make_row(i, {"l2": l2}, seed=s, metrics={"valid_loss": loss})
        for i, (l2, s, loss) in enumerate(
            [(0.0, 0, 1.0), (0.0, 1, 1.2), (0.5, 0, 1.15), (0.5, 1, 1.15), (1.0, 0, 2), (1.0, 1, 2)]
        )
    ]
    chosen = Results(rows).best_config("valid_loss", "min", rule="one_standard_error")
    assert chosen["config"] == {"l2": 0.5}  # 1.15 <= 1.1 + 0.1
    assert default_complexity({"l2": 0.5}) < default_complexity({"l2": 0.0})


def test_best_config_errors(results):
    with pytest.raises(ValueError, match="rule"):
        results.best_config(rule="simplest")
    with pytest.raises(ValueError, match="every configuration"):
        results.filter(status="diverged").best_config()


# ---- table ----


def test_table_rows_in_rank_order(results):
    text = results.table(k=10, metric="valid_accuracy", mode="max")
    lines = text.splitlines()
    header = lines[1].split()
    assert header[:3] == ["rank", "member", "status"]
    assert "learning_rate" in header and "valid_accuracy" in header
    assert "optimizer" not in header  # constant columns are left out by default
    body = [line.split() for line in lines[3:]]
    assert [row[1] for row in body] == ["5", "0", "2", "3", "1", "4", "6"]
    assert [row[0] for row in body] == ["1", "2", "3", "4", "5", "-", "-"]
    lr = header.index("learning_rate")
    assert body[0][lr] == "1.000e-01"  # log-spread column in scientific notation
    acc = header.index("valid_accuracy")
    assert body[0][acc] == "0.95" and body[-1][acc] == "nan"
    # Aligned: every line of the table has the same column starts.
    assert len(results.table(k=2).splitlines()) == 3 + 2


def test_table_columns_argument(results):
    text = results.table(k=3, metric="valid_loss", mode="min", columns=["weight_decay", "fold"])
    header = text.splitlines()[1].split()
    assert header == ["rank", "member", "status", "weight_decay", "fold"]
    assert text.splitlines()[3].split()[-1] == "-"  # fold None
    with pytest.raises(ValueError, match="columns"):
        results.table(columns=["nope"])


# ---- persistence ----


def test_save_load_round_trip(results, tmp_path):
    directory = results.save(tmp_path / "sweep")
    assert (directory / "results.json").is_file() and (directory / "results.csv").is_file()
    loaded = Results.load(directory)
    assert loaded == results
    assert len(loaded) == len(results)
    for a, b in zip(loaded, results, strict=True):
        assert_rows_equal(a, b)
    assert _same(dict(loaded.metadata), dict(results.metadata))
    assert loaded.metadata["space"] == {"lr": (1e-4, 1.0)}
    assert math.isinf(loaded[6].wall_time_s) and math.isnan(loaded[6].metrics["valid_accuracy"])
    assert loaded[0].fold is None and loaded[0].config["hidden"] == (64, 64)
    # Loading the JSON file directly works too; the JSON is strict and versioned.
    text = (directory / "results.json").read_text()
    assert Results.load(directory / "results.json") == results
    assert json.loads(text)["format"] == FORMAT
    assert "NaN" not in text and "Infinity" not in text


def test_save_load_nested_config_values(tmp_path):
    row = make_row(
        0,
        {"name": "mlp", "depth": 3, "bn": True, "opt": {"kind": "adam", "betas": (0.9, 0.999)}},
        fold=4,
        status="stopped",
    )
    results = Results([row])
    loaded = Results.load(results.save(tmp_path))
    assert_rows_equal(loaded[0], row)
    assert loaded[0].config["bn"] is True and type(loaded[0].config["depth"]) is int


def test_csv_header_and_rows(results, tmp_path):
    results.save(tmp_path)
    with open(tmp_path / "results.csv", newline="") as file:
        lines = list(csv.reader(file))
    header, body = lines[0], lines[1:]
    assert header[:7] == [
        "member_id",
        "seed",
        "fold",
        "static_group",
        "status",
        "diverged_step",
        "wall_time_s",
    ]
    assert header[7:] == [
        "config.hidden",
        "config.learning_rate",
        "config.optimizer",
        "config.weight_decay",
        "metrics.valid_accuracy",
        "metrics.valid_loss",
    ]
    assert len(body) == len(results)
    first = dict(zip(header, body[0], strict=True))
    assert first["fold"] == "" and first["config.hidden"] == "[64, 64]"
    assert float(first["metrics.valid_accuracy"]) == 0.90
    last = dict(zip(header, body[-1], strict=True))
    assert last["metrics.valid_accuracy"] == "nan" and last["diverged_step"] == "60"


@pytest.mark.parametrize("target", ["dump", "replace"])
def test_save_is_atomic(results, tmp_path, monkeypatch, target):
    results.save(tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("results.json", "results.csv")}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if target == "dump":
        monkeypatch.setattr(json, "dump", boom)
    else:
        monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        results.filter(status="completed").save(tmp_path)
    after = {name: (tmp_path / name).read_bytes() for name in before}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json"]
    monkeypatch.undo()
    assert Results.load(tmp_path) == results


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results"):
        Results.load(tmp_path / "missing")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "jaxtune.results/1", "rows": [')
    with pytest.raises(ValueError, match="not a jaxtune results file"):
        Results.load(corrupt)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"name": "something else"}))
    with pytest.raises(ValueError, match="no 'format' key"):
        Results.load(foreign)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "optuna/3", "rows": []}))
    with pytest.raises(ValueError, match="not a jaxtune results file"):
        Results.load(other)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"format": "jaxtune.results/2", "rows": []}))
    with pytest.raises(ValueError, match="cannot read"):
        Results.load(newer)
    broken_row = tmp_path / "broken.json"
    broken_row.write_text(json.dumps({"format": FORMAT, "metadata": {}, "rows": [{"seed": 1}]}))
    with pytest.raises(ValueError, match="row 0 is malformed"):
        Results.load(broken_row)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a jaxtune results file"):
        Results.load(listed)


def test_metadata_must_be_storable():
    with pytest.raises(TypeError, match=r"metadata\['fn'\]"):
        Results([], metadata={"fn": print})


# ---- pandas ----


def test_to_pandas(results):
    pd = pytest.importorskip("pandas")
    frame = results.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == len(results)
    assert list(frame["member_id"]) == [row.member_id for row in results]
    assert "config.learning_rate" in frame.columns and "metrics.valid_loss" in frame.columns


def test_to_pandas_without_pandas(results, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` raise ImportError
    with pytest.raises(ImportError, match="pip install pandas"):
        results.to_pandas()


# ---- combining batches ----


def test_merge_and_concat(results):
    first, second = results[:3], results[3:]
    merged = first.merge(second)
    assert merged == results
    assert Results.concat([results[:2], results[2:5], results[5:]]) == results
    assert len(Results.concat([])) == 0
    with pytest.raises(ValueError, match=r"duplicate member_id values \[0, 1, 2\]"):
        first.merge(results)
    with pytest.raises(ValueError, match="duplicate member_id"):
        Results([make_row(0, CONFIG_A), make_row(0, CONFIG_B)])
