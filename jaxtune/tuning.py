"""The loop between a search strategy and the engine.

Each round, the strategy proposes a batch of configurations (``ask``); every configuration is
trained with every seed as one vectorized population (:func:`jaxtune.engine.run`); the
per-config score (the mean of the metric over seeds, negated when the metric is maximized)
goes back to the strategy (``tell``). Diverged members score ``+inf``, so a failed
configuration is never best.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune import checkpoint as checkpoint_lib
from jaxtune import (
    checks,
    contracts,
    drivers,
    engine,
    jsonio,
    limits,
    objectives,
    pareto,
    ranking,
    timebudget,
    warmstart,
)
from jaxtune import data as data_lib
from jaxtune.contracts import Config
from jaxtune.engine.chunk import deadline_passed
from jaxtune.engine.options import EngineOptions
from jaxtune.results import Results
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy
from jaxtune.strategies.random import random_search
from jaxtune.strategies.warm import warm_started
from jaxtune.task import Task


def scores_from_results(
    results: Results, num_configs: int, num_seeds: int, metric: str, mode: str
) -> np.ndarray:
    """Per-config losses for ``tell``: mean over seeds, negated for ``max``, ``+inf`` if failed.

    Rows must be ordered config-major (all seeds of config 0, then config 1, ...).

    Returns:
      ``np.ndarray [num_configs]`` float64, lower is better.
    """
    values = np.full((num_configs, num_seeds), np.inf)
    for index, row in enumerate(results):
        value = row.metrics.get(metric, np.nan)
        if row.status == "completed" and np.isfinite(value):
            values[index // num_seeds, index % num_seeds] = -value if mode == "max" else value
    return values.mean(axis=1)


def outcomes_from_results(
    results: Results, num_configs: int, num_seeds: int, metrics: Sequence[str],
    modes: Sequence[str], constraints: contracts.Constraints | None,
) -> contracts.Outcomes:
    """Per-config objectives (as :func:`scores_from_results`, one column per metric) and
    constraint violations (the worst over seeds; ``+inf`` for a member that did not complete).

    Rows must be ordered config-major, as for :func:`scores_from_results`.
    """
    objectives = np.stack([scores_from_results(results, num_configs, num_seeds, metric, mode)
                           for metric, mode in zip(metrics, modes, strict=True)], axis=1)
    columns = 0 if constraints is None else constraints.num_columns
    violations = np.full((num_configs, num_seeds, columns), np.inf)
    for index, row in enumerate(results):
        if row.status == "completed" and constraints is not None:
            violations[index // num_seeds, index % num_seeds] = constraints.violations(row.metrics)
    return contracts.Outcomes(objectives, violations.max(axis=1))


def summary_scores(outcomes: contracts.Outcomes) -> np.ndarray:
    """One loss per config for a strategy that takes no :class:`~jaxtune.contracts.Outcomes`
    (:func:`jaxtune.pareto.summary_losses`)."""
    return pareto.summary_losses(outcomes.objectives, outcomes.feasible)


def mark_feasible(results: Results, constraints: contracts.Constraints) -> Results:
    """``results`` with ``extra["feasible"]`` set on every row: completed and every constraint
    satisfied (:meth:`~jaxtune.contracts.Constraints.violations` all ``<= 0``)."""
    rows = []
    for row in results:
        feasible = row.status == "completed" and bool(
            np.all(constraints.violations(row.metrics) <= 0.0))
        rows.append(dataclasses.replace(row, extra={**row.extra, ranking.FEASIBLE: feasible}))
    return Results(rows, results.metadata)


def round_counts(batches: Sequence[Results], space: Space) -> dict[str, int]:
    """The engine's counters over every round of a search.

    ``num_compilations``, ``num_segment_compilations`` and ``num_guarded_segments`` are summed
    over the rounds (each round is its own engine run); ``num_static_groups`` is the
    number of distinct static groups over all rounds (a group met in two rounds counts once).
    """
    counts = {
        name: sum(int(b.metadata.get(name, 0)) for b in batches)
        for name in ("num_compilations", "num_segment_compilations", "num_guarded_segments")
    }
    counts["num_static_groups"] = len({space.static_key(row.config) for b in batches for row in b})
    return counts


def _replayed_round(saved: Results, members: Sequence[Mapping[str, Any]],
                    round_index: int) -> Results:
    """A stored round's results, checked against the configurations the strategy asks now."""
    asked = [json.dumps(jsonio.plain(m), sort_keys=True) for m in members]
    stored = [json.dumps(jsonio.plain(row.config), sort_keys=True) for row in saved]
    if asked != stored:
        raise ValueError(
            f"checkpoint: round {round_index} stored results for other configurations than the "
            "strategy proposes now; resume with the same strategy and arguments, or use a new "
            "checkpoint directory"
        )
    return saved


