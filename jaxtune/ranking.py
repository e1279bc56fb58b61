"""Ranking and aggregation rules of a sweep's results (host-only, numpy).

:class:`jaxtune.results.Results` resolves the metric and its direction, then calls these
functions on its rows: :func:`rank` orders members, :func:`aggregate` groups them by
configuration over seeds and folds, :func:`choose_config` applies ``"best_mean"`` or the
one-standard-error rule to the groups.

Shared rule: a member is *eligible* for a metric when it did not diverge, its value is finite
and it is not marked infeasible (``extra["feasible"] is False``, written by a sweep with
constraints); NaN/inf, a diverged or an infeasible member is never best. Ties go to the smaller
``member_id``. :func:`pareto_rows` applies the same rule to several metrics at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxtune import pareto
from jaxtune.member_result import MemberResult, config_key

__all__ = [
    "CONFIG_RULES",
    "FEASIBLE",
    "REGULARIZATION_HPARAMS",
    "ROW_RULES",
    "Ranking",
    "aggregate",
    "better_key",
    "choose_config",
    "default_complexity",
    "is_feasible",
    "pareto_rows",
    "rank",
    "value",
]

#: The ``extra`` key of a row that a sweep with constraints sets: ``True`` or ``False``.
FEASIBLE = "feasible"

#: Hyperparameters that make a model *simpler* the larger they are, in the order the default
#: complexity of :meth:`jaxtune.results.Results.best_config` compares them.
REGULARIZATION_HPARAMS = ("l2", "weight_decay", "l1", "dropout")
#: The rules :meth:`jaxtune.results.Results.best` accepts.
ROW_RULES = ("best", "best_mean", "one_standard_error")
#: The rules :meth:`jaxtune.results.Results.best_config` accepts.
CONFIG_RULES = ("best_mean", "one_standard_error")


class Ranking(NamedTuple):
    """Members ranked by one metric.

    Attributes:
        metric: The metric ranked by.
        mode: ``"max"`` or ``"min"``.
        eligible: The eligible members, best first.
        rest: The other members (diverged or non-finite), in ``member_id`` order.
    """

    metric: str
    mode: str
    eligible: list[MemberResult]
    rest: list[MemberResult]


def better_key(value: float, mode: str) -> float:
    """Sort key of a metric value: smaller is better.

    Args:
        value: The metric value.
        mode: ``"max"`` if higher is better, ``"min"`` if lower is better.

    Returns:
        ``-value`` for ``"max"``, else ``value``.
    """
    return -value if mode == "max" else value


def default_complexity(config: Mapping[str, Any]) -> tuple[float, ...]:
    """Default complexity of a config for the one-standard-error rule (lower is simpler).

    More regularization makes a simpler model, so the key is the negated strengths of
    :data:`REGULARIZATION_HPARAMS` (``l2``, ``weight_decay``, ``l1``, ``dropout``), compared
    lexicographically in that order; an absent or non-numeric one counts as 0.

    Args:
        config: A hyperparameter configuration.

    Returns:
        A tuple; the config with the smallest tuple is the simplest.
    """
    key = []
    for name in REGULARIZATION_HPARAMS:
        value = config.get(name, 0.0)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        key.append(-float(value) if numeric and math.isfinite(value) else 0.0)
    return tuple(key)


def is_feasible(row: MemberResult) -> bool:
    """Whether ``row`` is not marked infeasible (rows of a sweep without constraints are)."""
    return row.extra.get(FEASIBLE, True) is not False


def value(row: MemberResult, metric: str) -> float:
    """``row.score(metric)``, NaN for an infeasible row: the value every ranking rule uses."""
    return row.score(metric) if is_feasible(row) else math.nan


def pareto_rows(rows: Sequence[MemberResult], metrics: Sequence[str],
                modes: Sequence[str]) -> list[MemberResult]:
    """The rows no other row dominates in ``metrics`` (:func:`jaxtune.pareto.non_dominated`).

    A row with a non-finite value (or diverged, or infeasible) is never on the front and never
    dominates; equal rows are all on it.

    Returns:
        The front, ordered by the first metric (best first), then ``member_id``.
    """
    values = np.array([[value(row, m) for m in metrics] for row in rows], np.float64)
    losses = pareto.as_losses(values.reshape(len(rows), len(metrics)), modes)
    front = [row for row, keep in zip(rows, pareto.non_dominated(losses), strict=True) if keep]
    front.sort(key=lambda row: (better_key(row.score(metrics[0]), modes[0]), row.member_id))
    return front


def rank(rows: Sequence[MemberResult], metric: str, mode: str) -> Ranking:
    """Ranks members by a (resolved, known) metric.

    Args:
        rows: The members.
        metric: The metric to rank by.
        mode: ``"max"`` or ``"min"``.

    Returns:
        The :class:`Ranking`.
    """
    eligible = [row for row in rows if math.isfinite(value(row, metric))]
    eligible.sort(key=lambda row: (better_key(row.score(metric), mode), row.member_id))
    ids = {row.member_id for row in eligible}
    rest = sorted(
        (row for row in rows if row.member_id not in ids), key=lambda row: row.member_id
    )
    return Ranking(metric, mode, eligible, rest)


def aggregate(
    rows: Sequence[MemberResult], metric: str, mode: str, by: Sequence[str] | None
) -> list[dict[str, Any]]:
    """Groups members by configuration (or by the ``by`` subset) and summarizes ``metric``.

    See :meth:`jaxtune.results.Results.aggregate` for the statistics and the failure rule.

    Args:
        rows: The members.
        metric: The (resolved, known) metric.
        mode: ``"max"`` or ``"min"``.
        by: Hyperparameters to group by (already checked), or ``None`` for the whole config.

    Returns:
        One dict per group, best first.
    """
    groups: dict[str, list[MemberResult]] = {}
    configs: dict[str, dict[str, Any]] = {}
    for row in rows:
        config = dict(row.config) if by is None else {n: row.config.get(n) for n in by}
        key = config_key(config)
        groups.setdefault(key, []).append(row)
        configs.setdefault(key, config)
    summaries = []
    for key, members in groups.items():
        values = np.array([value(row, metric) for row in members], dtype=np.float64)
        count = len(members)
        num_failed = int(np.sum(~np.isfinite(values)))
        mean = std = sem = math.nan
        if num_failed == 0:
            mean = float(np.mean(values))
            if count > 1:
                std = float(np.std(values, ddof=1))
                sem = std / math.sqrt(count)
        summaries.append(
            {
                "config": configs[key],
                "mean": mean,
                "std": std,
                "sem": sem,
                "count": count,
                "num_failed": num_failed,
                "members": [row.member_id for row in members],
            }
        )
    summaries.sort(
        key=lambda s: (
            s["num_failed"] > 0,
            0.0 if s["num_failed"] else better_key(s["mean"], mode),
            min(s["members"]),
        )
    )
    return summaries


def choose_config(
    groups: Sequence[Mapping[str, Any]],
    metric: str,
    mode: str,
    rule: str,
    complexity: Callable[[Mapping[str, Any]], Any] | None,
) -> dict[str, Any]:
    """Picks a group of :func:`aggregate` by ``"best_mean"`` or ``"one_standard_error"``.

    See :meth:`jaxtune.results.Results.best_config` for the rules and the returned keys.

    Args:
        groups: The output of :func:`aggregate`, best first.
        metric: The metric the groups summarize.
        mode: ``"max"`` or ``"min"``.
        rule: One of :data:`CONFIG_RULES` (already checked).
        complexity: ``config -> sortable``, lower is simpler; default :func:`default_complexity`.

    Returns:
        The choice, as :meth:`jaxtune.results.Results.best_config` documents it.

    Raises:
        ValueError: When every group failed.
    """
    ok = [group for group in groups if group["num_failed"] == 0]
    if not ok:
        raise ValueError(
            f"every configuration has a diverged or non-finite {metric!r} member; "
            "no configuration can be chosen"
        )
    best = ok[0]
    chosen, threshold, candidates = best, None, [best]
    if rule == "one_standard_error":
        complexity = default_complexity if complexity is None else complexity
        sem = 0.0 if math.isnan(best["sem"]) else best["sem"]
        if mode == "max":
            threshold = best["mean"] - sem
            candidates = [g for g in ok if g["mean"] >= threshold]
        else:
            threshold = best["mean"] + sem
            candidates = [g for g in ok if g["mean"] <= threshold]
        chosen = min(
            candidates,
            key=lambda g: (
                complexity(g["config"]),
                better_key(g["mean"], mode),
                min(g["members"]),
            ),
        )
    return {
        "rule": rule,
        "metric": metric,
        "mode": mode,
        "config": dict(chosen["config"]),
        "mean": chosen["mean"],
        "std": chosen["std"],
        "sem": chosen["sem"],
        "count": chosen["count"],
        "members": list(chosen["members"]),
        "best_mean": best["mean"],
        "best_sem": best["sem"],
        "threshold": threshold,
        "num_candidates": len(candidates),
    }
