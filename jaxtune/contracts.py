"""Rules every driver and every reader of results share.

For now: which metric a sweep selects on and which way is better for it (its *mode*).
One rule, used by :func:`~jaxtune.tune`, :mod:`jaxtune.cv`, the halving and PBT drivers,
:class:`~jaxtune.results.Results` (``best``, ``top``, ``table``, ``aggregate``,
``best_config``), :mod:`jaxtune.plot`, the CLI and the Optuna bridge:

1. an explicit ``mode`` wins (``"max"``: higher is better, ``"min"``: lower is better);
2. else the sweep's own metadata: ``metadata["mode"]`` when ``metadata["metric"]`` is this
   metric, else ``metadata["metric_modes"]`` (written by :func:`jaxtune.engine.train`, keyed by
   the task's metric names without the ``valid_``/``test_``/``train_`` prefix);
3. else the task's ``metric_modes`` (same keys);
4. else the name: a metric whose name has a loss/error word (:data:`MIN_WORDS`, e.g.
   ``valid_mse``, ``train_loss``, ``valid_error_rate``) is minimized, any other maximized.

A sweep selects on a validation (or training) metric, never on a test metric: choosing by the
test set leaks it into the choice, and the test score of the chosen member is then biased.

The module also holds the interfaces between the parts (the types other modules implement or
consume): :class:`Strategy` (ask/tell search), :class:`Scheduler` with its :class:`SlotView`
and :class:`PopulationUpdate` (decisions between segments), and :class:`SegmentReport` (what a
progress callback receives).

This module imports nothing else from jaxtune, so every module may import it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:  # annotations only: contracts imports no other jaxtune module at run time
    import jax

    from jaxtune.space import Space

__all__ = [
    "CONSTRAINT_OPERATORS",
    "Config",
    "Constraints",
    "MIN_WORDS",
    "MODES",
    "Outcomes",
    "PopulationUpdate",
    "Scheduler",
    "SegmentReport",
    "SlotView",
    "Strategy",
    "check_constraints",
    "check_mode",
    "check_selection_metric",
    "default_metric",
    "mode_from_name",
    "resolve_mode",
    "selection",
    "selection_mode",
    "selections",
    "sweep_metric",
]

#: The two directions: ``"max"`` (higher is better) and ``"min"`` (lower is better).
MODES = ("max", "min")

#: Words of a metric name that make it minimized (a word is a ``_``/``-``/``.``-separated part;
#: a word ending in ``loss`` or ``error`` counts too, e.g. ``logloss``).
MIN_WORDS = frozenset({
    "loss", "mse", "mae", "rmse", "msle", "mape", "nll", "error", "err", "perplexity", "ppl",
    "regret", "cost", "deviance", "brier", "wer", "cer", "bpd", "bpc",
})

_PREFIXES = ("valid", "test", "train")


def check_mode(mode: Any, where: str = "mode") -> str:
    """Returns ``mode`` if it is ``"max"`` or ``"min"``.

    Raises:
      ValueError: naming ``where``, the value and the two choices.
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(
            f"{where}={mode!r} must be 'max' (higher is better) or 'min' (lower is better)."
        )
    return mode


def mode_from_name(metric: str) -> str:
    """The direction a metric's name implies: ``"min"`` for loss/error-like names, else ``"max"``.

    Example:
      >>> mode_from_name("valid_mse"), mode_from_name("train_loss"), mode_from_name("valid_r2")
      ('min', 'min', 'max')
    """
    words = [word for word in re.split(r"[_\-.\s]+", metric.lower()) if word]
    minimized = any(
        word in MIN_WORDS or word.endswith(("loss", "error")) for word in words
    )
    return "min" if minimized else "max"


def _base_name(metric: str) -> str:
    """``"valid_mse"`` -> ``"mse"``; a name without a known prefix is returned as is."""
    prefix, _, name = metric.partition("_")
    return name if prefix in _PREFIXES and name else metric


def _lookup(modes: Any, metric: str) -> str | None:
    if not isinstance(modes, Mapping):
        return None
    for key in (_base_name(metric), metric):
        if key in modes:
            return modes[key]
    return None


