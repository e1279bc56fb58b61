"""Optuna: export a sweep as a study, and use any Optuna sampler as a jaxtune strategy.

Needs ``optuna`` (``pip install jaxtune[integrations]``); it is imported when a function here is
called, not when this module is imported.

How jaxtune parameters map to Optuna distributions:

* :class:`~jaxtune.space.Float` -> ``FloatDistribution(low, high, log=log)``;
* :class:`~jaxtune.space.Int` -> ``IntDistribution(low, high, log=log)``;
* :class:`~jaxtune.space.Choice` -> ``CategoricalDistribution(values)``. Optuna's categories
  must be ``None``, ``bool``, ``int``, ``float`` or ``str``; a Choice holding anything else
  (tuples such as ``hidden_sizes``), or mixing bools with numbers (Optuna would confuse ``True``
  and ``1``), is offered to Optuna as the JSON text of each value (``"[64, 64]"``) and mapped back;
* :class:`~jaxtune.space.Fixed` -> not suggested: the strategy sets it directly, the export
  stores it as a trial user attribute ``"fixed.<name>"``.

**Conditional spaces** (parameters with ``when=``, :mod:`jaxtune.conditions`) are asked
define-by-run, as Optuna users write them: each trial suggests the parameters in an order with
every parent before its children (:func:`jaxtune.conditions.topological_order`) and a
parameter only when its condition holds on the values suggested so far, so a config holds
exactly its active names and the sampler only ever sees those (TPE models each parameter on
the trials that have it). A space without conditions is asked with its fixed distributions,
as before. The export writes each member's active parameters only (its config's names).

Example:
    >>> import optuna                                               # doctest: +SKIP
    >>> study = export_to_optuna(results, storage="sqlite:///sweep.db", study_name="digits")
    >>> # optuna-dashboard sqlite:///sweep.db                        # doctest: +SKIP
    >>> strategy = optuna_strategy(lambda seed: optuna.samplers.TPESampler(seed=seed))
    >>> results = jt.tune(task, split, space, strategy, num_configs=64, population_size=16,
    ...                   num_steps=200)                             # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from jaxtune import distributed
from jaxtune.integrations.optuna_space import (
    ParamMap,
    label,
    optuna_module,
    param_map,
    params_of,
    space_maps,
    suggested,
)
from jaxtune.member_result import row_fields
from jaxtune.results import MemberResult, Results
from jaxtune.space import Fixed, Space
from jaxtune.strategies.base import Config, Strategy, check_num, sanitize_scores

if TYPE_CHECKING:
    import optuna

__all__ = ["OptunaState", "export_to_optuna", "optuna_strategy"]

_DIRECTIONS = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}


# --------------------------------------------------------------------------------------------
# Export


def _json_attr(value: Any) -> Any:
    """A value Optuna's storages can write (they JSON-encode attributes): non-finite -> None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple | list):
        return [_json_attr(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_attr(item) for key, item in value.items()}
    return value


def export_to_optuna(
    results: Results,
    storage: str | Any | None = None,
    study_name: str | None = None,
    metric: str | None = None,
    direction: str | None = None,
    load_if_exists: bool = False,
) -> optuna.Study:
    """Copies a sweep into an Optuna study: one finished trial per member.

    Each trial gets:

    * ``params`` and ``distributions`` from the member's config and the space saved in
      ``results.metadata["space"]`` (see the module docstring for the mapping; without a saved
      space, or for a value outside it, the distribution is inferred from the values seen);
      Fixed parameters become user attributes ``"fixed.<name>"``;
    * ``value``: the member's final ``metric``; ``state``: ``COMPLETE``, ``FAIL`` when it
      diverged or the metric is missing or not finite (no value), ``PRUNED`` when a scheduler
      stopped it (the value is its final metric);
    * ``intermediate_values``: the learning curve of ``metric`` at its ``curve_steps``;
    * user attributes ``member_id``, ``seed``, ``fold``, ``static_group``, ``status``,
      ``diverged_step``, ``wall_time_s`` and every final metric as ``"metrics.<name>"``.

    The study's user attributes hold ``"jaxtune.metric"`` and ``"jaxtune.space"`` (when saved).
    Trials are numbered in row order.

    Args:
      results: the sweep.
      storage: an Optuna storage or URL, e.g. ``"sqlite:///sweep.db"`` (``optuna-dashboard
        sqlite:///sweep.db`` then shows it); ``None`` keeps the study in memory.
      study_name: the study's name (default: Optuna's generated one).
      metric: the trial value (default: ``results.metadata["metric"]``, else
        ``"valid_accuracy"``).
      direction: ``"maximize"``/``"max"`` or ``"minimize"``/``"min"`` (default: the
        direction :meth:`~jaxtune.results.Results.resolve_metric` gives ``metric``, as
        ``Results.best`` ranks it).
      load_if_exists: add to an existing study of that name instead of failing.

    Returns:
      The ``optuna.Study``.

    Raises:
      ImportError: Optuna is not installed.
      ValueError: an unknown metric or direction.
    """
    optuna = optuna_module()
    if not isinstance(results, Results):
        raise TypeError(f"results must be jaxtune Results, got {type(results).__name__}")
    metric, mode = results.resolve_metric(metric)
    if metric not in results.metric_names:
        raise ValueError(
            f"metric {metric!r} is not in the results; available metrics: {results.metric_names}"
        )
    direction = mode if direction is None else direction
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction={direction!r} must be one of {sorted(_DIRECTIONS)}")
    params = params_of(results)
    maps = {name: param_map(p) for name, p in params.items() if not isinstance(p, Fixed)}
    fixed = [name for name, p in params.items() if isinstance(p, Fixed)]
    trials = [_trial(optuna, row, metric, maps, fixed) for row in results]
    study = _export_study(optuna, storage, study_name, metric, _DIRECTIONS[direction],
                          load_if_exists)
    if "space" in results.metadata:
        study.set_user_attr("jaxtune.space", _json_attr(dict(results.metadata["space"])))
    study.add_trials(trials)
    return study


def _trial(optuna: Any, row: MemberResult, metric: str, maps: Mapping[str, ParamMap],
           fixed: Sequence[str]) -> Any:
    """One member as a finished ``optuna.trial.FrozenTrial`` (see :func:`export_to_optuna`)."""
    value = row.metrics.get(metric, math.nan)
    if row.status == "diverged" or not math.isfinite(value):
        state, value = optuna.trial.TrialState.FAIL, None
    elif row.status == "stopped":
        state = optuna.trial.TrialState.PRUNED
    else:
        state = optuna.trial.TrialState.COMPLETE
    curve = row.curves.get(metric, [])
    user_attrs = {
        **row_fields(row),
        "wall_time_s": _json_attr(row.wall_time_s),
        **{f"metrics.{k}": _json_attr(v) for k, v in row.metrics.items()},
        **{f"fixed.{name}": _json_attr(row.config[name]) for name in fixed if name in row.config},
    }
    return optuna.trial.create_trial(
        state=state,
        value=value,
        params={name: m.to_optuna(row.config[name]) for name, m in maps.items()
                if name in row.config},
        distributions={name: m.distribution for name, m in maps.items() if name in row.config},
        user_attrs=user_attrs,
        intermediate_values={
            int(step): float(v) for step, v in zip(row.curve_steps, curve, strict=False)
        },
    )


def _export_study(optuna: Any, storage: str | Any | None, study_name: str | None, metric: str,
                  direction: str, load_if_exists: bool) -> Any:
    """The study to export into (``direction``: ``"maximize"`` or ``"minimize"``), marked
    with ``metric``; an existing one (``load_if_exists``) must rank the same way."""
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        load_if_exists=load_if_exists,
    )
    # An existing study (load_if_exists) keeps its direction: values of another metric or sense
    # would be ranked wrongly next to its trials.
    wanted = optuna.study.StudyDirection[direction.upper()]
    existing_metric = study.user_attrs.get("jaxtune.metric", metric)
    if study.direction != wanted or existing_metric != metric:
        raise ValueError(
            f"study {study.study_name!r} already holds {existing_metric!r} to "
            f"{study.direction.name.lower()}; exporting {metric!r} to {direction} "
            "would mix values that do not compare: use another study_name"
        )
    study.set_user_attr("jaxtune.metric", metric)
    return study


