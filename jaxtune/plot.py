"""Figures of a sweep's :class:`~jaxtune.results.Results` (needs ``pip install jaxtune[plot]``).

matplotlib is imported only when a function is called. Figures are built with the
object-oriented API (``matplotlib.figure.Figure`` on an Agg canvas), never through ``pyplot``:
no global backend switch, no global rcParams change, no window, nothing left open in pyplot's
figure registry. Each function draws on the ``ax`` it is given, or on a new figure; it returns
the Axes (``summary_figure`` returns the written path). Save with :func:`save_figure` or
``ax.figure.savefig(path)``.

Example:
    >>> from jaxtune import plot                                     # doctest: +SKIP
    >>> ax = plot.learning_curves(results, metric="valid_loss")     # doctest: +SKIP
    >>> plot.save_figure(ax, "curves.png")                           # doctest: +SKIP
    >>> plot.summary_figure(results, "runs/sweep1/summary.svg")     # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxtune.report import is_log_spread, is_number
from jaxtune.results import MemberResult, Results

__all__ = [
    "best_so_far",
    "learning_curves",
    "metric_vs_hparam",
    "parallel_coordinates",
    "pareto_plot",
    "save_figure",
    "summary_figure",
]

_FORMATS = (".png", ".svg", ".pdf")
_MEMBER_COLOR = "tab:blue"
_DIVERGED_COLOR = "tab:red"
_BEST_COLOR = "tab:orange"


def _matplotlib() -> dict[str, Any]:
    """Imports the parts of matplotlib used here, with a clear error when it is missing."""
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection
        from matplotlib.colors import Normalize
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError as error:
        raise ImportError(
            "jaxtune.plot needs matplotlib, which is not installed: pip install jaxtune[plot]"
        ) from error
    return {
        "colormaps": colormaps,
        "FigureCanvasAgg": FigureCanvasAgg,
        "Figure": Figure,
        "LineCollection": LineCollection,
        "Line2D": Line2D,
        "Normalize": Normalize,
    }


def _new_figure(figsize: tuple[float, float]) -> Any:
    mpl = _matplotlib()
    figure = mpl["Figure"](figsize=figsize, layout="constrained")
    mpl["FigureCanvasAgg"](figure)  # attaches an Agg canvas to this figure only
    return figure


def _axes(ax: Any, figsize: tuple[float, float] = (6.4, 4.2)) -> Any:
    return _new_figure(figsize).add_subplot() if ax is None else ax


def _best_member(results: Results, metric: str, mode: str) -> MemberResult | None:
    eligible = results.top(1, metric, mode) if metric in results.metric_names else []
    return eligible[0] if eligible else None


def save_figure(figure_or_axes: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Writes a figure (or the figure of an Axes) to ``path``; the format follows the suffix.

    Args:
        figure_or_axes: A matplotlib ``Figure`` or ``Axes``.
        path: Output file, ``.png``, ``.svg`` or ``.pdf``; parent folders are created.
        dpi: Resolution of raster output.

    Returns:
        The path written.

    Raises:
        ValueError: For another suffix.
    """
    path = Path(path)
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(f"path: unsupported figure format {path.suffix!r}; use one of {_FORMATS}")
    figure = figure_or_axes
    while not hasattr(figure, "savefig"):  # Axes -> (Sub)Figure -> root Figure
        figure = figure.figure
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


