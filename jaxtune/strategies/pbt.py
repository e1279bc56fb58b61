"""Population-based training (Jaderberg et al., 2017) as an engine scheduler, and its replay.

PBT ("Population based training of neural networks", Jaderberg et al., 2017) trains a
population in which, every few segments, the worst members stop their own run and continue
from a copy of a better member (**exploit**) with perturbed hyperparameters (**explore**). The
result is a *schedule* of hyperparameters per member rather than one value.

In jaxtune the population is the engine's population, so both halves of a PBT step are
fixed-shape device programs that never recompile:

* **exploit** is a gather along the population axis: the engine copies the donor's parameters,
  optimizer state and step into the recipient's slot
  (:class:`~jaxtune.PopulationUpdate` ``exploit``);
* **explore** writes new values into the ``[num_members]`` hyperparameter arrays
  (``explore``). Only dynamic values change; static values (widths, optimizer family...) are
  the static group's and stay fixed.

Truncation selection: every ``interval_segments`` segments, members still training are ranked
by ``metric`` (several metrics and constraints: NSGA-II's order, :mod:`jaxtune.objectives`);
each member of the bottom ``fraction`` (diverged members rank last) copies a
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

The drivers :func:`jaxtune.run_pbt`, :func:`jaxtune.scheduled.replay_pbt_member` and
:func:`jaxtune.scheduled.lineage` live in :mod:`jaxtune.scheduled`; their old paths here still
resolve (deprecated).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune.contracts import Config, PopulationUpdate, Scheduler, SlotView
from jaxtune.objectives import Objectives, best_first, violation_totals
from jaxtune.space import Choice, Float, Int, Space
from jaxtune.strategies.base import deprecated_driver

__all__ = ["PBTState", "exploit_slots", "pbt"]

#: The drivers' old paths here, now in :mod:`jaxtune.scheduled` (see :func:`__getattr__`).
_MOVED_DRIVERS = ("lineage", "replay_pbt_member", "run_pbt")


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
    metric: str | Sequence[str] = "valid_loss",
    mode: str | Sequence[str | None] | None = None,
    constraints: Any = None,
    key: jax.Array,
) -> Scheduler:
    """Population-based training (Jaderberg et al., 2017) as an engine scheduler.

    Args:
      space: the search space: bounds for explore, and which names are dynamic.
      interval_segments: act after every this many segments.
      fraction: the bottom ``fraction`` of the members still training copy the top
        ``fraction`` (``0 < fraction <= 0.5``; at least one member each when two or more train).
      perturb: multiplicative factors, one drawn uniformly per hyperparameter.
      resample_probability: probability of resampling a hyperparameter from the space
        instead of perturbing it.
      metric: the metric ranking the members, e.g. ``"valid_accuracy"``, or several (ranked
        by NSGA-II's order: :mod:`jaxtune.objectives`).
      mode: ``"max"`` or ``"min"`` (default from the metric's name, e.g. ``valid_loss``: min),
        or one per metric.
      constraints: ``{metric: (operator, bound)}`` or a predicate: infeasible members rank
        last (they copy; they are copied only when too few are feasible).
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
    settings = _Settings(space, interval_segments, float(fraction), perturb,
                         float(resample_probability), Objectives.of(metric, mode, constraints),
                         key,
                         tuple(space.dynamic_names), tuple(space.searchable_names))
    return Scheduler(functools.partial(_init, settings), functools.partial(_update, settings))


class _Settings(NamedTuple):
    """What a PBT scheduler is made of (its state is :class:`PBTState`)."""

    space: Space
    interval_segments: int
    fraction: float
    perturb: tuple[float, ...]
    resample_probability: float
    objectives: Objectives
    key: jax.Array
    dynamic: tuple[str, ...]
    searchable: tuple[str, ...]


def _init(settings: _Settings, view: SlotView) -> PBTState:
    settings.objectives.check_reported(view.metrics)
    return PBTState(key=settings.key, num_exploits=0)


def _explore(settings: _Settings, config: Mapping[str, Any], draws: np.ndarray) -> Config:
    """``config`` with each dynamic value resampled or perturbed.

    ``draws``: ``[2 * num_dynamic + dim]`` uniforms: resample flags, factor picks, a unit point.
    """
    dynamic, perturb, space = settings.dynamic, settings.perturb, settings.space
    new = dict(config)
    point = draws[2 * len(dynamic):]
    # Every name's value (drop_inactive=False): the point's own parents may differ from the
    # config's, whose static values (and so whose active names) the member keeps.
    resampled = space.decode(point[None, :], drop_inactive=False)[0]
    for j, name in enumerate(dynamic):
        if name not in config:  # inactive in this member's static group: never created
            continue
        if draws[j] < settings.resample_probability:
            new[name] = resampled[name]
            continue
        factor = perturb[min(int(draws[len(dynamic) + j] * len(perturb)), len(perturb) - 1)]
        new[name] = _perturbed(space[name], config[name], factor)
    return new


def exploit_slots(view: SlotView, values: np.ndarray, fraction: float,
                  violations: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """PBT's truncation selection: the best and the worst ``fraction`` of the slots still
    training, ranked by ``values`` (``[P]``, or ``[P, k]`` for several metrics; higher is
    better) in the order of :func:`jaxtune.objectives.best_first` (one metric: the values'
    stable order), infeasible members (``violations``: ``[P]`` totals or ``[P, c]``) last. A
    member that is not alive, or with a non-finite value, ranks last and is never among the
    best. Both lists are empty when fewer than two members train.
    """
    training = np.flatnonzero(~np.asarray(view.finished, bool))
    if len(training) < 2:
        return [], []
    losses = -np.array(values, np.float64).reshape(len(view.step), -1)
    losses[~np.all(np.isfinite(losses), axis=1) | ~np.asarray(view.alive, bool)] = np.inf
    totals = None if violations is None else violation_totals(violations)[training]
    order = training[best_first(losses[training], totals)]
    count = max(1, int(fraction * len(training)))
    top = [int(s) for s in order[:count] if np.all(np.isfinite(losses[s]))]
    return top, [int(s) for s in order[len(order) - count:]]


def _update(settings: _Settings, state: PBTState,
            view: SlotView) -> tuple[PopulationUpdate | None, PBTState]:
    """Every ``interval_segments`` segments: the bottom ``fraction`` copies the top one."""
    if view.segment % settings.interval_segments:
        return None, state
    objectives = settings.objectives
    top, bottom = exploit_slots(view, -objectives.losses(view.metrics, view.alive),
                                settings.fraction, objectives.violations(view.metrics,
                                                                         view.alive))
    if not top:
        return None, state
    num_draws = 1 + 2 * len(settings.dynamic) + len(settings.searchable)
    draws = np.asarray(
        jax.random.uniform(jax.random.fold_in(state.key, view.segment),
                           (len(view.step), num_draws)),
        np.float64,
    )
    exploit, new_configs = {}, {}
    for slot in bottom:
        donor = top[min(int(draws[slot, 0] * len(top)), len(top) - 1)]
        exploit[slot] = donor
        new_configs[slot] = _explore(settings, view.configs[donor], draws[slot, 1:])
    decision = PopulationUpdate(exploit=exploit, explore=new_configs)
    return decision, state._replace(num_exploits=state.num_exploits + len(exploit))


def _perturbed(param: Any, value: Any, factor: float) -> Any:
    """``value * factor`` clipped to the parameter's bounds (rounded for Int; Choice: a step)."""
    if isinstance(param, Float):
        return float(np.clip(float(value) * factor, param.low, param.high))
    if isinstance(param, Int):
        return int(np.clip(round(float(value) * factor), param.low, param.high))
    if isinstance(param, Choice):
        index = param.index(value)
        index = index + 1 if factor > 1.0 else index - 1
        return param.values[int(np.clip(index, 0, len(param.values) - 1))]
    return value


def __getattr__(name: str) -> Any:
    """The drivers' old paths (deprecated): ``jaxtune.strategies.pbt.run_pbt`` and its
    ``replay_pbt_member`` and ``lineage`` are those of :mod:`jaxtune.scheduled`, loaded on
    first use (an import here would be a circle: the drivers import this module)."""
    if name in _MOVED_DRIVERS:
        return deprecated_driver(__name__, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
