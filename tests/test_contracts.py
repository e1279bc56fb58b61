"""Tests of jaxtune.contracts: one rule for a metric's direction, the default metric, and no
selection on the test set; and that every reader of a sweep (Results, the CLI, plots, the
Optuna bridge) ranks a minimized metric the way the sweep did."""

from __future__ import annotations

import numpy as np
import pytest

import jaxtune as jt
from jaxtune import cli, contracts, cv, plot
from jaxtune.results import MemberResult, Results

# ---------------------------------------------------------------------------------------------
# The rule


@pytest.mark.parametrize(
    ("metric", "mode"),
    [("valid_mse", "min"), ("valid_loss", "min"), ("train_loss", "min"), ("valid_mae", "min"),
     ("valid_rmse", "min"), ("valid_nll", "min"), ("valid_error_rate", "min"),
     ("valid_perplexity", "min"), ("valid_logloss", "min"), ("valid_accuracy", "max"),
     ("valid_r2", "max"), ("train_accuracy", "max"), ("valid_auc", "max")],
)
def test_mode_from_name(metric, mode):
    assert contracts.mode_from_name(metric) == mode
    assert contracts.resolve_mode(metric) == mode


def test_resolve_mode_precedence():
    metadata = {"metric": "valid_w", "mode": "min", "metric_modes": {"w": "max", "q": "min"}}
    # An explicit mode wins over everything.
    assert contracts.resolve_mode("valid_w", "max", metadata=metadata) == "max"
    # The sweep's own mode for its own metric wins over its metric_modes and the name.
    assert contracts.resolve_mode("valid_w", metadata=metadata) == "min"
    # Another metric of the sweep: metric_modes, keyed without the split prefix.
    assert contracts.resolve_mode("valid_q", metadata=metadata) == "min"
    assert contracts.resolve_mode("test_q", metadata=metadata) == "min"
    # Then the task's metric_modes, then the name.
    assert contracts.resolve_mode("valid_loss", metric_modes={"loss": "max"}) == "max"
    assert contracts.resolve_mode("valid_loss", metadata=metadata) == "min"
    with pytest.raises(ValueError, match="mode='maximize'"):
        contracts.resolve_mode("valid_w", "maximize")
    with pytest.raises(ValueError, match=r"metadata\['mode'\]"):
        contracts.resolve_mode("valid_w", metadata={"metric": "valid_w", "mode": "up"})


def test_default_metric_follows_the_task():
    regression = jt.regression_task("linear", input_shape=(1,))
    classification = jt.classification_task("mlp", num_classes=3, input_shape=(4,))
    assert contracts.default_metric(regression.metric_modes, kind=regression.kind) == "valid_mse"
    assert contracts.default_metric(
        classification.metric_modes, kind=classification.kind) == "valid_accuracy"
    assert contracts.default_metric({"w": "max"}) == "valid_w"
    with pytest.raises(ValueError, match="metric='valid_<name>'"):
        contracts.default_metric({})


@pytest.mark.parametrize("metric", ["test_accuracy", "test_mse"])
def test_selection_on_the_test_set_is_refused(metric):
    with pytest.raises(ValueError, match=r"test set.*leaks.*'valid_"):
        contracts.selection_mode(metric)


# ---------------------------------------------------------------------------------------------
# A regression sweep ranked by every reader


@pytest.fixture(scope="module")
def regression():
    split = jt.train_valid_test_split(jt.make_linear(num_samples=128, noise=0.1), stratify=False)
    task = jt.regression_task("linear", input_shape=(1,))
    return task, split


SPACE = jt.Space({"learning_rate": jt.Float(1e-3, 3e-1, log=True), "optimizer": jt.Fixed("sgd")})


@pytest.fixture(scope="module")
def sweep(regression):
    task, split = regression
    results = jt.tune(task, split, SPACE, num_configs=6, num_steps=40, batch_size=None,
                      steps_per_segment=20, metric="valid_mse")
    values = [row.metrics["valid_mse"] for row in results]
    # The test needs a spread: ranking the wrong way must pick another member.
    assert np.argmin(values) != np.argmax(values) and max(values) > 2 * min(values)
    return results


def _lowest(results: Results) -> MemberResult:
    return min(results, key=lambda row: (row.metrics["valid_mse"], row.member_id))


def _check_minimized(results: Results) -> None:
    lowest = _lowest(results)
    ranked = sorted(results, key=lambda row: (row.metrics["valid_mse"], row.member_id))
    assert results.best("valid_mse").member_id == lowest.member_id
    assert results.best().member_id == lowest.member_id
    assert results.resolve_metric() == ("valid_mse", "min")
    assert [r.member_id for r in results.top(3)] == [r.member_id for r in ranked[:3]]
    assert [r.member_id for r in results.top(3, "valid_mse")] == [r.member_id for r in ranked[:3]]
    assert results.aggregate()[0]["members"] == [lowest.member_id]
    assert results.aggregate("valid_mse")[0]["members"] == [lowest.member_id]
    chosen = results.best_config()
    assert (chosen["metric"], chosen["mode"]) == ("valid_mse", "min")
    assert chosen["members"] == [lowest.member_id]
    assert results.best_config("valid_mse")["members"] == [lowest.member_id]
    assert results.best(rule="best_mean").member_id == lowest.member_id
    table = results.table(k=1)
    assert "ranked by valid_mse (min)" in table
    assert table.splitlines()[3].split()[:2] == ["1", str(lowest.member_id)]
    # Another metric of the sweep gets its own direction: valid_loss is minimized too.
    assert results.best("valid_loss").metrics["valid_loss"] == min(
        row.metrics["valid_loss"] for row in results)


