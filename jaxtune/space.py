"""Search spaces: typed hyperparameters, the unit-cube encoding, sampling and grids.

A :class:`Space` maps names to parameters (the types live in :mod:`jaxtune.params` and are
re-exported here):

* :class:`Float` ``(low, high, log=False, static=False)``: a real number in ``[low, high]``,
  sampled uniformly, or log-uniformly with ``log=True``. Dynamic by default: its value becomes
  a traced ``float32`` array and changing it never recompiles.
* :class:`Int` ``(low, high, log=False, static=True)``: an integer in ``[low, high]``. Static by
  default, since integers usually set a shape or a loop count (widths, depth, warmup steps).
* :class:`Choice` ``(values, static=True)``: one of a list of values (numbers, strings, tuples,
  None, ...). A dynamic Choice (``static=False``) must hold finite numbers.
* :class:`Fixed` ``(value, static=True)``: a constant; it is not searched. Static by default;
  a finite number may be made dynamic with ``static=False``.

**Static** parameters change a shape or a code path: each distinct combination of their values is
a *static group*, one compiled program. **Dynamic** parameters are values only.

Every searchable (non-Fixed) parameter is one coordinate of the unit cube ``[0, 1]^dim``, in the
order of :attr:`Space.searchable_names` (the names sorted: the order of keys never matters);
strategies work in that cube and :meth:`Space.decode` turns points into configs:

* Float: ``low + u (high - low)``, or ``exp(log low + u (log high - log low))`` with ``log``.
* Int: ``u`` is stretched over ``[low - 0.5, high + 0.5]`` (in log space with ``log``), then
  rounded and clipped to ``[low, high]``, so every integer owns an interval of the cube (of
  equal length when linear). Encoding gives the centre of that interval.
* Choice over ``k`` values: index ``min(floor(u k), k - 1)``; encoding gives the bin centre
  ``(i + 0.5) / k``.

A *config* is a plain ``dict`` with a Python value for every name of the space (``float`` for
Float, ``int`` for Int, the stored value for Choice and Fixed). Lists inside Choice and Fixed
values are stored as tuples so that spaces and static groups are hashable.

File / dict schema (:meth:`Space.from_dict`, :meth:`Space.from_file` for ``.json``, ``.yaml``,
``.yml``)::

    {
      "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": true},
      "dropout":       {"type": "float", "low": 0.0, "high": 0.5},
      "depth":         {"type": "int", "low": 1, "high": 3},
      "width":         {"type": "choice", "values": [64, 128]},
      "momentum":      {"type": "choice", "values": [0.8, 0.9], "static": false},
      "optimizer":     "adamw",
      "hidden_sizes":  {"type": "fixed", "value": [64, 64]},
      "b1":            {"type": "fixed", "value": 0.9, "static": false}
    }

Allowed keys: ``float``/``int``: ``type, low, high, log, static``; ``choice``: ``type, values,
static``; ``fixed``: ``type, value, static``; any type: ``when``. A bare scalar, string, bool or
None means a static Fixed; a list or dict value must be spelt ``{"type": "fixed", "value": ...}``.

**Conditional parameters** (``when=``, :mod:`jaxtune.conditions`): a parameter that exists only
when static parents take some values (``"momentum": Float(0.5, 0.99, when={"optimizer":
["momentum", "nesterov"]})``). A config then holds exactly its *active* names
(:meth:`Space.active_names`): :meth:`Space.decode` and :meth:`Space.grid` leave inactive ones
out, :meth:`Space.validate_config` refuses one given or an active one missing, and
:meth:`Space.encode` puts an inactive parameter's coordinate at :data:`INACTIVE_COORDINATE`.

Example:
  >>> import jax
  >>> space = Space({"learning_rate": Float(1e-4, 1e-1, log=True), "width": Choice([64, 128])})
  >>> configs = space.sample(jax.random.PRNGKey(0), 4)
  >>> space.encode(configs).shape
  (4, 2)
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from jaxtune import conditions, limits, spacefile
from jaxtune.params import PARAM_TYPES, Choice, Fixed, Float, Int, Param, freeze

__all__ = ["Choice", "Fixed", "Float", "Int", "Param", "Space"]

#: Largest grid :meth:`Space.grid` builds before asking for fewer points.
MAX_GRID_SIZE = 1_000_000


# --------------------------------------------------------------------------------------------
# Dict / file schema

_SPEC_KEYS = {
    "float": ("type", "low", "high", "log", "static", "when"),
    "int": ("type", "low", "high", "log", "static", "when"),
    "choice": ("type", "values", "static", "when"),
    "fixed": ("type", "value", "static", "when"),
}

#: The unit-cube coordinate of an inactive parameter (:meth:`Space.encode`): one fixed value,
#: so two configs where it is inactive do not differ in it.
INACTIVE_COORDINATE = 0.5
_REQUIRED_KEYS = {
    "float": ("low", "high"),
    "int": ("low", "high"),
    "choice": ("values",),
    "fixed": ("value",),
}


def _param_from_spec(name: str, spec: Any) -> Param:
    if isinstance(spec, PARAM_TYPES):
        return spec
    if spec is None or isinstance(spec, str | bool | numbers.Number):
        return Fixed(spec)
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"parameter {name!r}: {spec!r} ({type(spec).__name__}) is not a parameter spec; "
            f'use {{"type": "choice", "values": [...]}} to search over a list or '
            f'{{"type": "fixed", "value": ...}} for a constant list.'
        )
    if "type" not in spec:
        raise ValueError(
            f"parameter {name!r}: the spec {dict(spec)!r} has no 'type'; add one of "
            f"{', '.join(map(repr, _SPEC_KEYS))}."
        )
    kind = spec["type"]
    if not isinstance(kind, str) or kind.lower() not in _SPEC_KEYS:
        raise ValueError(
            f"parameter {name!r}: unknown type {kind!r}; use one of "
            f"{', '.join(map(repr, _SPEC_KEYS))}."
        )
    kind = kind.lower()
    allowed = _SPEC_KEYS[kind]
    for key in spec:
        if key not in allowed:
            raise ValueError(
                f"parameter {name!r}: unknown key {key!r} for type {kind!r}; "
                f"allowed keys: {', '.join(allowed)}."
            )
    for key in _REQUIRED_KEYS[kind]:
        if key not in spec:
            raise ValueError(
                f"parameter {name!r}: type {kind!r} needs the key {key!r}; "
                f"allowed keys: {', '.join(allowed)}."
            )
    kwargs = {key: value for key, value in spec.items() if key != "type"}
    cls = {"float": Float, "int": Int, "choice": Choice, "fixed": Fixed}[kind]
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise type(error)(f"parameter {name!r}: {error}") from error


# --------------------------------------------------------------------------------------------
# Space


class Space(Mapping[str, Param]):
    """An immutable mapping from hyperparameter names to parameters, in canonical order.

    Iterating gives the names **sorted** (their canonical order), whatever order the mapping or
    the space file gave them in; ``space[name]`` the parameter. Every order derived from the
    space (the unit-cube columns of :attr:`searchable_names`, so every random, Sobol, Bayesian
    or PBT draw, and the order of :meth:`grid`) follows it, so two spaces that differ only in
    the order of their keys are equal and give the same configs for the same seed (a resumed
    sweep, whose checkpoint stores the space with sorted keys, draws what the first run drew).

    Args:
      params: name -> :class:`Float`, :class:`Int`, :class:`Choice` or :class:`Fixed`.

    Raises:
      ValueError: an empty space, or a name that is not a non-empty string.
      TypeError: ``params`` is not a mapping, or a value is not a parameter.

    Example:
      >>> space = Space({"learning_rate": Float(1e-3, 1e-1, log=True), "depth": Int(1, 3)})
      >>> space.dynamic_names, space.static_names
      (('learning_rate',), ('depth',))
    """

    __slots__ = ("_conditional", "_order", "_params")
    _params: Mapping[str, Param]
    _order: tuple[str, ...]
    _conditional: bool

    def __init__(self, params: Mapping[str, Param]) -> None:
        if not isinstance(params, Mapping):
            raise TypeError(
                f"Space takes a mapping of names to parameters, got {type(params).__name__}; "
                'e.g. Space({"learning_rate": Float(1e-4, 1e-1, log=True)}).'
            )
        if not params:
            raise ValueError(
                "Space is empty; give at least one parameter, "
                'e.g. Space({"learning_rate": Float(1e-4, 1e-1, log=True)}).'
            )
        checked: dict[str, Param] = {}
        for name, param in params.items():
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"parameter name {name!r} ({type(name).__name__}) must be a non-empty str; "
                    "name it with a string, e.g. 'learning_rate'."
                )
            if not isinstance(param, PARAM_TYPES):
                raise TypeError(
                    f"parameter {name!r} = {param!r} ({type(param).__name__}) is not a "
                    f"Float, Int, Choice or Fixed; wrap constants as Fixed({param!r})."
                )
            checked[name] = param
        # Canonical order: the names sorted, whatever order they were given in, so that the
        # unit-cube columns, every draw and the grid depend on the names, not on key order.
        ordered = {name: checked[name] for name in sorted(checked)}
        object.__setattr__(self, "_params", MappingProxyType(ordered))
        object.__setattr__(self, "_order", conditions.check_conditions(ordered))
        object.__setattr__(self, "_conditional",
                           any(p.when is not None for p in ordered.values()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Space is immutable; build a new Space instead.")

    # Mapping protocol ------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Param:
        try:
            return self._params[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not in the space; its names are {list(self._params)}."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Space):
            return NotImplemented
        return tuple(self._params.items()) == tuple(other._params.items())

    def __hash__(self) -> int:
        return hash(tuple(self._params.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name!r}: {param!r}" for name, param in self._params.items())
        return f"Space({{{inner}}})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Space, (dict(self._params),))

    # Names ----------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """All names, sorted (the canonical order)."""
        return tuple(self._params)

    @property
    def static_names(self) -> tuple[str, ...]:
        """Names whose values select a static group (every parameter with ``static=True``)."""
        return tuple(name for name, p in self._params.items() if p.static)

    @property
    def dynamic_names(self) -> tuple[str, ...]:
        """Names whose values are traced ``float32`` arrays (never recompile)."""
        return tuple(name for name, p in self._params.items() if not p.static)

    @property
    def searchable_names(self) -> tuple[str, ...]:
        """Names of the unit-cube coordinates, in order: every parameter but Fixed."""
        return tuple(name for name, p in self._params.items() if not isinstance(p, Fixed))

    @property
    def conditional_names(self) -> tuple[str, ...]:
        """Names that exist only under a condition (``when=``), sorted."""
        return tuple(name for name, p in self._params.items() if p.when is not None)

    def active_names(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The names active under ``config``'s values, sorted (all of them without conditions).

        Only the parents' values are read; ``config`` may hold inactive names too.
        """
        if not self._conditional:
            return self.names
        active = conditions.active_names(self._params, self._order, config)
        return tuple(name for name in self._params if name in active)

    @property
    def dim(self) -> int:
        """Dimension of the unit cube (the number of searchable parameters)."""
        return len(self.searchable_names)

    # Configs ---------------------------------------------------------------------------------

    def validate_config(self, config: Mapping[str, Any]) -> None:
        """Checks that ``config`` names exactly this space's active parameters, with valid
        values (without conditions: every parameter).

        Raises:
          ValueError: missing or unknown names, an inactive name given (naming its condition),
            or a value out of range / not a choice.
          TypeError: ``config`` is not a mapping, or a value has the wrong type.
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"a config must be a mapping of names to values, got {type(config).__name__}."
            )
        if self._conditional:
            self._validate_conditional(config)
            return
        missing = [name for name in self._params if name not in config]
        if missing:
            raise ValueError(
                f"config is missing {missing}; give a value for every name of the space "
                f"{list(self._params)}."
            )
        unknown = [name for name in config if name not in self._params]
        if unknown:
            raise ValueError(
                f"config has names {unknown} that are not in the space {list(self._params)}; "
                "remove them or add them to the space."
            )
        for name, param in self._params.items():
            param.check_value(name, config[name])

    def _validate_conditional(self, config: Mapping[str, Any]) -> None:
        """:meth:`validate_config` with conditions: parents are checked before children."""
        unknown = [name for name in config if name not in self._params]
        if unknown:
            raise ValueError(
                f"config has names {unknown} that are not in the space {list(self._params)}; "
                "remove them or add them to the space."
            )
        active: set[str] = set()
        for name in self._order:
            param = self._params[name]
            when = param.when
            if when is None or (all(p in active for p in when.parents) and when.holds(config)):
                active.add(name)
                if name not in config:
                    reason = "" if when is None else f" (active: {when.describe(config)})"
                    raise ValueError(
                        f"config is missing {[name]}{reason}; give a value for every active "
                        "name of the space."
                    )
                param.check_value(name, config[name])
            elif name in config:
                raise ValueError(
                    f"config[{name!r}] is given but inactive: its condition "
                    f"{when.describe(config)} does not hold; remove it from the config."
                )

    def static_key(self, config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The static group of ``config``: sorted ``(name, value)`` pairs of the static names.

        Configs with equal keys share one compiled program. Values are made hashable (lists
        become tuples, numpy scalars Python scalars).
        """
        active = set(self.active_names(config))
        names = [name for name in self.static_names if name in active]
        missing = [name for name in names if name not in config]
        if missing:
            raise ValueError(f"config is missing the static parameters {missing}.")
        return tuple(sorted((name, freeze(config[name])) for name in names))

    def encode(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Maps configs to points of the unit cube.

        Args:
          configs: ``num`` configs of this space (validated).

        Returns:
          ``np.ndarray [num, dim]`` float64 in ``[0, 1]``, columns in the order of
          :attr:`searchable_names`; an inactive parameter's column is
          :data:`INACTIVE_COORDINATE`.
        """
        if isinstance(configs, Mapping):
            raise TypeError("encode takes a list of configs; wrap a single config in a list.")
        configs = list(configs)
        for config in configs:
            self.validate_config(config)
        u = np.zeros((len(configs), self.dim), np.float64)
        for column, name in enumerate(self.searchable_names):
            param = self._params[name]
            rows = [row for row, config in enumerate(configs) if name in config]
            u[:, column] = INACTIVE_COORDINATE
            if not rows:
                continue
            values = [configs[row][name] for row in rows]
            if isinstance(param, Choice):
                u[rows, column] = param.to_unit(values)
            else:
                u[rows, column] = param.to_unit(np.asarray(values, np.float64))
        return np.clip(u, 0.0, 1.0)

    def decode(self, u: np.ndarray, *, drop_inactive: bool = True) -> list[dict[str, Any]]:
        """Maps points of the unit cube to configs.

        Args:
          u: ``[num, dim]`` array (numpy or JAX), columns in the order of
            :attr:`searchable_names`; clipped to ``[0, 1]``.
          drop_inactive: leave out the names inactive under the point's values (so a config
            holds exactly its active names); ``False`` keeps every name (a value per column,
            for callers that pick names themselves).

        Returns:
          ``num`` configs, each with a Python value for every (active) name (Fixed included).
        """
        u = np.asarray(u, np.float64)
        if u.ndim != 2 or u.shape[1] != self.dim:
            raise ValueError(
                f"decode expects an array of shape [num, {self.dim}], got {u.shape}; "
                "one column per searchable parameter."
            )
        if not np.all(np.isfinite(u)):
            raise ValueError("decode got non-finite coordinates; give points in [0, 1].")
        u = np.clip(u, 0.0, 1.0)
        columns: dict[str, list[Any]] = {}
        for column, name in enumerate(self.searchable_names):
            param = self._params[name]
            if isinstance(param, Choice):
                columns[name] = param.from_unit(u[:, column])
            else:
                columns[name] = param.from_unit(u[:, column]).tolist()
        configs = []
        for row in range(u.shape[0]):
            config = {}
            for name, param in self._params.items():
                config[name] = param.value if isinstance(param, Fixed) else columns[name][row]
            if self._conditional and drop_inactive:
                active = conditions.active_names(self._params, self._order, config)
                config = {name: value for name, value in config.items() if name in active}
            configs.append(config)
        return configs

    def sample(self, key: Any, num: int) -> list[dict[str, Any]]:
        """Draws ``num`` configs uniformly in the unit cube (log-uniform for log parameters).

        Args:
          key: a JAX PRNG key, or an int seed (``sample(0, n)`` is
            ``sample(jax.random.PRNGKey(0), n)``); the same key gives the same configs.
          num: how many configs (>= 0).

        Returns:
          ``num`` configs.

        Raises:
          TypeError: ``key`` is a bool, float or string.
          ValueError: ``num`` is not a non-negative int, or more configs than the host holds
            (:func:`jaxtune.limits.check_population`).
        """
        import jax  # only sampling needs JAX; the rest of the space is numpy

        if isinstance(key, bool | np.bool_ | float | np.floating | str | bytes):
            raise TypeError(
                f"key = {key!r} ({type(key).__name__}) must be a JAX PRNG key or an int seed, "
                "e.g. space.sample(jax.random.PRNGKey(0), 8) or space.sample(0, 8)."
            )
        if isinstance(key, numbers.Integral):
            key = jax.random.PRNGKey(int(key))
        if isinstance(num, bool) or not isinstance(num, numbers.Integral) or num < 0:
            raise ValueError(f"num = {num!r} must be a non-negative int.")
        limits.check_population("num", int(num), len(self))  # XLA aborts on a huge draw
        u = jax.random.uniform(key, (int(num), self.dim))
        return self.decode(np.asarray(u))

    def grid(
        self, num_float_points: int = 5, *, max_size: int = MAX_GRID_SIZE
    ) -> list[dict[str, Any]]:
        """The cartesian product of per-parameter axes, in the order of :attr:`names` (sorted).

        Float and Int axes have ``num_float_points`` points from ``low`` to ``high`` (log-spaced
        when ``log``; Int points rounded and deduplicated; a single point is the centre of the
        range); Choice axes every value; Fixed axes the value. The last name varies fastest.
        With conditions, only valid combinations, each once: a parameter's axis multiplies the
        grid only where it is active (names in parents-first order, the last fastest).

        Args:
          num_float_points: points per Float/Int axis (>= 1).
          max_size: refuse grids larger than this (they would not fit a sweep).

        Returns:
          The configs of the grid.
        """
        if (
            isinstance(num_float_points, bool)
            or not isinstance(num_float_points, numbers.Integral)
            or num_float_points < 1
        ):
            raise ValueError(f"num_float_points = {num_float_points!r} must be an int >= 1.")
        if num_float_points > max_size:
            raise ValueError(
                f"num_float_points = {num_float_points} is more than max_size={max_size}."
            )
        axes = [param.grid_axis(int(num_float_points)) for param in self._params.values()]
        if self._conditional:
            return conditions.conditional_grid(
                self._params, self._order, dict(zip(self.names, axes, strict=True)), max_size)
        size = math.prod(len(axis) for axis in axes)
        if size > max_size:
            raise ValueError(
                f"the grid has {size} configs (more than max_size={max_size}); lower "
                "num_float_points, search fewer parameters, or use random search."
            )
        return [dict(zip(self.names, values, strict=True)) for values in itertools.product(*axes)]

    # Serialization ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The space as plain JSON-ready data, inverse of :meth:`from_dict`."""
        return {name: param.spec() for name, param in self._params.items()}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Space:
        """Builds a space from the schema in the module docstring.

        Raises:
          ValueError: unknown types or keys, missing keys, invalid ranges (naming the parameter).
          TypeError: wrong value types, or ``spec`` not a mapping.
        """
        if not isinstance(spec, Mapping):
            raise TypeError(
                f"a space spec must be a mapping of names to parameter specs, "
                f"got {type(spec).__name__}."
            )
        params = {}
        for name, param_spec in spec.items():
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"parameter name {name!r} ({type(name).__name__}) must be a non-empty str."
                )
            params[name] = _param_from_spec(name, param_spec)
        return cls(params)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Space:
        """Reads a space from a ``.json``, ``.yaml`` or ``.yml`` file (schema: module docstring).

        YAML needs PyYAML; exponents without a dot (``1e-4``) are read as floats. A key given
        twice, nesting too deep and YAML aliases that expand too far are refused
        (:mod:`jaxtune.spacefile`).
        """
        path = os.fspath(path)
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise ValueError(
                f"space file {path!r} must end in .json, .yaml or .yml, got {suffix!r}."
            )
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        try:
            spec = spacefile.load_json(text) if suffix == ".json" else spacefile.load_yaml(text)
        except ValueError as error:
            raise ValueError(f"space file {path!r}: {error}") from error
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"space file {path!r} must hold a mapping of names to parameter specs, "
                f"got {type(spec).__name__}."
            )
        try:
            return cls.from_dict(spec)
        except (TypeError, ValueError) as error:
            raise type(error)(f"space file {path!r}: {error}") from error
