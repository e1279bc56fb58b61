"""Sweeps driven by a scheduler inside one engine run: halving, Hyperband, PBT, PBT's replay.

Each driver draws the initial population from a strategy (:func:`initial_population`), builds
its scheduler (:mod:`jaxtune.strategies.halving`, :mod:`jaxtune.strategies.pbt`) and trains
once with :func:`jaxtune.engine.run`: the population keeps its size, the scheduler changes what
its slots hold between segments.

* :func:`run_halving`: asynchronous successive halving (ASHA) or Hyperband.
* :func:`run_pbt`: population-based training (``explore="pb2"``: PB2); the settings a replay
  needs go into ``metadata["pbt"]``.
* :func:`replay_pbt_member` and :func:`lineage`: re-train one PBT member from its records.
* :func:`run_early_stopping`: the median stopping rule or patience
  (:mod:`jaxtune.strategies.stopping`), refilling stopped slots until ``num_configs`` started.

The drivers share these arguments: ``options`` (an
:class:`~jaxtune.engine.options.EngineOptions`, which replaces ``num_steps``, ``batch_size``,
``steps_per_segment`` and ``engine_options``), ``engine_options`` (the older form: a mapping of
its fields, which may also carry ``member_seeds``, ``on_segment``, ``checkpoint``, ``resume``),
``on_segment`` (progress, see :class:`~jaxtune.contracts.SegmentReport`), ``on_restore`` (told
the member-steps a resume restored; default ``on_segment.restored`` when it has one, as
:class:`~jaxtune.ProgressBar` does), ``checkpoint`` (a directory or
:class:`~jaxtune.checkpoint.Checkpointer`), ``resume`` and ``time_budget`` (seconds, or a
:class:`~jaxtune.timebudget.TimeBudget`: once spent, the running segment ends, the sweep is
saved to ``checkpoint`` and the members still training come back ``"stopped"`` with
``extra["stopped_by"] == "time_budget"``; ``resume=True`` finishes the sweep as an
uninterrupted run would: :mod:`jaxtune.timebudget`).

The old paths (``jaxtune.strategies.run_halving``, ``jaxtune.strategies.halving.run_halving``,
``jaxtune.strategies.pbt.run_pbt``...) still resolve here, with a ``DeprecationWarning``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from jaxtune import checks, contracts, drivers, engine, timebudget
from jaxtune.contracts import Config, PopulationUpdate, Scheduler, SlotView
from jaxtune.data import Split
from jaxtune.engine.options import EngineOptions
from jaxtune.objectives import Objectives
from jaxtune.results import MemberResult, Results
from jaxtune.space import Space
from jaxtune.strategies.base import Strategy, check_int_at_least
from jaxtune.strategies.halving import hyperband, successive_halving
from jaxtune.strategies.pb2 import pb2
from jaxtune.strategies.pbt import pbt
from jaxtune.strategies.random import random_search
from jaxtune.strategies.stopping import median_stopping, patience_stopping
from jaxtune.task import Task
from jaxtune.tuning import mark_feasible

__all__ = ["initial_population", "lineage", "replay_pbt_member", "run_early_stopping",
           "run_halving", "run_pbt"]

#: ``fold_in(PRNGKey(seed), stream)`` streams of a scheduled sweep's keys.
INITIAL_STREAM, HALVING_STREAM, PBT_STREAM, STOPPING_STREAM = 0, 1, 2, 3

#: The rules of :func:`run_early_stopping`.
STOPPING_RULES = ("median", "patience")


def initial_population(strategy: Strategy, space: Space, seed: int,
                       population_size: int) -> list[Config]:
    """The first ``population_size`` configs of a scheduled sweep, validated against ``space``.

    The strategy's key is ``fold_in(PRNGKey(seed), 0)`` (the schedulers use streams 1 and 2).
    """
    state = strategy.init(space, jax.random.fold_in(jax.random.PRNGKey(seed), INITIAL_STREAM))
    configs, _ = strategy.ask(state, population_size)
    for config in configs:
        space.validate_config(config)
    return [dict(config) for config in configs]


def _scheduled_start(task: Task, split: Split, space: Space, strategy: Strategy | None,
                     seed: int, population_size: int, options: Any, engine_options: Any,
                     time_budget: float | timebudget.TimeBudget | None = None,
                     **call: Any) -> tuple[Any, dict[str, Any], Strategy, list[Config]]:
    """What every scheduled driver starts with: the engine call's options (with the space's
    static names) and keywords (their hooks carry the deadline of ``time_budget``, which
    starts now), the strategy (default: random search) and its first ``population_size``
    configs."""
    budget = timebudget.check_time_budget(time_budget)
    train_options, run = drivers.engine_call(options, engine_options, **call)
    run["hooks"] = run["hooks"]._replace(deadline=timebudget.start_deadline(budget))
    train_options = drivers.space_options(task, split, space, train_options)
    strategy = strategy if strategy is not None else random_search()
    return train_options, run, strategy, initial_population(strategy, space, seed,
                                                             population_size)


def _sweep_checks(task: Task, split: Split, seed: int, population_size: int, minimum: int,
                  metric: Any, mode: Any, constraints: Any) -> tuple[int, Objectives]:
    """The checks every scheduled sweep makes first: ``(seed, objectives)`` (one metric, or
    several with their modes, and the constraints: :class:`~jaxtune.objectives.Objectives`)."""
    checks.check_task_and_data(task, split)
    seed = checks.check_seed("seed", seed)
    check_int_at_least("population_size", population_size, minimum)
    objectives = Objectives.of(metric, mode, constraints, metric_modes=task.metric_modes,
                               kind=task.kind)
    return seed, objectives


def _objective_arguments(objectives: Objectives) -> dict[str, Any]:
    """A scheduler's ``metric``/``mode``/``constraints`` keywords (one metric: its name)."""
    if len(objectives.metrics) == 1:
        return {"metric": objectives.metrics[0], "mode": objectives.modes[0],
                "constraints": objectives.constraints}
    return {"metric": list(objectives.metrics), "mode": list(objectives.modes),
            "constraints": objectives.constraints}