def resolve_mode(
    metric: str,
    mode: str | None = None,
    *,
    metadata: Mapping[str, Any] | None = None,
    metric_modes: Mapping[str, str] | None = None,
) -> str:
    """Which way is better for ``metric``: the one rule of this module (see its docstring).

    Args:
      metric: the metric's full name, e.g. ``"valid_mse"``.
      mode: an explicit ``"max"``/``"min"``; wins when given.
      metadata: a sweep's :attr:`~jaxtune.results.Results.metadata`.
      metric_modes: a task's ``metric_modes`` (keys without the ``valid_`` prefix).

    Returns:
      ``"max"`` or ``"min"``.

    Raises:
      ValueError: an explicit ``mode``, or a stored one, that is not ``"max"``/``"min"``.

    Example:
      >>> resolve_mode("valid_mse", metadata={"metric": "valid_mse", "mode": "min"})
      'min'
      >>> resolve_mode("valid_accuracy", metric_modes={"accuracy": "max"})
      'max'
      >>> resolve_mode("valid_loss", "max")
      'max'
    """
    if mode is not None:
        return check_mode(mode)
    metadata = metadata or {}
    if metadata.get("metric") == metric and metadata.get("mode") is not None:
        return check_mode(metadata["mode"], "metadata['mode']")
    stored = _lookup(metadata.get("metric_modes"), metric)
    if stored is not None:
        return check_mode(stored, f"metadata['metric_modes'] for {metric!r}")
    declared = _lookup(metric_modes, metric)
    if declared is not None:
        return check_mode(declared, f"the task's metric_modes for {metric!r}")
    return mode_from_name(metric)


def default_metric(metric_modes: Mapping[str, str] | None = None, *,
                   kind: str | None = None) -> str:
    """The metric a sweep selects on when none is given: it follows the task.

    ``valid_accuracy`` for a classification task, ``valid_mse`` for a regression task (when the
    task reports them); else ``valid_accuracy``, ``valid_mse`` or the first name of
    ``metric_modes``, in that order.

    Args:
      metric_modes: the task's ``metric_modes``.
      kind: the task's ``kind`` (``"classification"``, ``"regression"`` or ``None``).

    Raises:
      ValueError: the task declares neither ``metric_modes`` nor ``kind``.

    Example:
      >>> default_metric({"mse": "min", "loss": "min"}, kind="regression")
      'valid_mse'
    """
    modes = dict(metric_modes or {})
    preferred = {"classification": "accuracy", "regression": "mse"}.get(kind or "")
    for name in (preferred, "accuracy", "mse"):
        if name is not None and (name in modes or (not modes and name == preferred)):
            return f"valid_{name}"
    if modes:
        return f"valid_{sorted(modes)[0]}"
    raise ValueError(
        "metric: the task declares neither metric_modes nor kind, so there is no default "
        "selection metric; pass metric='valid_<name>' (a name its evaluate() returns)."
    )


def check_selection_metric(metric: Any, metric_modes: Mapping[str, str] | None = None) -> str:
    """Checks that a sweep may select on ``metric``; returns it.

    Raises:
      ValueError: a name without a ``valid_``/``train_`` prefix, a ``test_`` metric (selecting
        on the test set leaks it), or a validation metric the task does not report.
    """
    if not isinstance(metric, str):
        raise ValueError(f"metric={metric!r} must be a str such as 'valid_accuracy'.")
    prefix, _, name = metric.partition("_")
    modes = dict(metric_modes or {})
    if prefix == "test" and name:
        raise ValueError(
            f"metric={metric!r} selects on the test set, which leaks it into the choice (the "
            f"chosen member's test score is then biased); select on 'valid_{name}' instead."
        )
    if prefix not in _PREFIXES or not name:
        raise ValueError(
            f"metric={metric!r} must look like 'valid_<name>' (e.g. 'valid_accuracy'); "
            f"the task reports {sorted(modes) or 'its evaluate() names'}."
        )
    if modes and prefix != "train" and name not in modes:
        raise ValueError(
            f"metric={metric!r}: the task does not report {name!r}; choose one of "
            f"{[f'valid_{m}' for m in sorted(modes)]}."
        )
    return metric


def selection_mode(metric: str, mode: str | None = None, *,
                   metric_modes: Mapping[str, str] | None = None) -> str:
    """What a driver calls before training: the metric is checked, its mode resolved.

    Returns:
      ``"max"`` or ``"min"`` (:func:`resolve_mode` with the task's ``metric_modes``).

    Raises:
      ValueError: see :func:`check_selection_metric` and :func:`check_mode`.
    """
    check_selection_metric(metric, metric_modes)
    return resolve_mode(metric, mode, metric_modes=metric_modes)


