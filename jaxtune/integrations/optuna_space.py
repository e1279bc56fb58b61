"""How a jaxtune :class:`~jaxtune.space.Space` travels to Optuna and back (see
:mod:`jaxtune.integrations.optuna`): a distribution per parameter, category labels, parameters
inferred from a sweep's values, and a conditional space's define-by-run suggestions.

Optuna is imported when a function here is called (:func:`optuna_module`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from jaxtune import conditions
from jaxtune.results import Results
from jaxtune.space import Choice, Fixed, Float, Int, Param, Space

__all__ = ["ParamMap", "contains", "infer_param", "label", "needs_labels", "optuna_module",
           "param_map", "params_of", "space_maps", "suggest", "suggested", "thaw"]

_INSTALL_HINT = "pip install jaxtune[integrations]"
_CATEGORY_TYPES = (type(None), bool, int, float, str)


def optuna_module() -> Any:
    """Imports Optuna, or says how to install it."""
    try:
        import optuna
    except ImportError as error:
        raise ImportError(
            f"jaxtune.integrations.optuna needs Optuna, which is not installed: {_INSTALL_HINT} "
            "(or pip install optuna)"
        ) from error
    return optuna


# --------------------------------------------------------------------------------------------
# Space <-> Optuna distributions


def thaw(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [thaw(item) for item in value]
    if isinstance(value, dict):
        return {key: thaw(item) for key, item in value.items()}
    return value


def label(value: Any) -> str:
    return json.dumps(thaw(value), sort_keys=True, default=repr)


def needs_labels(values: Sequence[Any]) -> bool:
    """Whether Optuna cannot hold these category values as they are."""
    if not all(type(value) in _CATEGORY_TYPES for value in values):
        return True
    has_bool = any(isinstance(value, bool) for value in values)
    has_number = any(isinstance(value, int | float) and not isinstance(value, bool)
                     for value in values)
    return has_bool and has_number


class ParamMap(NamedTuple):
    """How one searchable parameter travels to Optuna and back."""

    distribution: Any  # optuna.distributions.BaseDistribution
    values: tuple[Any, ...] | None  # Choice values when offered as labels, else None

    def to_optuna(self, value: Any) -> Any:
        if self.values is None:
            return value
        return label(value)

    def from_optuna(self, value: Any) -> Any:
        if self.values is None:
            return value
        return self.values[[label(v) for v in self.values].index(value)]


def param_map(param: Param) -> ParamMap:
    distributions = optuna_module().distributions
    if isinstance(param, Float):
        return ParamMap(distributions.FloatDistribution(param.low, param.high, log=param.log),
                         None)
    if isinstance(param, Int):
        return ParamMap(distributions.IntDistribution(param.low, param.high, log=param.log),
                         None)
    if isinstance(param, Choice):
        if needs_labels(param.values):
            labels = tuple(label(value) for value in param.values)
            return ParamMap(distributions.CategoricalDistribution(labels), tuple(param.values))
        return ParamMap(distributions.CategoricalDistribution(param.values), None)
    raise TypeError(f"a Fixed parameter is not searched and has no distribution: {param!r}")


def space_maps(space: Space) -> dict[str, ParamMap]:
    """Name -> mapping for every searchable (non-Fixed) parameter, in the space's order."""
    return {name: param_map(space[name]) for name in space.searchable_names}


def infer_param(values: Sequence[Any]) -> Param:
    """A parameter that holds every observed value (for sweeps saved without their space)."""
    unique: dict[str, Any] = {}
    for value in values:
        unique.setdefault(label(value), value)
    distinct = list(unique.values())
    if len(distinct) == 1:
        return Fixed(distinct[0])
    reals = [v for v in distinct if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(reals) == len(distinct) and all(math.isfinite(v) for v in reals):
        low, high = min(reals), max(reals)
        if low == high:  # e.g. 1 and 1.0: equal values of two types
            return Fixed(distinct[0])
        if all(isinstance(v, int) for v in reals):
            return Int(int(low), int(high))
        return Float(float(low), float(high), log=bool(low > 0 and high / low >= 100))
    return Choice(distinct)


def contains(name: str, param: Param, values: Sequence[Any]) -> bool:
    # The condition is not part of the range (its parents are other names).
    checker = Space({name: dataclasses.replace(param, when=None)})
    try:
        for value in values:
            checker.validate_config({name: value})
    except (TypeError, ValueError):
        return False
    return True


def params_of(results: Results) -> dict[str, Param]:
    """One parameter per hyperparameter of ``results``: from its saved space where that space
    holds every value, else inferred from the values (e.g. a space missing from the metadata,
    or values changed by a scheduler)."""
    saved = results.metadata.get("space")
    space = Space.from_dict(saved) if isinstance(saved, Mapping) else None
    params: dict[str, Param] = {}
    for name in results.hp_names:
        values = [row.config[name] for row in results if name in row.config]
        param = space[name] if space is not None and name in space else None
        if param is None or not contains(name, param, values):
            param = infer_param(values)
        params[name] = param
    return params


def suggested(space: Space, maps: Mapping[str, ParamMap], trial: Any) -> dict[str, Any]:
    """A trial's config over a conditional space, define-by-run: parents first, and each
    parameter suggested (``maps``: how, see :func:`space_maps`; a Fixed one is set) only when
    its condition holds on the values so far; the config's names are the active ones, in the
    space's order."""
    params = dict(space.items())
    values: dict[str, Any] = {}
    for name in conditions.topological_order(params):
        param = params[name]
        when = param.when
        if when is not None and not (all(p in values for p in when.parents)
                                     and when.holds(values)):
            continue
        if isinstance(param, Fixed):
            values[name] = param.value
        else:
            values[name] = maps[name].from_optuna(
                suggest(trial, name, maps[name].distribution))
    return {name: values[name] for name in space.names if name in values}


def suggest(trial: Any, name: str, distribution: Any) -> Any:
    """``trial.suggest_*`` of the distribution's kind (Optuna's public define-by-run API)."""
    distributions = optuna_module().distributions
    if isinstance(distribution, distributions.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high,
                                   log=distribution.log)
    if isinstance(distribution, distributions.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_categorical(name, distribution.choices)
