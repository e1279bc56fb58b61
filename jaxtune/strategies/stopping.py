"""Early stopping between segments: the median stopping rule and patience, with refills.

Both are engine schedulers (:class:`~jaxtune.contracts.Scheduler`): after every segment they
read each slot's selection metric, stop the members a rule gives up on (status ``"stopped"``)
and start new members from a :class:`~jaxtune.strategies.Strategy` in the freed slots, until
``num_configs`` members have started. As with successive halving, the population keeps its
size, so stopping and refilling never recompile.

* **Median stopping rule** (Golovin et al., 2017, "Google Vizier", section 3.2.2), in the form
  of Ray Tune's ``MedianStoppingRule``: a member at step ``t >= grace_steps`` stops when its
  best value so far is strictly worse than the median, over the *other* members that have
  reached step ``t`` (running, completed or stopped; at least ``min_samples`` of them), of their
  running averages: the mean of each one's values recorded at steps ``grace_steps..t``.
* **Patience** (Keras' ``EarlyStopping``): a member at step ``t >= grace_steps`` stops after
  ``patience`` evaluations in a row that did not improve its best value by more than
  ``min_delta``.

Details shared by both:

* An *evaluation* is one segment: the engine evaluates every member at each segment boundary,
  and a member's history is its ``(step, value)`` pairs there. Diverged (non-finite) values
  count as the worst value (``+inf`` loss), and a diverged member's slot is refilled.
* Decisions of one segment are made together, from every history including that segment's
  values (all slots advance in lockstep), so they do not depend on slot order.
* **Refill.** Stopped, diverged and completed members free their slots; each free slot starts
  a new member (:class:`~jaxtune.contracts.PopulationUpdate` ``refill``) while fewer than
  ``num_configs`` have started. The slot of the best completed member so far (by its last
  value) is kept, so it keeps its final parameters and gets test metrics. With
  ``num_configs=None`` nothing is refilled: the rule only stops members.
* **The strategy** proposes configs of the slot's static group only (a slot cannot change its
  compiled program), from its own key folded with the group's static values. It is told each
  member's last value when the member leaves training (completed, stopped; ``+inf`` when
  diverged). A stopped member's value is a shorter run's, so a model-based strategy (BO) sees
  mixed fidelities; it learns where stopped members were bad, which is what it should avoid.
* Decisions are a function of the views (a resumed run replays them bit for bit).
* **Several metrics** (``metric=[...]``, ``mode=[...]``): the rule watches each metric on its
  own and a member stops only when it would stop on **every** metric (a member still good on
  one objective may end on the Pareto front, so it keeps training). The kept completed member
  and what the strategy is told follow :mod:`jaxtune.objectives` (NSGA-II's order; with
  ``constraints=``, infeasible members rank last and a strategy taking outcomes is told them).

:func:`jaxtune.run_early_stopping` (in :mod:`jaxtune.scheduled`) is the driver.

Example::

    scheduler = median_stopping(space, num_configs=32, metric="valid_accuracy",
                                grace_steps=20, key=jax.random.PRNGKey(0))
    results = engine.train(task, first_configs, split, num_steps=100, steps_per_segment=10,
                           static_names=space.static_names, scheduler=scheduler)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune.contracts import Config, PopulationUpdate, Scheduler, SlotView
from jaxtune.keys import fold_in_config
from jaxtune.objectives import Objectives, best_first, told_scores, violation_totals
from jaxtune.space import Fixed, Space
from jaxtune.strategies.base import Strategy, check_int_at_least
from jaxtune.strategies.random import random_search

__all__ = [
    "History",
    "StoppingState",
    "group_space",
    "median_stopping",
    "median_stops",
    "patience_stopping",
    "patience_stops",
]

#: Slot states of :class:`StoppingState`.
RUNNING, DONE, IDLE = 0, 1, 2

#: A member's evaluations: ``((step, loss), ...)`` ascending in step, losses lower-is-better.
History = tuple[tuple[int, float], ...]


class StoppingState(NamedTuple):
    """State of a stopping scheduler (host values).

    Attributes:
      strategy_state: the state of the strategy proposing refills.
      histories: ``{member_id: ((step, loss), ...)}`` of every member seen, for the first
        metric (losses: lower is better, ``+inf`` for a non-finite value).
      slot_state: ``[num_slots]`` int: ``RUNNING`` (0), ``DONE`` (1: completed) or ``IDLE``
        (2: stopped or diverged, not refilled).
      num_started: members started so far (the initial ones included).
      num_stopped: members the rule stopped.
      incumbent: slot of the best completed member (kept), ``-1`` before one completes.
      incumbent_loss: its last losses ``[k]`` (``inf`` before).
      more_histories: the same histories for the other metrics, in order (several metrics).
      incumbent_violation: the incumbent's total constraint violation.
    """

    strategy_state: Any
    histories: Mapping[int, History]
    slot_state: np.ndarray
    num_started: int
    num_stopped: int
    incumbent: int
    incumbent_loss: np.ndarray
    more_histories: tuple[Mapping[int, History], ...] = ()
    incumbent_violation: float = 0.0


def median_stops(histories: Mapping[int, History], member_id: int, *, grace_steps: int = 0,
                 min_samples: int = 3) -> bool:
    """The median stopping rule for one member at its last recorded step ``t``.

    Args:
      histories: every member's ``((step, loss), ...)`` (lower is better).
      member_id: the member to decide for (its history must not be empty).
      grace_steps: no decision before this step; running averages start here.
      min_samples: fewest other members that reached ``t`` for a decision.

    Returns:
      ``True`` when the member's best loss is strictly worse (greater) than the median of the
      other members' running-average losses over steps ``grace_steps..t``.
    """
    history = histories[member_id]
    t = history[-1][0]
    if t < grace_steps:
        return False
    averages = []
    for other, records in histories.items():
        if other == member_id or not records or records[-1][0] < t:
            continue
        window = [loss for step, loss in records if grace_steps <= step <= t]
        if window:
            averages.append(float(np.mean(window)))
    if len(averages) < min_samples:
        return False
    best = min(loss for _, loss in history)
    return bool(best > np.median(averages))


def patience_stops(history: History, *, patience: int = 3, min_delta: float = 0.0,
                   grace_steps: int = 0) -> bool:
    """Patience for one member: ``patience`` evaluations in a row without improving its best
    loss by more than ``min_delta``, at a step ``>= grace_steps``.

    The first evaluation sets the best; each later one improves when ``loss < best -
    min_delta`` (then it is the new best and the count restarts), else the count grows.
    """
    if not history or history[-1][0] < grace_steps:
        return False
    best, waited = history[0][1], 0
    for _, loss in history[1:]:
        if loss < best - min_delta:
            best, waited = loss, 0
        else:
            waited += 1
    return waited >= patience


class _Settings(NamedTuple):
    """What a stopping scheduler is made of (its state is :class:`StoppingState`)."""

    space: Space
    strategy: Strategy
    num_configs: int | None
    objectives: Objectives
    key: jax.Array
    rule: Callable[[Mapping[int, History], int], bool]


def median_stopping(
    space: Space, strategy: Strategy | None = None, *, num_configs: int | None = None,
    grace_steps: int = 0, min_samples: int = 3, metric: str | Sequence[str] = "valid_loss",
    mode: Any = None, constraints: Any = None, key: jax.Array,
) -> Scheduler:
    """The median stopping rule (Golovin et al., 2017; Ray Tune's form) as a scheduler.

    Args:
      space: the search space (refills are drawn from it).
      strategy: proposes refill configs (default: random search).
      num_configs: members one chunk may start in all, its initial ones included (``None``:
        no refills).
      grace_steps: no member stops before this step; running averages start here.
      min_samples: fewest other members that reached a step for a decision there.
      metric: the metric ranking members, e.g. ``"valid_accuracy"``, or several (a member
        stops only when the rule says so on every one; see the module).
      mode: ``"max"`` or ``"min"`` (default from the metric's name), or one per metric.
      constraints: ``{metric: (operator, bound)}`` or a predicate of a member's metrics.
      key: JAX PRNG key of the strategy.

    Returns:
      A :class:`~jaxtune.contracts.Scheduler`.
    """
    check_int_at_least("grace_steps", grace_steps, 0)
    check_int_at_least("min_samples", min_samples, 1)
    rule = functools.partial(_median_rule, int(grace_steps), int(min_samples))
    return _stopping_scheduler(space, strategy, rule, num_configs=num_configs,
                               objectives=Objectives.of(metric, mode, constraints), key=key)


def patience_stopping(
    space: Space, strategy: Strategy | None = None, *, num_configs: int | None = None,
    patience: int = 3, min_delta: float = 0.0, grace_steps: int = 0,
    metric: str | Sequence[str] = "valid_loss", mode: Any = None, constraints: Any = None,
    key: jax.Array,
) -> Scheduler:
    """Patience (stop after ``patience`` evaluations without improvement) as a scheduler.

    Args:
      space: the search space (refills are drawn from it).
      strategy: proposes refill configs (default: random search).
      num_configs: members one chunk may start in all, its initial ones included (``None``:
        no refills).
      patience: evaluations (segments) without improvement before a member stops.
      min_delta: an improvement must beat the best value by more than this (metric units).
      grace_steps: no member stops before this step.
      metric: the metric watched, e.g. ``"valid_loss"``, or several (a member stops only
        when none of them improved; see the module).
      mode: ``"max"`` or ``"min"`` (default from the metric's name), or one per metric.
      constraints: ``{metric: (operator, bound)}`` or a predicate of a member's metrics.
      key: JAX PRNG key of the strategy.

    Returns:
      A :class:`~jaxtune.contracts.Scheduler`.
    """
    check_int_at_least("patience", patience, 1)
    check_int_at_least("grace_steps", grace_steps, 0)
    if isinstance(min_delta, bool) or not isinstance(min_delta, int | float) or not (
            np.isfinite(min_delta) and min_delta >= 0):
        raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}.")
    rule = functools.partial(_patience_rule, int(patience), float(min_delta), int(grace_steps))
    return _stopping_scheduler(space, strategy, rule, num_configs=num_configs,
                               objectives=Objectives.of(metric, mode, constraints), key=key)


def _median_rule(grace_steps: int, min_samples: int, histories: Mapping[int, History],
                 member_id: int) -> bool:
    return median_stops(histories, member_id, grace_steps=grace_steps, min_samples=min_samples)


def _patience_rule(patience: int, min_delta: float, grace_steps: int,
                   histories: Mapping[int, History], member_id: int) -> bool:
    return patience_stops(histories[member_id], patience=patience, min_delta=min_delta,
                          grace_steps=grace_steps)


def _stopping_scheduler(space: Space, strategy: Strategy | None,
                        rule: Callable[[Mapping[int, History], int], bool], *,
                        num_configs: int | None, objectives: Objectives,
                        key: jax.Array) -> Scheduler:
    if not isinstance(space, Space):
        raise TypeError(f"space must be a jaxtune Space, got {type(space).__name__}.")
    if num_configs is not None:
        check_int_at_least("num_configs", num_configs, 1)
    strategy = strategy if strategy is not None else random_search()
    settings = _Settings(space, strategy, num_configs, objectives, key, rule)
    return Scheduler(functools.partial(_init, settings), functools.partial(_update, settings))


def _init(settings: _Settings, view: SlotView) -> StoppingState:
    settings.objectives.check_reported(view.metrics)
    space, first = settings.space, view.configs[0]
    static = {n: first[n] for n in space.static_names if n in first}
    return StoppingState(
        strategy_state=settings.strategy.init(group_space(space, first),
                                              fold_in_config(settings.key, static)),
        histories={}, slot_state=np.full(len(view.step), RUNNING, np.int64),
        num_started=len(view.step), num_stopped=0, incumbent=-1,
        incumbent_loss=np.full(len(settings.objectives.metrics), np.inf),
        more_histories=tuple({} for _ in settings.objectives.metrics[1:]))


def _recorded(histories: Mapping[int, History], view: SlotView, running: np.ndarray,
              step: np.ndarray, losses: np.ndarray) -> dict[int, History]:
    """``histories`` with this segment's ``(step, loss)`` of every running member (once per
    step)."""
    histories = dict(histories)
    for slot in np.flatnonzero(running):
        member, previous = int(view.member_ids[slot]), histories.get(int(view.member_ids[slot]))
        if not previous or step[slot] > previous[-1][0]:
            histories[member] = (*(previous or ()), (int(step[slot]), float(losses[slot])))
    return histories


def _incumbent(state: StoppingState, finished: np.ndarray, losses: np.ndarray,
               totals: np.ndarray) -> tuple[int, np.ndarray, float]:
    """The best completed member: the incumbent unless one completing now is strictly ahead
    (:func:`jaxtune.objectives.best_first`; ties keep the incumbent)."""
    candidates = np.flatnonzero(finished)
    if len(candidates) == 0:
        return state.incumbent, state.incumbent_loss, state.incumbent_violation
    first = int(best_first(np.vstack([state.incumbent_loss[None, :], losses[candidates]]),
                           np.concatenate([[state.incumbent_violation], totals[candidates]]))[0])
    if first == 0:
        return state.incumbent, state.incumbent_loss, state.incumbent_violation
    slot = int(candidates[first - 1])
    return slot, losses[slot].copy(), float(totals[slot])


def _update(settings: _Settings, state: StoppingState,
            view: SlotView) -> tuple[PopulationUpdate | None, StoppingState]:
    """Record the segment, stop what the rule gives up on (on every metric), refill free
    slots."""
    objectives = settings.objectives
    step = np.asarray(view.step, np.int64)
    losses = objectives.losses(view.metrics, view.alive)
    violations = objectives.violations(view.metrics, view.alive)
    running = state.slot_state == RUNNING
    finished = running & np.asarray(view.finished, bool)
    died = running & ~finished & ~np.asarray(view.alive, bool)
    every = [_recorded(h, view, running, step, losses[:, j])
             for j, h in enumerate((state.histories, *state.more_histories))]
    candidates = np.flatnonzero(running & ~finished & ~died)
    stopped = [int(s) for s in candidates
               if all(settings.rule(h, int(view.member_ids[s])) for h in every)]
    slot_state = state.slot_state.copy()
    slot_state[finished], slot_state[died], slot_state[stopped] = DONE, IDLE, IDLE
    incumbent = _incumbent(state, finished, losses, violation_totals(violations))
    leaving = sorted([*np.flatnonzero(finished | died).tolist(), *stopped])
    strategy_state = state.strategy_state
    if leaving:
        strategy_state = settings.strategy.tell(
            strategy_state, [dict(view.configs[s]) for s in leaving],
            told_scores(settings.strategy, objectives, losses[leaving], violations[leaving]))
    free = sorted({*stopped, *np.flatnonzero(slot_state == IDLE).tolist(),
                   *(s for s in np.flatnonzero(slot_state == DONE).tolist()
                     if s != incumbent[0])})
    refill, strategy_state = _refill(settings, state.num_started, free, strategy_state)
    slot_state[list(refill)] = RUNNING
    state = state._replace(
        strategy_state=strategy_state, histories=every[0], more_histories=tuple(every[1:]),
        slot_state=slot_state, num_started=state.num_started + len(refill),
        num_stopped=state.num_stopped + len(stopped), incumbent=incumbent[0],
        incumbent_loss=incumbent[1], incumbent_violation=incumbent[2])
    stop = [s for s in stopped if s not in refill]
    if not stop and not refill:
        return None, state
    return PopulationUpdate(stop=stop, refill=refill), state


def _refill(settings: _Settings, num_started: int, free: Sequence[int],
            strategy_state: Any) -> tuple[dict[int, Config], Any]:
    """``{slot: config}`` for the first free slots the budget allows, from the strategy."""
    if settings.num_configs is None:
        return {}, strategy_state
    wanted = list(free)[:max(0, settings.num_configs - num_started)]
    if not wanted:
        return {}, strategy_state
    configs, strategy_state = settings.strategy.ask(strategy_state, len(wanted))
    return {slot: dict(c) for slot, c in zip(wanted, configs, strict=False)}, strategy_state


def group_space(space: Space, config: Mapping[str, Any]) -> Space:
    """``space`` with its static parameters fixed to ``config``'s values (one static group):
    what a scheduler may propose for a slot, whose compiled program is that group's."""
    params = {}
    for name in space.names:
        param = space[name]
        fixed = param.static and not isinstance(param, Fixed) and name in config
        params[name] = Fixed(config[name]) if fixed else param
    return Space(params)