def selection(metric: str | None, mode: str | None = None, *,
              metric_modes: Mapping[str, str] | None = None,
              kind: str | None = None) -> tuple[str, str]:
    """A driver's selection metric and its mode: the task's default when ``metric`` is None
    (:func:`default_metric`), checked and resolved by :func:`selection_mode`.

    Returns:
      ``(metric, mode)``.
    """
    if metric is None:
        metric = default_metric(metric_modes, kind=kind)
    return metric, selection_mode(metric, mode, metric_modes=metric_modes)


def sweep_metric(metadata: Mapping[str, Any] | None, available: Sequence[str] = ()) -> str:
    """The metric a sweep's results rank by when none is given.

    ``metadata["metric"]`` (the sweep's selection metric); for results without one,
    ``valid_accuracy`` unless only ``valid_mse`` of the two was recorded.
    """
    metric = (metadata or {}).get("metric")
    if isinstance(metric, str):
        return metric
    if "valid_accuracy" not in available and "valid_mse" in available:
        return "valid_mse"
    return "valid_accuracy"


def selections(metric: str | Sequence[str] | None, mode: str | Sequence[str | None] | None = None,
               *, metric_modes: Mapping[str, str] | None = None,
               kind: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A driver's objectives: one metric (as :func:`selection`) or several, each with its mode.

    Args:
      metric: ``None`` (the task's default), a name, or a sequence of distinct names.
      mode: ``None`` (each metric's own, :func:`resolve_mode`), one mode for one metric, or a
        sequence with one entry (``"max"``, ``"min"`` or ``None``) per metric.
      metric_modes, kind: the task's, as for :func:`selection`.

    Returns:
      ``(metrics, modes)``, two tuples of the same length.

    Raises:
      ValueError: no metric, a repeated metric, a count of modes that differs from the count
        of metrics, or what :func:`selection_mode` refuses.

    Example:
      >>> selections(["valid_accuracy", "valid_loss"], None, metric_modes={"accuracy": "max"})
      (('valid_accuracy', 'valid_loss'), ('max', 'min'))
    """
    if metric is None or isinstance(metric, str):
        if mode is not None and not isinstance(mode, str):
            mode = _one_mode(list(mode))
        chosen, chosen_mode = selection(metric, mode, metric_modes=metric_modes, kind=kind)
        return (chosen,), (chosen_mode,)
    metrics = list(metric)
    if not metrics:
        raise ValueError("metric=[]: give at least one metric, e.g. metric=['valid_accuracy'].")
    repeated = sorted({name for name in metrics if metrics.count(name) > 1})
    if repeated:
        raise ValueError(f"metric: {repeated} given more than once; give each metric once.")
    if mode is None or isinstance(mode, str):
        modes = [mode] * len(metrics) if mode is None or len(metrics) == 1 else None
    else:
        modes = list(mode)
    if modes is None or len(modes) != len(metrics):
        count = 1 if isinstance(mode, str) else len(modes or [])
        raise ValueError(
            f"mode: got {count} mode(s) for {len(metrics)} metrics {metrics}; give one per "
            "metric in the same order (e.g. mode=['max', 'min']) or none (each metric's own)."
        )
    resolved = tuple(selection_mode(name, m, metric_modes=metric_modes)
                     for name, m in zip(metrics, modes, strict=True))
    return tuple(metrics), resolved


def _one_mode(modes: list[Any]) -> Any:
    if len(modes) != 1:
        raise ValueError(
            f"mode: got {len(modes)} modes for one metric; give one mode per metric."
        )
    return modes[0]


#: The comparisons a constraint bound may use.
CONSTRAINT_OPERATORS = ("<=", ">=")


class Constraints(NamedTuple):
    """A sweep's feasibility rule: metric bounds and/or a predicate of a row's metrics.

    A member is *feasible* when it completed and satisfies every constraint. An infeasible
    member is never best and never on a Pareto front; it stays in the results, marked.

    Attributes:
      bounds: ``((metric, operator, bound), ...)`` with ``operator`` in
        :data:`CONSTRAINT_OPERATORS`.
      predicate: ``metrics -> bool`` (``True``: feasible) or ``None``.
    """

    bounds: tuple[tuple[str, str, float], ...] = ()
    predicate: Callable[[Mapping[str, float]], Any] | None = None

    @property
    def num_columns(self) -> int:
        """Columns of :meth:`violations`: one per bound, one for the predicate."""
        return len(self.bounds) + (self.predicate is not None)

    def violations(self, metrics: Mapping[str, float]) -> np.ndarray:
        """``[num_columns]`` float64, ``<= 0`` where satisfied (see :class:`Outcomes`).

        A missing or non-finite metric violates its bound (``+inf``).
        """
        values = []
        for name, operator, bound in self.bounds:
            value = float(metrics.get(name, np.nan))
            gap = value - bound if operator == "<=" else bound - value
            values.append(gap if np.isfinite(gap) else np.inf)
        if self.predicate is not None:
            values.append(-0.5 if bool(self.predicate(dict(metrics))) else 0.5)
        return np.array(values, np.float64)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for a sweep's metadata."""
        described: dict[str, Any] = {name: [op, bound] for name, op, bound in self.bounds}
        if self.predicate is not None:
            described["predicate"] = getattr(self.predicate, "__name__", repr(self.predicate))
        return described


def check_constraints(constraints: Any,
                      metric_modes: Mapping[str, str] | None = None) -> Constraints | None:
    """A sweep's ``constraints=`` argument, checked; ``None`` when there are none.

    Args:
      constraints: ``None``; a mapping ``{metric: (operator, bound)}``, e.g.
        ``{"valid_loss": ("<=", 0.5)}``; a callable ``metrics -> bool``; or a
        :class:`Constraints`.
      metric_modes: the task's, to refuse a validation metric it does not report.

    Raises:
      TypeError: a value of another kind.
      ValueError: an unknown operator, a non-finite bound, or a ``test_`` metric (choosing by
        the test set leaks it), each naming the metric.
    """
    if constraints is None or isinstance(constraints, Constraints):
        return constraints if constraints is None or constraints.num_columns else None
    if callable(constraints):
        return Constraints((), constraints)
    if not isinstance(constraints, Mapping):
        raise TypeError(
            f"constraints: got {type(constraints).__name__}; give a mapping such as "
            "{'valid_loss': ('<=', 0.5)} or a function of a row's metrics returning a bool."
        )
    bounds = []
    for name, spec in constraints.items():
        where = f"constraints[{name!r}]"
        if not isinstance(spec, Sequence) or isinstance(spec, str) or len(spec) != 2:
            raise TypeError(f"{where}={spec!r} must be a pair (operator, bound), e.g. ('<=', 0.5).")
        operator, bound = spec
        if operator not in CONSTRAINT_OPERATORS:
            raise ValueError(
                f"{where}: operator {operator!r} must be one of {CONSTRAINT_OPERATORS}."
            )
        if isinstance(bound, bool) or not isinstance(bound, int | float | np.number) \
                or not np.isfinite(bound):
            raise ValueError(f"{where}: bound {bound!r} must be a finite number.")
        try:
            check_selection_metric(name, metric_modes)
        except ValueError as error:
            raise ValueError(f"constraints: {error}") from None
        bounds.append((name, operator, float(bound)))
    return Constraints(tuple(bounds)) if bounds else None


# --------------------------------------------------------------------------------------------
# Interfaces between the parts.

Config = dict[str, Any]


class Strategy(NamedTuple):
    """A search strategy: three pure functions over an explicit state.

    Attributes:
      init: ``init(space, key) -> state``; ``key`` is a JAX PRNG key.
      ask: ``ask(state, num) -> (configs, state)``; at most ``num`` configs (a list of dicts,
        empty when the strategy has nothing left to propose).
      tell: ``tell(state, configs, scores) -> state``; ``scores`` is ``np.ndarray [len(configs)]``
        of losses (lower is better).
      accepts_outcomes: whether ``tell`` also takes an :class:`Outcomes` as ``scores`` (a
        sweep with several objectives or constraints tells it one); a strategy without it is
        told one loss per config instead (:func:`jaxtune.pareto.non_dominated_ranks` of the
        feasible configs, ``+inf`` for the infeasible ones).
    """

    init: Callable[[Space, jax.Array], Any]
    ask: Callable[[Any, int], tuple[list[Config], Any]]
    tell: Callable[[Any, list[Config], np.ndarray], Any]
    accepts_outcomes: bool = False


class Outcomes(NamedTuple):
    """What a sweep with several objectives or constraints tells a strategy per config.

    Attributes:
      objectives: ``np.ndarray [num, k]`` float64 losses (each metric negated when it is
        maximized); ``+inf`` where a config failed (diverged, non-finite).
      violations: ``np.ndarray [num, c]`` float64, one column per constraint: ``<= 0`` where
        the config satisfies it (``value - bound`` for ``<=``, ``bound - value`` for ``>=``; a
        predicate gives ``-0.5`` or ``+0.5``); ``+inf`` where the metric is missing or failed.
    """

    objectives: np.ndarray
    violations: np.ndarray

    @property
    def feasible(self) -> np.ndarray:
        """``[num]`` bool: every violation ``<= 0`` (an unknown one counts as violated)."""
        return np.all(self.violations <= 0.0, axis=1)


class SegmentReport(NamedTuple):
    """What the host learns after each segment; handed to ``on_segment`` callbacks.

    Attributes:
      group: the static group's label.
      group_index: index of the group, from 0.
      num_groups: number of static groups in this call.
      step: segment steps done in this chunk (the largest member step).
      num_steps: steps per member.
      num_members: real member slots in the chunk.
      num_alive: slots still training.
      num_diverged: members of the chunk that diverged so far.
      metrics: ``{name: np.ndarray [num_members]}`` at this segment, one value per slot.
      member_steps: member-steps done by this segment (for progress and budgets).
      member_ids: ``[num_members]`` the member id each slot held while this segment ran
        (slots are refilled, so a value of ``metrics`` belongs to ``member_ids[slot]``);
        empty when the engine did not fill it.
      configs: ``[num_members]`` each slot's config during this segment (for PBT, the values
        the member trained with in this segment).
      member_step: ``[num_members]`` int, each slot member's step after this segment.
      statuses: ``[num_members]`` each slot member's status after this segment
        (``"running"``, ``"completed"``, ``"diverged"``; a scheduler's ``"stopped"`` comes
        after the report). A slot's metrics are new for its member when ``member_step`` grew
        since the member's previous report (a completed or stopped member's slot repeats them).
    """

    group: str
    group_index: int
    num_groups: int
    step: int
    num_steps: int
    num_members: int
    num_alive: int
    num_diverged: int
    metrics: Mapping[str, np.ndarray]
    member_steps: int = 0
    member_ids: Sequence[int] = ()
    configs: Sequence[Mapping[str, Any]] = ()
    member_step: np.ndarray | None = None
    statuses: Sequence[str] = ()



class SlotView(NamedTuple):
    """What a scheduler sees after each segment (host numpy arrays, one entry per slot).

    Attributes:
      segment: segments run so far in this chunk.
      step: ``[P]`` steps taken by the member in each slot.
      alive: ``[P]`` slots still training (not diverged, stopped or padding).
      finished: ``[P]`` slots whose member reached ``num_steps``.
      metrics: ``{name: [P]}`` metrics of this segment.
      configs: the config held by each slot.
      member_ids: the member id held by each slot.
      num_steps: steps per member.
      steps_per_segment: steps per segment.
    """

    segment: int
    step: np.ndarray
    alive: np.ndarray
    finished: np.ndarray
    metrics: Mapping[str, np.ndarray]
    configs: Sequence[Mapping[str, Any]]
    member_ids: Sequence[int]
    num_steps: int
    steps_per_segment: int


class PopulationUpdate(NamedTuple):
    """A scheduler's decision, applied on device by one fixed-shape program.

    Attributes:
      stop: slots whose member stops now (recorded as ``"stopped"``).
      refill: ``{slot: config}``: the slot's member stops and a new member with this config
        starts there from fresh parameters (successive halving, Hyperband).
      exploit: ``{slot: source_slot}``: the slot's member continues from a copy of the source
        slot's parameters, optimizer state and step (PBT exploit).
      explore: ``{slot: config}``: the slot's member continues with these hyperparameter values
        (same static values; PBT explore).
    """

    stop: Sequence[int] = ()
    refill: Mapping[int, Mapping[str, Any]] = {}
    exploit: Mapping[int, int] = {}
    explore: Mapping[int, Mapping[str, Any]] = {}


class Scheduler(NamedTuple):
    """Acts on a population between segments: ``init(view) -> state``,
    ``update(state, view) -> (PopulationUpdate | None, state)``.

    Decisions are made on the host from the segment's metrics (a few numbers per member);
    the engine applies them on device with one compiled gather/re-initialization program per
    static group, so refilling or copying members never recompiles. States are explicit
    values, as for strategies.
    """

    init: Callable[[SlotView], Any]
    update: Callable[[Any, SlotView], tuple[PopulationUpdate | None, Any]]
