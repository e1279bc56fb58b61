"""Successive halving (ASHA) and Hyperband as engine schedulers acting between segments.

Successive halving (Jamieson & Talwalkar, 2016, "Non-stochastic best arm identification and
hyperparameter optimization") trains many configurations for a few steps and gives more steps
only to the best ones. Hyperband (Li et al., 2017, "Hyperband: a novel bandit-based approach to
hyperparameter optimization") runs several successive-halving *brackets* that trade the number
of configurations against the steps each gets at first. ASHA (Li et al., 2018, "A system for
massively parallel hyperparameter tuning") makes the promotions asynchronous so that no worker
waits for a rung to fill up.

In jaxtune a worker is a **slot** of the population: the population keeps its size (and so its
compiled program) for the whole run, and a scheduler only changes which member a slot holds.

* **Rungs.** A bracket with first rung ``r`` has rungs ``r, r * eta, r * eta**2, ...`` below
  ``num_steps``, each rounded up to a multiple of ``steps_per_segment`` (decisions happen at
  segment boundaries), and a last rung at ``num_steps``.
* **Promotion** (ASHA). When a member reaches rung ``k`` its score joins every score recorded
  at rung ``k`` of its bracket so far; it is promoted to rung ``k + 1`` when it ranks in the top
  ``floor(n_k / eta)`` of those ``n_k`` scores. Members reaching a rung in the same segment are
  recorded together before any is ranked, so the first wave is exactly one round of synchronous
  successive halving.
* **Refill.** A member that is not promoted (or that diverged) stops (status ``"stopped"`` /
  ``"diverged"``) and its slot immediately starts a new member at step 0 with a new
  configuration drawn from a :class:`~jaxtune.strategies.Strategy` held in the scheduler state
  (:class:`~jaxtune.engine.PopulationUpdate` ``refill``): the engine re-initializes the slot in
  the same fixed-shape program, so nothing recompiles.
* **Completed members.** With a budget, the slot of a member that completes ``num_steps`` is
  refilled too, except the slot of the best completed member so far (the *incumbent*), which
  keeps its final parameters and gets test metrics at the end; a refilled completed member keeps
  its validation metrics in Results. Without a budget, completed members keep their slots and
  the run ends when every slot holds one.
* **Budget.** ``max_member_steps`` caps the member-steps (one member taking one optimizer step)
  the population spends, counted from the first step of the initial members. A promotion is
  granted only if the steps it commits (up to the next rung) still fit; a new member only if
  the budget also covers finishing every member already promoted past its first rung (so the
  end of the budget goes to finishing promising members rather than to new ones). Every
  member stops at a rung and the total never exceeds the cap.
* **Hyperband.** The brackets share one population: each new member (initial or refill) joins
  the bracket that has committed the fewest member-steps, so every bracket spends about the same
  budget, as in Li et al. (2017), and cheap aggressive brackets get more members than the
  bracket without early stopping. Each bracket keeps its own rung records; its cap is an equal
  share of ``max_member_steps``. All brackets run at once in one compiled program; running them
  as successive ``engine.train`` calls would change the population size per bracket (another
  program, or padding) and leave devices idle while a bracket's last rungs finish.

The strategy proposes configurations of the slot's static group only (the static parameters of
the space are fixed to the group's values), because a slot cannot change its compiled program.
It is told each member's score at the first rung of its bracket (one fidelity per bracket, so a
model-based strategy compares like with like; diverged members score ``+inf``).

Example::

    scheduler = successive_halving(space, min_steps=10, eta=3, max_member_steps=3000,
                                   metric="valid_accuracy", mode="max",
                                   key=jax.random.PRNGKey(0))
    results = engine.train(task, first_configs, split, num_steps=90, steps_per_segment=10,
                           static_names=space.static_names, scheduler=scheduler)

:func:`jaxtune.run_halving` (in :mod:`jaxtune.scheduled`) is the driver that draws the first
configurations and runs the engine; ``jaxtune.strategies.halving.run_halving`` still resolves
there (deprecated path).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune.contracts import Config, PopulationUpdate, Scheduler, SlotView, selection_mode
from jaxtune.keys import fold_in_config
from jaxtune.space import Fixed, Space
from jaxtune.strategies.base import Strategy, check_int_at_least, deprecated_driver
from jaxtune.strategies.random import random_search

__all__ = [
    "HalvingState",
    "hyperband",
    "hyperband_brackets",
    "rung_steps",
    "successive_halving",
]

#: Slot states of :class:`HalvingState`.
RUNNING, DONE, IDLE = 0, 1, 2


class HalvingState(NamedTuple):
    """State of a halving scheduler (host values; one entry per slot ``[num_slots]``).

    Attributes:
      strategy_state: state of the strategy proposing new configurations.
      rungs: per bracket, its rung steps ascending, the last one ``num_steps``.
      slot_bracket: ``[num_slots]`` int, the bracket of the member each slot holds.
      slot_rung: ``[num_slots]`` int, index of the rung the slot's member trains towards.
      slot_state: ``[num_slots]`` int, ``RUNNING`` (0), ``DONE`` (1: completed ``num_steps``)
        or ``IDLE`` (2: stopped or diverged and not refilled).
      last_step: ``[num_slots]`` int, the slot member's step at the previous update.
      rung_scores: per bracket, per rung, the losses recorded there (``np.ndarray``).
      budget: ``[num_brackets]`` float, member-steps each bracket may spend (``inf``: no cap).
      retired_steps: ``[num_brackets]`` int, steps of members that left training.
      spent: ``[num_brackets]`` int, member-steps taken so far.
      num_started: ``[num_brackets]`` int, members started in each bracket (initial included).
      incumbent: slot of the best completed member, ``-1`` before the first completes.
      incumbent_loss: its loss (``inf`` before).
    """

    strategy_state: Any
    rungs: tuple[tuple[int, ...], ...]
    slot_bracket: np.ndarray
    slot_rung: np.ndarray
    slot_state: np.ndarray
    last_step: np.ndarray
    rung_scores: tuple[tuple[np.ndarray, ...], ...]
    budget: np.ndarray
    retired_steps: np.ndarray
    spent: np.ndarray
    num_started: np.ndarray
    incumbent: int
    incumbent_loss: float

    @property
    def member_steps(self) -> int:
        """Member-steps the population has taken so far (all brackets)."""
        return int(np.sum(self.spent))

    def committed(self) -> np.ndarray:
        """``[num_brackets]`` member-steps spent or granted (up to each member's next rung)."""
        committed = self.retired_steps.astype(np.float64)
        for slot in np.flatnonzero(self.slot_state == RUNNING):
            bracket = self.slot_bracket[slot]
            committed[bracket] += self.rungs[bracket][self.slot_rung[slot]]
        return committed

    def reserved(self) -> np.ndarray:
        """``[num_brackets]`` steps still needed to finish every member promoted past rung 0."""
        reserve = np.zeros(len(self.rungs))
        for slot in np.flatnonzero((self.slot_state == RUNNING) & (self.slot_rung > 0)):
            bracket = self.slot_bracket[slot]
            rungs = self.rungs[bracket]
            reserve[bracket] += rungs[-1] - rungs[self.slot_rung[slot]]
        return reserve


def rung_steps(min_steps: int, eta: int, num_steps: int, steps_per_segment: int = 1) -> tuple[
    int, ...
]:
    """The rungs of one bracket: ``min_steps * eta**k`` below ``num_steps``, then ``num_steps``.

    Each rung is rounded up to a multiple of ``steps_per_segment`` (the engine decides only at
    segment boundaries); rungs that collide after rounding are merged.

    Args:
      min_steps: steps of the first rung (>= 1).
      eta: reduction factor (>= 2).
      num_steps: steps of a member that completes.
      steps_per_segment: steps per engine segment.

    Returns:
      The rung steps, ascending, ending with ``num_steps``.

    Example:
      >>> rung_steps(10, 3, 100, steps_per_segment=10)
      (10, 30, 90, 100)
    """
    check_int_at_least("min_steps", min_steps, 1)
    check_int_at_least("eta", eta, 2)
    check_int_at_least("num_steps", num_steps, 1)
    check_int_at_least("steps_per_segment", steps_per_segment, 1)
    rungs: list[int] = []
    r = int(min_steps)
    while r < num_steps:
        aligned = -(-r // steps_per_segment) * steps_per_segment
        if aligned >= num_steps:
            break
        if not rungs or aligned > rungs[-1]:
            rungs.append(aligned)
        r *= eta
    rungs.append(int(num_steps))
    return tuple(rungs)


def hyperband_brackets(
    min_steps: int, eta: int, num_steps: int, num_brackets: int | None = None
) -> list[tuple[int, int]]:
    """Hyperband's brackets: ``(first_rung_steps, n_s)`` from most to least aggressive.

    With ``s_max = floor(log_eta(num_steps / min_steps))``, bracket ``s`` (``s = s_max, ..., 0``)
    starts ``n_s = ceil((s_max + 1) / (s + 1) * eta**s)`` configurations at
    ``num_steps * eta**-s`` steps (Li et al., 2017, Algorithm 1); here its first rung is
    ``min_steps * eta**(s_max - s)`` so the rungs of every bracket lie on one grid. In the
    asynchronous version the ``n_s`` are not used: members join the least-loaded bracket, which
    gives each bracket the same budget and so about ``n_s`` members per ``n_s * r_s * (s + 1)``
    member-steps.

    Args:
      min_steps: first rung of the most aggressive bracket.
      eta: reduction factor.
      num_steps: steps of a member that completes.
      num_brackets: keep only the most aggressive brackets (default: all ``s_max + 1``).

    Returns:
      ``[(first_rung_steps, n_s), ...]``.
    """
    check_int_at_least("min_steps", min_steps, 1)
    check_int_at_least("eta", eta, 2)
    if min_steps >= num_steps:
        raise ValueError(
            f"min_steps={min_steps} must be smaller than num_steps={num_steps} for early "
            "stopping to happen; lower min_steps."
        )
    s_max = 0
    while min_steps * eta ** (s_max + 1) <= num_steps:
        s_max += 1
    brackets = []
    for b in range(s_max + 1):
        s = s_max - b
        size = math.ceil((s_max + 1) / (s + 1) * eta**s)
        brackets.append((int(min_steps * eta**b), int(size)))
    if num_brackets is not None:
        check_int_at_least("num_brackets", num_brackets, 1)
        brackets = brackets[:num_brackets]
    return brackets


def successive_halving(
    space: Space,
    strategy: Strategy | None = None,
    *,
    min_steps: int,
    eta: int = 3,
    max_member_steps: int | None = None,
    metric: str = "valid_loss",
    mode: str | None = None,
    key: jax.Array,
) -> Scheduler:
    """Asynchronous successive halving (ASHA) as an engine scheduler.

    One bracket: rungs at ``min_steps * eta**k`` (see :func:`rung_steps`); at each rung a
    member continues when it is in the top ``1 / eta`` of every score recorded at that rung so
    far, otherwise its slot is refilled with a new configuration from ``strategy`` (Jamieson &
    Talwalkar, 2016; Li et al., 2018). See the module docstring for the slot model and budget.

    Args:
      space: the search space (static parameters stay those of the slot's static group).
      strategy: proposes refill configurations (default: random search).
      min_steps: steps of the first rung.
      eta: reduction factor (>= 2): one in ``eta`` members is promoted at each rung.
      max_member_steps: cap on member-steps spent by the population (per static group);
        ``None`` runs until every slot holds a completed member.
      metric: the metric the engine reports that ranks members, e.g. ``"valid_accuracy"``.
      mode: ``"max"`` or ``"min"`` for ``metric`` (default from its name, e.g. ``valid_loss``:
        ``"min"``; see :func:`jaxtune.contracts.resolve_mode`).
      key: JAX PRNG key of the strategy (folded with the static group).

    Returns:
      An :class:`~jaxtune.engine.Scheduler` for ``engine.train(..., scheduler=...)``.
    """
    check_int_at_least("min_steps", min_steps, 1)
    check_int_at_least("eta", eta, 2)
    return _halving_scheduler(
        space, strategy, eta=eta, max_member_steps=max_member_steps, metric=metric, mode=mode,
        key=key, brackets=lambda num_steps: [(int(min_steps), 1)],
    )


def hyperband(
    space: Space,
    strategy: Strategy | None = None,
    *,
    min_steps: int,
    eta: int = 3,
    max_member_steps: int | None = None,
    num_brackets: int | None = None,
    metric: str = "valid_loss",
    mode: str | None = None,
    key: jax.Array,
) -> Scheduler:
    """Hyperband (Li et al., 2017) with asynchronous brackets (Li et al., 2018), one population.

    The brackets of :func:`hyperband_brackets` run side by side in one population: each new
    member joins the bracket that has committed the fewest member-steps and runs ASHA with that
    bracket's rungs and rung records; each bracket may spend an equal share of
    ``max_member_steps``.

    Args:
      space: the search space.
      strategy: proposes refill configurations (default: random search).
      min_steps: first rung of the most aggressive bracket.
      eta: reduction factor (>= 2).
      max_member_steps: cap on member-steps (per static group), split equally between brackets.
      num_brackets: use only the most aggressive brackets (default: all).
      metric: the metric that ranks members.
      mode: ``"max"`` or ``"min"`` (default from the metric's name).
      key: JAX PRNG key of the strategy.

    Returns:
      An :class:`~jaxtune.engine.Scheduler`.
    """
    check_int_at_least("min_steps", min_steps, 1)
    check_int_at_least("eta", eta, 2)
    if num_brackets is not None:
        check_int_at_least("num_brackets", num_brackets, 1)
    return _halving_scheduler(
        space, strategy, eta=eta, max_member_steps=max_member_steps, metric=metric, mode=mode,
        key=key,
        brackets=lambda num_steps: hyperband_brackets(min_steps, eta, num_steps, num_brackets),
    )


def _least_loaded(state: HalvingState) -> int:
    """The bracket a new member joins: the least loaded one that can afford it, or -1.

    A bracket's load is what it has committed plus what finishing its promoted members needs;
    a new member fits when the load plus its first rung stays within the bracket's budget.
    """
    load = state.committed() + state.reserved()
    first = np.array([rungs[0] for rungs in state.rungs], np.float64)
    fits = load + first <= state.budget
    if not np.any(fits):
        return -1
    return int(np.argmin(np.where(fits, load, np.inf)))


def _with(array: np.ndarray, index: Any, value: Any) -> np.ndarray:
    """A copy of ``array`` with ``array[index] = value`` (the state's arrays are never written)."""
    new = array.copy()
    new[index] = value
    return new


def _added(array: np.ndarray, index: Any, value: Any) -> np.ndarray:
    """A copy of ``array`` with ``value`` added at ``index`` (repeated indices add up)."""
    new = array.copy()
    np.add.at(new, index, value)
    return new


def _start(state: HalvingState, slot: int, bracket: int) -> HalvingState:
    """``slot`` holds a new member of ``bracket``, training towards its first rung."""
    return state._replace(slot_bracket=_with(state.slot_bracket, slot, bracket),
                          slot_rung=_with(state.slot_rung, slot, 0),
                          slot_state=_with(state.slot_state, slot, RUNNING))


def _retire(state: HalvingState, slots: Any, steps: np.ndarray, status: int) -> HalvingState:
    """``slots`` leave training with ``status`` (``DONE`` or ``IDLE``); their steps count."""
    slots = np.asarray(slots, np.int64)
    return state._replace(
        slot_state=_with(state.slot_state, slots, status),
        retired_steps=_added(state.retired_steps, state.slot_bracket[slots], steps[slots]),
    )


class _Settings(NamedTuple):
    """What a halving scheduler is made of (its state is :class:`HalvingState`)."""

    space: Space
    strategy: Strategy
    eta: int
    max_member_steps: int | None
    metric: str
    mode: str
    key: jax.Array
    brackets: Callable[[int], list[tuple[int, int]]]


def _halving_scheduler(space: Space, strategy: Strategy | None, *, eta: int,
                       max_member_steps: int | None, metric: str, mode: str | None,
                       key: jax.Array,
                       brackets: Callable[[int], list[tuple[int, int]]]) -> Scheduler:
    """The scheduler of :func:`successive_halving` and :func:`hyperband`: ``brackets(num_steps)``
    gives each bracket's ``(first_rung_steps, n_s)``."""
    if not isinstance(space, Space):
        raise TypeError(f"space must be a jaxtune Space, got {type(space).__name__}.")
    mode = selection_mode(metric, mode)  # default from the name: valid_loss -> min
    if max_member_steps is not None:
        check_int_at_least("max_member_steps", max_member_steps, 1)
    strategy = strategy if strategy is not None else random_search()
    settings = _Settings(space, strategy, eta, max_member_steps, metric, mode, key, brackets)
    return Scheduler(functools.partial(_init, settings), functools.partial(_update, settings))


def _init(settings: _Settings, view: SlotView) -> HalvingState:
    """The first state: every initial member joins the least loaded bracket, one by one."""
    if settings.metric not in view.metrics:
        raise ValueError(
            f"metric={settings.metric!r} is not reported by the task; choose one of "
            f"{sorted(view.metrics)}."
        )
    num_slots = len(view.step)
    rungs = tuple(
        rung_steps(first, settings.eta, view.num_steps, view.steps_per_segment)
        for first, _ in settings.brackets(view.num_steps)
    )
    if len(rungs[0]) < 2:
        raise ValueError(
            f"min_steps rounded up to a segment boundary ({view.steps_per_segment} steps) "
            f"is not below num_steps={view.num_steps}: nothing would be stopped early. "
            "Lower min_steps or steps_per_segment."
        )
    num_brackets = len(rungs)
    budget = np.full(num_brackets, np.inf)
    if settings.max_member_steps is not None:
        budget[:] = settings.max_member_steps / num_brackets
    space = settings.space
    static = {n: view.configs[0][n] for n in space.static_names if n in view.configs[0]}
    state = HalvingState(
        strategy_state=settings.strategy.init(_group_space(space, view.configs[0]),
                                              fold_in_config(settings.key, static)),
        rungs=rungs,
        slot_bracket=np.zeros(num_slots, np.int64),
        slot_rung=np.zeros(num_slots, np.int64),
        slot_state=np.full(num_slots, IDLE, np.int64),
        last_step=np.zeros(num_slots, np.int64),
        rung_scores=tuple(tuple(np.zeros(0) for _ in r) for r in rungs),
        budget=budget,
        retired_steps=np.zeros(num_brackets, np.int64),
        spent=np.zeros(num_brackets, np.int64),
        num_started=np.zeros(num_brackets, np.int64),
        incumbent=-1,
        incumbent_loss=np.inf,
    )
    for slot in range(num_slots):
        bracket = _least_loaded(state)
        if bracket < 0:
            raise ValueError(
                f"max_member_steps={settings.max_member_steps} cannot take the {num_slots} "
                "initial members to their first rung; raise it or start fewer members."
            )
        state = _start(state, slot, bracket)
        state = state._replace(num_started=_added(state.num_started, bracket, 1))
    return state


class _Observed(NamedTuple):
    """What one segment's view says, before any decision: the state with the steps taken,
    completed and diverged members retired, and rung arrivals recorded."""

    state: HalvingState
    arrivals: list[int]
    told_configs: list[Config]
    told_scores: list[float]


def _observe(state: HalvingState, view: SlotView, step: np.ndarray,
             losses: np.ndarray) -> _Observed:
    """Counts the steps, retires finished and diverged members, records rung arrivals.

    A member reaching the first rung of its bracket (or diverging before it) is told to the
    strategy; ``+inf`` for a diverged one.
    """
    running = state.slot_state == RUNNING
    finished = running & np.asarray(view.finished, bool)
    died = running & ~finished & ~np.asarray(view.alive, bool)
    target = np.array([state.rungs[b][r] for b, r in zip(state.slot_bracket, state.slot_rung,
                                                         strict=True)], np.int64)
    arrived = running & ~finished & ~died & (step >= target)
    spent = _added(state.spent, state.slot_bracket[running], (step - state.last_step)[running])
    incumbent, incumbent_loss = state.incumbent, state.incumbent_loss
    if np.any(finished):
        best = int(np.flatnonzero(finished)[np.argmin(losses[finished])])
        if losses[best] < incumbent_loss:
            incumbent, incumbent_loss = best, float(losses[best])
    rung_scores = [list(scores) for scores in state.rung_scores]
    arrivals = [int(s) for s in np.flatnonzero(arrived)]
    for slot in arrivals:
        bracket, rung = state.slot_bracket[slot], state.slot_rung[slot]
        rung_scores[bracket][rung] = np.append(rung_scores[bracket][rung], losses[slot])
    told = np.flatnonzero((arrived | died) & (state.slot_rung == 0))
    state = _retire(state, np.flatnonzero(finished), step, DONE)
    state = _retire(state, np.flatnonzero(died), step, IDLE)
    state = state._replace(spent=spent, rung_scores=tuple(tuple(r) for r in rung_scores),
                           incumbent=incumbent, incumbent_loss=incumbent_loss)
    return _Observed(state, arrivals, [dict(view.configs[s]) for s in told],
                     [np.inf if died[s] else losses[s] for s in told])


def _promote(state: HalvingState, eta: int, arrivals: list[int], step: np.ndarray,
             losses: np.ndarray) -> tuple[HalvingState, list[int]]:
    """Promotes the arrivals in the top ``1 / eta`` of their rung while the budget allows
    (best first); retires the others. Returns the state and the retired slots."""
    promoted, not_promoted = [], []
    for slot in arrivals:
        scores = state.rung_scores[state.slot_bracket[slot]][state.slot_rung[slot]]
        rank = int(np.sum(scores < losses[slot]))
        keep = rank < len(scores) // eta and np.isfinite(losses[slot])
        (promoted if keep else not_promoted).append(slot)
    for slot in sorted(promoted, key=lambda s: (losses[s], s)):
        bracket = state.slot_bracket[slot]
        rungs = state.rungs[bracket]
        extra = rungs[state.slot_rung[slot] + 1] - rungs[state.slot_rung[slot]]
        if state.committed()[bracket] + extra <= state.budget[bracket]:
            state = state._replace(slot_rung=_added(state.slot_rung, slot, 1))
        else:
            not_promoted.append(slot)
    return _retire(state, not_promoted, step, IDLE), not_promoted


def _refill(settings: _Settings, state: HalvingState, free: list[int],
            strategy_state: Any) -> tuple[HalvingState, dict[int, Config], Any]:
    """New members for the ``free`` slots, each in the least loaded bracket that affords it,
    configured by the strategy. Returns the state, ``{slot: config}`` and the strategy state."""
    before, wanted = state, []
    for slot in free:
        bracket = _least_loaded(state)
        if bracket < 0:
            break
        state = _start(state, slot, bracket)
        wanted.append((slot, bracket))
    if not wanted:
        return state, {}, strategy_state
    configs, strategy_state = settings.strategy.ask(strategy_state, len(wanted))
    refill = {slot: dict(config) for (slot, _), config in zip(wanted, configs, strict=False)}
    started = [bracket for _, bracket in wanted[:len(configs)]]
    state = state._replace(num_started=_added(state.num_started, started, 1))
    unfilled = [slot for slot, _ in wanted[len(configs):]]  # the strategy ran out of configs
    if unfilled:  # those slots keep what they held (the rung stays reset: they do not run)
        state = state._replace(
            slot_state=_with(state.slot_state, unfilled, before.slot_state[unfilled]),
            slot_bracket=_with(state.slot_bracket, unfilled, before.slot_bracket[unfilled]))
    return state, refill, strategy_state


def _update(settings: _Settings, state: HalvingState,
            view: SlotView) -> tuple[PopulationUpdate | None, HalvingState]:
    """One decision after a segment: record, promote or stop, refill the free slots."""
    step = np.asarray(view.step, np.int64)
    values = np.asarray(view.metrics[settings.metric], np.float64)
    losses = -values if settings.mode == "max" else values.copy()
    losses[~np.isfinite(losses) | ~np.asarray(view.alive, bool)] = np.inf
    observed = _observe(state, view, step, losses)
    state, not_promoted = _promote(observed.state, settings.eta, observed.arrivals, step, losses)
    # Free slots, those that must stop now first.
    free = sorted(not_promoted) + [
        int(s) for s in np.flatnonzero(state.slot_state == IDLE) if s not in not_promoted
    ]
    if settings.max_member_steps is not None:  # with a budget, completed members make room
        free += [int(s) for s in np.flatnonzero(state.slot_state == DONE)
                 if s != state.incumbent]
    strategy_state = state.strategy_state
    if observed.told_configs:
        strategy_state = settings.strategy.tell(strategy_state, observed.told_configs,
                                                np.asarray(observed.told_scores))
    state, refill, strategy_state = _refill(settings, state, free, strategy_state)
    stop = sorted(s for s in not_promoted if s not in refill)
    last_step = _with(step, list(refill), 0)
    state = state._replace(strategy_state=strategy_state, last_step=last_step)
    if not stop and not refill:
        return None, state
    return PopulationUpdate(stop=stop, refill=refill), state


def _group_space(space: Space, config: Mapping[str, Any]) -> Space:
    """``space`` with its static parameters fixed to ``config``'s values (one static group)."""
    params = {}
    for name in space.names:
        param = space[name]
        if param.static and not isinstance(param, Fixed) and name in config:
            params[name] = Fixed(config[name], when=param.when)
        else:
            params[name] = param
    return Space(params)


def __getattr__(name: str) -> Any:
    """The driver's old path (deprecated): ``jaxtune.strategies.halving.run_halving`` is
    :func:`jaxtune.scheduled.run_halving`, loaded on first use (an import here would be a
    circle: the driver imports this module)."""
    if name == "run_halving":
        return deprecated_driver(__name__, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
