"""Cross-validation with the folds on the population axis.

A *fold* is an index table over one array of rows, never a copy of the data. Every member of a
cross-validation is one training run of ``config x seed x fold``; all of them are one call of
:func:`jaxtune.engine.train`, so members of one static group are one compiled population. Each
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

import numpy as np

from jaxtune import checks, contracts, engine, limits
from jaxtune import data as data_lib
from jaxtune import task as task_lib
from jaxtune.data import Dataset, Split
from jaxtune.engine import MemberRows
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
from jaxtune.results import Results
from jaxtune.space import Space
from jaxtune.task import Task

__all__ = [
    "Folds",
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
_RULES = ("best_mean", "one_standard_error")


# --------------------------------------------------------------------------------------------
# The rows being cross-validated.


class _Pool(NamedTuple):
    split: Split  # x_train/y_train: the cross-validated rows; x_test/y_test: untouched test
    source: str


def _pool(data: Dataset | Split) -> _Pool:
    """The engine's Split for cross-validation: every CV row in ``x_train``.

    ``x_valid`` is a one-row placeholder: with member row tables the engine validates each
    member on its own held-out rows of ``x_train`` and never reads ``x_valid``.
    """
    if isinstance(data, Dataset):
        data_lib.check_arrays(data.x, data.y, data.kind, data.num_classes)
        num_classes = data.num_classes
        if data.kind == "classification" and num_classes is None:
            num_classes = max(int(np.max(data.y)) + 1, 2)
        x, y = np.asarray(data.x), np.asarray(data.y)
        x_test, y_test = x[:0], y[:0]
        kind, name, source = data.kind, data.name, "dataset"
    elif isinstance(data, Split):
        x = np.concatenate([data.x_train, data.x_valid], axis=0)
        y = np.concatenate([data.y_train, data.y_valid], axis=0)
        x_test, y_test = data.x_test, data.y_test
        kind, name, num_classes, source = data.kind, data.name, data.num_classes, "train+valid"
    else:
        raise TypeError(
            f"data must be a jaxtune Dataset or Split, got {type(data).__name__}; use "
            "jt.load_dataset(...) or jt.Dataset(x, y, kind, num_classes, name)."
        )
    split = Split(x, y, x[:1], y[:1], x_test, y_test, kind, num_classes, name)
    return _Pool(split, source)


def _selection(task: Task, metric: str | None, mode: str | None) -> tuple[str, str]:
    """The checked selection metric (default from the task) and its mode."""
    return contracts.selection(metric, mode, metric_modes=task.metric_modes, kind=task.kind)


class MemberLayout(NamedTuple):
    """Members ``config x seed x fold`` of a cross-validation, config-major.

    Attributes:
      configs: one config per member.
      member_seeds: ``[num_members]`` seeds.
      folds: ``[num_members]`` fold indices.
      config_index: ``[num_members]`` index of each member's config in the given list.
      member_rows: the per-member row tables.
    """

    configs: list[dict[str, Any]]
    member_seeds: list[int]
    folds: list[int]
    config_index: list[int]
    member_rows: MemberRows


def member_layout(configs: Sequence[Config], seeds: Sequence[int], folds: Folds) -> MemberLayout:
    """Lays out ``configs x seeds x folds`` as members (config-major, then seed, then fold).

    Args:
      configs: the configurations.
      seeds: member seeds.
      folds: the folds.

    Returns:
      :class:`MemberLayout` for :func:`jaxtune.engine.train`.
    """
    member_configs, member_seeds, member_folds, config_index = [], [], [], []
    for c, config in enumerate(configs):
        for s in seeds:
            for f in range(folds.num_folds):
                member_configs.append(dict(config))
                member_seeds.append(int(s))
                member_folds.append(f)
                config_index.append(c)
    return MemberLayout(
        member_configs, member_seeds, member_folds, config_index,
        folds.member_rows(member_folds),
    )


def _static_names(space: Space | None, static_names: Sequence[str] | None):
    if space is not None and static_names is not None:
        raise ValueError("give space or static_names, not both.")
    if space is not None:
        return space.static_names
    return static_names


def _check_configs(task: Task, data: Any, configs: Sequence[Config], seeds: Sequence[int],
                   seed: int, space: Space | None) -> tuple[list, list[int]]:
    """The checks every cross-validation runs first (arguments, seeds, a Space's ranges)."""
    checks.check_task_and_data(task, data, "data")
    checks.check_seed("seed", seed)
    if space is not None:
        checks.check_space_ranges(space, task)
    configs = [dict(c) for c in configs]
    if not configs:
        raise ValueError("configs is empty: give at least one configuration.")
    if isinstance(seeds, str | int):
        raise TypeError(f"seeds: got {seeds!r}; give a sequence of ints, e.g. seeds=(0, 1).")
    seeds = [checks.check_seed(f"seeds[{i}]", s, limits.MAX_MEMBER_SEED)
             for i, s in enumerate(seeds)]
    if not seeds:
        raise ValueError("seeds is empty: give at least one member seed, e.g. seeds=(0,).")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} repeat a seed; members would be identical.")
    return configs, seeds


