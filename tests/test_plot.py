"""Tests for jaxtune.plot: every figure renders to PNG and SVG; axis scales follow the data."""

import dataclasses
import math
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.axes import Axes

from jaxtune import plot
from jaxtune.results import MemberResult, Results


def make_results(num_members=12):
    """Two static groups; log-spread learning rates; one diverged member with NaN metrics."""
    rows = []
    learning_rates = np.logspace(-5, 0, num_members)
    for i, lr in enumerate(learning_rates):
        diverged = i == num_members - 1
        steps = [0, 25, 50, 75, 100]
        accuracy = 0.5 + 0.4 * math.exp(-((math.log10(lr) + 2.5) ** 2))
        curve = [0.1 + (accuracy - 0.1) * s / 100 for s in steps]
        if diverged:
            accuracy, curve = math.nan, [*curve[:2], math.nan, math.nan, math.nan]
        rows.append(
            MemberResult(
                member_id=i,
                config={
                    "learning_rate": float(lr),
                    "dropout": 0.1 * (i % 4),
                    "optimizer": "adam" if i % 2 else "sgd",
                    "width": 64 if i < num_members // 2 else 128,
                },
                seed=i % 3,
                fold=None,
                static_group=f"width={64 if i < num_members // 2 else 128}",
                status="diverged" if diverged else "completed",
                diverged_step=50 if diverged else None,
                metrics={"valid_accuracy": accuracy, "valid_loss": 1.0 - accuracy},
                curve_steps=steps,
                curves={"valid_accuracy": curve, "valid_loss": [1.0 - v for v in curve]},
                wall_time_s=0.5,
            )
        )
    return Results(rows)


@pytest.fixture
def results():
    return make_results()


def assert_written(path):
    assert path.is_file() and path.stat().st_size > 0


@pytest.mark.parametrize("suffix", [".png", ".svg"])
@pytest.mark.parametrize(
    "draw",
    [
        lambda r: plot.learning_curves(r, "valid_accuracy"),
        lambda r: plot.learning_curves(r, "valid_loss"),
        lambda r: plot.metric_vs_hparam(r, "learning_rate", "valid_accuracy"),
        lambda r: plot.metric_vs_hparam(r, "optimizer", "valid_loss"),
        lambda r: plot.best_so_far(r, "valid_accuracy", "max"),
        lambda r: plot.best_so_far(r, "valid_loss"),
        lambda r: plot.parallel_coordinates(r, "valid_accuracy"),
        lambda r: plot.parallel_coordinates(
            r, "valid_loss", hparams=["learning_rate", "optimizer"]
        ),
    ],
    ids=[
        "curves",
        "curves-loss",
        "vs-lr",
        "vs-categorical",
        "best-so-far",
        "best-so-far-min",
        "parallel",
        "parallel-categorical",
    ],
)
def test_each_function_writes_a_figure(results, tmp_path, draw, suffix):
    ax = draw(results)
    assert isinstance(ax, Axes)
    path = plot.save_figure(ax, tmp_path / f"figure{suffix}")
    assert_written(path)
    if suffix == ".svg":
        assert path.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_summary_figure(results, tmp_path, suffix):
    path = plot.summary_figure(results, tmp_path / "out" / f"summary{suffix}")
    assert path == tmp_path / "out" / f"summary{suffix}"
    assert_written(path)
    explicit = plot.summary_figure(results, tmp_path / "b.png", hparams=["learning_rate"])
    assert_written(explicit)
    with pytest.raises(ValueError, match="format"):
        plot.summary_figure(results, tmp_path / "summary.jpg2")


def test_summary_figure_plots_every_varying_hparam(results, tmp_path, monkeypatch):
    """Static (width), categorical (optimizer) and dynamic hyperparameters all get a panel;
    a fixed one (a single value) does not."""
    fixed = Results([dataclasses.replace(r, config={**r.config, "schedule": "cosine"})
                     for r in results])
    assert plot._varying_hparams(fixed) == ["dropout", "learning_rate", "optimizer", "width"]
    figure_axes = []
    original = plot.metric_vs_hparam

    def recording(results, hparam, *args, **kwargs):
        figure_axes.append(hparam)
        return original(results, hparam, *args, **kwargs)

    monkeypatch.setattr(plot, "metric_vs_hparam", recording)
    assert_written(plot.summary_figure(fixed, tmp_path / "all.png"))
    assert figure_axes == ["dropout", "learning_rate", "optimizer", "width"]
    ax = plot.parallel_coordinates(fixed)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "dropout", "learning_rate", "optimizer", "width", "valid_accuracy"]