class _Sweep(NamedTuple):
    """A checked ``tune`` call: what every round needs."""

    task: Task
    split: data_lib.Split
    space: Space
    strategy: Strategy
    num_configs: int
    round_size: int
    seeds: list[int]
    metric: str
    mode: str
    seed: int
    options: EngineOptions
    run: dict[str, Any]  # hooks, and what an old engine_options mapping carried for engine.run
    checkpoint: Any
    resume: bool
    metrics: tuple[str, ...] = ()  # every objective (several: a multi-objective sweep)
    modes: tuple[str, ...] = ()
    constraints: contracts.Constraints | None = None
    time_budget: timebudget.TimeBudget | None = None

    @property
    def deadline(self) -> timebudget.Deadline | None:
        """The deadline the engine runs under (started when the call was checked)."""
        return self.run["hooks"].deadline

    @property
    def outcomes(self) -> bool:
        """Whether rounds are told :class:`~jaxtune.contracts.Outcomes` (several objectives
        or constraints) rather than one metric's losses."""
        return len(self.metrics) > 1 or self.constraints is not None


def _told_scores(sweep: _Sweep, results: Results, num_configs: int) -> tuple[Any, Results]:
    """What ``tell`` gets for a round, and the round's results (rows marked feasible or not
    when the sweep has constraints)."""
    num_seeds = len(sweep.seeds)
    if not sweep.outcomes:
        return scores_from_results(results, num_configs, num_seeds, sweep.metric,
                                   sweep.mode), results
    if sweep.constraints is not None:
        results = mark_feasible(results, sweep.constraints)
    outcomes = outcomes_from_results(results, num_configs, num_seeds, sweep.metrics,
                                     sweep.modes, sweep.constraints)
    if sweep.strategy.accepts_outcomes:
        return outcomes, results
    return summary_scores(outcomes), results


def _check_seeds(seeds: Any) -> list[int]:
    """The member seeds of a sweep: a non-empty sequence of valid seeds."""
    if isinstance(seeds, str | int) or not isinstance(seeds, Sequence | np.ndarray):
        raise TypeError(f"seeds: got {seeds!r}; give a sequence of ints, e.g. seeds=(0, 1).")
    seeds = [checks.check_seed(f"seeds[{i}]", s, limits.MAX_MEMBER_SEED)
             for i, s in enumerate(seeds)]
    if not seeds:
        raise ValueError("seeds is empty: give at least one member seed, e.g. seeds=(0,).")
    return seeds