def _scheduled_results(results: Results, objectives: Objectives,
                       metadata: Mapping[str, Any]) -> Results:
    """A scheduled sweep's Results: rows marked feasible or not (with constraints), and the
    sweep's metadata (the first metric as ``metric``/``mode``, every one as ``metrics``)."""
    if objectives.constraints is not None:
        results = mark_feasible(results, objectives.constraints)
    return Results(list(results), {**results.metadata, "metric": objectives.metrics[0],
                                   "mode": objectives.modes[0], **objectives.describe(),
                                   **metadata})


def run_halving(
    task: Task, split: Split, space: Space, strategy: Strategy | None = None, *,
    population_size: int, num_steps: int | None = None, min_steps: int, eta: int = 3,
    max_member_steps: int | None = None, num_brackets: int | None = 1,
    metric: str | Sequence[str] | None = None, mode: Any = None, constraints: Any = None,
    seed: int = 0,
    batch_size: int | None = 128, steps_per_segment: int | None = None,
    options: EngineOptions | None = None, engine_options: Mapping[str, Any] | None = None,
    on_segment: Callable[[contracts.SegmentReport], None] | None = None,
    on_restore: Callable[[int], None] | None = None, checkpoint: Any = None,
    resume: bool = False, time_budget: float | timebudget.TimeBudget | None = None,
) -> Results:
    """Tunes with successive halving (ASHA) or Hyperband in one engine run.

    The first ``population_size`` configurations come from ``strategy``; the scheduler refills
    slots with configurations from a second instance of it (its own key).

    Args:
      task: what each member trains.
      split: the data.
      space: the search space.
      strategy: proposes configurations (default: random search).
      population_size: slots trained at once.
      num_steps: steps of a member that completes (the last rung); or ``options.num_steps``.
      min_steps: the first rung (of the most aggressive bracket).
      eta: reduction factor.
      max_member_steps: cap on member-steps, divided equally between the static groups of the
        initial configurations.
      num_brackets: ``1``: one bracket (successive halving, ASHA); ``None``: Hyperband with
        every bracket; ``k``: Hyperband with its ``k`` most aggressive brackets.
      metric, mode, constraints: the selection metric and ``"max"``/``"min"`` (default from
        the task), or several metrics (a mode each) and constraints as :func:`jaxtune.tune`
        takes them: members are then compared in :mod:`jaxtune.objectives`' order.
      seed: the sweep seed (strategy keys and member keys derive from it).
      batch_size: minibatch rows (``None``: full batch).
      steps_per_segment: default ``min_steps`` (then every rung is a segment boundary).
      options, engine_options, on_segment, on_restore, checkpoint, resume, time_budget:
        see the module.

    Returns:
      :class:`~jaxtune.results.Results` of every member started; stopped ones have status
      ``"stopped"``. ``metadata["member_steps"]`` is the compute spent and
      ``metadata["scheduler"]`` the settings. Rank completed members with
      ``results.filter(status="completed").best(metric, mode)``.

    Example:
      >>> import jaxtune as jt
      >>> split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits")))
      >>> task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
      >>> space = jt.Space({"learning_rate": jt.Float(1e-4, 1.0, log=True),
      ...                   "optimizer": jt.Fixed("adam"), "width": jt.Fixed(32)})
      >>> results = jt.run_halving(task, split, space, population_size=27, num_steps=270,
      ...                          min_steps=10, max_member_steps=20000)  # doctest: +SKIP
    """
    seed, objectives = _sweep_checks(task, split, seed, population_size, 1, metric, mode,
                                     constraints)
    if options is None and not steps_per_segment and num_steps is not None:
        steps_per_segment = min(min_steps, num_steps)
    given = {"steps_per_segment": steps_per_segment} if steps_per_segment else {}
    train_options, run, strategy, configs = _scheduled_start(
        task, split, space, strategy, seed, population_size, options, engine_options,
        time_budget, on_segment=on_segment, on_restore=on_restore, checkpoint=checkpoint,
        resume=resume, num_steps=num_steps, batch_size=batch_size, **given)
    scheduler = _halving_scheduler(space, strategy, configs, seed, min_steps=min_steps, eta=eta,
                                   max_member_steps=max_member_steps,
                                   num_brackets=num_brackets,
                                   **_objective_arguments(objectives))
    run["hooks"] = run["hooks"]._replace(scheduler=scheduler)
    results = engine.run(task, configs, split, train_options, seed=seed, **run).results
    # From the rows (each member's last step), not from watching the scheduler: a resumed
    # call's restored chunks never pass through it.
    member_steps = sum(row.curve_steps[-1] for row in results if row.curve_steps)
    settings = {
        "kind": "successive_halving" if num_brackets == 1 else "hyperband",
        "min_steps": min_steps, "eta": eta, "max_member_steps": max_member_steps,
        "num_brackets": num_brackets, "population_size": population_size,
        "num_steps": train_options.num_steps, "steps_per_segment": train_options.steps_per_segment,
    }
    return _scheduled_results(results, objectives, {
        "space": space.to_dict(), "member_steps": int(member_steps), "scheduler": settings})


