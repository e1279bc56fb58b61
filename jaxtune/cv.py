"""Cross-validation with the folds on the population axis.

A *fold* is an index table over one array of rows, never a copy of the data. Every member of a
cross-validation is one training run of ``config x seed x fold``; all of them are one call of
:func:`jaxtune.engine.run`, so members of one static group are one compiled population. Each
member carries its fold's training and validation row indices
(:class:`~jaxtune.engine.MemberRows`), samples minibatches from its training rows inside the
compiled step, fits its input standardization on device on its own training rows only, and is
validated on its own held-out rows (weighted means over real rows; the tables are padded).

Which rows are cross-validated:

* a :class:`~jaxtune.data.Dataset`: all of its rows. There is no test set.
* a :class:`~jaxtune.data.Split`: its training and validation rows together (``x_train`` then
  ``x_valid``): cross-validation replaces the single validation split. The test rows stay
  untouched: they are never in a fold, never enter a standardization, never take part in
  selection; every member is evaluated on them at the end (``test_*`` metrics), which is the
  honest estimate for the model finally chosen. Give the split *unstandardized* and keep
  ``standardize=True``: a split standardized beforehand (``jt.standardize``) carries statistics
  of rows that become validation rows of some fold.

Layout of the members of :func:`cross_validate`: config-major, then seed, then fold, i.e.
member ``(c * num_seeds + s) * num_folds + f``. ``MemberResult.fold`` is the fold index (with
``repeats > 1``, ``repeat * num_folds + k``) and ``MemberResult.extra`` holds ``config_index``
and ``repeat``.

Selection aggregates over folds and seeds with :meth:`jaxtune.results.Results.aggregate` (mean,
sample std, ``sem = std / sqrt(count)``) and picks by best mean or by the one-standard-error
rule (:func:`best_config`). :func:`select_model` compares model families (different static
groups, e.g. logistic vs MLP vs CNN) in one sweep; :func:`nested_cross_validate` estimates the
performance of the whole selection procedure with outer folds, running the inner
cross-validations of every outer fold as one population.

Where the parts live (all re-exported here): the fold type and splitters in
:mod:`jaxtune.folds`; the pooled rows, member layout and the engine call in
:mod:`jaxtune.cvmembers`; selection rules and tables in :mod:`jaxtune.cvreport`; nested
cross-validation in :mod:`jaxtune.nested`. Every driver trains through
:func:`jaxtune.engine.run` and takes ``options=EngineOptions(...)`` besides its keywords.

Example::

    import jaxtune as jt
    from jaxtune import cv

    ds = jt.load_dataset("breast_cancer")
    task = jt.classification_task("linear", num_classes=2, input_shape=(30,))
    configs = [{"learning_rate": 0.05, "optimizer": "adam", "l2": l2}
               for l2 in (1e-4, 1e-3, 1e-2)]
    results = cv.cross_validate(task, ds, configs, num_steps=300, batch_size=None)
    print(cv.table(results))
    choice = cv.best_config(results, rule="one_standard_error")
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from jaxtune import engine
from jaxtune import task as task_lib
from jaxtune.cvmembers import (
    CVRows,
    MemberLayout,
    check_configs,
    member_layout,
    pool_rows,
    resolve_options,
    run_members,
    selection_metric,
    static_names_of,
)
from jaxtune.cvreport import (
    any_finite_group,
    best_config,
    check_rule,
    config_text,
    format_value,
    mean_test_metric,
    metric_and_mode,
    summary_table,
    table,
    varying_names,
)
from jaxtune.data import Dataset, Split
from jaxtune.engine.options import EngineOptions
from jaxtune.folds import (
    Folds,
    folds_from_indices,
    holdout,
    kfold,
    make_folds,
    nested_folds,
    repeated_kfold,
    stratified_kfold,
)
from jaxtune.nested import NestedResult, nested_cross_validate
from jaxtune.results import Results
from jaxtune.space import Space
from jaxtune.task import Task

__all__ = [
    "Folds",
    "MemberLayout",
    "ModelSelection",
    "NestedResult",
    "best_config",
    "cross_validate",
    "folds_from_indices",
    "holdout",
    "kfold",
    "make_folds",
    "member_layout",
    "model_switch",
    "nested_cross_validate",
    "nested_folds",
    "repeated_kfold",
    "select_model",
    "stratified_kfold",
    "summary_table",
    "table",
]

Config = Mapping[str, Any]


def cross_validate(
    task: Task,
    data: Dataset | Split,
    configs: Sequence[Config],
    *,
    num_steps: int | None = None,
    batch_size: int | None = 128,
    num_folds: int = 5,
    stratified: bool = True,
    repeats: int = 1,
    folds: Folds | None = None,
    fold_seed: int | None = None,
    seeds: Sequence[int] = (0,),
    seed: int = 0,
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
) -> Results:
    """k-fold cross-validation of every config, all folds and seeds in one engine call.

    Members are ``configs x seeds x folds`` (config-major); each trains on its fold's training
    rows (standardized with their statistics only) and reports ``valid_*`` on its held-out rows.

    Args:
      task, configs: the task every member runs; the configurations to compare.
      data: a :class:`~jaxtune.data.Dataset` (all rows are cross-validated) or a
        :class:`~jaxtune.data.Split` (``x_train`` and ``x_valid`` are; ``x_test`` stays
        held out and is only evaluated at the end, ``test_*``).
      num_steps: optimizer steps per member.
      batch_size: minibatch rows, drawn from the member's fold, or None for full batch.
      num_folds, stratified, repeats: folds per repetition, stratification on the labels
        (classification), repetitions with new shuffles; all ignored with ``folds``.
      folds: explicit :class:`~jaxtune.folds.Folds` over the cross-validated rows.
      fold_seed: seed of the fold shuffle (default: ``seed``).
      seeds, seed: member seeds (each config trains once per seed and fold); the sweep seed
        (member keys derive from it).
      standardize: per-member input standardization fitted on the member's training rows.
      metric, mode: the selection metric (default ``valid_accuracy`` or ``valid_mse``) and
        its direction (default from the task), recorded in the metadata.
      space, static_names: the configs' :class:`~jaxtune.space.Space`, or the static names.
      steps_per_segment: steps per compiled segment (learning-curve resolution).
      evaluate_test, on_segment: evaluate every member on a Split's test rows at the end;
        the progress callback.
      engine_options: more engine options by name (and ``checkpoint``/``resume``).
      options: an :class:`~jaxtune.engine.options.EngineOptions` instead of the keywords.

    Returns:
      :class:`~jaxtune.results.Results`, one row per member (``seed``, ``fold``, ``extra =
      {"config_index", "repeat"}``); ``metadata`` records ``metric``, ``mode``, ``num_folds``,
      ``repeats``, ``fold_seed``, ``seeds``, ``cv_rows`` and ``num_cv_rows``.

    Raises:
      ValueError, TypeError: bad data, folds, configs or engine arguments, before compiling.

    Example:
      >>> res = cross_validate(task, ds, configs, num_steps=50, num_folds=3)  # doctest: +SKIP
    """
    configs, seeds = check_configs(task, data, configs, seeds, seed, space)
    rows = pool_rows(data)
    fold_seed = seed if fold_seed is None else fold_seed
    folds = _folds_of(rows, folds, num_folds, stratified, repeats, fold_seed)
    metric, mode = selection_metric(task, metric, mode)
    run_options, run_keywords = resolve_options(
        options, engine_options, num_steps=num_steps, batch_size=batch_size,
        steps_per_segment=steps_per_segment, static_names=static_names_of(space, static_names),
        standardize=standardize, evaluate_test=evaluate_test, on_segment=on_segment,
    )
    layout = member_layout(configs, seeds, folds)
    results = run_members(task, rows.split, layout, run_options, _extra(layout, folds),
                          seed=seed, run_keywords=run_keywords)
    metadata = _metadata(results, rows, folds, run_options, metric=metric, mode=mode,
                         fold_seed=fold_seed, seeds=seeds, space=space)
    return Results(list(results), metadata)


def _extra(layout: MemberLayout, folds: Folds) -> list[dict[str, int]]:
    """What each member's results record besides the engine's: its config and repetition."""
    return [{"config_index": layout.config_index[i], "repeat": int(folds.repeat[fold])}
            for i, fold in enumerate(layout.folds)]


def _metadata(results: Results, rows: CVRows, folds: Folds, options: EngineOptions, *,
              metric: str, mode: str, fold_seed: int, seeds: list[int],
              space: Space | None) -> dict[str, Any]:
    """The engine's metadata and what a cross-validation records besides."""
    num_repeats = int(folds.repeat.max()) + 1
    metadata = dict(results.metadata)
    metadata.update(
        metric=metric, mode=mode, num_folds=folds.num_folds // num_repeats,
        repeats=num_repeats, fold_seed=int(fold_seed), seeds=seeds,
        cv_rows=rows.source, num_cv_rows=rows.num_rows, standardize=options.standardize,
        num_steps=int(options.num_steps), batch_size=options.batch_size,
    )
    if space is not None:
        metadata["space"] = space.to_dict()
    return metadata