# --------------------------------------------------------------------------------------------
# Strategy


class OptunaState(NamedTuple):
    """State of :func:`optuna_strategy`. **Not a pure value**: it wraps a mutable study.

    ``ask`` and ``tell`` change ``study`` in place (Optuna's ask/tell API), so an older state
    is not a snapshot: asking twice from the same state gives different configs, and ``tell``
    must follow ``ask`` in order. The other fields are replaced, as in every jaxtune strategy.

    Attributes:
      space: the search space.
      study: the in-memory Optuna study the sampler proposes from (direction ``"minimize"``:
        jaxtune scores are losses).
      maps: name -> how a searchable parameter maps to its Optuna distribution.
      pending: ``(trial_number, config)`` of every config asked and not yet told, in ask order.
      num_asked: how many configs have been asked.
      mirror: the study in ``storage`` that mirrors ``study`` trial by trial (``None`` without
        storage).
    """

    space: Space
    study: Any  # optuna.Study
    maps: Mapping[str, ParamMap]
    pending: tuple[tuple[int, Config], ...]
    num_asked: int
    mirror: Any = None  # optuna.Study in storage, or None


_SWEEP_ATTR = "jaxtune.sweep"


def _mirror_trial(mirror: Any, number: int, params: Mapping[str, Any],
                  distributions: Mapping[str, Any]) -> None:
    """Makes trial ``number`` of the storage study hold ``params``: it is created (running)
    when the study has fewer trials, and checked when it exists (a resumed sweep)."""
    trials = mirror.get_trials(deepcopy=False)
    if number < len(trials):
        if trials[number].params != dict(params):
            raise ValueError(
                f"optuna_strategy: study {mirror.study_name!r} in storage already holds trial "
                f"{number} with other params ({trials[number].params!r}, this sweep asks "
                f"{dict(params)!r}); it belongs to another sweep: use another study_name"
            )
        return
    if number != len(trials):
        raise ValueError(
            f"optuna_strategy: study {mirror.study_name!r} in storage has {len(trials)} trials "
            f"but this sweep asks trial {number}; use another study_name"
        )
    mirror.enqueue_trial(dict(params), skip_if_exists=False)
    mirror.ask(dict(distributions))