def _check_sweep(task: Task, split: data_lib.Split, space: Space, strategy: Strategy | None,
                 call: Mapping[str, Any]) -> _Sweep:
    """Everything ``tune`` refuses before a config is drawn, as one value (``call``: its
    other arguments)."""
    checks.check_task_and_data(task, split)
    seed = checks.check_seed("seed", call["seed"])
    limits.check_positive_int("num_configs", call["num_configs"])
    if call["population_size"] is not None:
        limits.check_positive_int("population_size", call["population_size"])
    seeds = _check_seeds(call["seeds"])
    # Before a single config is drawn: a population the host cannot hold aborts XLA.
    limits.check_population("num_configs", call["num_configs"] * len(seeds), len(space))
    options, run = drivers.engine_call(
        call["options"], call["engine_options"], on_segment=call["on_segment"],
        on_restore=call["on_restore"], checkpoint=call["checkpoint"], resume=call["resume"],
        num_steps=call["num_steps"], batch_size=call["batch_size"],
        steps_per_segment=call["steps_per_segment"], devices=call["devices"],
        allow_unused_hparams=call["allow_unused_hparams"])
    options = drivers.space_options(task, split, space, options)
    metrics, modes = contracts.selections(call["metric"], call["mode"],
                                          metric_modes=task.metric_modes, kind=task.kind)
    constraints = contracts.check_constraints(call["constraints"], task.metric_modes)
    budget = timebudget.check_time_budget(call["time_budget"])
    run["hooks"] = run["hooks"]._replace(deadline=timebudget.start_deadline(budget))
    strategy = strategy if strategy is not None else random_search()
    round_size = call["population_size"] or call["num_configs"]
    checkpoint, resume = run.pop("checkpoint", None), run.pop("resume")
    return _Sweep(task, split, space, strategy, call["num_configs"], round_size, seeds,
                  metrics[0], modes[0], seed, options, run, checkpoint, resume, metrics, modes,
                  constraints, budget)


def _with_strategy(checked: _Sweep, strategy: Strategy) -> _Sweep:
    """``checked`` with another strategy (a warm-started one)."""
    return checked._replace(strategy=strategy)


#: Options a tune checkpoint stores under their own names, not in its ``engine_options``.
_STORED_APART = ("num_steps", "batch_size", "steps_per_segment", "devices", "static_names",
                 "sweep_reads")


