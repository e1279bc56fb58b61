"""PB2: population-based bandits (Parker-Holder et al., 2020) as an engine scheduler.

PB2 ("Provably efficient online hyperparameter optimization with population-based bandits",
NeurIPS 2020) is PBT (:mod:`jaxtune.strategies.pbt`) whose *explore* step is a Gaussian-process
bandit instead of random perturbations: the bottom members still copy a top member
(**exploit**: the engine's gather, nothing recompiles), and their new values are chosen by
GP-UCB on the data ``(t, values) -> reward change`` collected from the whole population.

Here:

* **Data.** After every segment, each member still training adds one observation: the input
  is its step (divided by ``num_steps``) and its numeric dynamic values during the segment
  (each :class:`~jaxtune.space.Float`/:class:`~jaxtune.space.Int` in its unit-cube
  coordinate, log scale where the parameter has it); the target is the change of its
  selection metric over the segment (oriented so higher is better). A member that copied a
  donor measures its next change from the donor's value. Non-finite values are left out. The
  newest ``max_observations`` are used.
* **Model.** :func:`jaxtune.strategies.gp.fit_gp` (Matern 5/2 ARD, its public fit) on the
  standardized negated changes; time is an input, so the model can follow a reward that
  drifts as training goes on (the role of PB2's time-varying kernel).
* **Choice.** For each recipient, in turn: the candidate (of ``num_candidates`` uniform
  points, plus the donor's values) maximizing the upper confidence bound
  ``-mean + sqrt(beta) * std`` at the current time, with ``beta = 0.2 + max(0, log(0.4 n))``
  after ``n`` observations (:func:`pb2_beta`, the schedule of Ray Tune's PB2; the paper's
  theoretical value explores far more). ``std`` is conditioned also on the
  values of the members that keep training and on the choices made so far (believed at the
  posterior mean, which leaves the mean unchanged and shrinks the variance there), so one
  round's recipients spread out as in PB2's batch version.
* **Several metrics** (``metric=[...]``, ``constraints=``): the exploit step ranks members by
  NSGA-II's order (:mod:`jaxtune.objectives`, as PBT does); the bandit's reward is the change
  of the first metric.
* Before any observation the values are drawn uniformly. Dynamic values PB2 does not model
  (a dynamic :class:`~jaxtune.space.Choice`) are the donor's; static values never change.

Decisions are a function of the views (JAX keys folded with the segment): a resumed run
replays them. :func:`jaxtune.run_pbt` runs it with ``explore="pb2"``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune.contracts import Config, PopulationUpdate, Scheduler, SlotView
from jaxtune.objectives import Objectives
from jaxtune.space import Float, Int, Space
from jaxtune.strategies.acquisitions import upper_confidence_bound
from jaxtune.strategies.base import check_int_at_least
from jaxtune.strategies.gp import fit_gp, gp_posterior, standardize_scores
from jaxtune.strategies.pbt import exploit_slots

__all__ = ["PB2State", "pb2", "pb2_beta"]


class PB2State(NamedTuple):
    """State of :func:`pb2`.

    Attributes:
      key: the PRNG key; the update after segment ``g`` draws from ``fold_in(key, g)``.
      num_exploits: copies made so far.
      x: ``[n, 1 + d]`` observations' inputs: time (step / num_steps), then unit values.
      y: ``[n]`` observations' reward changes (higher is better).
      last: ``{member_id: (step, value)}``: each member's step and oriented metric at its last
        observation (after a copy: the donor's).
    """

    key: jax.Array
    num_exploits: int
    x: np.ndarray
    y: np.ndarray
    last: Mapping[int, tuple[int, float]]


class _Settings(NamedTuple):
    space: Space
    interval_segments: int
    fraction: float
    objectives: Objectives
    key: jax.Array
    names: tuple[str, ...]
    num_candidates: int
    max_observations: int
    fit_restarts: int
    fit_steps: int


def pb2_beta(num_observations: int) -> float:
    """The UCB's ``beta`` after ``n`` observations: ``0.2 + max(0, log(0.4 n))`` (Ray Tune's PB2
    schedule; the paper's theoretical ``2 log(n**(d/2 + 2) pi**2 / (3 delta))`` explores far
    more than its own experiments do). The bound is ``-mean + sqrt(beta) * std``."""
    return 0.2 + max(0.0, math.log(0.4 * max(int(num_observations), 1)))


def pb2(
    space: Space, *, interval_segments: int = 1, fraction: float = 0.25,
    metric: str | Sequence[str] = "valid_loss", mode: Any = None, constraints: Any = None,
    key: jax.Array,
    num_candidates: int = 256, max_observations: int = 128, fit_restarts: int = 2,
    fit_steps: int = 60,
) -> Scheduler:
    """PB2 (PBT with a GP-UCB explore step) as an engine scheduler.

    Args:
      space: the search space: bounds, and which names are dynamic (the numeric dynamic
        ones are chosen by the bandit).
      interval_segments: act after every this many segments.
      fraction: the bottom ``fraction`` of the members still training copy the top one
        (``0 < fraction <= 0.5``).
      metric: the metric ranking the members, e.g. ``"valid_accuracy"``, or several (the
        exploit step's order: :mod:`jaxtune.objectives`; the reward: the first metric's).
      mode: ``"max"`` or ``"min"`` (default from the metric's name), or one per metric.
      constraints: ``{metric: (operator, bound)}`` or a predicate: infeasible members rank
        last in the exploit step.
      key: JAX PRNG key (donors, candidates, GP fit restarts).
      num_candidates: uniform candidates the acquisition is maximized over.
      max_observations: the newest observations the GP is fitted on.
      fit_restarts: GP hyperparameter fits (:func:`~jaxtune.strategies.gp.fit_gp`).
      fit_steps: Adam steps of each fit.

    Returns:
      A :class:`~jaxtune.contracts.Scheduler`.

    Raises:
      TypeError: ``space`` is not a Space.
      ValueError: a setting out of range, or a space without a numeric dynamic parameter.
    """
    if not isinstance(space, Space):
        raise TypeError(f"space must be a jaxtune Space, got {type(space).__name__}.")
    check_int_at_least("interval_segments", interval_segments, 1)
    for name, value in (("num_candidates", num_candidates), ("fit_restarts", fit_restarts),
                        ("fit_steps", fit_steps)):
        check_int_at_least(name, value, 1)
    check_int_at_least("max_observations", max_observations, 2)
    if not 0.0 < float(fraction) <= 0.5:
        raise ValueError(
            f"fraction={fraction!r} must be in (0, 0.5] so that the bottom and top do not overlap."
        )
    names = tuple(n for n in space.dynamic_names if isinstance(space[n], Float | Int))
    if not names:
        raise ValueError(
            "pb2: the space has no dynamic Float or Int parameter for the bandit to choose; "
            "use pbt for a space of choices."
        )
    settings = _Settings(space, interval_segments, float(fraction),
                         Objectives.of(metric, mode, constraints), key, names,
                         num_candidates, max_observations, fit_restarts, fit_steps)
    return Scheduler(functools.partial(_init, settings), functools.partial(_update, settings))


def _init(settings: _Settings, view: SlotView) -> PB2State:
    settings.objectives.check_reported(view.metrics)
    return PB2State(key=settings.key, num_exploits=0,
                    x=np.zeros((0, 1 + len(settings.names))), y=np.zeros(0), last={})


def _unit(settings: _Settings, config: Mapping[str, Any]) -> np.ndarray:
    """The config's numeric dynamic values in unit-cube coordinates ``[d]``."""
    return np.asarray([float(settings.space[n].to_unit(np.asarray([config[n]], np.float64))[0])
                       for n in settings.names])


def _observe(settings: _Settings, state: PB2State, view: SlotView,
             values: np.ndarray) -> PB2State:
    """One observation per member that trained this segment (finite values only)."""
    last, rows, gains = dict(state.last), [], []
    alive = np.asarray(view.alive, bool)
    for slot, member in enumerate(view.member_ids):
        step = int(view.step[slot])
        if not alive[slot] or not np.isfinite(values[slot]):
            continue
        previous = last.get(int(member))
        if previous is not None and step > previous[0]:
            rows.append(np.concatenate([[step / view.num_steps],
                                        _unit(settings, view.configs[slot])]))
            gains.append(values[slot] - previous[1])
        last[int(member)] = (step, float(values[slot]))
    if not rows:
        return state._replace(last=last)
    x = np.concatenate([state.x, np.asarray(rows)])[-settings.max_observations:]
    y = np.concatenate([state.y, np.asarray(gains)])[-settings.max_observations:]
    return state._replace(x=x, y=y, last=last)


def _propose(settings: _Settings, state: PB2State, time: float, pending: Sequence[np.ndarray],
             base: np.ndarray, key: jax.Array, num_slots: int) -> np.ndarray:
    """The unit values maximizing the UCB at ``time`` (uniform before any observation).

    Every posterior is asked at ``num_candidates + 1 + num_slots`` points (the candidates, the
    donor's values, the pending points padded with copies of the donor's), so one run
    compiles one query shape.
    """
    dim = len(settings.names)
    draw_key, fit_key = jax.random.split(key)
    candidates = np.asarray(jax.random.uniform(draw_key, (settings.num_candidates, dim)),
                            np.float64)
    if len(state.y) == 0:
        return candidates[0]
    pending = list(pending)[:num_slots]
    points = np.concatenate([base[None, :], candidates,
                             np.asarray(pending + [base] * (num_slots - len(pending)))
                             .reshape(num_slots, dim)])
    query = np.concatenate([np.full((len(points), 1), time), points], axis=1)
    targets = standardize_scores(-state.y)  # losses: lower is better
    params, _ = fit_gp(state.x, targets, fit_key, num_restarts=settings.fit_restarts,
                       num_steps=settings.fit_steps)
    mean, var = gp_posterior(params, state.x, targets, query)
    if pending:
        first = 1 + settings.num_candidates
        believed = slice(first, first + len(pending))
        _, var = gp_posterior(params, np.concatenate([state.x, query[believed]]),
                              np.concatenate([targets, mean[believed]]), query)
    score = np.asarray(upper_confidence_bound(mean, np.sqrt(var), pb2_beta(len(state.y))))
    return points[int(np.argmax(score[:1 + settings.num_candidates]))]


def _explored(settings: _Settings, donor: Mapping[str, Any], unit: np.ndarray) -> Config:
    """The donor's config with the bandit's values (decoded, within bounds)."""
    config = dict(donor)
    for name, u in zip(settings.names, unit, strict=True):
        value = settings.space[name].from_unit(np.asarray([min(max(u, 0.0), 1.0)]))[0]
        config[name] = int(value) if isinstance(settings.space[name], Int) else float(value)
    return config


def _update(settings: _Settings, state: PB2State,
            view: SlotView) -> tuple[PopulationUpdate | None, PB2State]:
    """Observe every segment; every ``interval_segments``: exploit, then explore by GP-UCB."""
    objectives = settings.objectives
    raw = np.asarray(view.metrics[objectives.metrics[0]], np.float64)
    values = raw if objectives.modes[0] == "max" else -raw
    state = _observe(settings, state, view, values)
    if view.segment % settings.interval_segments:
        return None, state
    ranked = values if objectives.single else -objectives.losses(view.metrics)
    top, bottom = exploit_slots(view, ranked, settings.fraction,
                                objectives.violations(view.metrics, view.alive))
    if not top:
        return None, state
    training = np.flatnonzero(~np.asarray(view.finished, bool))
    key = jax.random.fold_in(state.key, view.segment)
    picks = np.asarray(jax.random.uniform(jax.random.fold_in(key, 0), (len(view.step),)))
    pending = [_unit(settings, view.configs[s]) for s in training if int(s) not in bottom]
    last = dict(state.last)
    exploit, explore = {}, {}
    for i, slot in enumerate(bottom):
        donor = top[min(int(picks[slot] * len(top)), len(top) - 1)]
        base = _unit(settings, view.configs[donor])
        time = float(view.step[donor]) / view.num_steps
        unit = _propose(settings, state, time, pending, base, jax.random.fold_in(key, 1 + i),
                        len(view.step))
        pending.append(unit)
        exploit[slot], explore[slot] = donor, _explored(settings, view.configs[donor], unit)
        if int(view.member_ids[donor]) in last:
            last[int(view.member_ids[slot])] = last[int(view.member_ids[donor])]
    state = state._replace(num_exploits=state.num_exploits + len(exploit), last=last)
    return PopulationUpdate(exploit=exploit, explore=explore), state