def _folds_of(rows: CVRows, folds: Folds | None, num_folds: int, stratified: bool,
              repeats: int, fold_seed: int) -> Folds:
    """The folds of a cross-validation: given (checked against the rows) or made."""
    if folds is None:
        labels = rows.split.y_train if rows.split.kind == "classification" else None
        folds = make_folds(rows.num_rows, num_folds=num_folds, labels=labels,
                           stratified=stratified, repeats=repeats, seed=fold_seed)
    elif not isinstance(folds, Folds):
        raise TypeError(f"folds must be jaxtune.cv.Folds, got {type(folds).__name__}.")
    if folds.num_rows != rows.num_rows:
        raise ValueError(
            f"folds index {folds.num_rows} rows but {rows.num_rows} rows are cross-validated "
            f"({rows.source}); build the folds over those rows."
        )
    return folds


# --------------------------------------------------------------------------------------------
# Model selection across static groups.


def model_switch(
    models: Mapping[str, str | task_lib.ModelFactory],
    *,
    num_outputs: int,
    input_shape: Sequence[int],
) -> task_lib.ModelFactory:
    """A model factory that picks a model family by the static hyperparameter ``model``.

    Hand it to :func:`~jaxtune.task.classification_task` or
    :func:`~jaxtune.task.regression_task` to compare families (logistic vs MLP vs CNN) in
    one sweep: ``model`` is static, so each family is its own static group (its own
    compiled population) within one engine call.

    Args:
      models: family name -> ``"linear"``, ``"mlp"``, ``"cnn"`` or a factory
        ``hp -> flax.linen.Module``.
      num_outputs: outputs of the model (1 for binary classification and regression).
      input_shape: shape of one example.

    Returns:
      ``hp -> flax.linen.Module``, reading ``hp["model"]``.

    Example:
      >>> factory = model_switch({"logistic": "linear", "mlp": "mlp"}, num_outputs=10,
      ...                        input_shape=(64,))
      >>> type(factory({"model": "mlp", "width": 32})).__name__
      'MLP'
    """
    factories = {
        name: task_lib.model_factory(model, num_outputs, tuple(input_shape))
        for name, model in models.items()
    }

    def factory(hp: Mapping[str, Any]) -> Any:
        name = hp.get("model")
        if name not in factories:
            raise ValueError(f"hp['model'] = {name!r}; choose one of {sorted(factories)}.")
        return factories[name](hp)

    return factory