def cross_validate(
    task: Task,
    data: Dataset | Split,
    configs: Sequence[Config],
    *,
    num_steps: int,
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
) -> Results:
    """k-fold cross-validation of every config, all folds and seeds in one engine call.

    Members are ``configs x seeds x folds`` (config-major). Each member trains on its fold's
    training rows, standardizes its inputs with statistics of those rows only (fitted on
    device, when ``standardize``), and reports ``valid_*`` metrics on its fold's held-out
    rows. With a :class:`~jaxtune.data.Split`, the training and validation rows are
    cross-validated and the test rows are only evaluated at the end (``test_*``).

    Args:
      task: the task every member runs.
      data: a :class:`~jaxtune.data.Dataset` (all rows are cross-validated) or a
        :class:`~jaxtune.data.Split` (``x_train`` and ``x_valid`` are; ``x_test`` stays
        held out).
      configs: the configurations to compare.
      num_steps: optimizer steps per member.
      batch_size: minibatch rows, drawn from the member's fold, or None for full batch.
      num_folds: folds per repetition (ignored with ``folds``).
      stratified: stratify folds on the labels (classification; ignored with ``folds``).
      repeats: repetitions of the k-fold partition with new shuffles.
      folds: explicit :class:`Folds` over the cross-validated rows (e.g.
        :func:`folds_from_indices` of scikit-learn's splits); overrides the three above.
      fold_seed: seed of the fold shuffle (default: ``seed``).
      seeds: member seeds; every config is trained once per seed and fold.
      seed: the sweep seed (member keys derive from it).
      standardize: per-member input standardization fitted on the member's training rows.
      metric: the selection metric recorded in the metadata (default ``valid_accuracy`` or
        ``valid_mse``).
      mode: ``"max"`` or ``"min"`` (default from the task).
      space: the :class:`~jaxtune.space.Space` the configs came from (for static names).
      static_names: which names are static (alternative to ``space``).
      steps_per_segment: steps per compiled segment (learning-curve resolution).
      evaluate_test: evaluate every member on the test rows of a Split at the end.
      on_segment: progress callback.
      engine_options: more keyword arguments for :func:`jaxtune.engine.train`.

    Returns:
      :class:`~jaxtune.results.Results`, one row per member with ``seed`` and ``fold`` set and
      ``extra = {"config_index", "repeat"}``. ``metadata`` records ``metric``, ``mode``,
      ``num_folds``, ``repeats``, ``fold_seed``, ``seeds``, ``cv_rows`` (``"dataset"`` or
      ``"train+valid"``) and ``num_cv_rows``.

    Raises:
      ValueError, TypeError: bad data, folds, configs or engine arguments, before compiling.

    Example:
      >>> import jaxtune as jt
      >>> ds = jt.load_dataset("wine")
      >>> task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
      >>> res = cross_validate(task, ds, [{"learning_rate": 0.1, "optimizer": "adam"}],
      ...                      num_steps=50, batch_size=None, num_folds=3)  # doctest: +SKIP
      >>> res.aggregate("valid_accuracy")[0]["count"]  # doctest: +SKIP
      3
    """
    configs, seeds = _check_configs(task, data, configs, seeds, seed, space)
    pool = _pool(data)
    split = pool.split
    num_rows = len(split.y_train)
    fold_seed = seed if fold_seed is None else fold_seed
    if folds is None:
        labels = split.y_train if split.kind == "classification" else None
        folds = make_folds(num_rows, num_folds=num_folds, labels=labels, stratified=stratified,
                           repeats=repeats, seed=fold_seed)
    elif not isinstance(folds, Folds):
        raise TypeError(f"folds must be jaxtune.cv.Folds, got {type(folds).__name__}.")
    if folds.num_rows != num_rows:
        raise ValueError(
            f"folds index {folds.num_rows} rows but {num_rows} rows are cross-validated "
            f"({pool.source}); build the folds over those rows."
        )
    metric, mode = _selection(task, metric, mode)
    layout = member_layout(configs, seeds, folds)
    results = engine.train(
        task, layout.configs, split,
        num_steps=num_steps, batch_size=batch_size, steps_per_segment=steps_per_segment,
        seed=seed, member_seeds=layout.member_seeds, folds=layout.folds,
        static_names=_static_names(space, static_names), member_rows=layout.member_rows,
        standardize=standardize, evaluate_test=evaluate_test, on_segment=on_segment,
        **dict(engine_options or {}),
    )
    rows = [
        dataclasses.replace(
            row,
            extra={**row.extra, "config_index": layout.config_index[i],
                   "repeat": int(folds.repeat[layout.folds[i]])},
        )
        for i, row in enumerate(results)
    ]
    metadata = dict(results.metadata)
    num_repeats = int(folds.repeat.max()) + 1
    metadata.update(
        metric=metric, mode=mode, num_folds=folds.num_folds // num_repeats,
        repeats=num_repeats, fold_seed=int(fold_seed), seeds=seeds,
        cv_rows=pool.source, num_cv_rows=num_rows, standardize=bool(standardize),
        num_steps=int(num_steps), batch_size=batch_size,
    )
    if space is not None:
        metadata["space"] = space.to_dict()
    return Results(rows, metadata)


