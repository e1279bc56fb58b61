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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune.contracts import Config, PopulationUpdate, Scheduler, SlotView
from jaxtune.keys import fold_in_config
from jaxtune.objectives import Objectives, best_first, num_ahead, told_scores, violation_totals
from jaxtune.space import Fixed, Space
from jaxtune.strategies.base import Strategy, check_int_at_least, deprecated_driver
from jaxtune.strategies.random import random_search
from jaxtune.strategies.rungs import hyperband_brackets, rung_steps

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
      rung_scores: per bracket, per rung, the losses recorded there (``np.ndarray [m, k]``,
        one column per metric).
      rung_violations: per bracket, per rung, the recorded members' total constraint
        violations (``np.ndarray [m]``, 0 when feasible).
      budget: ``[num_brackets]`` float, member-steps each bracket may spend (``inf``: no cap).
      retired_steps: ``[num_brackets]`` int, steps of members that left training.
      spent: ``[num_brackets]`` int, member-steps taken so far.
      num_started: ``[num_brackets]`` int, members started in each bracket (initial included).
      incumbent: slot of the best completed member, ``-1`` before the first completes.
      incumbent_loss: its losses ``[k]`` (``inf`` before).
      incumbent_violation: its total constraint violation.
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
    incumbent_loss: np.ndarray
    rung_violations: tuple[tuple[np.ndarray, ...], ...] = ()
    incumbent_violation: float = 0.0

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


