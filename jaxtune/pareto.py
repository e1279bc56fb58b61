"""Pareto dominance and hypervolume of several objectives (host-only, numpy).

Every function here takes **losses**: an array ``[num_points, num_objectives]`` in which lower
is better in every column (a caller negates the columns it maximizes, as
:func:`as_losses` does). A point *dominates* another when it is no worse in every objective
and strictly better in at least one. A row with a NaN or an infinity anywhere (a diverged or
failed member) is never non-dominated and never dominates another row. Equal rows do not
dominate each other: all copies of a non-dominated point are on the front.

The *hypervolume* of a set (Zitzler & Thiele 1998) is the Lebesgue measure of the region the
set dominates and the reference point bounds, ``{z : p <= z <= reference for some p}``; larger
is better. Two objectives: an exact sweep over the points sorted by the first one. More: the
exact dimension sweep (slice along the last objective, recursing on the points below each
slice), whose cost grows as ``n^(k-1)``: fine for the few hundred points of a sweep in three or
four objectives.

This module imports nothing from jaxtune, so any module may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_losses", "hypervolume", "non_dominated", "non_dominated_ranks", "summary_losses"]


def as_losses(values: Any, modes: Sequence[str]) -> np.ndarray:
    """``values [n, k]`` as losses: columns whose mode is ``"max"`` negated.

    Args:
      values: ``[n, k]`` metric values.
      modes: ``k`` directions, each ``"max"`` or ``"min"``.

    Returns:
      ``np.ndarray [n, k]`` float64, lower is better in every column.

    Raises:
      ValueError: ``values`` is not 2-D, or ``modes`` has another length or an unknown mode.
    """
    values = np.array(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D [num_points, num_objectives], got {values.shape}.")
    modes = list(modes)
    if len(modes) != values.shape[1]:
        raise ValueError(
            f"modes: got {len(modes)} for {values.shape[1]} objectives; give one per column."
        )
    for i, mode in enumerate(modes):
        if mode not in ("max", "min"):
            raise ValueError(f"modes[{i}]={mode!r} must be 'max' or 'min'.")
    signs = np.array([-1.0 if mode == "max" else 1.0 for mode in modes])
    return values * signs


def _check_points(points: Any) -> np.ndarray:
    points = np.array(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(
            f"points must be 2-D [num_points, num_objectives], got shape {points.shape}."
        )
    return points


def non_dominated(points: Any) -> np.ndarray:
    """Which rows no other row dominates (the Pareto front), non-finite rows excluded.

    Args:
      points: ``[n, k]`` losses.

    Returns:
      ``np.ndarray [n]`` bool.

    Example:
      >>> non_dominated([[1, 2], [2, 1], [2, 2], [1, 2], [np.nan, 0]]).tolist()
      [True, True, False, True, False]
    """
    points = _check_points(points)
    finite = np.all(np.isfinite(points), axis=1)
    front = finite.copy()
    candidates = points[finite]
    for i in np.flatnonzero(finite):
        no_worse = np.all(candidates <= points[i], axis=1)
        better = np.any(candidates < points[i], axis=1)
        front[i] = not np.any(no_worse & better)
    return front


def non_dominated_ranks(points: Any) -> np.ndarray:
    """Non-dominated sorting (Deb et al. 2002): rank 0 is the front, rank 1 the front of the
    rest, and so on; a row with a non-finite value ranks ``+inf``.

    Args:
      points: ``[n, k]`` losses.

    Returns:
      ``np.ndarray [n]`` float64 ranks.
    """
    points = _check_points(points)
    ranks = np.full(len(points), np.inf)
    remaining = np.all(np.isfinite(points), axis=1)
    rank = 0
    while remaining.any():
        subset = np.flatnonzero(remaining)
        front = subset[non_dominated(points[subset])]
        ranks[front] = rank
        remaining[front] = False
        rank += 1
    return ranks


def _hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    order = np.lexsort((points[:, 1], points[:, 0]))
    volume, ceiling = 0.0, reference[1]
    for x, y in points[order]:
        if y < ceiling:
            volume += (reference[0] - x) * (ceiling - y)
            ceiling = y
    return float(volume)


def _hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    if points.shape[1] == 2:
        return _hypervolume_2d(points, reference)
    points = points[non_dominated(points)]
    levels = np.unique(points[:, -1])
    bounds = np.append(levels[1:], reference[-1])
    volume = 0.0
    for level, upper in zip(levels, bounds, strict=True):
        below = points[points[:, -1] <= level, :-1]
        volume += (upper - level) * _hypervolume(below, reference[:-1])
    return float(volume)


def hypervolume(points: Any, reference: Any) -> float:
    """The hypervolume that ``points`` dominate, bounded by ``reference`` (losses).

    Only the finite points strictly better than ``reference`` in every objective count.

    Args:
      points: ``[n, k]`` losses.
      reference: ``[k]`` the reference point (worse than every point of interest).

    Returns:
      The volume, ``>= 0``.

    Raises:
      ValueError: shapes that do not match, or a non-finite reference.

    Example:
      >>> hypervolume([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]], [4.0, 4.0])
      6.0
    """
    points = _check_points(points)
    reference = np.array(reference, dtype=np.float64).reshape(-1)
    if reference.shape[0] != points.shape[1]:
        raise ValueError(
            f"reference has {reference.shape[0]} values for {points.shape[1]} objectives."
        )
    if not np.all(np.isfinite(reference)):
        raise ValueError(f"reference={reference.tolist()} must be finite.")
    kept = np.all(np.isfinite(points), axis=1) & np.all(points < reference, axis=1)
    return _hypervolume(points[kept], reference)


def summary_losses(objectives: Any, feasible: Any) -> np.ndarray:
    """One loss per row summarizing several objectives: the objective itself when there is
    one, else the non-dominated rank; ``+inf`` for an infeasible or failed row.

    Args:
      objectives: ``[n, k]`` losses.
      feasible: ``[n]`` bool.

    Returns:
      ``np.ndarray [n]`` float64, lower is better.
    """
    objectives = _check_points(objectives)
    objectives = np.where(np.asarray(feasible, bool)[:, None], objectives, np.inf)
    if objectives.shape[1] == 1:
        return np.where(np.isfinite(objectives[:, 0]), objectives[:, 0], np.inf)
    return non_dominated_ranks(objectives)