def _stored_engine_options(options: EngineOptions | None,
                           engine_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``engine_options`` entry of a tune checkpoint's arguments: the old mapping as given
    (so checkpoints written before ``options=`` existed still resume), or the fields of
    ``options`` that differ from their defaults; values that are not JSON scalars by type."""
    given = {}
    if options is not None:
        given = {field.name: getattr(options, field.name)
                 for field in dataclasses.fields(options)
                 if field.name not in _STORED_APART
                 and getattr(options, field.name) != field.default}
    given.update(engine_options or {})
    return {name: value if isinstance(value, int | float | str | bool | None)
            else type(value).__name__ for name, value in given.items()}


def _objective_metadata(sweep: _Sweep) -> dict[str, Any]:
    """``metrics``/``modes`` of a multi-objective sweep and its ``constraints``, for its
    metadata and checkpoint (nothing for one metric without constraints)."""
    return objectives.Objectives(
        tuple(sweep.metrics), tuple(sweep.modes), sweep.constraints).describe()
def _started_budget(sweep: _Sweep, checkpointer: checkpoint_lib.Checkpointer) -> int:
    """The ``num_configs`` a resumed checkpoint was started with when this call asks for more
    (extending a sweep: its marker keeps the first budget); else the call's own."""
    if not sweep.resume:
        return sweep.num_configs
    try:
        arguments = checkpoint_lib.read_marker(checkpointer.directory).get("arguments")
    except (FileNotFoundError, ValueError):  # the store says what is wrong with it
        return sweep.num_configs
    started = arguments.get("num_configs") if isinstance(arguments, dict) else None
    if isinstance(started, int) and not isinstance(started, bool) and (
            started < sweep.num_configs):
        return started
    return sweep.num_configs


def _open_store(sweep: _Sweep, call: Mapping[str, Any]) -> checkpoint_lib.Store | None:
    """The sweep's checkpoint store (``None`` without a checkpoint). A resume with a larger
    ``num_configs`` extends the sweep (its finished rounds are replayed, not retrained)."""
    if sweep.resume and sweep.checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<the directory the sweep saved into>.")
    if sweep.checkpoint is None:
        return None
    options = sweep.options
    arguments = _objective_metadata(sweep)
    checkpointer = checkpoint_lib.Checkpointer.of(sweep.checkpoint)
    # Only a warm-started sweep stores its history's digest (older checkpoints still match).
    warm = {} if call["history"] is None else {"history": call["history_digest"]}
    return checkpoint_lib.Store(
        checkpointer, "tune",
        {
            **warm,
            "task": sweep.task.name, "data": checkpoint_lib.split_digest(sweep.split),
            "space": sweep.space.to_dict(), "num_configs": _started_budget(sweep, checkpointer),
            "num_steps": options.num_steps, "population_size": call["population_size"],
            "seeds": sweep.seeds, "batch_size": options.batch_size,
            "steps_per_segment": options.steps_per_segment, "metric": sweep.metric,
            "mode": sweep.mode, "seed": sweep.seed,
            "num_devices": len(options.devices) if options.devices is not None else None,
            "engine_options": _stored_engine_options(call["options"], call["engine_options"]),
            **arguments,
        },
        sweep.resume,
    )


def _saved_rounds(sweep: _Sweep, store: checkpoint_lib.Store | None) -> list[Results]:
    """The rounds a resumed sweep finished before; the member-steps they hold are told to the
    ``on_restore`` hook (no segment report covers them, so a progress bar ends at 100% and its
    rate counts only this run's work; the engine tells it the interrupted round's part)."""
    latest = store.latest() if store is not None and sweep.resume else None
    if latest is None:
        return []
    saved = checkpoint_lib.unpack_rounds(*latest)
    budget = latest[0]["tune"].get("num_configs", sweep.num_configs)
    if latest[0].get("train") is not None and budget != sweep.num_configs:
        raise ValueError(
            f"checkpoint: the sweep was interrupted within a round of num_configs={budget}; "
            f"resume it with num_configs={budget} to finish it, then resume again with "
            f"num_configs={sweep.num_configs} to extend it")
    restored = sweep.options.num_steps * sum(len(batch) for batch in saved)
    on_restore = sweep.run["hooks"].on_restore
    if on_restore is not None and restored > 0:
        on_restore(restored)
    return saved


def _train_round(sweep: _Sweep, store: checkpoint_lib.Store | None, configs: Sequence[Config],
                 first: int, batches: Sequence[Results], restore: bool) -> Results:
    """One round: every config with every seed as one population, member ids from ``first``
    config onwards; with a store, checkpointed within the round."""
    num_seeds = len(sweep.seeds)
    scope = None
    if store is not None:
        outer, outer_arrays = _packed(batches, sweep.num_configs)
        scope = checkpoint_lib.TrainScope(store, outer, {"round": len(batches)},
                                          restore=restore, outer_arrays=outer_arrays)
    return engine.run(
        sweep.task, [dict(c) for c in configs for _ in sweep.seeds], sweep.split, sweep.options,
        seed=sweep.seed, member_seeds=[s for _ in configs for s in sweep.seeds],
        member_ids=list(range(first * num_seeds, (first + len(configs)) * num_seeds)),
        checkpoint=scope, **sweep.run,
    ).results


def _packed(batches: Sequence[Results], num_configs: int) -> tuple[dict, dict]:
    """The finished rounds as a checkpoint's tune section, with the budget they belong to."""
    outer, outer_arrays = checkpoint_lib.pack_rounds(batches)
    outer["tune"]["num_configs"] = num_configs
    return outer, outer_arrays


def _run_rounds(sweep: _Sweep, store: checkpoint_lib.Store | None, saved: Sequence[Results],
                on_round: Callable[[Results], None] | None
                ) -> tuple[list[Results], dict[str, int] | None]:
    """Ask, train (or replay a saved round to the strategy), tell, until the budget is spent
    or the time budget is: ``(rounds, stop)``, ``stop`` ``None`` or, when the time budget
    stopped the sweep, its ``members_not_started`` and ``configs_not_asked``. The deadline is looked
    at before asking every round to train but this call's first; a round it interrupts is
    neither told nor saved as finished (its checkpoint holds it, and a resume finishes it)."""
    space, strategy = sweep.space, sweep.strategy
    state = strategy.init(space, jax.random.PRNGKey(sweep.seed))
    batches: list[Results] = []
    evaluated = 0
    while evaluated < sweep.num_configs:
        round_index = len(batches)
        if round_index > len(saved) and deadline_passed(sweep.deadline):
            return batches, {"members_not_started": 0,
                             "configs_not_asked": sweep.num_configs - evaluated}
        wanted = min(sweep.round_size, sweep.num_configs - evaluated)
        if round_index < len(saved):  # a saved round is asked at its own size (an extension)
            wanted = len(saved[round_index]) // len(sweep.seeds)
        configs, state = strategy.ask(state, wanted)
        if not configs:
            break
        for config in configs:
            space.validate_config(config)
        if round_index < len(saved):  # finished before the resume: told its stored results
            members = [dict(c) for c in configs for _ in sweep.seeds]
            results = _replayed_round(saved[round_index], members, round_index)
        else:
            results = _train_round(sweep, store, configs, evaluated, batches,
                                   restore=sweep.resume and round_index == len(saved))
            if results.metadata.get("stopped_by") is not None:
                return [*batches, results], {
                    "members_not_started": int(results.metadata["members_not_started"]),
                    "configs_not_asked": sweep.num_configs - evaluated - len(configs)}
        scores, results = _told_scores(sweep, results, len(configs))
        state = strategy.tell(state, configs, scores)
        batches.append(results)
        if round_index >= len(saved):
            if store is not None:
                outer, outer_arrays = _packed(batches, sweep.num_configs)
                store.save({**outer, "train": None}, outer_arrays)
            if on_round is not None:
                on_round(results)
        evaluated += len(configs)
    return batches, None


def tune(
    task: Task, split: data_lib.Split, space: Space, strategy: Strategy | None = None, *,
    num_configs: int, num_steps: int | None = None, population_size: int | None = None,
    seeds: Sequence[int] = (0,), batch_size: int | None = 128, steps_per_segment: int = 50,
    metric: str | Sequence[str] | None = None, mode: str | Sequence[str | None] | None = None,
    seed: int = 0,
    devices: Sequence[jax.Device] | None = None,
    on_segment: Callable[[contracts.SegmentReport], None] | None = None,
    on_round: Callable[[Results], None] | None = None,
    engine_options: Mapping[str, Any] | None = None, checkpoint: Any = None,
    resume: bool = False, allow_unused_hparams: bool = False,
    options: EngineOptions | None = None, on_restore: Callable[[int], None] | None = None,
    constraints: Any = None,
    history: warmstart.History | None = None,
    time_budget: float | timebudget.TimeBudget | None = None,
) -> Results:
    """Runs a search: ask a batch, train it as one population, tell the scores, repeat.

    Args:
      task, split: what each member trains, on which data.
      space: the search space; its static parameters define static groups.
      strategy: a :class:`~jaxtune.strategies.Strategy` (default: random search).
      num_configs: total configurations to evaluate (the budget).
      num_steps, batch_size, steps_per_segment, devices, allow_unused_hparams: how members
        train (:class:`~jaxtune.engine.options.EngineOptions`; a static ``batch_size`` in the
        space overrides it per group); or give ``options``. ``engine_options``: a mapping of
        more option fields (older form).
      population_size: configurations per round (default: all at once, right for grid and
        random search; model-based strategies want several rounds).
      seeds: member seeds; every configuration is trained once per seed.
      metric, mode: the selection metric and ``"max"``/``"min"`` (default from the task,
        :func:`jaxtune.contracts.selection`; a ``test_`` metric is refused). Several metrics
        (a list, with a list of modes or ``None``) make a multi-objective search: the
        strategy is told every objective (:class:`~jaxtune.contracts.Outcomes`), and
        :meth:`~jaxtune.results.Results.pareto_front` of the results is the front
        (docs/multiobjective.md); ``best`` ranks by the first metric.
      constraints: ``{metric: ("<=" or ">=", bound)}`` or a predicate ``metrics -> bool``
        (:func:`jaxtune.contracts.check_constraints`): every row gets
        ``extra["feasible"]``; an infeasible member is never best nor on the front, and a
        strategy that takes outcomes learns to avoid infeasible regions.
      seed: the sweep seed (strategy key and member keys derive from it).
      on_segment: progress callback, see :class:`~jaxtune.contracts.SegmentReport`.
      on_restore: told the member-steps a resume restored (default ``on_segment.restored``).
      on_round: called with the Results of each round this call runs, when it finishes.
      checkpoint, resume: a directory (or :class:`~jaxtune.checkpoint.Checkpointer`) saved
        after every round and within rounds; ``resume`` replays the finished rounds to the
        strategy (it must propose the same configs) and continues the interrupted one
        (docs/checkpointing.md). Resuming a finished sweep with a larger ``num_configs``
        extends it: its rounds are replayed, only the new configs train.
      history: earlier results to warm-start from (docs/warm_start.md): a
        :class:`~jaxtune.results.Results` or ``(config, metric value)`` pairs of the same or
        a compatible space. The strategy is told them before its first ``ask`` and never
        proposes a config among them again; the returned Results hold only the members this
        call trains, and ``metadata["warm_start"]`` the history's size and best.
      time_budget: seconds from the call's start (or a :class:`~jaxtune.timebudget.TimeBudget`):
        once spent, the running segment ends, ``checkpoint`` is saved, no config is asked;
        members still training are ``"stopped"`` with ``extra["stopped_by"]``, and
        ``resume=True`` finishes the sweep as if uninterrupted (:mod:`jaxtune.timebudget`).

    Raises:
      TypeError, ValueError: before anything trains (a ``task`` that is not a Task, no data,
        bad seeds, a Space range outside the valid ranges, all that the engine refuses before
        compiling).

    Returns:
      :class:`~jaxtune.results.Results` of every member, ids in evaluation order.

    Example:
      >>> import jaxtune as jt
      >>> split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits")))
      >>> space = jt.Space({"learning_rate": jt.Float(1e-4, 1e-1, log=True),
      ...                   "optimizer": jt.Fixed("adam")})
      >>> task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
      >>> results = jt.tune(task, split, space, num_configs=8, num_steps=100)  # doctest: +SKIP
    """
    call = dict(locals())
    sweep, warm = _warm_started(_check_sweep(task, split, space, strategy, call), history, call)
    store = _open_store(sweep, call)
    batches, stop = _run_rounds(sweep, store, _saved_rounds(sweep, store), on_round)
    return _combined(sweep, batches, warm, stop)


def _warm_started(sweep: _Sweep, history: Any, call: dict[str, Any]) -> tuple[_Sweep, Any]:
    """The sweep with its strategy told ``history`` (and the history's losses), or as it is;
    records the history's digest in ``call`` for the checkpoint."""
    if history is None:
        return sweep, None
    warm = warmstart.history_losses(history, sweep.space, sweep.metric, sweep.mode)
    call["history_digest"] = warmstart.history_digest(*warm)
    return _with_strategy(sweep, warm_started(sweep.strategy, *warm)), warm


def _combined(sweep: _Sweep, batches: Sequence[Results], warm: Any,
              stop: Mapping[str, int] | None) -> Results:
    """Every round's rows in one Results, with the sweep's metadata (``stop``: what the time
    budget left undone, see :func:`_run_rounds`)."""
    combined = Results.concat(batches)
    metadata = dict(combined.metadata)
    metadata.update(metric=sweep.metric, mode=sweep.mode, seeds=sweep.seeds,
                    space=sweep.space.to_dict(), **round_counts(batches, sweep.space),
                    **_objective_metadata(sweep))
    if warm is not None:
        metadata["warm_start"] = warmstart.history_summary(*warm, sweep.mode)
    metadata.pop("stopped_by", None)
    metadata.pop("members_not_started", None)
    if sweep.time_budget is not None:
        metadata["time_budget_s"] = sweep.time_budget.seconds
    if stop is not None:
        metadata.update(stopped_by=timebudget.STOPPED_BY, **stop)
    return Results(list(combined), metadata)