class ModelSelection(NamedTuple):
    """The outcome of :func:`select_model`.

    Attributes:
      results: every member of the sweep; ``extra["candidate"]`` names its family.
      candidates: one dict per candidate, in the given order: ``name``, ``num_configs``,
        ``config`` (its best config by mean), ``mean``, ``std``, ``sem``, ``count``,
        ``members``, ``test_mean`` (NaN without a test set), ``failed``. A candidate whose
        every config has a diverged or non-finite member is ``failed``: ``config`` is None,
        the statistics are NaN, ``members`` are all its members, and it is never chosen.
      chosen: the chosen candidate's name.
      rule: the rule that chose it.
      metric: the selection metric.
      table: a markdown comparison table.
    """

    results: Results
    candidates: list[dict[str, Any]]
    chosen: str
    rule: str
    metric: str
    table: str


def select_model(
    task: Task,
    data: Dataset | Split,
    candidates: Mapping[str, Sequence[Config]],
    *,
    rule: str = "best_mean",
    metric: str | None = None,
    mode: str | None = None,
    **cv_kwargs: Any,
) -> ModelSelection:
    """Compares model families (or any static choices) by cross-validation, in one sweep.

    Every config of every candidate is cross-validated in one :func:`cross_validate` call
    (different static values are different compiled populations of the same engine call).
    Each candidate is represented by its best config (best mean over folds and seeds); the
    candidates are then compared by ``rule``: ``"best_mean"`` takes the best mean,
    ``"one_standard_error"`` the first candidate in ``candidates`` order (list them simplest
    first) whose mean is within one standard error of the best one's.

    The winner's cross-validated score is optimistic (it was picked on those folds); use
    :func:`nested_cross_validate` for an unbiased estimate, or a Split's test rows.

    Args:
      task: one task serving every candidate (see :func:`model_switch` for several model
        families).
      data: a Dataset or Split (see :func:`cross_validate`).
      candidates: candidate name -> its configs, simplest candidate first.
      rule: ``"best_mean"`` or ``"one_standard_error"``.
      metric: selection metric (default ``valid_accuracy`` / ``valid_mse``).
      mode: ``"max"`` or ``"min"``.
      **cv_kwargs: passed to :func:`cross_validate` (``num_steps``, ``batch_size``,
        ``options``...).

    Returns:
      :class:`ModelSelection`.

    Raises:
      ValueError: for an unknown rule or empty candidates, before training; after training,
        when every candidate failed (see :attr:`ModelSelection.candidates`).
    """
    check_rule(rule)
    if not candidates:
        raise ValueError("candidates is empty.")
    names = list(candidates)
    configs, owner = [], []
    for name in names:
        if not candidates[name]:
            raise ValueError(f"candidate {name!r} has no configs.")
        for config in candidates[name]:
            configs.append(dict(config))
            owner.append(name)
    results = cross_validate(task, data, configs, metric=metric, mode=mode, **cv_kwargs)
    results = Results(
        [dataclasses.replace(r, extra={**r.extra, "candidate": owner[r.extra["config_index"]]})
         for r in results],
        results.metadata,
    )
    metric, mode = metric_and_mode(results, metric, mode)
    summaries = [_candidate_summary(results, name, len(candidates[name]), metric, mode)
                 for name in names]
    return _choose_candidate(results, summaries, rule, metric, mode)