def test_categorical_hparam_is_a_strip_plot(results):
    ax = plot.metric_vs_hparam(results, "optimizer")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["adam", "sgd"]
    x = ax.collections[0].get_offsets()[:, 0]  # the finite members
    assert np.all(np.abs(x - np.round(x)) <= 0.15 + 1e-9)  # each within its category's band
    assert len(np.unique(x)) == len(x)  # spread out: no two members on one spot


def test_parallel_coordinates_follow_the_space_log_flag():
    base = make_results()

    def learning_rate_axis(log):
        space = {"learning_rate": {"type": "float", "low": 1e-5, "high": 1.0, "log": log}}
        ax = plot.parallel_coordinates(Results(list(base), {"space": space}),
                                       hparams=["learning_rate"])
        segments = ax.collections[0].get_segments()
        return np.asarray([segment[0][1] for segment in segments])  # y on the first axis

    every = np.asarray([r.config["learning_rate"] for r in base])  # the axis's range
    low, high = every.min(), every.max()
    rates = np.asarray([r.config["learning_rate"] for r in base if r.status == "completed"])
    logged, linear = learning_rate_axis(True), learning_rate_axis(False)
    np.testing.assert_allclose(logged, np.log10(rates / low) / np.log10(high / low), atol=1e-9)
    np.testing.assert_allclose(linear, (rates - low) / (high - low), atol=1e-9)


def test_learning_curves_of_single_points_are_visible():
    """A sweep evaluated once (one point per member) shows a dot per member and for the best."""
    rows = [dataclasses.replace(r, curve_steps=[100], curves={"valid_accuracy": [r.curves[
        "valid_accuracy"][-1]]}) for r in make_results()]
    ax = plot.learning_curves(Results(rows), "valid_accuracy")
    from matplotlib.collections import PathCollection

    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in dots) == len(rows) - 1  # the diverged one is NaN
    (best,) = ax.lines
    assert best.get_marker() == "o"


def test_log_axis_for_log_spread_hparam(results):
    assert plot.metric_vs_hparam(results, "learning_rate").get_xscale() == "log"
    assert plot.metric_vs_hparam(results, "dropout").get_xscale() == "linear"
    assert plot.metric_vs_hparam(results, "learning_rate", log=False).get_xscale() == "linear"
    assert plot.metric_vs_hparam(results, "dropout", log=None).get_xscale() == "linear"
    # Positive and within two decades: linear unless asked.
    assert plot.metric_vs_hparam(results, "width").get_xscale() == "linear"
    assert plot.metric_vs_hparam(results, "width", log=True).get_xscale() == "log"
    with pytest.raises(ValueError, match="values <= 0"):
        plot.metric_vs_hparam(results, "dropout", log=True)


def test_learning_curves_styles(results):
    ax = plot.learning_curves(results, "valid_accuracy")
    normal, diverged = ax.collections[:2]
    assert len(normal.get_paths()) == len(results) - 1
    assert len(diverged.get_paths()) == 1
    assert diverged.get_linestyle()[0][1] is not None  # dashed
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    best = results.best("valid_accuracy")
    assert f"best (member {best.member_id})" in labels


def test_draws_on_given_axes(results):
    from matplotlib.figure import Figure

    figure = Figure()
    ax = figure.add_subplot()
    assert plot.best_so_far(results, ax=ax) is ax
    line = ax.lines[0]
    y = line.get_ydata()
    assert np.all(np.diff(y) >= 0)  # best so far never gets worse (max)


def test_errors(results):
    with pytest.raises(ValueError, match="no learning curve"):
        plot.learning_curves(results, "test_accuracy")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        plot.metric_vs_hparam(results, "momentum")
    with pytest.raises(ValueError, match="unknown metric"):
        plot.best_so_far(results, "test_accuracy")


def test_missing_matplotlib(results, monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install jaxtune\[plot\]"):
        plot.learning_curves(results)


def test_space_in_metadata_decides_the_axis():
    base = make_results()
    space = {"learning_rate": {"type": "float", "low": 1e-5, "high": 1.0, "log": False}}
    linear = Results(list(base), {**base.metadata, "space": space})
    assert plot.metric_vs_hparam(linear, "learning_rate").get_xscale() == "linear"
    space["learning_rate"]["log"] = True
    logged = Results(list(base), {**base.metadata, "space": space})
    assert plot.metric_vs_hparam(logged, "learning_rate").get_xscale() == "log"
