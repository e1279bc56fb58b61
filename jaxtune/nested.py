"""Nested cross-validation: an unbiased estimate of "cross-validate, pick, refit".

Outer folds split the rows into outer-training and outer-test rows. Within each outer training
set, inner k-fold cross-validation picks a config by a rule (:func:`jaxtune.cv.best_config`);
that config is retrained on the whole outer training set and scored on the outer test rows,
which took no part in the choice. The mean outer score estimates how well the *procedure*
(including the selection) generalizes; the best inner mean is optimistically biased by the
choice.

Both stages are index tables over the same rows (:func:`jaxtune.folds.nested_folds`), so the
inner cross-validations of *all* outer folds are one engine call: ``outer x config x seed x
inner`` members on the population axis (each static group one compiled population; the row
tables of every outer/inner pair are padded to a common width). The refits are a second call
of ``outer x seed`` members. Two compiled programs per static group in total, whatever the
number of outer folds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxtune import checks, engine
from jaxtune.cvmembers import (
    MemberLayout,
    check_configs,
    pool_rows,
    resolve_options,
    run_members,
    selection_metric,
    static_names_of,
)
from jaxtune.cvreport import any_finite_group, check_rule, config_text, format_value, varying_names
from jaxtune.data import Dataset, Split
from jaxtune.engine.options import EngineOptions
from jaxtune.folds import Folds, nested_folds
from jaxtune.results import Results
from jaxtune.space import Space
from jaxtune.task import Task

__all__ = ["NestedResult", "nested_cross_validate"]

Config = Mapping[str, Any]


class NestedResult(NamedTuple):
    """The outcome of :func:`nested_cross_validate`.

    Attributes:
      inner: every inner member (``outer x config x seed x inner fold``); ``fold`` is
        ``outer * num_inner_folds + inner`` and ``extra`` holds ``outer_fold``,
        ``inner_fold`` and ``config_index``.
      outer: the refits: the config chosen in each outer fold trained on the whole outer
        training rows (one member per outer fold and seed); their ``valid_*`` metrics are the
        scores on the outer fold's held-out rows, ``fold`` is the outer fold.
      selections: per outer fold, the dict of :func:`best_config` on its inner results, with
        ``outer_fold``, ``config_index``, ``failed`` and ``outer_score`` (mean over seeds of
        the refit's score) added. In an outer fold where every config has a diverged or
        non-finite inner member, ``failed`` is True, ``config`` and ``config_index`` are None,
        the statistics and ``outer_score`` are NaN, and that fold has no refit.
      mean: the nested estimate: mean of the outer scores over outer folds and seeds; NaN
        (as ``std`` and ``sem``) when some outer fold failed or a refit diverged.
      std: their sample standard deviation.
      sem: ``std / sqrt(count)``.
      rule: the inner selection rule.
      metric: the metric.
      table: a markdown table, one line per outer fold.
    """

    inner: Results
    outer: Results
    selections: list[dict[str, Any]]
    mean: float
    std: float
    sem: float
    rule: str
    metric: str
    table: str



def nested_cross_validate(
    task: Task,
    data: Dataset | Split,
    configs: Sequence[Config],
    *,
    num_steps: int | None = None,
    batch_size: int | None = 128,
    num_outer_folds: int = 5,
    num_inner_folds: int = 3,
    stratified: bool = True,
    rule: str = "best_mean",
    complexity: Callable[[Mapping[str, Any]], Any] | None = None,
    seeds: Sequence[int] = (0,),
    seed: int = 0,
    fold_seed: int | None = None,
    standardize: bool = True,
    metric: str | None = None,
    mode: str | None = None,
    space: Space | None = None,
    static_names: Sequence[str] | None = None,
    steps_per_segment: int = 50,
    evaluate_test: bool = True,
    on_segment: Callable[[engine.SegmentReport], None] | None = None,
    engine_options: Mapping[str, Any] | None = None,
    options: EngineOptions | None = None,
) -> NestedResult:
    """Nested cross-validation (see the module docstring): inner CV picks, the refit scores.

    Args:
      task, data, configs, seeds, seed, standardize, metric, mode, space, static_names,
        steps_per_segment, on_segment: as in :func:`jaxtune.cv.cross_validate` (a Split's
        test rows are only evaluated by the refits, when ``evaluate_test``).
      num_steps: steps per member (inner members and refits alike).
      batch_size: minibatch rows or None for full batch.
      num_outer_folds: outer folds.
      num_inner_folds: inner folds within each outer training set.
      stratified: stratify outer and inner folds on the labels (classification).
      rule: the inner selection rule, ``"best_mean"`` or ``"one_standard_error"``.
      complexity: for ``"one_standard_error"``, see :func:`jaxtune.cv.best_config`.
      fold_seed: seed of the fold shuffles (default ``seed``).
      evaluate_test: evaluate the refits on a Split's test rows.
      engine_options: more engine options by name (and ``checkpoint``/``resume``).
      options: an :class:`~jaxtune.engine.options.EngineOptions` instead of the keywords.

    Returns:
      :class:`NestedResult`.
    """
    check_rule(rule)
    configs, seeds = check_configs(task, data, configs, seeds, seed, space)
    rows = pool_rows(data)
    labels = rows.split.y_train if (rows.split.kind == "classification" and stratified) else None
    outer, inner = nested_folds(rows.num_rows, num_outer_folds, num_inner_folds, labels=labels,
                                seed=seed if fold_seed is None else fold_seed)
    metric, mode = selection_metric(task, metric, mode)
    run_options, run_keywords = resolve_options(
        options, engine_options, num_steps=num_steps, batch_size=batch_size,
        steps_per_segment=steps_per_segment, static_names=static_names_of(space, static_names),
        standardize=standardize, evaluate_test=evaluate_test, on_segment=on_segment,
    )
    # The refit trains only the chosen configs: every config's optimizer/schedule names count.
    run_options = run_options.replace(
        sweep_reads=run_options.sweep_reads | checks.optimizer_reads(configs))
    run = functools.partial(run_members, task, rows.split, seed=seed, run_keywords=run_keywords)
    inner_results = _inner_stage(run, configs, seeds, outer, inner, num_inner_folds,
                                 run_options.replace(evaluate_test=False), metric, mode)
    selections = [_choose(inner_results, o, metric, mode, rule, complexity)
                  for o in range(outer.num_folds)]
    outer_results, refit = _refit_stage(run, configs, seeds, outer, selections, run_options,
                                        metric, mode)
    return _nested_result(inner_results, outer_results, selections, refit, configs, rule,
                          metric)


def _inner_stage(run, configs, seeds, outer: Folds, inner: Folds, num_inner_folds: int,
                 options: EngineOptions, metric: str, mode: str) -> Results:
    """Stage 1: every inner CV of every outer fold, as one population."""
    members = [(o, c, s, i) for o in range(outer.num_folds) for c in range(len(configs))
               for s in seeds for i in range(num_inner_folds)]
    fold_ids = [o * num_inner_folds + i for o, _, _, i in members]
    layout = MemberLayout([configs[c] for _, c, _, _ in members], [s for _, _, s, _ in members],
                          fold_ids, [c for _, c, _, _ in members], inner.member_rows(fold_ids))
    extra = [{"outer_fold": o, "inner_fold": i, "config_index": c} for o, c, _, i in members]
    results = run(layout, options, extra)
    return Results(list(results), {**results.metadata, "metric": metric, "mode": mode})


def _choose(inner_results: Results, outer_fold: int, metric: str, mode: str, rule: str,
            complexity) -> dict[str, Any]:
    """Stage 2a: the config chosen in one outer fold by ``rule`` on its inner results."""
    part = inner_results.filter(predicate=lambda r: r.extra["outer_fold"] == outer_fold)
    if not any_finite_group(part, metric, mode):
        # Every config failed in this outer fold: nothing to refit, the fold scores NaN.
        return {
            "rule": rule, "metric": metric, "mode": mode, "config": None,
            "mean": math.nan, "std": math.nan, "sem": math.nan, "count": len(part),
            "members": [r.member_id for r in part], "best_mean": math.nan,
            "best_sem": math.nan, "threshold": None, "num_candidates": 0,
            "outer_fold": outer_fold, "config_index": None, "failed": True,
        }
    choice = part.best_config(metric, mode, rule=rule, complexity=complexity)
    index = part.rows[[r.member_id for r in part].index(choice["members"][0])].extra[
        "config_index"]
    return {**choice, "outer_fold": outer_fold, "config_index": index, "failed": False}


def _refit_stage(run, configs, seeds, outer: Folds, selections, options: EngineOptions,
                 metric: str, mode: str) -> tuple[Results, list[tuple[int, int]]]:
    """Stage 2b: the chosen config of every outer fold retrained on its outer training rows
    (one member per outer fold and seed), validated on the outer held-out rows."""
    refit = [(o, s) for o in range(outer.num_folds) if not selections[o]["failed"]
             for s in seeds]
    metadata: dict[str, Any] = {}
    rows: list[Any] = []
    if refit:
        index = [selections[o]["config_index"] for o, _ in refit]
        layout = MemberLayout([configs[c] for c in index], [s for _, s in refit],
                              [o for o, _ in refit], index,
                              outer.member_rows([o for o, _ in refit]))
        extra = [{"outer_fold": o, "config_index": c}
                 for (o, _), c in zip(refit, index, strict=True)]
        results = run(layout, options, extra)
        rows, metadata = list(results), results.metadata
    return Results(rows, {**metadata, "metric": metric, "mode": mode}), refit


def _nested_result(inner_results: Results, outer_results: Results, selections, refit,
                   configs, rule: str, metric: str) -> NestedResult:
    """The nested estimate from the refits' outer scores (NaN if some outer fold failed)."""
    scores = np.array([r.score(metric) for r in outer_results], np.float64)
    for o, selection in enumerate(selections):
        mine = [k for k, (oo, _) in enumerate(refit) if oo == o]
        selection["outer_score"] = float(np.mean(scores[mine])) if mine else math.nan
    if any(s["failed"] for s in selections) or not np.all(np.isfinite(scores)):
        mean = std = sem = math.nan  # the procedure failed in some outer fold
    else:
        mean = float(np.mean(scores))
        std = float(np.std(scores, ddof=1)) if scores.size > 1 else math.nan
        sem = std / math.sqrt(scores.size) if scores.size > 1 else math.nan
    text = _nested_table(selections, configs, metric, mean, std, sem)
    return NestedResult(inner_results, outer_results, selections, mean, std, sem, rule, metric,
                        text)


def _nested_table(selections, configs, metric, mean, std, sem) -> str:
    names = varying_names(configs)
    header = ["outer fold", "chosen config", f"inner mean {metric}", "inner sem",
              "outer score"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in selections:
        lines.append("| " + " | ".join([
            str(s["outer_fold"]),
            "every config failed" if s["config"] is None else config_text(s["config"], names),
            format_value(s["mean"]),
            format_value(s["sem"]), format_value(s["outer_score"]),
        ]) + " |")
    optimistic = float(np.mean([s["mean"] for s in selections]))
    lines.append(
        f"| all | - | {format_value(optimistic)} | - | {format_value(mean)} ± {format_value(sem)} "
        f"(std {format_value(std)}) |"
    )
    return "\n".join(lines)