def _candidate_summary(results: Results, name: str, num_configs: int, metric: str,
                       mode: str) -> dict[str, Any]:
    """One candidate, represented by its best config by mean (or failed)."""
    part = results.filter(predicate=lambda r: r.extra["candidate"] == name)
    if not any_finite_group(part, metric, mode):
        # Every config of this candidate failed: it is reported, never chosen.
        return {
            "name": name, "num_configs": num_configs, "config": None,
            "mean": math.nan, "std": math.nan, "sem": math.nan, "count": len(part),
            "members": [r.member_id for r in part], "test_mean": math.nan,
            "failed": True,
        }
    pick = part.best_config(metric, mode, rule="best_mean")
    return {
        "name": name, "num_configs": num_configs, "config": pick["config"],
        "mean": pick["mean"], "std": pick["std"], "sem": pick["sem"],
        "count": pick["count"], "members": pick["members"],
        "test_mean": mean_test_metric(results, pick["members"], metric), "failed": False,
    }


def _choose_candidate(results: Results, summaries: list[dict[str, Any]], rule: str,
                      metric: str, mode: str) -> ModelSelection:
    """The candidate ``rule`` picks among ``summaries`` (failed ones never)."""
    if all(s["failed"] for s in summaries):
        raise ValueError(
            f"every config of every candidate has a diverged or non-finite {metric!r} member; "
            "no candidate can be chosen (lower the learning rates or check the data)."
        )
    sign = 1.0 if mode == "max" else -1.0
    best = max(summaries, key=lambda s: sign * s["mean"] if math.isfinite(s["mean"]) else -math.inf)
    chosen = best
    if rule == "one_standard_error":
        sem = 0.0 if math.isnan(best["sem"]) else best["sem"]
        chosen = next(s for s in summaries if math.isfinite(s["mean"])
                      and sign * (best["mean"] - s["mean"]) <= sem)
    text = _selection_table(summaries, best["name"], chosen["name"], rule, metric)
    return ModelSelection(results, summaries, chosen["name"], rule, metric, text)


def _selection_table(summaries, best_name, chosen_name, rule, metric) -> str:
    has_test = any(math.isfinite(s["test_mean"]) for s in summaries)
    header = ["candidate", "configs", "best config", f"mean {metric}", "std", "sem", "members"]
    if has_test:
        header.append("test " + metric.partition("_")[2])
    header.append("chosen")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    names = varying_names([s["config"] for s in summaries if s["config"] is not None] + [{}])
    for s in summaries:
        shown = [n for n in names if n in (s["config"] or {}) and n != "model"]
        mark = ["every config failed"] if s["config"] is None else []
        if s["name"] == best_name:
            mark.append("best mean")
        if s["name"] == chosen_name:
            mark.append(f"chosen ({rule})")
        shown_config = "-" if s["config"] is None else config_text(s["config"], shown)
        cells = [s["name"], str(s["num_configs"]), shown_config,
                 *(format_value(s[stat]) for stat in ("mean", "std", "sem")), str(s["count"])]
        if has_test:
            cells.append(format_value(s["test_mean"]))
        cells.append(", ".join(mark))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