def test_regression_sweep_ranks_by_its_minimized_metric(sweep):
    assert (sweep.metadata["metric"], sweep.metadata["mode"]) == ("valid_mse", "min")
    _check_minimized(sweep)
    # An explicit mode still wins.
    highest = max(sweep, key=lambda row: row.metrics["valid_mse"])
    assert sweep.best("valid_mse", "max").member_id == highest.member_id


def test_loaded_results_rank_the_same(sweep, tmp_path):
    sweep.save(tmp_path / "sweep")
    _check_minimized(Results.load(tmp_path / "sweep"))


def test_cli_show_agrees_with_python(sweep, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    sweep.save(tmp_path / "sweep")
    assert cli.main(["show", str(tmp_path / "sweep"), "--top", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "ranked by valid_mse (min)" in lines[0]
    assert lines[3].split()[:2] == ["1", str(sweep.best().member_id)]


def test_results_without_metadata_use_the_name_rule():
    rows = [MemberResult(member_id=i, config={"lr": float(i)}, seed=0, fold=None,
                         static_group="default", status="completed", diverged_step=None,
                         metrics={"valid_mse": float(v), "valid_r2": -float(v)},
                         curve_steps=[], curves={}, wall_time_s=0.0)
            for i, v in enumerate([3.0, 1.0, 2.0])]
    results = Results(rows)
    assert results.resolve_metric() == ("valid_mse", "min")
    assert results.best().member_id == 1
    assert results.best("valid_r2").member_id == 1


def test_tune_default_metric_is_valid_mse_for_regression(regression):
    task, split = regression
    results = jt.tune(task, split, SPACE, num_configs=2, num_steps=10, batch_size=None,
                      steps_per_segment=10)
    assert (results.metadata["metric"], results.metadata["mode"]) == ("valid_mse", "min")


def test_plots_rank_like_results(sweep):
    pytest.importorskip("matplotlib")
    ax = plot.best_so_far(sweep)
    assert "valid_mse" in ax.get_title() and "(min)" in ax.get_title()
    running = ax.get_lines()[0].get_ydata()
    assert running[-1] == pytest.approx(_lowest(sweep).metrics["valid_mse"])
    ax = plot.learning_curves(sweep)
    best_line = max(ax.get_lines(), key=lambda line: line.get_linewidth())
    assert best_line.get_ydata()[-1] == pytest.approx(_lowest(sweep).metrics["valid_mse"])


def test_optuna_bridge_uses_the_same_rule(sweep):
    optuna = pytest.importorskip("optuna")
    from jaxtune.integrations.optuna import export_to_optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = export_to_optuna(sweep)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.best_trial.user_attrs["member_id"] == sweep.best().member_id
    # Another metric of the sweep, without a direction: its own rule, not "maximize".
    study = export_to_optuna(sweep, metric="valid_loss")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE


# ---------------------------------------------------------------------------------------------
# Every driver refuses the test set


def test_drivers_refuse_test_metrics(regression):
    from jaxtune.scheduled import run_halving, run_pbt

    task, split = regression
    match = r"test set.*valid_mse"
    with pytest.raises(ValueError, match=match):
        jt.tune(task, split, SPACE, num_configs=2, num_steps=10, batch_size=None,
                metric="test_mse")
    with pytest.raises(ValueError, match=match):
        run_halving(task, split, SPACE, population_size=3, num_steps=9, min_steps=3,
                    batch_size=None, metric="test_mse")
    with pytest.raises(ValueError, match=match):
        run_pbt(task, split, SPACE, population_size=2, num_steps=10, batch_size=None,
                metric="test_mse")
    with pytest.raises(ValueError, match=match):
        cv.cross_validate(task, jt.make_linear(num_samples=64), [{"learning_rate": 0.1,
                          "optimizer": "sgd"}], num_steps=10, metric="test_mse")


def test_cli_refuses_test_metric(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    space = tmp_path / "space.json"
    space.write_text('{"learning_rate": 0.1, "optimizer": "adam"}', encoding="utf-8")
    status = cli.main(["sweep", "--dataset", "wine", "--space", str(space), "--out",
                       str(tmp_path / "out"), "--quiet", "--no-plot", "--num-configs", "1",
                       "--num-steps", "1", "--metric", "test_accuracy"])
    err = capsys.readouterr().err.splitlines()
    assert status == 2
    assert len(err) == 1 and "test set" in err[0] and "valid_accuracy" in err[0], err
    assert not (tmp_path / "out" / "results.json").exists()


# ---------------------------------------------------------------------------------------------
# Multi-round metadata


def test_multi_round_tune_metadata_counts_every_round(regression):
    _, split = regression
    # Four static groups (the widths), two per round; a huge learning rate makes every member
    # diverge, so each round runs guarded segments.
    space = jt.Space({"width": jt.Choice([3, 5, 7, 9]), "depth": jt.Fixed(1),
                      "learning_rate": jt.Fixed(1e6), "optimizer": jt.Fixed("sgd")})
    mlp = jt.regression_task("mlp", input_shape=(1,))
    rounds = []
    results = jt.tune(mlp, split, space, jt.grid_search(), num_configs=4, population_size=2,
                      num_steps=20, batch_size=None, steps_per_segment=10,
                      metric="valid_mse", on_round=rounds.append)
    assert len(rounds) == 2
    for name in ("num_compilations", "num_segment_compilations", "num_guarded_segments"):
        assert results.metadata[name] == sum(r.metadata[name] for r in rounds), name
    assert rounds[1].metadata["num_guarded_segments"] > 0
    assert [r.metadata["num_static_groups"] for r in rounds] == [2, 2]
    assert results.metadata["num_static_groups"] == 4