def _halving_scheduler(space: Space, strategy: Strategy, configs: Sequence[Config], seed: int,
                       *, min_steps: int, eta: int, max_member_steps: int | None,
                       num_brackets: int | None, **objectives: Any) -> Scheduler:
    """The scheduler of :func:`run_halving`: its budget is split between the static groups."""
    num_groups = len({space.static_key(c) for c in configs})
    budget = None if max_member_steps is None else max(1, int(max_member_steps) // num_groups)
    common = dict(eta=eta, max_member_steps=budget, **objectives,
                  key=jax.random.fold_in(jax.random.PRNGKey(seed), HALVING_STREAM))
    if num_brackets == 1:
        return successive_halving(space, strategy, min_steps=min_steps, **common)
    return hyperband(space, strategy, min_steps=min_steps, num_brackets=num_brackets, **common)


def run_early_stopping(
    task: Task, split: Split, space: Space, strategy: Strategy | None = None, *,
    rule: str = "median", population_size: int, num_configs: int, num_steps: int | None = None,
    grace_steps: int = 0, min_samples: int = 3, patience: int = 3, min_delta: float = 0.0,
    metric: str | Sequence[str] | None = None, mode: Any = None, constraints: Any = None,
    seed: int = 0,
    batch_size: int | None = 128, steps_per_segment: int = 10,
    options: EngineOptions | None = None, engine_options: Mapping[str, Any] | None = None,
    on_segment: Callable[[contracts.SegmentReport], None] | None = None,
    on_restore: Callable[[int], None] | None = None, checkpoint: Any = None,
    resume: bool = False, time_budget: float | timebudget.TimeBudget | None = None,
) -> Results:
    """Tunes with early stopping between segments: ``num_configs`` configs through
    ``population_size`` slots, stopping members the rule gives up on and refilling their slots.

    The first ``population_size`` configs come from ``strategy`` (default: random search); the
    scheduler refills from a second instance of it (its own key) and tells it each member's
    last value (:mod:`jaxtune.strategies.stopping`). With several static groups, ``num_configs``
    is shared equally between them (each keeps at least its initial members).

    Args:
      task: what each member trains.
      split: the data.
      space: the search space.
      strategy: proposes configurations (default: random search).
      rule: ``"median"`` (the median stopping rule) or ``"patience"``.
      population_size: slots trained at once.
      num_configs: members started in all (>= ``population_size``).
      num_steps: steps of a member that is never stopped (or ``options.num_steps``).
      grace_steps: no member stops before this step (median: running averages start here).
      min_samples: median rule: fewest other members that reached a step for a decision.
      patience: patience rule: evaluations (segments) without improvement before a stop.
      min_delta: patience rule: the least change that counts as an improvement.
      metric, mode, constraints: the selection metric and ``"max"``/``"min"`` (default from
        the task), or several metrics (a mode each) and constraints as :func:`jaxtune.tune`
        takes them: members are then compared in :mod:`jaxtune.objectives`' order.
      seed: the sweep seed.
      batch_size: minibatch rows (``None``: full batch).
      steps_per_segment: steps between evaluations (each one a possible stop).
      options, engine_options, on_segment, on_restore, checkpoint, resume, time_budget:
        see the module.

    Returns:
      :class:`~jaxtune.results.Results` of every member started; those the rule stopped have
      status ``"stopped"``. ``metadata["member_steps"]`` is the compute spent and
      ``metadata["scheduler"]`` the settings.

    Raises:
      ValueError: an unknown ``rule``, ``num_configs < population_size``, or a bad setting of
        the rule, before anything is compiled.
    """
    if rule not in STOPPING_RULES:
        raise ValueError(f"rule={rule!r} must be one of {list(STOPPING_RULES)}.")
    seed, objectives = _sweep_checks(task, split, seed, population_size, 1, metric, mode,
                                     constraints)
    check_int_at_least("num_configs", num_configs, population_size)
    train_options, run, strategy, configs = _scheduled_start(
        task, split, space, strategy, seed, population_size, options, engine_options,
        time_budget, on_segment=on_segment, on_restore=on_restore, checkpoint=checkpoint,
        resume=resume, num_steps=num_steps, batch_size=batch_size,
        steps_per_segment=steps_per_segment)
    num_groups = len({space.static_key(c) for c in configs})
    common = dict(num_configs=max(1, num_configs // num_groups), grace_steps=grace_steps,
                  **_objective_arguments(objectives),
                  key=jax.random.fold_in(jax.random.PRNGKey(seed), STOPPING_STREAM))
    settings = {"kind": rule, "population_size": population_size, "num_configs": num_configs,
                "grace_steps": grace_steps, "num_steps": train_options.num_steps,
                "steps_per_segment": train_options.steps_per_segment}
    if rule == "median":
        scheduler = median_stopping(space, strategy, min_samples=min_samples, **common)
        settings["min_samples"] = min_samples
    else:
        scheduler = patience_stopping(space, strategy, patience=patience, min_delta=min_delta,
                                      **common)
        settings.update(patience=patience, min_delta=min_delta)
    run["hooks"] = run["hooks"]._replace(scheduler=scheduler)
    results = engine.run(task, configs, split, train_options, seed=seed, **run).results
    member_steps = sum(row.curve_steps[-1] for row in results if row.curve_steps)
    return _scheduled_results(results, objectives, {
        "space": space.to_dict(), "member_steps": int(member_steps), "scheduler": settings})


def run_pbt(
    task: Task, split: Split, space: Space, strategy: Strategy | None = None, *,
    population_size: int, num_steps: int | None = None, interval_segments: int = 1,
    fraction: float = 0.25, perturb: Sequence[float] = (0.8, 1.2),
    resample_probability: float = 0.25, explore: str = "perturb",
    metric: str | Sequence[str] | None = None, mode: Any = None, constraints: Any = None,
    seed: int = 0, batch_size: int | None = 128,
    steps_per_segment: int = 50, options: EngineOptions | None = None,
    engine_options: Mapping[str, Any] | None = None, return_params: bool = False,
    on_segment: Callable[[contracts.SegmentReport], None] | None = None,
    on_restore: Callable[[int], None] | None = None, checkpoint: Any = None,
    resume: bool = False, time_budget: float | timebudget.TimeBudget | None = None,
) -> Results | tuple[Results, list[Any]]:
    """Trains ``population_size`` members with PBT in one engine run.

    The initial configurations come from ``strategy`` (default: random search). The settings
    a replay needs are stored in ``metadata["pbt"]`` (``options.to_json()`` with the seed and
    the scheduler's settings), so ``replay_pbt_member(task, split, results, member_id)`` needs
    nothing else.

    Args:
      task: what each member trains.
      split: the data.
      space: the search space.
      strategy: draws the initial population (default: random search).
      population_size: members (at least 2).
      num_steps: steps per member (or ``options.num_steps``).
      interval_segments: act every this many segments (``steps_per_segment`` steps each).
      fraction: truncation fraction.
      perturb: multiplicative explore factors.
      resample_probability: probability of resampling a value instead of perturbing it.
      explore: ``"perturb"`` (PBT: perturb or resample) or ``"pb2"`` (PB2: new numeric
        dynamic values by a GP bandit, :mod:`jaxtune.strategies.pb2`; ``perturb`` and
        ``resample_probability`` are then unused). The recorded schedule replays either way.
      metric, mode, constraints: the selection metric and ``"max"``/``"min"`` (default from
        the task), or several metrics (a mode each) and constraints as :func:`jaxtune.tune`
        takes them: members are then compared in :mod:`jaxtune.objectives`' order.
      seed: the sweep seed.
      batch_size: minibatch rows (``None``: full batch).
      steps_per_segment: steps per segment.
      return_params: also return every member's final parameters.
      options, engine_options, on_segment, on_restore, checkpoint, resume, time_budget:
        see the module.

    Returns:
      :class:`~jaxtune.results.Results`, one row per member with its ``hp_schedule``; with
      ``return_params``, ``(results, params)`` with ``params[i]`` the parameters of row ``i``.
    """
    if explore not in ("perturb", "pb2"):
        raise ValueError(f"explore={explore!r} must be 'perturb' (PBT) or 'pb2' (PB2).")
    seed, objectives = _sweep_checks(task, split, seed, population_size, 2, metric, mode,
                                     constraints)
    train_options, run, strategy, configs = _scheduled_start(
        task, split, space, strategy, seed, population_size, options, engine_options,
        time_budget, on_segment=on_segment, on_restore=on_restore, checkpoint=checkpoint,
        resume=resume, num_steps=num_steps, batch_size=batch_size,
        steps_per_segment=steps_per_segment)
    settings = {"interval_segments": interval_segments, "fraction": fraction,
                "perturb": list(perturb), "resample_probability": resample_probability,
                "explore": explore}
    scheduler = _pbt_scheduler(space, settings, _objective_arguments(objectives),
                               jax.random.fold_in(jax.random.PRNGKey(seed), PBT_STREAM))
    run["hooks"] = run["hooks"]._replace(scheduler=scheduler)
    results, params = engine.run(task, configs, split, train_options, seed=seed,
                                 keep_params=True, **run)
    # Settings a replay needs; how this call was run (checkpointing, devices) is not one.
    results = _scheduled_results(results, objectives, {"space": space.to_dict(), "pbt": {
        **train_options.to_json(), "seed": seed, "population_size": population_size,
        **settings}})
    return (results, params) if return_params else results


def _pbt_scheduler(space: Space, settings: Mapping[str, Any], objectives: Mapping[str, Any],
                   key: jax.Array) -> Scheduler:
    """The scheduler of :func:`run_pbt`: PBT's or PB2's explore step."""
    if settings["explore"] == "pb2":
        return pb2(space, interval_segments=settings["interval_segments"],
                   fraction=settings["fraction"], **objectives, key=key)
    return pbt(space, interval_segments=settings["interval_segments"],
               fraction=settings["fraction"], perturb=settings["perturb"],
               resample_probability=settings["resample_probability"], **objectives, key=key)


def lineage(results: Results, member_id: int) -> dict[int, int]:
    """The members whose training a member's final state depends on.

    Follows ``copied_from`` links back through ``hp_schedule``: the member itself is needed to
    the end, and a donor up to the step at which it was copied (its state *before* the
    decisions of that segment boundary).

    Returns:
      ``{member_id: steps_needed}``; the member itself maps to its last recorded step.
    """
    rows = {row.member_id: row for row in results}
    if member_id not in rows:
        raise ValueError(f"member_id={member_id} is not in the results.")
    target = rows[member_id]
    needed = {member_id: int(target.curve_steps[-1]) + 1 if target.curve_steps else 1}
    pending = [member_id]
    while pending:
        current = pending.pop()
        for entry in rows[current].hp_schedule or ():
            if "copied_from" not in entry or int(entry["step"]) >= needed[current]:
                continue
            donor, step = int(entry["copied_from"]), int(entry["step"])
            if donor not in rows:
                raise ValueError(
                    f"member {current} copied member {donor}, which is not in the results; "
                    "replay needs every member of the original run."
                )
            if step > needed.get(donor, -1):
                needed[donor] = step
                pending.append(donor)
    return needed


def _first_config(row: MemberResult) -> Config:
    schedule = row.hp_schedule or []
    if not schedule:
        return dict(row.config)
    first = schedule[0]
    if int(first.get("step", -1)) != 0 or "copied_from" in first:
        raise ValueError(
            f"member {row.member_id}: hp_schedule does not start with its first config "
            "({'step': 0, 'config': ...}); it was recorded by an older jaxtune and cannot be "
            "replayed."
        )
    return dict(first["config"])


#: What ``metadata["pbt"]`` holds besides engine options (the replay drops them).
_PBT_SETTINGS = ("population_size", "interval_segments", "fraction", "perturb",
                 "resample_probability", "explore", "pad_to")
#: How a run was run, never part of a replay (older results may have stored ``checkpoint``).
_CALL_ONLY = ("checkpoint", "resume", "on_segment")


def _replay_plan(rows: Mapping[int, MemberResult], needed: Mapping[int, int],
                 steps_per_segment: int) -> dict[int, dict[int, tuple[int | None, Config | None]]]:
    """Per member, its recorded ``{step: (donor or None, new config or None)}`` events."""
    plan: dict[int, dict[int, tuple[int | None, Config | None]]] = {}
    for mid in sorted(needed):
        events: dict[int, tuple[int | None, Config | None]] = {}
        for entry in (rows[mid].hp_schedule or [])[1:]:
            step = int(entry["step"])
            if step >= needed[mid]:
                continue
            if step % steps_per_segment:
                raise ValueError(
                    f"member {mid} changed at step {step}, not a multiple of "
                    f"steps_per_segment={steps_per_segment}; pass the original value."
                )
            donor, config = events.get(step, (None, None))
            if "copied_from" in entry:
                donor = int(entry["copied_from"])
            else:
                config = dict(entry["config"])
            events[step] = (donor, config)
        plan[mid] = events
    return plan


def _replay_scheduler(plan: Mapping[int, Mapping[int, tuple[int | None, Config | None]]]
                      ) -> Scheduler:
    """A scheduler that makes the recorded copies and changes at their recorded steps."""

    def init(view: SlotView) -> None:
        return None

    def update(state: None, view: SlotView) -> tuple[PopulationUpdate, None]:
        # In a PBT run every member starts at step 0 together, so the decisions recorded at
        # step s were made after segment s / steps_per_segment.
        now = view.segment * view.steps_per_segment
        slot_of = {mid: slot for slot, mid in enumerate(view.member_ids)}
        exploit, explore = {}, {}
        for slot, mid in enumerate(view.member_ids):
            donor, config = plan.get(mid, {}).get(now, (None, None))
            if donor is not None:
                exploit[slot] = slot_of[donor]
            if config is not None:
                explore[slot] = config
        return PopulationUpdate(exploit=exploit, explore=explore), state

    return Scheduler(init, update)


def _replay_options(results: Results, pad_to: int | None,
                    train_options: Mapping[str, Any]) -> tuple[dict[str, Any], int | None]:
    """The original run's options (``metadata["pbt"]`` under ``train_options``) and pad_to."""
    stored = dict(results.metadata.get("pbt", {}))
    stored_pad = stored.get("pad_to")
    if pad_to is None:
        pad_to = stored_pad or stored.get("population_size")
    for name in _PBT_SETTINGS + _CALL_ONLY:
        stored.pop(name, None)
    chosen = {**stored, **train_options}
    missing = [n for n in ("num_steps", "steps_per_segment") if n not in chosen]
    if missing:
        raise ValueError(
            f"replay_pbt_member needs the original {missing}: pass them, or use results of "
            "run_pbt, which stores them in metadata['pbt']."
        )
    return chosen, pad_to


def replay_pbt_member(
    task: Task,
    split: Split,
    results: Results,
    member_id: int,
    *,
    pad_to: int | None = None,
    return_result: bool = False,
    **train_options: Any,
) -> Any:
    """Re-trains one PBT member from its recorded schedule, without the rest of the population.

    The lineage (the member and, following ``copied_from`` back, every donor up to the step it
    was copied; see :func:`lineage`) is trained as a small population by the same engine, with
    a scheduler that replays the recorded copies and hyperparameter changes at the recorded
    steps. Each member's key derives from its seed, fold and *first* config, as in the original
    run, and a recipient keeps its own key after a copy, so the replay is the same computation.

    With ``pad_to`` equal to the original population size (and the same devices) every
    compiled program has the original shapes and the replayed parameters and metrics are
    **bit-identical**. With a smaller population the batched products round differently: the
    result matches to float tolerance (about ``1e-4`` on metrics for stable learning rates).

    Args:
      task: the task of the original run.
      split: the data of the original run.
      results: the original run's results (every member of the lineage must be present).
      member_id: the member to replay.
      pad_to: population size to pad to (the original population size replays exactly).
        Default: ``results.metadata["pbt"]["population_size"]`` when present.
      return_result: also return the replayed :class:`~jaxtune.results.MemberResult`.
      **train_options: options of the original run (``num_steps``, ``batch_size``,
        ``steps_per_segment``, ``seed``, ``static_names``, ``standardize``... and ``checkpoint``,
        ``resume``, ``on_segment``); default: ``results.metadata["pbt"]`` of :func:`run_pbt`.

    Returns:
      The member's final parameters (a pytree of numpy arrays), or ``(params, result)``.

    Raises:
      ValueError: an unknown member, a lineage member missing from ``results``, a schedule
        without its first config, or missing training options.
    """
    chosen, pad_to = _replay_options(results, pad_to, train_options)
    needed = lineage(results, member_id)
    rows = {row.member_id: row for row in results}
    members = sorted(needed)
    plan = _replay_plan(rows, needed, int(chosen["steps_per_segment"]))
    seed = chosen.pop("seed", 0)
    firsts = [_first_config(rows[m]) for m in members]
    chosen.setdefault("evaluate_test", True)
    # The original run checked the names of its space; a replay trains some groups only.
    chosen["sweep_reads"] = {*chosen.get("sweep_reads", ()), *(n for c in firsts for n in c)}
    calling = {name: chosen.pop(name) for name in drivers.RUN_KEYWORDS if name in chosen}
    options, run = drivers.engine_call(None, calling, scheduler=_replay_scheduler(plan),
                                       **{**chosen, "pad_to": pad_to})
    output = engine.run(task, firsts, split, options, seed=seed,
                        member_seeds=[rows[m].seed for m in members],
                        folds=[rows[m].fold for m in members], member_ids=members,
                        keep_params=True, **run)
    index = [row.member_id for row in output.results].index(member_id)
    if return_result:
        return output.params[index], output.results[index]
    return output.params[index]