# --------------------------------------------------------------------------------------------
# Aggregation and selection.


def _metric_and_mode(results: Results, metric: str | None, mode: str | None) -> tuple[str, str]:
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
    if rule not in _RULES:
        raise ValueError(f"rule={rule!r} must be one of {_RULES}.")
    metric, mode = _metric_and_mode(results, metric, mode)
    return results.best_config(metric, mode, rule=rule, complexity=complexity)


def _format(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def _config_text(config: Mapping[str, Any], names: Sequence[str]) -> str:
    return ", ".join(f"{n}={_format(config.get(n))}" for n in names) or "-"


def _varying(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    names = sorted({n for c in configs for n in c})
    varying = [n for n in names if len({repr(c.get(n)) for c in configs}) > 1]
    return varying or names


def _test_means(results: Results, members: Sequence[int], metric: str) -> float:
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
    metric, mode = _metric_and_mode(results, metric, mode)
    groups = results.aggregate(metric, mode)
    mean_pick = results.best_config(metric, mode, rule="best_mean")
    se_pick = results.best_config(metric, mode, rule="one_standard_error", complexity=complexity)
    names = _varying([g["config"] for g in groups])
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
        cells = [str(rank), *(_format(group["config"].get(n)) for n in names),
                 _format(group["mean"]), _format(group["std"]), _format(group["sem"]),
                 str(group["count"])]
        if has_test:
            cells.append(_format(_test_means(results, group["members"], metric)))
        cells.append(", ".join(chosen))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


summary_table = table


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
        name: task_lib._model_factory(model, num_outputs, tuple(input_shape))
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
      **cv_kwargs: passed to :func:`cross_validate` (``num_steps``, ``batch_size``...).

    Returns:
      :class:`ModelSelection`.

    Raises:
      ValueError: for an unknown rule or empty candidates, before training; after training,
        when every candidate failed (see :attr:`ModelSelection.candidates`).
    """
    if rule not in _RULES:
        raise ValueError(f"rule={rule!r} must be one of {_RULES}.")
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
    metric, mode = _metric_and_mode(results, metric, mode)
    summaries = []
    for name in names:
        part = results.filter(predicate=lambda r, name=name: r.extra["candidate"] == name)
        if not _any_finite_group(part, metric, mode):
            # Every config of this candidate failed: it is reported, never chosen.
            summaries.append({
                "name": name, "num_configs": len(candidates[name]), "config": None,
                "mean": math.nan, "std": math.nan, "sem": math.nan, "count": len(part),
                "members": [r.member_id for r in part], "test_mean": math.nan,
                "failed": True,
            })
            continue
        pick = part.best_config(metric, mode, rule="best_mean")
        summaries.append({
            "name": name, "num_configs": len(candidates[name]), "config": pick["config"],
            "mean": pick["mean"], "std": pick["std"], "sem": pick["sem"],
            "count": pick["count"], "members": pick["members"],
            "test_mean": _test_means(results, pick["members"], metric), "failed": False,
        })
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


def _any_finite_group(results: Results, metric: str, mode: str) -> bool:
    """Whether some config of ``results`` has no failed member (so one can be chosen)."""
    return any(g["num_failed"] == 0 for g in results.aggregate(metric, mode))


def _selection_table(summaries, best_name, chosen_name, rule, metric) -> str:
    has_test = any(math.isfinite(s["test_mean"]) for s in summaries)
    header = ["candidate", "configs", "best config", f"mean {metric}", "std", "sem", "members"]
    if has_test:
        header.append("test " + metric.partition("_")[2])
    header.append("chosen")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    names = _varying([s["config"] for s in summaries if s["config"] is not None] + [{}])
    for s in summaries:
        shown = [n for n in names if n in (s["config"] or {}) and n != "model"]
        mark = ["every config failed"] if s["config"] is None else []
        if s["name"] == best_name:
            mark.append("best mean")
        if s["name"] == chosen_name:
            mark.append(f"chosen ({rule})")
        config_text = "-" if s["config"] is None else _config_text(s["config"], shown)
        cells = [s["name"], str(s["num_configs"]), config_text,
                 _format(s["mean"]), _format(s["std"]), _format(s["sem"]), str(s["count"])]
        if has_test:
            cells.append(_format(s["test_mean"]))
        cells.append(", ".join(mark))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Nested cross-validation.


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
    num_steps: int,
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
) -> NestedResult:
    """Nested cross-validation: an unbiased estimate of "cross-validate, pick, refit".

    Outer folds split the rows into outer-training and outer-test rows. Within each outer
    training set, inner k-fold cross-validation picks a config by ``rule``; that config is
    retrained on the whole outer training set and scored on the outer test rows, which took
    no part in the choice. The mean outer score estimates how well the *procedure* (including
    the selection) generalizes; the best inner mean is optimistically biased by the choice.

    Both stages are index tables over the same rows, so the inner cross-validations of *all*
    outer folds are one engine call: ``outer x config x seed x inner`` members on the
    population axis (each static group one compiled population; the row tables of every
    outer/inner pair are padded to a common width). The refits are a second call of
    ``outer x seed`` members. Two compiled programs per static group in total, whatever the
    number of outer folds.

    Args:
      task: the task.
      data: a Dataset or Split (see :func:`cross_validate`; a Split's test rows are only
        evaluated by the refits, when ``evaluate_test``).
      configs: the candidate configurations.
      num_steps: steps per member (inner members and refits alike).
      batch_size: minibatch rows or None for full batch.
      num_outer_folds: outer folds.
      num_inner_folds: inner folds within each outer training set.
      stratified: stratify outer and inner folds on the labels (classification).
      rule: the inner selection rule, ``"best_mean"`` or ``"one_standard_error"``.
      complexity: for ``"one_standard_error"``, see :func:`best_config`.
      seeds: member seeds (every inner config and every refit, once per seed).
      seed: the sweep seed.
      fold_seed: seed of the fold shuffles (default ``seed``).
      standardize: per-member input standardization on its own training rows.
      metric: selection metric.
      mode: ``"max"`` or ``"min"``.
      space: the Space of the configs (static names).
      static_names: alternative to ``space``.
      steps_per_segment: steps per compiled segment.
      evaluate_test: evaluate the refits on a Split's test rows.
      on_segment: progress callback.
      engine_options: more keyword arguments for :func:`jaxtune.engine.train`.

    Returns:
      :class:`NestedResult`.
    """
    if rule not in _RULES:
        raise ValueError(f"rule={rule!r} must be one of {_RULES}.")
    configs, seeds = _check_configs(task, data, configs, seeds, seed, space)
    pool = _pool(data)
    split = pool.split
    num_rows = len(split.y_train)
    fold_seed = seed if fold_seed is None else fold_seed
    labels = split.y_train if (split.kind == "classification" and stratified) else None
    outer, inner_folds = nested_folds(num_rows, num_outer_folds, num_inner_folds,
                                      labels=labels, seed=fold_seed)
    metric, mode = _selection(task, metric, mode)
    names = _static_names(space, static_names)
    # The refit trains only the chosen configs: every config's optimizer/schedule names count.
    sweep = {"sweep_reads": checks.optimizer_reads(configs)}
    common = dict(num_steps=num_steps, batch_size=batch_size, steps_per_segment=steps_per_segment,
                  seed=seed, static_names=names, standardize=standardize,
                  on_segment=on_segment, **{**sweep, **(engine_options or {})})

    # Stage 1: every inner CV of every outer fold, as one population.
    members = [(o, c, s, i) for o in range(outer.num_folds) for c in range(len(configs))
               for s in seeds for i in range(num_inner_folds)]
    fold_ids = [o * num_inner_folds + i for o, _, _, i in members]
    inner_results = engine.train(
        task, [configs[c] for _, c, _, _ in members], split,
        member_seeds=[s for _, _, s, _ in members], folds=fold_ids,
        member_rows=inner_folds.member_rows(fold_ids), evaluate_test=False, **common,
    )
    inner_results = Results(
        [dataclasses.replace(r, extra={**r.extra, "outer_fold": members[k][0],
                                       "inner_fold": members[k][3],
                                       "config_index": members[k][1]})
         for k, r in enumerate(inner_results)],
        {**inner_results.metadata, "metric": metric, "mode": mode},
    )

    # Stage 2: per outer fold, pick on its inner results and refit on the outer training rows.
    selections = []
    for o in range(outer.num_folds):
        part = inner_results.filter(predicate=lambda r, o=o: r.extra["outer_fold"] == o)
        if not _any_finite_group(part, metric, mode):
            # Every config failed in this outer fold: nothing to refit, the fold scores NaN.
            selections.append({
                "rule": rule, "metric": metric, "mode": mode, "config": None,
                "mean": math.nan, "std": math.nan, "sem": math.nan, "count": len(part),
                "members": [r.member_id for r in part], "best_mean": math.nan,
                "best_sem": math.nan, "threshold": None, "num_candidates": 0,
                "outer_fold": o, "config_index": None, "failed": True,
            })
            continue
        choice = part.best_config(metric, mode, rule=rule, complexity=complexity)
        index = part.rows[[r.member_id for r in part].index(choice["members"][0])].extra[
            "config_index"]
        selections.append({**choice, "outer_fold": o, "config_index": index, "failed": False})
    refit = [(o, s) for o in range(outer.num_folds) if not selections[o]["failed"]
             for s in seeds]
    outer_results = Results([], {})
    if refit:
        outer_results = engine.train(
            task, [configs[selections[o]["config_index"]] for o, _ in refit], split,
            member_seeds=[s for _, s in refit], folds=[o for o, _ in refit],
            member_rows=outer.member_rows([o for o, _ in refit]),
            evaluate_test=evaluate_test, **common,
        )
    outer_results = Results(
        [dataclasses.replace(r, extra={**r.extra, "outer_fold": refit[k][0],
                                       "config_index": selections[refit[k][0]]["config_index"]})
         for k, r in enumerate(outer_results)],
        {**outer_results.metadata, "metric": metric, "mode": mode},
    )
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
    names = _varying(configs)
    header = ["outer fold", "chosen config", f"inner mean {metric}", "inner sem",
              "outer score"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in selections:
        lines.append("| " + " | ".join([
            str(s["outer_fold"]),
            "every config failed" if s["config"] is None else _config_text(s["config"], names),
            _format(s["mean"]),
            _format(s["sem"]), _format(s["outer_score"]),
        ]) + " |")
    optimistic = float(np.mean([s["mean"] for s in selections]))
    lines.append(
        f"| all | - | {_format(optimistic)} | - | {_format(mean)} ± {_format(sem)} "
        f"(std {_format(std)}) |"
    )
    return "\n".join(lines)
