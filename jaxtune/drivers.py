"""What every sweep driver shares on its way to :func:`jaxtune.engine.run`.

The drivers (:func:`jaxtune.tune`, :func:`jaxtune.run_halving`, :func:`jaxtune.run_pbt`) take
an :class:`~jaxtune.engine.options.EngineOptions` value (``options=``) as well as their older
keywords (``num_steps=``, ``engine_options={...}``). :func:`engine_call` turns both into the one
options value and the other keywords of :func:`jaxtune.engine.run` (hooks, checkpoint,
resume, and the member identities an old ``engine_options`` mapping may carry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jaxtune import checks
from jaxtune.contracts import Scheduler, SegmentReport
from jaxtune.data import Split
from jaxtune.engine.options import EngineOptions, Hooks
from jaxtune.space import Space
from jaxtune.task import Task

__all__ = ["RUN_KEYWORDS", "engine_call", "space_options"]

#: Keywords of :func:`jaxtune.engine.run` (not options) that an old ``engine_options``
#: mapping may carry; every other name in it must be an :class:`EngineOptions` field.
RUN_KEYWORDS = ("member_seeds", "folds", "member_ids", "member_rows", "on_segment",
                "checkpoint", "resume")


def engine_call(
    options: EngineOptions | None,
    engine_options: Mapping[str, Any] | None,
    *,
    on_segment: Callable[[SegmentReport], None] | None = None,
    on_restore: Callable[[int], None] | None = None,
    scheduler: Scheduler | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    **given: Any,
) -> tuple[EngineOptions, dict[str, Any]]:
    """The options of a driver call and the other keywords of its :func:`jaxtune.engine.run`.

    Args:
      options: the caller's options value, or ``None``.
      engine_options: an old-style mapping: option names, and any of :data:`RUN_KEYWORDS`.
      on_segment: the progress callback (may instead come in ``engine_options``).
      on_restore: told the member-steps a resume restored (default: the callback's own
        ``restored`` method, :meth:`~jaxtune.engine.options.Hooks.of`).
      scheduler: the driver's scheduler.
      checkpoint: the checkpoint directory (may instead come in ``engine_options``).
      resume: continue from ``checkpoint`` (true if either says so).
      **given: the driver's option keywords (``num_steps``, ``batch_size``...), see
        :meth:`EngineOptions.resolve`.

    Returns:
      ``(options, run_keywords)``: ``run_keywords`` holds ``hooks``, ``checkpoint``,
      ``resume`` and what else the mapping carried of :data:`RUN_KEYWORDS`.

    Raises:
      TypeError: an unknown name in ``engine_options``, or ``on_segment`` / ``checkpoint``
        given both as a keyword and in ``engine_options``.
      ValueError: as :meth:`EngineOptions.resolve`.
    """
    fields = dict(engine_options or {})
    run = {name: fields.pop(name) for name in RUN_KEYWORDS if name in fields}
    for name, value in (("on_segment", on_segment), ("checkpoint", checkpoint)):
        if value is not None:
            if run.get(name) is not None:
                raise TypeError(f"{name}: given as a keyword and in engine_options; give it once")
            run[name] = value
    run["resume"] = resume or run.get("resume", False)
    run["hooks"] = Hooks.of(run.pop("on_segment", None), on_restore, scheduler)
    return EngineOptions.resolve(options, fields, **given), run


def space_options(task: Task, split: Split, space: Space,
                  options: EngineOptions) -> EngineOptions:
    """``options`` for a sweep of ``space``: its static names, and the names the sweep reads
    (:func:`jaxtune.checks.check_space`) added to ``sweep_reads``.

    Raises:
      TypeError, ValueError: as :func:`jaxtune.checks.check_space` (a Space range outside the
        valid ranges, a name nothing reads unless ``options.allow_unused_hparams``).
    """
    reads = checks.check_space(task, split, space, batch_size=options.batch_size,
                               allow_unused=options.allow_unused_hparams)
    return options.replace(static_names=tuple(space.static_names),
                           sweep_reads=options.sweep_reads | reads)
