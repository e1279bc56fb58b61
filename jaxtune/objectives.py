"""Several metrics in the schedulers: one order of members, NSGA-II's, shared by all of them.

Successive halving, Hyperband, PBT, PB2 and early stopping compare members (who is promoted
at a rung, who copies whom, which completed member keeps its slot). With one metric they
compare its values. With several metrics (``metric=[...], mode=[...]``) and constraints
(``constraints=``, as :func:`jaxtune.tune` takes them) they all use one rule, the order of
NSGA-II (Deb et al. 2002, "A fast and elitist multiobjective genetic algorithm: NSGA-II"),
which is also what Optuna's multi-objective samplers sort by:

1. **Feasible members first.** A member is feasible when its constraints hold
   (:meth:`~jaxtune.contracts.Constraints.violations` all ``<= 0``). Infeasible members come
   after every feasible one, ordered by their total violation (the sum of the positive
   violations: the least infeasible first; Deb's constrained domination).
2. **Non-dominated rank.** Among feasible members, rank 0 is the Pareto front of the members
   compared, rank 1 the front of the rest, and so on (:func:`jaxtune.pareto.non_dominated_ranks`).
   A member with a non-finite value (diverged, not alive) has rank ``inf``: after every finite
   feasible member.
3. **Crowding distance**, larger first, within a rank: for each metric, the members of the
   front sorted by it; the ones at its extremes get ``inf``, the others the gap between their
   neighbours divided by the front's extent; summed over the metrics (:func:`crowding_distances`).
   A metric on which the front does not vary adds nothing, so with one metric equal values tie.
4. **Ties** keep the members' order (slot or arrival order): the sort is stable.

With one metric and no constraints this is exactly the order of the metric's values (ties by
position), so single-metric sweeps run as before, bit for bit.

:func:`num_ahead` counts, for every member, the members strictly ahead of it (ties do not
count): ASHA promotes a member whose count is below ``floor(n / eta)`` of its rung's ``n``
records. :func:`best_first` sorts: PBT's top and bottom fractions, the incumbent.

This module imports only the contracts and :mod:`jaxtune.pareto`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxtune import pareto
from jaxtune.contracts import (
    Constraints,
    Outcomes,
    Strategy,
    check_constraints,
    selection_mode,
    selections,
)

__all__ = ["Objectives", "best_first", "crowding_distances", "num_ahead", "order_keys",
           "told_scores", "violation_totals"]


class Objectives(NamedTuple):
    """What a scheduler compares members by: metrics, their directions, constraints.

    Attributes:
      metrics: the metric names, e.g. ``("valid_accuracy", "num_params")``.
      modes: ``"max"`` or ``"min"`` per metric.
      constraints: the feasibility rule, or ``None``.
    """

    metrics: tuple[str, ...]
    modes: tuple[str, ...]
    constraints: Constraints | None = None

    @classmethod
    def of(cls, metric: str | Sequence[str] | None, mode: Any = None, constraints: Any = None,
           *, metric_modes: Mapping[str, str] | None = None,
           kind: str | None = None) -> Objectives:
        """A scheduler's ``metric``/``mode``/``constraints`` arguments, checked.

        ``metric`` is one name or several (``mode``: one per metric, or ``None`` for each
        metric's own), as :func:`jaxtune.contracts.selections`; ``constraints`` as
        :func:`jaxtune.contracts.check_constraints`.

        Raises:
          TypeError, ValueError: as those two functions.
        """
        if isinstance(metric, str) and (mode is None or isinstance(mode, str)) and (
                metric_modes is None and kind is None):
            # A scheduler built on its own (no task): the name says the direction.
            metrics, modes = (metric,), (selection_mode(metric, mode),)
        else:
            metrics, modes = selections(metric, mode, metric_modes=metric_modes, kind=kind)
        return cls(tuple(metrics), tuple(modes), check_constraints(constraints, metric_modes))

    @property
    def single(self) -> bool:
        """One metric and no constraints: the order is that of the metric's values."""
        return len(self.metrics) == 1 and self.constraints is None

    def reported(self) -> list[str]:
        """Every metric a scheduler reads: the objectives, then the constraints' bounds."""
        names = list(self.metrics)
        if self.constraints is not None:
            names += [name for name, _, _ in self.constraints.bounds if name not in names]
        return names

    def check_reported(self, names: Iterable[str]) -> None:
        """Raises ``ValueError`` naming a metric the task does not report (a view's
        ``metrics`` keys)."""
        names = set(names)
        for name in self.reported():
            if name not in names:
                raise ValueError(
                    f"metric={name!r} is not reported by the task; choose one of "
                    f"{sorted(names)}."
                )

    def losses(self, metrics: Mapping[str, Any], alive: Any = None) -> np.ndarray:
        """``[n, k]`` float64 losses (each metric negated when maximized); ``+inf`` in every
        column of a member with a non-finite value or that is not ``alive``."""
        columns = []
        for name, mode in zip(self.metrics, self.modes, strict=True):
            values = np.asarray(metrics[name], np.float64)
            columns.append(-values if mode == "max" else values)
        points = np.stack(columns, axis=1)
        failed = ~np.all(np.isfinite(points), axis=1)
        if alive is not None:
            failed |= ~np.asarray(alive, bool)
        points[failed] = np.inf
        return points

    def violations(self, metrics: Mapping[str, Any], alive: Any = None) -> np.ndarray:
        """``[n, c]`` float64 constraint violations per member (``<= 0`` where satisfied;
        ``+inf`` for a member that is not ``alive``); ``c = 0`` without constraints."""
        num = len(np.asarray(metrics[self.metrics[0]]))
        if self.constraints is None:
            return np.zeros((num, 0))
        rows = np.stack([
            self.constraints.violations({k: float(np.asarray(v)[i]) for k, v in metrics.items()})
            for i in range(num)])
        if alive is not None:
            rows[~np.asarray(alive, bool)] = np.inf
        return rows

    def describe(self) -> dict[str, Any]:
        """The metadata of a sweep with several metrics or constraints (else ``{}``)."""
        described: dict[str, Any] = {}
        if len(self.metrics) > 1:
            described.update(metrics=list(self.metrics), modes=list(self.modes))
        if self.constraints is not None:
            described["constraints"] = self.constraints.describe()
        return described


def violation_totals(violations: Any) -> np.ndarray:
    """``[n]`` the sum of each row's positive violations: ``0`` for a feasible row."""
    violations = np.asarray(violations, np.float64)
    if violations.ndim == 1:
        return np.maximum(violations, 0.0)
    return np.sum(np.maximum(violations, 0.0), axis=1)


def crowding_distances(points: Any) -> np.ndarray:
    """NSGA-II's crowding distance of each point of one front (Deb et al. 2002).

    For each column: the points sorted by it (stable), the ones at its minimum or maximum get
    ``inf``, every other one ``(next - previous) / (max - min)``; a column with ``max ==
    min`` (or a non-finite extent) adds nothing. The distances are summed over the columns.

    Args:
      points: ``[n, k]`` losses of the points of one front.

    Returns:
      ``np.ndarray [n]`` float64, ``>= 0`` (larger: a less crowded point).

    Example:
      >>> crowding_distances([[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]]).tolist()
      [inf, 1.5, 1.25, inf]
    """
    points = np.asarray(points, np.float64)
    distance = np.zeros(len(points))
    for column in points.T:
        low, high = column.min(initial=np.inf), column.max(initial=-np.inf)
        extent = high - low
        if not np.isfinite(extent) or extent <= 0.0:
            continue
        order = np.argsort(column, kind="stable")
        gaps = np.zeros(len(points))
        gaps[order[1:-1]] = (column[order[2:]] - column[order[:-2]]) / extent
        distance += gaps
        distance[(column == low) | (column == high)] = np.inf
    return distance


def order_keys(points: Any, violations: Any = None) -> np.ndarray:
    """``[n, 3]`` the sort keys of the rule above: ``(infeasible, rank or total violation,
    -crowding distance)``, smaller first.

    Args:
      points: ``[n, k]`` losses (lower is better; a non-finite row has rank ``inf``).
      violations: ``[n]`` total violations or ``[n, c]`` violations (``None``: all feasible).
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2:
        raise ValueError(f"points must be 2-D [num, num_objectives], got {points.shape}.")
    num = len(points)
    totals = np.zeros(num) if violations is None else violation_totals(violations)
    infeasible = totals > 0.0
    keys = np.zeros((num, 3))
    keys[:, 0] = infeasible
    keys[infeasible, 1] = totals[infeasible]
    feasible = np.flatnonzero(~infeasible)
    if len(feasible) == 0:
        return keys
    ranks = pareto.non_dominated_ranks(points[feasible])
    keys[feasible, 1] = ranks
    for rank in np.unique(ranks[np.isfinite(ranks)]):
        front = feasible[ranks == rank]
        keys[front, 2] = -crowding_distances(points[front])
    return keys


def best_first(points: Any, violations: Any = None) -> np.ndarray:
    """``[n]`` int: the indices of ``points`` best first (the rule above; ties by index).

    Example:
      >>> best_first([[1.0, 3.0], [2.0, 2.0], [3.0, 3.0], [3.0, 1.0]]).tolist()
      [0, 3, 1, 2]
    """
    keys = order_keys(points, violations)
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    return np.lexsort((np.arange(len(keys)), keys[:, 2], keys[:, 1], keys[:, 0]))


def num_ahead(points: Any, violations: Any = None, rows: Any = None) -> np.ndarray:
    """For each point (or each of ``rows``), how many points are strictly ahead of it in the
    order (a point tied with it is not ahead). With one column and no violations, the number
    of strictly smaller values.

    Args:
      points: ``[n, k]`` losses.
      violations: ``[n]`` totals or ``[n, c]`` (``None``: all feasible).
      rows: the indices to count for (default: every point).

    Returns:
      ``np.ndarray [len(rows)]`` int.

    Example:
      >>> num_ahead([[1.0], [3.0], [1.0], [2.0]]).tolist()
      [0, 3, 0, 2]
    """
    points = np.asarray(points, np.float64)
    rows = np.arange(len(points)) if rows is None else np.asarray(rows, np.int64)
    totals = None if violations is None else violation_totals(violations)
    if points.ndim == 2 and points.shape[1] == 1 and (totals is None or not np.any(totals > 0)):
        column = points[:, 0]  # one metric: the values themselves (no n^2 ranking)
        return np.asarray([int(np.sum(column < column[i])) for i in rows], np.int64)
    keys = order_keys(points, totals)
    ahead = np.zeros(len(rows), np.int64)
    for out, i in enumerate(rows):
        key = keys[i]
        earlier = (keys[:, 0] < key[0]) | ((keys[:, 0] == key[0]) & (
            (keys[:, 1] < key[1]) | ((keys[:, 1] == key[1]) & (keys[:, 2] < key[2]))))
        ahead[out] = int(np.sum(earlier))
    return ahead


def told_scores(strategy: Strategy, objectives: Objectives, points: np.ndarray,
                violations: np.ndarray) -> Any:
    """What a scheduler tells its strategy about members: an :class:`Outcomes` when the
    strategy takes them and there are several metrics or constraints; else one loss per
    member, the first metric's (``+inf`` for an infeasible member)."""
    points = np.asarray(points, np.float64).reshape(-1, len(objectives.metrics))
    violations = np.asarray(violations, np.float64).reshape(len(points), -1)
    if not objectives.single and strategy.accepts_outcomes:
        return Outcomes(points, violations)
    scores = points[:, 0].copy()
    scores[violation_totals(violations) > 0.0] = np.inf
    return scores
