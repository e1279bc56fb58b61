"""Population-based training (Jaderberg et al., 2017) as an engine scheduler, and its replay.

PBT ("Population based training of neural networks", Jaderberg et al., 2017) trains a
population in which, every few segments, the worst members stop their own run and continue
from a copy of a better member (**exploit**) with perturbed hyperparameters (**explore**). The
result is a *schedule* of hyperparameters per member rather than one value.

In jaxtune the population is the engine's population, so both halves of a PBT step are
fixed-shape device programs that never recompile:

* **exploit** is a gather along the population axis: the engine copies the donor's parameters,
  optimizer state and step into the recipient's slot
  (:class:`~jaxtune.engine.PopulationUpdate` ``exploit``);
* **explore** writes new values into the ``[num_members]`` hyperparameter arrays
  (``explore``). Only dynamic values change; static values (widths, optimizer family...) are
  the static group's and stay fixed.

Truncation selection: every ``interval_segments`` segments, members still training are ranked
by ``metric``; each member of the bottom ``fraction`` (diverged members rank last) copies a
member of the top ``fraction`` drawn uniformly, then each dynamic hyperparameter is resampled
from the space with probability ``resample_probability`` or else multiplied by a factor drawn
from ``perturb`` and clipped to the space's bounds (Int values are rounded; a dynamic Choice
moves to the neighbouring value, up for a factor above 1 and down otherwise).

A recipient keeps its own training key (its minibatch and dropout streams), so its run after a
copy is a deterministic function of the donor's state, the step, its key and its new values.
The engine records the schedule in ``MemberResult.hp_schedule``: ``{"step": 0, "config": ...}``
(the first config, which the key derives from), ``{"step": s, "copied_from": id, "config":
...}`` for a copy and ``{"step": s, "config": ...}`` for new values. :func:`replay_pbt_member`
re-trains one member from these records alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune import checks, contracts, engine
from jaxtune.data import Split
from jaxtune.results import MemberResult, Results
from jaxtune.space import Choice, Float, Int, Space
from jaxtune.strategies.base import Strategy
from jaxtune.strategies.random import random_search
from jaxtune.task import Task

__all__ = ["PBTState", "lineage", "pbt", "replay_pbt_member", "run_pbt"]

Config = dict[str, Any]


class PBTState(NamedTuple):
    """State of :func:`pbt`.

    Attributes:
      key: the PRNG key; the update after segment ``g`` draws from ``fold_in(key, g)``.
      num_exploits: copies made so far.
    """

    key: jax.Array
    num_exploits: int


def pbt(
    space: Space,
    *,
    interval_segments: int = 1,
    fraction: float = 0.25,
    perturb: Sequence[float] = (0.8, 1.2),
    resample_probability: float = 0.25,
    metric: str = "valid_loss",
    mode: str | None = None,
    key: jax.Array,
) -> engine.Scheduler:
    """Population-based training (Jaderberg et al., 2017) as an engine scheduler.

    Args:
      space: the search space: bounds for explore, and which names are dynamic.
      interval_segments: act after every this many segments.
      fraction: the bottom ``fraction`` of the members still training copy the top
        ``fraction`` (``0 < fraction <= 0.5``; at least one member each when two or more train).
      perturb: multiplicative factors, one drawn uniformly per hyperparameter.
      resample_probability: probability of resampling a hyperparameter from the space
        instead of perturbing it.
      metric: the metric ranking the members, e.g. ``"valid_accuracy"``.
      mode: ``"max"`` or ``"min"`` (default from the metric's name, e.g. ``valid_loss``: min).
      key: JAX PRNG key of the scheduler's draws (donors, factors, resamples).

    Returns:
      An :class:`~jaxtune.engine.Scheduler` for ``engine.train(..., scheduler=...)``.

    Example:
      >>> import jax
      >>> from jaxtune.space import Float, Space
      >>> scheduler = pbt(Space({"learning_rate": Float(1e-4, 1e-1, log=True)}),
      ...                 key=jax.random.PRNGKey(0))
    """
    if not isinstance(space, Space):
        raise TypeError(f"space must be a jaxtune Space, got {type(space).__name__}.")
    if isinstance(interval_segments, bool) or not isinstance(interval_segments, int) or (
        interval_segments < 1
    ):
        raise ValueError(f"interval_segments must be an int >= 1, got {interval_segments!r}.")
    if not 0.0 < float(fraction) <= 0.5:
        raise ValueError(
            f"fraction={fraction!r} must be in (0, 0.5] so that the bottom and top do not overlap."
        )
    perturb = tuple(float(f) for f in perturb)
    if not perturb or not all(np.isfinite(f) and f > 0 for f in perturb):
        raise ValueError(f"perturb={perturb!r} must be a non-empty list of positive factors.")
    if not 0.0 <= float(resample_probability) <= 1.0:
        raise ValueError(f"resample_probability={resample_probability!r} must be in [0, 1].")
    mode = contracts.selection_mode(metric, mode)  # default from the name: valid_loss -> min
    dynamic = list(space.dynamic_names)
    searchable = list(space.searchable_names)

    def init(view: engine.SlotView) -> PBTState:
        if metric not in view.metrics:
            raise ValueError(
                f"metric={metric!r} is not reported by the task; choose one of "
                f"{sorted(view.metrics)}."
            )
        return PBTState(key=key, num_exploits=0)

    def explore(config: Mapping[str, Any], draws: np.ndarray) -> Config:
        # draws: [2 * len(dynamic) + dim] uniforms: resample flags, factor picks, a unit point.
        new = dict(config)
        point = draws[2 * len(dynamic):]
        resampled = space.decode(point[None, :])[0]
        for j, name in enumerate(dynamic):
            if draws[j] < resample_probability:
                new[name] = resampled[name]
                continue
            factor = perturb[min(int(draws[len(dynamic) + j] * len(perturb)), len(perturb) - 1)]
            new[name] = _perturbed(space[name], config[name], factor)
        return new

    def update(
        state: PBTState, view: engine.SlotView
    ) -> tuple[engine.PopulationUpdate | None, PBTState]:
        if view.segment % interval_segments:
            return None, state
        training = np.flatnonzero(~np.asarray(view.finished, bool))
        if len(training) < 2:
            return None, state
        values = np.asarray(view.metrics[metric], np.float64)
        losses = -values if mode == "max" else values.copy()
        losses[~np.isfinite(losses) | ~np.asarray(view.alive, bool)] = np.inf
        order = training[np.argsort(losses[training], kind="stable")]
        count = max(1, int(fraction * len(training)))
        top = [int(s) for s in order[:count] if np.isfinite(losses[s])]
        bottom = [int(s) for s in order[len(order) - count:]]
        if not top:
            return None, state
        num_slots = len(view.step)
        draws = np.asarray(
            jax.random.uniform(
                jax.random.fold_in(state.key, view.segment),
                (num_slots, 1 + 2 * len(dynamic) + len(searchable)),
            ),
            np.float64,
        )
        exploit, new_configs = {}, {}
        for slot in bottom:
            donor = top[min(int(draws[slot, 0] * len(top)), len(top) - 1)]
            exploit[slot] = donor
            new_configs[slot] = explore(view.configs[donor], draws[slot, 1:])
        decision = engine.PopulationUpdate(exploit=exploit, explore=new_configs)
        return decision, state._replace(num_exploits=state.num_exploits + len(exploit))

    return engine.Scheduler(init, update)


def _perturbed(param: Any, value: Any, factor: float) -> Any:
    """``value * factor`` clipped to the parameter's bounds (rounded for Int; Choice: a step)."""
    if isinstance(param, Float):
        return float(np.clip(float(value) * factor, param.low, param.high))
    if isinstance(param, Int):
        return int(np.clip(round(float(value) * factor), param.low, param.high))
    if isinstance(param, Choice):
        index = param._index(value)
        index = index + 1 if factor > 1.0 else index - 1
        return param.values[int(np.clip(index, 0, len(param.values) - 1))]
    return value


def run_pbt(
    task: Task,
    split: Split,
    space: Space,
    strategy: Strategy | None = None,
    *,
    population_size: int,
    num_steps: int,
    interval_segments: int = 1,
    fraction: float = 0.25,
    perturb: Sequence[float] = (0.8, 1.2),
    resample_probability: float = 0.25,
    metric: str | None = None,
    mode: str | None = None,
    seed: int = 0,
    batch_size: int | None = 128,
    steps_per_segment: int = 50,
    engine_options: Mapping[str, Any] | None = None,
    return_params: bool = False,
) -> Results | tuple[Results, list[Any]]:
    """Trains ``population_size`` members with PBT in one ``engine.train`` call.

    The initial configurations come from ``strategy`` (default: random search). The settings
    a replay needs are stored in ``metadata["pbt"]``, so
    ``replay_pbt_member(task, split, results, member_id)`` needs nothing else.

    Args:
      task: what each member trains.
      split: the data.
      space: the search space.
      strategy: draws the initial population (default: random search).
      population_size: members.
      num_steps: steps per member.
      interval_segments: act every this many segments (``steps_per_segment`` steps each).
      fraction: truncation fraction.
      perturb: multiplicative explore factors.
      resample_probability: probability of resampling a value instead of perturbing it.
      metric: the selection metric (default from the task: ``valid_accuracy`` or
        ``valid_mse``; a ``test_`` metric is refused).
      mode: ``"max"`` or ``"min"`` (default from the task, see :mod:`jaxtune.contracts`).
      seed: the sweep seed.
      batch_size: minibatch rows (``None``: full batch).
      steps_per_segment: steps per segment.
      engine_options: more keyword arguments for :func:`jaxtune.engine.train` (JSON-able
        values, e.g. ``standardize`` or ``batch_mode``, are stored for the replay).
      return_params: also return every member's final parameters.

    Returns:
      :class:`~jaxtune.results.Results`, one row per member with its ``hp_schedule``; with
      ``return_params``, ``(results, params)`` with ``params[i]`` the parameters of row ``i``.
    """
    checks.check_task_and_data(task, split)
    seed = checks.check_seed("seed", seed)
    if isinstance(population_size, bool) or not isinstance(population_size, int) or (
        population_size < 2
    ):
        raise ValueError(f"population_size must be an int >= 2, got {population_size!r}.")
    metric, mode = contracts.selection(metric, mode, metric_modes=task.metric_modes,
                                       kind=task.kind)
    sweep_reads = checks.check_space(
        task, split, space, batch_size=batch_size,
        allow_unused=bool((engine_options or {}).get("allow_unused_hparams", False)))
    strategy = strategy if strategy is not None else random_search()
    base = jax.random.PRNGKey(seed)
    configs, _ = strategy.ask(strategy.init(space, jax.random.fold_in(base, 0)), population_size)
    for config in configs:
        space.validate_config(config)
    scheduler = pbt(
        space, interval_segments=interval_segments, fraction=fraction, perturb=perturb,
        resample_probability=resample_probability, metric=metric, mode=mode,
        key=jax.random.fold_in(base, 2),
    )
    options = dict(engine_options or {})
    train_options = dict(
        num_steps=num_steps, batch_size=batch_size, steps_per_segment=steps_per_segment,
        seed=seed,
    )
    results, params = engine.train(
        task, configs, split, static_names=space.static_names, scheduler=scheduler,
        return_params=True, **train_options,
        **{"sweep_reads": sweep_reads, **options},
    )
    metadata = dict(results.metadata)
    # Settings a replay needs; how this call was run (checkpointing) is not one of them.
    stored = {k: v for k, v in options.items()
              if isinstance(v, bool | int | float | str) and k != "resume"}
    metadata.update(
        metric=metric, mode=mode, space=space.to_dict(),
        pbt={
            **train_options, **stored, "population_size": population_size,
            "static_names": list(space.static_names), "interval_segments": interval_segments,
            "fraction": fraction, "perturb": list(perturb),
            "resample_probability": resample_probability,
        },
    )
    results = Results(list(results), metadata)
    return (results, params) if return_params else results


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

    What holds: with ``pad_to`` equal to the original population size (and the same devices)
    every compiled program has the original shapes and the replayed parameters and metrics are
    **bit-identical**. With a smaller population the programs differ in shape, and the batched
    products round differently: the result matches to float tolerance (about ``1e-4`` on
    metrics for stable learning rates; PBT's copies do not amplify it beyond that of ordinary
    training).

    Args:
      task: the task of the original run.
      split: the data of the original run.
      results: the original run's results (every member of the lineage must be present).
      member_id: the member to replay.
      pad_to: population size to pad to (the original population size replays exactly).
        Default: ``results.metadata["pbt"]["population_size"]`` when present.
      return_result: also return the replayed :class:`~jaxtune.results.MemberResult`.
      **train_options: ``engine.train`` options of the original run (``num_steps``,
        ``batch_size``, ``steps_per_segment``, ``seed``, ``static_names``, ``standardize``...);
        default: ``results.metadata["pbt"]`` as written by :func:`run_pbt`.

    Returns:
      The member's final parameters (a pytree of numpy arrays), or ``(params, result)``.

    Raises:
      ValueError: an unknown member, a lineage member missing from ``results``, a schedule
        without its first config, or missing training options.
    """
    stored = dict(results.metadata.get("pbt", {}))
    stored_pad = stored.pop("pad_to", None)
    if pad_to is None:
        pad_to = stored_pad or stored.get("population_size")
    for name in ("population_size", "interval_segments", "fraction", "perturb",
                 "resample_probability"):
        stored.pop(name, None)
    options = {**stored, **train_options}
    missing = [n for n in ("num_steps", "steps_per_segment") if n not in options]
    if missing:
        raise ValueError(
            f"replay_pbt_member needs the original {missing}: pass them, or use results of "
            "run_pbt, which stores them in metadata['pbt']."
        )
    steps_per_segment = int(options["steps_per_segment"])
    needed = lineage(results, member_id)
    rows = {row.member_id: row for row in results}
    members = sorted(needed)
    plan: dict[int, dict[int, tuple[int | None, Config | None]]] = {}
    for mid in members:
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

    def init(view: engine.SlotView) -> None:
        return None

    def update(state: None, view: engine.SlotView) -> tuple[engine.PopulationUpdate, None]:
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
        return engine.PopulationUpdate(exploit=exploit, explore=explore), state

    options.setdefault("evaluate_test", True)
    # The original run checked the names of its space; a replay trains some of its groups only.
    options.setdefault("sweep_reads", {name for m in members for name in _first_config(rows[m])})
    results_replay, params = engine.train(
        task,
        [_first_config(rows[m]) for m in members],
        split,
        member_seeds=[rows[m].seed for m in members],
        folds=[rows[m].fold for m in members],
        member_ids=members,
        pad_to=pad_to,
        scheduler=engine.Scheduler(init, update),
        return_params=True,
        **options,
    )
    index = [row.member_id for row in results_replay].index(member_id)
    if return_result:
        return params[index], results_replay[index]
    return params[index]
