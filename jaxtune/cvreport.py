"""Aggregating cross-validation results and choosing a config: rules and report tables.

:func:`best_config` picks by the best mean over folds and seeds or by the one-standard-error
rule (both are :meth:`jaxtune.results.Results.best_config`, reading the metric and mode a
cross-validation recorded); :func:`table` is the ranked markdown table. The small formatting
helpers here are shared by the model-selection and nested tables of :mod:`jaxtune.cv` and
:mod:`jaxtune.nested`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxtune.results import Results

__all__ = [
    "RULES",
    "any_finite_group",
    "best_config",
    "check_rule",
    "config_text",
    "format_value",
    "mean_test_metric",
    "metric_and_mode",
    "table",
    "summary_table",
        "varying_names",
]

#: The selection rules: best mean, or the simplest config within one standard error.
RULES = ("best_mean", "one_standard_error")


def check_rule(rule: str) -> None:
    """Refuses a selection rule other than :data:`RULES` (before anything trains)."""
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} must be one of {RULES}.")


def metric_and_mode(results: Results, metric: str | None, mode: str | None) -> tuple[str, str]:
    """The metric and mode to select by: given, or those a cross-validation recorded.

    Raises:
      ValueError: no ``metric`` given and none in ``results.metadata``.
    """
    if metric is None and "metric" not in results.metadata:
        raise ValueError("results carry no metadata['metric']; pass metric='valid_<name>'.")
    return results.resolve_metric(metric, mode)


def best_config(
    results: Results,
    *,
    rule: str = "best_mean",
    metric: str | None = None,
    mode: str | None = None,
    complexity: Callable[[Mapping[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """The configuration to pick after cross-validation, by best mean or one-standard-error.

    A thin wrapper of :meth:`jaxtune.results.Results.best_config` that reads ``metric`` and
    ``mode`` from the metadata :func:`cross_validate` wrote. The returned dict says which
    rule chose it (``"rule"``).

    ``"best_mean"``: the config with the best mean over its folds and seeds.
    ``"one_standard_error"``: the simplest config whose mean is within one standard error
    (of the best config's mean) of the best mean (Hastie et al., *Elements of Statistical
    Learning*, 7.10). Simplest: smallest ``complexity(config)``, by default the largest
    regularization (``l2``, ``weight_decay``, ``l1``, ``dropout``).

    Args:
      results: cross-validation results.
      rule: ``"best_mean"`` or ``"one_standard_error"``.
      metric: default ``results.metadata["metric"]``.
      mode: default the direction of ``metric`` (:meth:`~jaxtune.results.Results.resolve_metric`).
      complexity: ``config -> sortable``, lower is simpler.

    Returns:
      ``{"rule", "metric", "mode", "config", "mean", "std", "sem", "count", "members",
      "best_mean", "best_sem", "threshold", "num_candidates"}``.
    """
    check_rule(rule)
    metric, mode = metric_and_mode(results, metric, mode)
    return results.best_config(metric, mode, rule=rule, complexity=complexity)


def format_value(value: Any) -> str:
    """A table cell: floats to 4 significant digits (3 in scientific notation), else ``str``."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def config_text(config: Mapping[str, Any], names: Sequence[str]) -> str:
    """``"name=value, ..."`` for ``names`` of ``config`` (``"-"`` for none)."""
    return ", ".join(f"{n}={format_value(config.get(n))}" for n in names) or "-"


def varying_names(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names whose value differs between ``configs`` (all names when none differs)."""
    names = sorted({n for c in configs for n in c})
    varying = [n for n in names if len({repr(c.get(n)) for c in configs}) > 1]
    return varying or names


def mean_test_metric(results: Results, members: Sequence[int], metric: str) -> float:
    """Mean over ``members`` of the test twin of ``metric`` (``valid_x`` -> ``test_x``); NaN
    without test metrics."""
    test_metric = "test_" + metric.partition("_")[2]
    values = [r.metrics.get(test_metric, math.nan) for r in results if r.member_id in members]
    return float(np.mean(values)) if values else math.nan


def table(
    results: Results,
    *,
    metric: str | None = None,
    mode: str | None = None,
    k: int | None = None,
    complexity: Callable[[Mapping[str, Any]], Any] | None = None,
) -> str:
    """A markdown table of the configs ranked by their mean over folds and seeds.

    Columns: rank, the hyperparameters that vary, mean, std and sem of ``metric``, the
    number of members, the mean test metric when the members were evaluated on a test set,
    and which rule picks the row (``best mean``, ``1-SE``).

    Args:
      results: cross-validation results.
      metric: default from the metadata.
      mode: default from the metadata.
      k: show the ``k`` best configs (default all).
      complexity: as in :func:`best_config`.

    Returns:
      The table as a markdown string (no trailing newline).
    """
    metric, mode = metric_and_mode(results, metric, mode)
    groups = results.aggregate(metric, mode)
    mean_pick = results.best_config(metric, mode, rule="best_mean")
    se_pick = results.best_config(metric, mode, rule="one_standard_error", complexity=complexity)
    names = varying_names([g["config"] for g in groups])
    has_test = any(
        ("test_" + metric.partition("_")[2]) in r.metrics for r in results
    )
    header = ["rank", *names, f"mean {metric}", "std", "sem", "members"]
    if has_test:
        header.append("test " + metric.partition("_")[2])
    header.append("chosen by")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, group in enumerate(groups[: k if k is not None else len(groups)], start=1):
        chosen = []
        if group["members"] == mean_pick["members"]:
            chosen.append("best mean")
        if group["members"] == se_pick["members"]:
            chosen.append("1-SE")
        cells = [str(rank), *(format_value(group["config"].get(n)) for n in names),
                 *(format_value(group[stat]) for stat in ("mean", "std", "sem")),
                 str(group["count"])]
        if has_test:
            cells.append(format_value(mean_test_metric(results, group["members"], metric)))
        cells.append(", ".join(chosen))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


summary_table = table


def any_finite_group(results: Results, metric: str, mode: str) -> bool:
    """Whether some config of ``results`` has no failed member (so one can be chosen)."""
    return any(g["num_failed"] == 0 for g in results.aggregate(metric, mode))