def _mirror_tell(mirror: Any, number: int, score: float) -> None:
    """Tells the storage study's trial ``number`` unless it was told before (a resume)."""
    optuna = optuna_module()
    trial = mirror.get_trials(deepcopy=False)[number]
    if trial.state.is_finished():
        # A resumed sweep replays the same training, so it scores the stored trial exactly as
        # before; another score means another sweep (other data or budget) under this name.
        told = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else float("nan")
        if not (told == score or (np.isnan(told) and not np.isfinite(score))):
            raise ValueError(
                f"optuna_strategy: study {mirror.study_name!r} in storage already holds trial "
                f"{number} with value {told!r}, but this sweep scored it {score!r}; it belongs "
                "to another sweep: use another study_name"
            )
        return
    if np.isfinite(score):
        mirror.tell(trial.number, float(score))
    else:
        mirror.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return label(dict(a)) == label(dict(b))


def optuna_strategy(
    sampler: optuna.samplers.BaseSampler | Callable[[int], optuna.samplers.BaseSampler] | None,
    *,
    storage: str | Any | None = None,
    study_name: str | None = None,
) -> Strategy:
    """Any Optuna sampler as a jaxtune :class:`~jaxtune.strategies.Strategy`, via ask/tell.

    ``ask(state, num)`` asks Optuna for ``num`` trials in a row (a *batch*; the whole batch is
    then trained as one population) and ``tell(state, configs, scores)`` tells their losses back,
    in the same order. A non-finite score (a diverged member) is told as ``TrialState.FAIL``.
    Samplers that learn from results see a batch only after it is told, so a batch is proposed
    from the same history; for TPE, ``TPESampler(constant_liar=True)`` spreads a batch out.

    Searchable parameters become Optuna distributions (module docstring); Fixed parameters are
    not suggested but set in every config directly.

    **Purity**: unlike jaxtune's own strategies, the state wraps a mutable ``optuna.Study``
    (:class:`OptunaState`): ``ask`` and ``tell`` change it in place, so a state cannot be
    re-used to ask again, and calls must come in order (ask, then tell those configs, ...).
    Each ``init`` makes a fresh in-memory study and a fresh sampler, so two sweeps do not share
    one.

    **Storage and resume**: with ``storage``, every trial of the in-memory study is mirrored
    into the stored study (running when asked, finished when told), so ``optuna-dashboard``
    shows the sweep live. The sampler always proposes from the in-memory study, so a sweep
    resumed from a checkpoint (``jaxtune.tune(..., resume=True)``, ``jaxtune sweep --resume``)
    replays the same proposals, and the stored study, found again by ``study_name``, is
    continued: trials it already holds are checked (same params) and not told twice. A stored
    study whose trials differ from the sweep's is refused with a ``ValueError``. With several
    processes (``jax.distributed``), only process 0 (:func:`jaxtune.distributed.is_writer`)
    opens and writes the stored study; the others propose the same trials in memory. A stored
    study refused there stops process 0 with the error, and the others when the cluster finds
    it gone (JAX's heartbeat).

    Args:
      sampler: an Optuna sampler (deep-copied at each ``init``; give it ``seed=`` for repeatable
        runs), or a function ``seed -> sampler`` called at ``init`` with a seed drawn from the
        ``init`` key, so the jaxtune sweep seed fixes the proposals; ``None``: Optuna's default
        (TPE) seeded that way.
      storage: an Optuna storage or URL for the study (e.g. ``"sqlite:///tune.db"`` to watch it
        in ``optuna-dashboard`` while it runs); ``None``: in memory.
      study_name: the study's name when ``storage`` is given (default: Optuna's generated one,
        which a resumed sweep cannot find again: name the study to resume into it).

    Returns:
      A :class:`~jaxtune.strategies.Strategy` whose state is an :class:`OptunaState`.

    Raises:
      ImportError: Optuna is not installed (raised by ``init``).
      ValueError: the stored study named ``study_name`` maximizes, or holds other trials than
        this sweep asks (raised by ``init`` and ``ask``).

    Example:
      >>> import jax, optuna                                         # doctest: +SKIP
      >>> from jaxtune.space import Float, Space
      >>> strategy = optuna_strategy(optuna.samplers.TPESampler(seed=0))
      >>> state = strategy.init(Space({"x": Float(-2.0, 2.0)}), jax.random.PRNGKey(0))
      >>> configs, state = strategy.ask(state, 4)
      >>> state = strategy.tell(state, configs, [c["x"] ** 2 for c in configs])
    """

    def init(space: Space, key: jax.Array) -> OptunaState:
        return _init(sampler, storage, study_name, space, key)

    return Strategy(init, _ask, _tell)