def _curve_points(results: Results, metric: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(normal, diverged)``: each member's finite ``[num_points, 2]`` (step, value) points."""
    normal, diverged = [], []
    for row in results:
        if metric not in row.curves:
            continue
        points = np.column_stack(
            [np.asarray(row.curve_steps, float), np.asarray(row.curves[metric], float)]
        )
        points = points[np.all(np.isfinite(points), axis=1)]
        if len(points):
            (diverged if row.diverged else normal).append(points)
    return normal, diverged


def learning_curves(
    results: Results,
    metric: str | None = None,
    ax: Any = None,
    mode: str | None = None,
) -> Any:
    """Every member's learning curve of ``metric`` against the training step.

    Members are thin blue lines, diverged members dashed red, and the best member (by the final
    ``metric``) a thick orange line. Non-finite points are left out; a member with a single
    point (one evaluation) is drawn as a dot, which a line of one point would not show.

    Args:
        results: The sweep.
        metric: A metric recorded in the members' ``curves``; default: the sweep's own
            (``metadata["metric"]``).
        ax: Axes to draw on; default: a new figure.
        mode: ``"max"`` or ``"min"`` to choose the best member; default: the sweep's direction for
            ``metric`` (:meth:`~jaxtune.results.Results.resolve_metric`).

    Returns:
        The Axes.

    Raises:
        ValueError: If no member has a curve for ``metric``.
    """
    mpl = _matplotlib()
    metric, mode = results.resolve_metric(metric, mode)
    available = sorted({name for row in results for name in row.curves})
    if metric not in available:
        raise ValueError(f"no learning curve for {metric!r}; curves available: {available}")
    ax = _axes(ax)
    best = _best_member(results, metric, mode)
    normal, diverged = _curve_points(results, metric)
    # One collection per style: one artist however many members.
    ax.add_collection(
        mpl["LineCollection"](normal, colors=_MEMBER_COLOR, linewidths=0.8, alpha=0.45)
    )
    ax.add_collection(
        mpl["LineCollection"](
            diverged, colors=_DIVERGED_COLOR, linewidths=0.9, linestyles="--", alpha=0.8, zorder=2.5
        )
    )
    # A line through one point draws nothing: single points get a marker of the same style.
    for points, color in ((normal, _MEMBER_COLOR), (diverged, _DIVERGED_COLOR)):
        single = [p[0] for p in points if len(p) == 1]
        if single:
            ax.scatter(*np.asarray(single).T, s=14, color=color, alpha=0.6, zorder=2.5)
    handles = [
        mpl["Line2D"]([], [], color=_MEMBER_COLOR, lw=0.8, label=f"members ({len(normal)})"),
    ]
    if diverged:
        handles.append(
            mpl["Line2D"](
                [], [], color=_DIVERGED_COLOR, ls="--", label=f"diverged ({len(diverged)})"
            )
        )
    if best is not None and metric in best.curves:
        (line,) = ax.plot(
            best.curve_steps,
            best.curves[metric],
            color=_BEST_COLOR,
            marker="o" if len(best.curve_steps) == 1 else None,
            lw=2.5,
            label=f"best (member {best.member_id})",
            zorder=3,
        )
        handles.append(line)
    ax.autoscale_view()
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"learning curves: {metric}")
    ax.legend(handles=handles, loc="best", fontsize="small")
    return ax