def successive_halving(
    space: Space,
    strategy: Strategy | None = None,
    *,
    min_steps: int,
    eta: int = 3,
    max_member_steps: int | None = None,
    metric: str | Sequence[str] = "valid_loss",
    mode: str | Sequence[str | None] | None = None,
    constraints: Any = None,
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
      metric: the metric the engine reports that ranks members, e.g. ``"valid_accuracy"``, or
        several: members are then ranked by NSGA-II's order (:mod:`jaxtune.objectives`).
      mode: ``"max"`` or ``"min"`` for ``metric`` (default from its name, e.g. ``valid_loss``:
        ``"min"``; see :func:`jaxtune.contracts.resolve_mode`), or one per metric.
      constraints: ``{metric: (operator, bound)}`` or a predicate of a member's metrics
        (:func:`jaxtune.contracts.check_constraints`): infeasible members rank last.
      key: JAX PRNG key of the strategy (folded with the static group).

    Returns:
      An :class:`~jaxtune.engine.Scheduler` for ``engine.train(..., scheduler=...)``.
    """
    check_int_at_least("min_steps", min_steps, 1)
    check_int_at_least("eta", eta, 2)
    return _halving_scheduler(
        space, strategy, eta=eta, max_member_steps=max_member_steps,
        objectives=Objectives.of(metric, mode, constraints), key=key,
        brackets=lambda num_steps: [(int(min_steps), 1)],
    )


def hyperband(
    space: Space,
    strategy: Strategy | None = None,
    *,
    min_steps: int,
    eta: int = 3,
    max_member_steps: int | None = None,
    num_brackets: int | None = None,
    metric: str | Sequence[str] = "valid_loss",
    mode: str | Sequence[str | None] | None = None,
    constraints: Any = None,
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
      metric: the metric that ranks members, or several (NSGA-II's order,
        :mod:`jaxtune.objectives`).
      mode: ``"max"`` or ``"min"`` (default from the metric's name), or one per metric.
      constraints: as :func:`successive_halving`'s: infeasible members rank last.
      key: JAX PRNG key of the strategy.

    Returns:
      An :class:`~jaxtune.engine.Scheduler`.
    """
    check_int_at_least("min_steps", min_steps, 1)
    check_int_at_least("eta", eta, 2)
    if num_brackets is not None:
        check_int_at_least("num_brackets", num_brackets, 1)
    return _halving_scheduler(
        space, strategy, eta=eta, max_member_steps=max_member_steps,
        objectives=Objectives.of(metric, mode, constraints), key=key,
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
    objectives: Objectives
    key: jax.Array
    brackets: Callable[[int], list[tuple[int, int]]]


def _halving_scheduler(space: Space, strategy: Strategy | None, *, eta: int,
                       max_member_steps: int | None, objectives: Objectives,
                       key: jax.Array,
                       brackets: Callable[[int], list[tuple[int, int]]]) -> Scheduler:
    """The scheduler of :func:`successive_halving` and :func:`hyperband`: ``brackets(num_steps)``
    gives each bracket's ``(first_rung_steps, n_s)``."""
    if not isinstance(space, Space):
        raise TypeError(f"space must be a jaxtune Space, got {type(space).__name__}.")
    if max_member_steps is not None:
        check_int_at_least("max_member_steps", max_member_steps, 1)
    strategy = strategy if strategy is not None else random_search()
    settings = _Settings(space, strategy, eta, max_member_steps, objectives, key, brackets)
    return Scheduler(functools.partial(_init, settings), functools.partial(_update, settings))


def _init(settings: _Settings, view: SlotView) -> HalvingState:
    """The first state: every initial member joins the least loaded bracket, one by one."""
    settings.objectives.check_reported(view.metrics)
    num_slots = len(view.step)
    num_metrics = len(settings.objectives.metrics)
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
        rung_scores=tuple(tuple(np.zeros((0, num_metrics)) for _ in r) for r in rungs),
        rung_violations=tuple(tuple(np.zeros(0) for _ in r) for r in rungs),
        budget=budget,
        retired_steps=np.zeros(num_brackets, np.int64),
        spent=np.zeros(num_brackets, np.int64),
        num_started=np.zeros(num_brackets, np.int64),
        incumbent=-1,
        incumbent_loss=np.full(num_metrics, np.inf),
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
    completed and diverged members retired, and rung arrivals recorded (``arrivals``: slot ->
    its row in its rung's records)."""

    state: HalvingState
    arrivals: dict[int, int]
    told: list[int]


class _Points(NamedTuple):
    """One segment's members as the scheduler compares them: ``losses [P, k]`` (``+inf`` rows
    for failed members), ``violations [P, c]`` and their ``totals [P]``."""

    losses: np.ndarray
    violations: np.ndarray
    totals: np.ndarray


def _new_incumbent(state: HalvingState, finished: np.ndarray,
                   points: _Points) -> tuple[int, np.ndarray, float]:
    """The best completed member: the incumbent unless a member completing now is strictly
    ahead of it (:func:`jaxtune.objectives.best_first`; ties keep the incumbent)."""
    candidates = np.flatnonzero(finished)
    pool = np.vstack([state.incumbent_loss[None, :], points.losses[candidates]])
    totals = np.concatenate([[state.incumbent_violation], points.totals[candidates]])
    first = int(best_first(pool, totals)[0])
    if first == 0:
        return state.incumbent, state.incumbent_loss, state.incumbent_violation
    slot = int(candidates[first - 1])
    return slot, points.losses[slot].copy(), float(points.totals[slot])


def _observe(state: HalvingState, view: SlotView, step: np.ndarray,
             points: _Points) -> _Observed:
    """Counts the steps, retires finished and diverged members, records rung arrivals.

    A member reaching the first rung of its bracket (or diverging before it) is told to the
    strategy (``told``: their slots); ``+inf`` for a diverged one.
    """
    running = state.slot_state == RUNNING
    finished = running & np.asarray(view.finished, bool)
    died = running & ~finished & ~np.asarray(view.alive, bool)
    target = np.array([state.rungs[b][r] for b, r in zip(state.slot_bracket, state.slot_rung,
                                                         strict=True)], np.int64)
    arrived = running & ~finished & ~died & (step >= target)
    spent = _added(state.spent, state.slot_bracket[running], (step - state.last_step)[running])
    incumbent = (state.incumbent, state.incumbent_loss, state.incumbent_violation)
    if np.any(finished):
        incumbent = _new_incumbent(state, finished, points)
    rung_scores = [list(scores) for scores in state.rung_scores]
    rung_violations = [list(totals) for totals in state.rung_violations]
    arrivals = {}
    for slot in (int(s) for s in np.flatnonzero(arrived)):
        bracket, rung = state.slot_bracket[slot], state.slot_rung[slot]
        arrivals[slot] = len(rung_scores[bracket][rung])
        rung_scores[bracket][rung] = np.vstack([rung_scores[bracket][rung],
                                                points.losses[slot][None, :]])
        rung_violations[bracket][rung] = np.append(rung_violations[bracket][rung],
                                                   points.totals[slot])
    told = np.flatnonzero((arrived | died) & (state.slot_rung == 0))
    state = _retire(state, np.flatnonzero(finished), step, DONE)
    state = _retire(state, np.flatnonzero(died), step, IDLE)
    state = state._replace(spent=spent, rung_scores=tuple(tuple(r) for r in rung_scores),
                           rung_violations=tuple(tuple(r) for r in rung_violations),
                           incumbent=incumbent[0], incumbent_loss=incumbent[1],
                           incumbent_violation=incumbent[2])
    return _Observed(state, arrivals, [int(s) for s in told])


def _promote(state: HalvingState, eta: int, arrivals: Mapping[int, int], step: np.ndarray,
             points: _Points) -> tuple[HalvingState, list[int]]:
    """Promotes the arrivals in the top ``1 / eta`` of their rung while the budget allows
    (best first); retires the others. Returns the state and the retired slots.

    "Top" is the order of :mod:`jaxtune.objectives`: a member is promoted when fewer than
    ``floor(n / eta)`` of the ``n`` records of its rung are strictly ahead of it."""
    promoted, not_promoted = [], []
    for slot, row in arrivals.items():
        bracket, rung = state.slot_bracket[slot], state.slot_rung[slot]
        scores = state.rung_scores[bracket][rung]
        rank = int(num_ahead(scores, state.rung_violations[bracket][rung], [row])[0])
        keep = rank < len(scores) // eta and bool(np.all(np.isfinite(points.losses[slot])))
        (promoted if keep else not_promoted).append(slot)
    order = best_first(points.losses[promoted], points.totals[promoted]) if promoted else []
    for slot in (promoted[i] for i in order):
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
    objectives = settings.objectives
    violations = objectives.violations(view.metrics, view.alive)
    points = _Points(objectives.losses(view.metrics, view.alive), violations,
                     violation_totals(violations))
    observed = _observe(state, view, step, points)
    state, not_promoted = _promote(observed.state, settings.eta, observed.arrivals, step, points)
    # Free slots, those that must stop now first.
    free = sorted(not_promoted) + [
        int(s) for s in np.flatnonzero(state.slot_state == IDLE) if s not in not_promoted
    ]
    if settings.max_member_steps is not None:  # with a budget, completed members make room
        free += [int(s) for s in np.flatnonzero(state.slot_state == DONE)
                 if s != state.incumbent]
    strategy_state = state.strategy_state
    if observed.told:
        told = observed.told
        strategy_state = settings.strategy.tell(
            strategy_state, [dict(view.configs[s]) for s in told],
            told_scores(settings.strategy, objectives, points.losses[told],
                        points.violations[told]))
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