def _init(sampler: Any, storage: str | Any | None, study_name: str | None, space: Space,
          key: jax.Array) -> OptunaState:
    """``init`` of :func:`optuna_strategy`: a fresh in-memory study (and its stored mirror)."""
    optuna = optuna_module()
    if not isinstance(space, Space):
        raise TypeError(f"init(space, key): space must be a Space, got {type(space).__name__}")
    seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
    study = optuna.create_study(sampler=_sampler(optuna, sampler, seed), direction="minimize")
    mirror = None
    # Every process runs the same proposals (the sampler is seeded), so process 0 alone
    # opens the storage and records them: several writers would race (even creating the
    # tables of a new SQLite file) and duplicate trials.
    if storage is not None and distributed.is_writer():
        mirror = _open_mirror(optuna, storage, study_name, f"seed={seed} "
                              f"space={label(space.to_dict())}")
    return OptunaState(space, study, space_maps(space), (), 0, mirror)


def _sampler(optuna: Any, sampler: Any, seed: int) -> Any:
    """The sampler of one ``init``: a deep copy of ``sampler``, ``sampler(seed)``, or TPE."""
    if sampler is None:
        return optuna.samplers.TPESampler(seed=seed)
    if isinstance(sampler, optuna.samplers.BaseSampler):
        return copy.deepcopy(sampler)
    if callable(sampler):
        chosen = sampler(seed)
        if not isinstance(chosen, optuna.samplers.BaseSampler):
            raise TypeError(
                f"optuna_strategy(sampler): the function returned {type(chosen).__name__}, "
                "not an optuna sampler"
            )
        return chosen
    raise TypeError(
        f"optuna_strategy(sampler): expected an optuna sampler or a function seed -> "
        f"sampler, got {type(sampler).__name__}"
    )


