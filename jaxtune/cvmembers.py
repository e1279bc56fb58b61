"""The members of a cross-validation: the rows they share, their layout, and the engine call.

Every cross-validation driver (:func:`jaxtune.cv.cross_validate`,
:func:`jaxtune.cv.select_model`, :func:`jaxtune.cv.nested_cross_validate`) does the same four
things before and around training, here once:

* :func:`check_configs`: the argument checks every driver runs first;
* :func:`pool_rows`: the engine's :class:`~jaxtune.data.Split` holding every cross-validated
  row in ``x_train`` (the test rows of a Split stay apart);
* :func:`member_layout`: ``config x seed x fold`` as members, each with its fold's row
  tables (:meth:`jaxtune.folds.Folds.member_rows`);
* :func:`run_members`: the one runner call, :func:`jaxtune.engine.run`, with the
  :class:`~jaxtune.engine.options.EngineOptions` of :func:`resolve_options`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxtune import checks, contracts, datatree, drivers, engine, limits
from jaxtune.data import Dataset, Split, check_arrays
from jaxtune.engine import MemberRows
from jaxtune.engine.options import EngineOptions
from jaxtune.folds import Folds
from jaxtune.results import Results
from jaxtune.space import Space
from jaxtune.task import Task

__all__ = [
    "CVRows",
    "MemberLayout",
    "check_configs",
    "resolve_options",
    "member_layout",
    "pool_rows",
    "run_members",
    "selection_metric",
    "static_names_of",
]

Config = Mapping[str, Any]
#: Keys of an old-style ``engine_options`` mapping that are runner arguments, not options.
class CVRows(NamedTuple):
    """The rows a cross-validation draws its folds from.

    Attributes:
      split: ``x_train``/``y_train`` are the cross-validated rows; each member is validated
        on its own held-out rows of ``x_train`` through its row tables, never on
        ``x_valid`` (see :func:`pool_rows`); ``x_test``/``y_test`` are the untouched test
        rows (0 rows for a Dataset).
      source: ``"dataset"`` or ``"train+valid"`` (recorded in the results' metadata).
    """

    split: Split
    source: str

    @property
    def num_rows(self) -> int:
        """Number of cross-validated rows."""
        return datatree.num_rows(self.split.y_train, "y")


def pool_rows(data: Dataset | Split) -> CVRows:
    """The engine's Split for cross-validation: every cross-validated row in ``x_train``.

    Args:
      data: a :class:`~jaxtune.data.Dataset` (all rows) or a :class:`~jaxtune.data.Split`
        (``x_train`` then ``x_valid``; ``x_test`` stays apart).

    Returns:
      :class:`CVRows`.

    Raises:
      TypeError: ``data`` is neither.
      ValueError, TypeError: a Dataset with invalid arrays (:func:`jaxtune.data.check_arrays`).
    """
    if isinstance(data, Dataset):
        check_arrays(data.x, data.y, data.kind, data.num_classes)
        num_classes = data.num_classes
        if data.kind == "classification" and num_classes is None:
            num_classes = max(int(np.max(data.y)) + 1, 2)
        x, y = datatree.to_numpy(data.x, "x"), datatree.to_numpy(data.y, "y")
        x_test, y_test = datatree.take_rows(x, slice(0, 0)), datatree.take_rows(y, slice(0, 0))
        kind, name, source = data.kind, data.name, "dataset"
    elif isinstance(data, Split):
        x = datatree.concat_rows([datatree.to_numpy(data.x_train), datatree.to_numpy(data.x_valid)])
        y = datatree.concat_rows([datatree.to_numpy(data.y_train), datatree.to_numpy(data.y_valid)],
                                 "y")
        x_test, y_test = data.x_test, data.y_test
        kind, name, num_classes, source = data.kind, data.name, data.num_classes, "train+valid"
    else:
        raise TypeError(
            f"data must be a jaxtune Dataset or Split, got {type(data).__name__}; use "
            "jt.load_dataset(...) or jt.Dataset(x, y, kind, num_classes, name)."
        )
    # No validation rows: with member row tables the engine validates each member on its
    # own held-out rows of x_train and never reads (or checks) split.x_valid.
    none = slice(0, 0)
    split = Split(x, y, datatree.take_rows(x, none), datatree.take_rows(y, none), x_test, y_test,
                  kind, num_classes, name)
    return CVRows(split, source)


def selection_metric(task: Task, metric: str | None, mode: str | None) -> tuple[str, str]:
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
      :class:`MemberLayout` for :func:`run_members`.
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


def static_names_of(space: Space | None, static_names: Sequence[str] | None):
    """The static names a driver passes on: ``space``'s, or ``static_names`` (not both)."""
    if space is not None and static_names is not None:
        raise ValueError("give space or static_names, not both.")
    if space is not None:
        return space.static_names
    return static_names


def check_configs(task: Task, data: Any, configs: Sequence[Config], seeds: Sequence[int],
                  seed: int, space: Space | None) -> tuple[list, list[int]]:
    """The checks every cross-validation runs first (arguments, seeds, a Space's ranges).

    Returns:
      ``(configs, seeds)`` as a list of dicts and a list of ints.

    Raises:
      TypeError, ValueError: naming the argument and the fix.
    """
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


def resolve_options(
    options: EngineOptions | None,
    old_options: Mapping[str, Any] | None,
    *,
    on_segment: Callable[[engine.SegmentReport], None] | None = None,
    **given: Any,
) -> tuple[EngineOptions, dict[str, Any]]:
    """A CV driver's :class:`~jaxtune.engine.options.EngineOptions` and its runner keywords.

    The rule every driver follows (:func:`jaxtune.drivers.engine_call`): ``old_options`` is
    the older ``engine_options`` mapping, whose runner keywords (``checkpoint``, ``resume``...)
    go to :func:`jaxtune.engine.run` and whose other names are options; the hooks carry
    ``on_segment`` and its ``restored`` method.

    Args:
      options: the driver's ``options`` value, or None.
      old_options: its ``engine_options`` mapping, or None.
      on_segment: progress callback.
      **given: the driver's own keywords (``num_steps``, ``batch_size``...), used without
        ``options`` (:meth:`~jaxtune.engine.options.EngineOptions.resolve`).

    Returns:
      ``(options, run_keywords)``, ``run_keywords`` with the ``hooks``.
    """
    resolved, run_keywords = drivers.engine_call(options, old_options, on_segment=on_segment,
                                                 **given)
    if options is not None and resolved.static_names is None and given.get("static_names"):
        resolved = resolved.replace(static_names=given["static_names"])
    return resolved, run_keywords


def run_members(
    task: Task,
    split: Split,
    layout: MemberLayout,
    options: EngineOptions,
    extra: Sequence[Mapping[str, Any]],
    *,
    seed: int,
    run_keywords: Mapping[str, Any] | None = None,
) -> Results:
    """Trains the members of ``layout`` in one :func:`jaxtune.engine.run` call.

    Args:
      task: the task.
      split: the pooled rows (:attr:`CVRows.split`).
      layout: the members.
      options: how to train.
      extra: one mapping per member, merged into its ``MemberResult.extra``.
      seed: the sweep seed.
      run_keywords: the ``hooks``, ``checkpoint`` and ``resume`` of the runner call
        (:func:`resolve_options`).

    Returns:
      The results, one row per member in layout order.
    """
    out = engine.run(
        task, layout.configs, split, options, seed=seed, member_seeds=layout.member_seeds,
        folds=layout.folds, member_rows=layout.member_rows, **dict(run_keywords or {}),
    )
    rows = [dataclasses.replace(row, extra={**row.extra, **extra[i]})
            for i, row in enumerate(out.results)]
    return Results(rows, out.results.metadata)