def _categorical_positions(values: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    labels = sorted({repr(v) if not isinstance(v, str) else v for v in values})
    index = {label: i for i, label in enumerate(labels)}
    positions = [index[v if isinstance(v, str) else repr(v)] for v in values]
    return np.asarray(positions, float), labels


def _strip_offsets(positions: np.ndarray, width: float = 0.3) -> np.ndarray:
    """Offsets in ``[-width / 2, width / 2)`` spreading the members of each category (same
    position) evenly, by a low-discrepancy sequence over their order: deterministic."""
    offsets = np.zeros(len(positions))
    for position in np.unique(positions):
        where = np.flatnonzero(positions == position)
        if len(where) > 1:
            offsets[where] = (np.arange(len(where)) * 0.6180339887498949) % 1.0 - 0.5
    return offsets * width


def _space_log(results: Results, hparam: str) -> bool | None:
    """The ``log`` flag the sweep's space gave ``hparam`` (``results.metadata["space"]``)."""
    spec = (results.metadata.get("space") or {}).get(hparam)
    if isinstance(spec, Mapping) and spec.get("type") in ("float", "int"):
        return bool(spec.get("log", False))
    return None


def _hparam_positions(
    results: Results, hparam: str, raw: Sequence[Any], log: bool | None
) -> tuple[np.ndarray, list[str], bool]:
    """``(x, labels, log)`` of :func:`metric_vs_hparam`: numbers as they are (log axis when asked,
    or when the space or the spread says so), other values as categories spread in strips."""
    labels: list[str] = []
    if all(is_number(v) for v in raw):
        x = np.asarray(raw, float)
        if log is None:
            log = _space_log(results, hparam)
        if log is None:
            log = is_log_spread(raw)
        elif log and np.any(x <= 0):
            raise ValueError(f"log=True but {hparam!r} has values <= 0; use log=False")
    else:
        x, labels = _categorical_positions(raw)
        x = x + _strip_offsets(x)
        log = False
    return x, labels, bool(log)


def metric_vs_hparam(
    results: Results,
    hparam: str,
    metric: str | None = None,
    log: bool | None = None,
    ax: Any = None,
    mode: str | None = None,
) -> Any:
    """Final ``metric`` of each member against the value of one hyperparameter.

    Members with a finite metric are dots and the best is a star; diverged or non-finite members
    are red ``x`` marks along the bottom edge of the axes. Non-numeric values (strings, bools,
    tuples) are placed as categories, as a strip plot: the members of one category are spread
    over a narrow band around it (a fixed spread, no randomness) so that they do not hide each
    other.

    Args:
        results: The sweep.
        hparam: A hyperparameter name from ``results.hp_names``.
        metric: A final metric from ``results.metric_names``; default: the sweep's own
            (``metadata["metric"]``).
        log: Log x-axis. Default (``None``): log when every value is positive and they span more
            than two decades.
        ax: Axes to draw on; default: a new figure.
        mode: ``"max"`` or ``"min"`` for the best member; default: the sweep's direction for
            ``metric`` (:meth:`~jaxtune.results.Results.resolve_metric`).

    Returns:
        The Axes.

    Raises:
        ValueError: For an unknown hyperparameter or metric, or ``log=True`` with values <= 0.
    """
    _matplotlib()
    if hparam not in results.hp_names:
        raise ValueError(f"unknown hyperparameter {hparam!r}; have {results.hp_names}")
    metric, mode = results.resolve_metric(metric, mode)
    if metric not in results.metric_names:
        raise ValueError(f"unknown metric {metric!r}; available metrics: {results.metric_names}")
    rows = [row for row in results if row.config.get(hparam) is not None]
    x, labels, log = _hparam_positions(results, hparam, [row.config[hparam] for row in rows], log)
    y = np.asarray([row.score(metric) for row in rows], float)
    ok = np.isfinite(y)
    ax = _axes(ax)
    ax.scatter(x[ok], y[ok], s=22, color=_MEMBER_COLOR, alpha=0.75, label="members")
    if np.any(~ok):
        # x in data coordinates, y in axes coordinates: the marks sit on the bottom edge.
        ax.scatter(
            x[~ok],
            np.full(int(np.sum(~ok)), 0.02),
            marker="x",
            color=_DIVERGED_COLOR,
            transform=ax.get_xaxis_transform(),
            label=f"diverged / non-finite ({int(np.sum(~ok))})",
            clip_on=False,
        )
    best = _best_member(results, metric, mode)
    ids = [row.member_id for row in rows]
    if best is not None and best.member_id in ids:
        i = ids.index(best.member_id)
        ax.scatter([x[i]], [y[i]], marker="*", s=160, color=_BEST_COLOR, zorder=3, label="best")
    if log:
        ax.set_xscale("log")
    if labels:
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_xlabel(hparam)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {hparam}")
    ax.legend(loc="best", fontsize="small")
    return ax


def best_so_far(
    results: Results,
    metric: str | None = None,
    mode: str | None = None,
    ax: Any = None,
) -> Any:
    """The best final ``metric`` among the first *n* members, against *n* (``member_id`` order).

    Diverged and non-finite members count as evaluated but never improve the curve.

    Args:
        results: The sweep.
        metric: A final metric; default: the sweep's own (``metadata["metric"]``).
        mode: ``"max"`` or ``"min"``; default: the sweep's direction for
            ``metric`` (:meth:`~jaxtune.results.Results.resolve_metric`).
        ax: Axes to draw on; default: a new figure.

    Returns:
        The Axes.
    """
    _matplotlib()
    metric, mode = results.resolve_metric(metric, mode)
    if metric not in results.metric_names:
        raise ValueError(f"unknown metric {metric!r}; available metrics: {results.metric_names}")
    rows = sorted(results, key=lambda row: row.member_id)
    values = np.asarray([row.score(metric) for row in rows], float)
    values[~np.isfinite(values)] = np.nan
    # fmax/fmin ignore NaN, so a failed member never becomes the best so far.
    running = (np.fmax if mode == "max" else np.fmin).accumulate(values)
    evaluated = np.arange(1, len(rows) + 1)
    ax = _axes(ax)
    ok = np.isfinite(values)
    ax.scatter(evaluated[ok], values[ok], s=10, color=_MEMBER_COLOR, alpha=0.4, label="member")
    ax.step(evaluated, running, where="post", color=_BEST_COLOR, lw=2, label="best so far")
    ax.set_xlabel("members evaluated")
    ax.set_ylabel(metric)
    ax.set_title(f"best {metric} so far ({mode})")
    ax.legend(loc="best", fontsize="small")
    return ax


def pareto_plot(
    results: Results,
    metrics: Sequence[str] | None = None,
    modes: Sequence[str | None] | None = None,
    ax: Any = None,
) -> Any:
    """Two metrics against each other: every member, the infeasible ones marked, and the
    Pareto front (:meth:`~jaxtune.results.Results.pareto_front`) joined by its staircase.

    Args:
        results: The sweep.
        metrics: Two metrics; default: the sweep's objectives (``metadata["metrics"]``, the
            first two of more).
        modes: Their directions; default as :meth:`~jaxtune.results.Results.objectives`.
        ax: Axes to draw on; default: a new figure.

    Returns:
        The Axes.

    Raises:
        ValueError: Not two metrics, or an unknown one.
    """
    _matplotlib()
    if metrics is None and len(results.metadata.get("metrics") or ()) > 2:
        metrics = results.metadata["metrics"][:2]
        modes = results.metadata["modes"][:2] if modes is None else modes
    metrics, modes = results.objectives(metrics, modes)
    if len(metrics) != 2:
        raise ValueError(f"metrics={list(metrics)}: a Pareto plot shows exactly two metrics")
    front = results.pareto_front(metrics, modes)
    ax = _axes(ax)
    points = np.asarray([[row.score(m) for m in metrics] for row in results], float)
    feasible = np.asarray([row.extra.get("feasible", True) is not False for row in results])
    finite = np.all(np.isfinite(points), axis=1)
    shown = finite & feasible
    ax.scatter(points[shown, 0], points[shown, 1], s=14, color=_MEMBER_COLOR, alpha=0.5,
               label="member")
    if np.any(finite & ~feasible):
        ax.scatter(points[finite & ~feasible, 0], points[finite & ~feasible, 1], s=18,
                   marker="x", color="tab:gray", label="infeasible")
    line = np.asarray([[row.score(m) for m in metrics] for row in front], float)
    ax.step(line[:, 0], line[:, 1], where="post", color=_BEST_COLOR, lw=1.5)
    ax.scatter(line[:, 0], line[:, 1], s=30, color=_BEST_COLOR, zorder=3,
               label=f"Pareto front ({len(front)})")
    ax.set_xlabel(f"{metrics[0]} ({modes[0]})")
    ax.set_ylabel(f"{metrics[1]} ({modes[1]})")
    ax.set_title(f"{metrics[0]} against {metrics[1]}")
    ax.legend(loc="best", fontsize="small")
    return ax


def _varying_hparams(results: Results) -> list[str]:
    """Every hyperparameter whose value differs between members, in ``results.hp_names`` order:
    numeric or categorical (an optimizer name, a tuple of widths), dynamic or static. Fixed
    ones (one value) are left out: there is nothing to plot against."""
    return [
        name for name in results.hp_names
        if len({repr(row.config.get(name)) for row in results}) > 1
    ]


def summary_figure(
    results: Results,
    path: str | os.PathLike[str],
    metric: str | None = None,
    hparams: Sequence[str] | None = None,
    mode: str | None = None,
) -> Path:
    """Writes one figure: learning curves and ``metric`` against each hyperparameter that varies.

    Numeric hyperparameters get a log x-axis where the space is log (``results.metadata
    ["space"]``; without a space, where the values span more than two decades); categorical ones
    (choices of strings, bools, tuples) a strip plot over their categories.

    Args:
        results: The sweep.
        path: Output file; ``.png``, ``.svg`` or ``.pdf`` by suffix.
        metric: The metric to show; default: the sweep's own (``metadata["metric"]``).
        hparams: Hyperparameters to plot against; default: every one that varies between
            members (numeric or categorical, static or dynamic).
        mode: ``"max"`` or ``"min"``; default: the sweep's direction for
            ``metric`` (:meth:`~jaxtune.results.Results.resolve_metric`).

    Returns:
        The path written.
    """
    path = Path(path)
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(f"path: unsupported figure format {path.suffix!r}; use one of {_FORMATS}")
    metric, mode = results.resolve_metric(metric, mode)
    hparams = _varying_hparams(results) if hparams is None else list(hparams)
    num_panels = 1 + len(hparams)
    num_cols = min(3, num_panels)
    num_rows = math.ceil(num_panels / num_cols)
    figure = _new_figure((5.0 * num_cols, 3.8 * num_rows))
    axes = figure.subplots(num_rows, num_cols, squeeze=False).ravel()
    if any(metric in row.curves for row in results):
        learning_curves(results, metric, ax=axes[0], mode=mode)
    else:
        axes[0].text(0.5, 0.5, f"no learning curves for {metric!r}", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, name in zip(axes[1:], hparams, strict=False):
        metric_vs_hparam(results, name, metric, ax=ax, mode=mode)
    for ax in axes[num_panels:]:
        ax.set_axis_off()
    figure.suptitle(f"{len(results)} members, {metric}")
    return save_figure(figure, path)


def _axis_positions(values: Sequence[Any], log: bool | None = None
                    ) -> tuple[np.ndarray, str, str]:
    """Positions in [0, 1] for one parallel-coordinates axis, and its bottom/top labels.

    Numbers are scaled in log10 when ``log`` (the space's flag) is true and every value is
    positive, linearly when it is false; with ``log=None`` (no space), in log10 when positive
    and spread over more than two decades. Anything else is placed as evenly spaced
    categories. NaN stays NaN.
    """
    if all(is_number(v) for v in values):
        x = np.asarray(values, float)
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            return np.full(len(x), np.nan), "", ""
        low, high = float(finite.min()), float(finite.max())
        if log is None:
            log = is_log_spread(values)
        if log and low > 0:
            scaled = np.log10(np.where(x > 0, x, np.nan))
            lo, hi = math.log10(low), math.log10(high)
        else:
            scaled, lo, hi = x, low, high
        positions = (scaled - lo) / (hi - lo) if hi > lo else np.where(np.isfinite(x), 0.5, np.nan)
        return positions, f"{low:.3g}", f"{high:.3g}"
    positions, labels = _categorical_positions(values)
    positions = positions / max(len(labels) - 1, 1)
    return positions, labels[0], labels[-1]


def parallel_coordinates(
    results: Results,
    metric: str | None = None,
    hparams: Sequence[str] | None = None,
    ax: Any = None,
    mode: str | None = None,
) -> Any:
    """One polyline per member across the hyperparameter axes and the metric, colored by metric.

    Each axis is scaled to [0, 1] (log where the space is log, ``results.metadata["space"]``;
    without a space, where the values are positive and span more than two decades; categories
    evenly spaced) and labeled with its range. Colors run from dark (worse)
    to bright (better) whatever the mode. Diverged or non-finite members are grey dashed lines
    that stop before the metric axis.

    Args:
        results: The sweep.
        metric: A final metric; default: the sweep's own (``metadata["metric"]``).
        hparams: Hyperparameters to show; default as in :func:`summary_figure`.
        ax: Axes to draw on; default: a new figure.
        mode: ``"max"`` or ``"min"``; default: the sweep's direction for
            ``metric`` (:meth:`~jaxtune.results.Results.resolve_metric`).

    Returns:
        The Axes.
    """
    mpl = _matplotlib()
    metric, mode = results.resolve_metric(metric, mode)
    if metric not in results.metric_names:
        raise ValueError(f"unknown metric {metric!r}; available metrics: {results.metric_names}")
    hparams = _varying_hparams(results) if hparams is None else list(hparams)
    unknown = [name for name in hparams if name not in results.hp_names]
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown}; have {results.hp_names}")
    rows = list(results)
    columns, bottoms, tops = [], [], []
    for name in hparams:
        positions, bottom, top = _axis_positions([row.config.get(name) for row in rows],
                                                 log=_space_log(results, name))
        columns.append(positions)
        bottoms.append(bottom)
        tops.append(top)
    scores = np.asarray([row.score(metric) for row in rows], float)
    ok = np.isfinite(scores)
    positions, bottom, top = _axis_positions([float(v) for v in np.where(ok, scores, np.nan)])
    columns.append(positions)
    bottoms.append(bottom)
    tops.append(top)
    table = np.column_stack(columns) if rows else np.zeros((0, len(columns)))
    xs = np.arange(len(columns), dtype=float)
    ax = _axes(ax, figsize=(1.6 * len(columns) + 2.5, 4.2))
    good = [np.column_stack([xs, table[i]]) for i in np.flatnonzero(ok)]
    failed = [np.column_stack([xs[:-1], table[i, :-1]]) for i in np.flatnonzero(~ok)]
    colormap = mpl["colormaps"]["viridis" if mode == "max" else "viridis_r"]
    lines = mpl["LineCollection"](good, cmap=colormap, linewidths=1.0, alpha=0.8)
    if good:
        lines.set_array(scores[ok])
        lines.set_norm(mpl["Normalize"](float(scores[ok].min()), float(scores[ok].max())))
    ax.add_collection(lines)
    ax.add_collection(
        mpl["LineCollection"](failed, colors="grey", linewidths=0.8, linestyles="--", alpha=0.6)
    )
    for x, bottom, top in zip(xs, bottoms, tops, strict=True):
        ax.axvline(x, color="black", lw=0.8)
        ax.text(x, -0.04, bottom, ha="center", va="top", fontsize="small")
        ax.text(x, 1.04, top, ha="center", va="bottom", fontsize="small")
    ax.set_xlim(-0.3, len(columns) - 0.7)
    ax.set_ylim(-0.12, 1.12)
    ax.set_xticks(xs, [*hparams, metric], rotation=20)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"parallel coordinates ({metric}, {mode})", pad=18)
    if good:
        ax.figure.colorbar(lines, ax=ax, label=metric)
    return ax