def _open_mirror(optuna: Any, storage: str | Any, study_name: str | None, sweep: str) -> Any:
    """The stored study that records the sweep ``sweep`` (its seed and space, which fix the
    proposals); one written by another sweep is refused here, before anything trains."""
    # The stored study only records; its sampler never proposes (params are enqueued).
    mirror = optuna.create_study(
        storage=storage, study_name=study_name, direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True,
    )
    if mirror.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ValueError(
            f"optuna_strategy: study {mirror.study_name!r} in storage maximizes; jaxtune "
            "tells losses to minimize: use another study_name"
        )
    recorded = mirror.user_attrs.get(_SWEEP_ATTR)
    if recorded is None and mirror.get_trials(deepcopy=False):
        raise ValueError(
            f"optuna_strategy: study {mirror.study_name!r} in storage already holds "
            "trials that no jaxtune sweep wrote: use another study_name"
        )
    if recorded is not None and recorded != sweep:
        raise ValueError(
            f"optuna_strategy: study {mirror.study_name!r} in storage belongs to another "
            f"sweep: use another study_name (it records {recorded}; this sweep is "
            f"{sweep})"
        )
    mirror.set_user_attr(_SWEEP_ATTR, sweep)
    return mirror


def _ask(state: OptunaState, num: int) -> tuple[list[Config], OptunaState]:
    """``ask`` of :func:`optuna_strategy`: ``num`` trials in a row (mirrored when stored)."""
    num = check_num(num)
    distributions = {name: m.distribution for name, m in state.maps.items()}
    configs, asked = [], []
    for _ in range(num):
        if state.space.conditional_names:
            trial = state.study.ask()
            config = suggested(state.space, state.maps, trial)
        else:
            trial = state.study.ask(distributions)
            config = {name: param.value if isinstance(param, Fixed)
                      else state.maps[name].from_optuna(trial.params[name])
                      for name, param in state.space.items()}
        if state.mirror is not None:
            _mirror_trial(state.mirror, trial.number, trial.params,
                          {name: distributions[name] for name in trial.params})
        configs.append(config)
        asked.append((trial.number, dict(config)))
    return configs, state._replace(
        pending=state.pending + tuple(asked), num_asked=state.num_asked + num
    )


def _tell(state: OptunaState, configs: list[Config], scores: Any) -> OptunaState:
    """``tell`` of :func:`optuna_strategy`: the pending trials' losses, in ask order."""
    optuna = optuna_module()
    scores = sanitize_scores(scores, len(configs))
    if len(configs) > len(state.pending):
        raise ValueError(
            f"tell got {len(configs)} configs but only {len(state.pending)} are pending; "
            "tell the configs returned by ask, once each."
        )
    told = state.pending[: len(configs)]
    for i, ((_, asked), config) in enumerate(zip(told, configs, strict=True)):
        if not _same_config(asked, config):
            raise ValueError(
                f"tell: configs[{i}] = {dict(config)!r} is not the config asked next "
                f"({asked!r}); tell the configs of ask in the order ask returned them."
            )
    for (number, _), score in zip(told, scores, strict=True):
        if np.isfinite(score):
            state.study.tell(number, float(score))
        else:
            state.study.tell(number, state=optuna.trial.TrialState.FAIL)
        if state.mirror is not None:
            _mirror_tell(state.mirror, number, score)
    return state._replace(pending=state.pending[len(configs) :])
