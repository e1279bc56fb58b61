"""Search spaces: typed hyperparameters, the unit-cube encoding, sampling and grids.

A :class:`Space` maps names to parameters:

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
static``; ``fixed``: ``type, value, static``. A bare scalar, string, bool or None means a static
Fixed; a list or dict value must be spelt ``{"type": "fixed", "value": ...}``.

Example:
  >>> import jax
  >>> space = Space({"learning_rate": Float(1e-4, 1e-1, log=True), "width": Choice([64, 128])})
  >>> configs = space.sample(jax.random.PRNGKey(0), 4)
  >>> space.encode(configs).shape
  (4, 2)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from jaxtune import limits, spacefile

__all__ = ["Choice", "Fixed", "Float", "Int", "Param", "Space"]

#: Largest grid :meth:`Space.grid` builds before asking for fewer points.
MAX_GRID_SIZE = 1_000_000


# --------------------------------------------------------------------------------------------
# Value helpers


def _is_real(value: Any) -> bool:
    """True for ints and floats (Python or numpy), False for bools and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _freeze(value: Any) -> Any:
    """Plain, hashable-where-possible Python value: numpy scalars unwrapped, lists as tuples."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _freeze(value.tolist())
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    """Inverse of :func:`_freeze` for serialization: tuples back to lists."""
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    if isinstance(value, dict):
        return {key: _thaw(item) for key, item in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality that does not mix bools with numbers (True == 1 in Python)."""
    if (type(a) is bool) != (type(b) is bool):
        return False
    return bool(a == b)


def _is_finite(value: Any) -> bool:
    """``math.isfinite`` for any real, False for ints too large for a float (``10**400``)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _canonical(value: Any) -> tuple[bool, Any]:
    """A hashable key with the equality of :func:`_same`: bools apart from numbers, 1 == 1.0.

    Raises:
      TypeError: the value is unhashable (a dict inside it).
    """
    key = (type(value) is bool, value)
    hash(key)
    return key


def _value_index(values: Sequence[Any]) -> tuple[dict[tuple[bool, Any], int] | None, list[Any]]:
    """``(canonical key -> position, unhashable values)`` of Choice values in linear time; the
    index is ``None`` when two hashable values are the same."""
    index: dict[tuple[bool, Any], int] = {}
    unhashable = []
    for i, value in enumerate(values):
        try:
            key = _canonical(value)
        except TypeError:
            unhashable.append(value)
            continue
        if key in index:
            return None, unhashable
        index[key] = i
    return index, unhashable


def _first_duplicate(values: Sequence[Any]) -> str:
    """`` {value!r}`` of the first repeated value (for the message), found in linear time."""
    seen: set[Any] = set()
    for value in values:
        try:
            key = _canonical(value)
        except TypeError:
            continue
        if key in seen:
            return f" {value!r}"
        seen.add(key)
    return ""


def _check_flag(cls_name: str, field: str, value: Any) -> None:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"{cls_name}.{field} must be a bool, got {value!r} ({type(value).__name__}); "
            f"pass {field}=True or {field}=False."
        )


def _check_bounds(cls_name: str, low: Any, high: Any) -> tuple[float, float]:
    for field, value in (("low", low), ("high", high)):
        if not _is_real(value):
            raise TypeError(
                f"{cls_name}.{field} must be a number, got {value!r} ({type(value).__name__}); "
                f"pass a number, e.g. {cls_name}(low=0.0, high=1.0)."
            )
        if not _is_finite(value):
            raise ValueError(f"{cls_name}.{field} = {value!r} is not finite; give finite bounds.")
    if not float(low) < float(high):
        raise ValueError(
            f"{cls_name} range is empty or inverted: low={low!r} >= high={high!r}; "
            "give low < high (use Fixed(value) for a single value)."
        )
    return float(low), float(high)


def _check_log(cls_name: str, low: float, log: bool) -> None:
    if log and low <= 0:
        raise ValueError(
            f"{cls_name}.low = {low!r} must be > 0 when log=True; raise low above 0 "
            "or use log=False."
        )


# --------------------------------------------------------------------------------------------
# Parameter types


@dataclasses.dataclass(frozen=True)
class Float:
    """A real hyperparameter in ``[low, high]``, uniform or (``log=True``) log-uniform.

    Attributes:
      low: smallest value (finite; > 0 when ``log``).
      high: largest value (finite, > low).
      log: sample and encode in log space (learning rates, weight decay).
      static: the value changes a shape or code path (rare for floats); default dynamic.
    """

    low: float
    high: float
    log: bool = False
    static: bool = False

    kind: ClassVar[str] = "float"

    def __post_init__(self) -> None:
        _check_flag("Float", "log", self.log)
        _check_flag("Float", "static", self.static)
        low, high = _check_bounds("Float", self.low, self.high)
        _check_log("Float", low, self.log)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", bool(self.log))
        object.__setattr__(self, "static", bool(self.static))

    def _from_unit(self, u: np.ndarray) -> np.ndarray:
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            values = np.exp(lo + u * (hi - lo))
        else:
            values = self.low + u * (self.high - self.low)
        # exp/log round-off can step just off the range: clip, and pin the end points exactly.
        values = np.clip(values, self.low, self.high)
        return np.where(u <= 0.0, self.low, np.where(u >= 1.0, self.high, values))

    def _to_unit(self, values: np.ndarray) -> np.ndarray:
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return (np.log(values) - lo) / (hi - lo)
        return (values - self.low) / (self.high - self.low)

    def _grid(self, num_points: int) -> list[float]:
        if num_points == 1:
            return [float(self._from_unit(np.array(0.5)))]
        if self.log:
            points = np.geomspace(self.low, self.high, num_points)
        else:
            points = np.linspace(self.low, self.high, num_points)
        return [float(p) for p in np.clip(points, self.low, self.high)]

    def _check_value(self, name: str, value: Any) -> None:
        if not _is_real(value):
            raise TypeError(
                f"config[{name!r}] = {value!r} ({type(value).__name__}) must be a number "
                f"for a Float parameter."
            )
        if not _is_finite(value) or not self.low <= float(value) <= self.high:
            raise ValueError(
                f"config[{name!r}] = {value!r} is outside [{self.low!r}, {self.high!r}]; "
                "give a value inside the range of the space."
            )

    def _spec(self) -> dict[str, Any]:
        return {
            "type": "float",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "static": self.static,
        }


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer hyperparameter in ``[low, high]`` (both included).

    Attributes:
      low: smallest value (an integer; >= 1 when ``log``).
      high: largest value (an integer, > low).
      log: sample in log space (sizes spanning orders of magnitude).
      static: the value changes a shape or loop count; default static.
    """

    low: int
    high: int
    log: bool = False
    static: bool = True

    kind: ClassVar[str] = "int"

    def __post_init__(self) -> None:
        _check_flag("Int", "log", self.log)
        _check_flag("Int", "static", self.static)
        for field in ("low", "high"):
            value = getattr(self, field)
            if not _is_real(value):
                raise TypeError(
                    f"Int.{field} must be an integer, got {value!r} ({type(value).__name__}); "
                    "pass an int, e.g. Int(low=1, high=8)."
                )
            if not _is_finite(value):
                raise ValueError(f"Int.{field} = {value!r} is not finite; give finite bounds.")
            if abs(value) > limits.MAX_EXACT_INT:
                raise ValueError(
                    f"Int.{field} = {value!r} is outside the supported integer range "
                    f"[-2**53, 2**53] (integers the float64 unit-cube encoding holds exactly); "
                    "give bounds inside it."
                )
            if float(value) != int(value):
                raise ValueError(
                    f"Int.{field} = {value!r} is not an integer; round it or use Float."
                )
        low, high = int(self.low), int(self.high)
        if not low < high:
            raise ValueError(
                f"Int range is empty or inverted: low={low!r} >= high={high!r}; "
                "give low < high (use Fixed(value) for a single value)."
            )
        _check_log("Int", low, self.log)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", bool(self.log))
        object.__setattr__(self, "static", bool(self.static))

    def _edges(self) -> tuple[float, float]:
        """The continuous interval the unit cube maps to (log space when ``log``)."""
        if self.log:
            return math.log(self.low - 0.5), math.log(self.high + 0.5)
        return self.low - 0.5, self.high + 0.5

    def _from_unit(self, u: np.ndarray) -> np.ndarray:
        lo, hi = self._edges()
        x = lo + u * (hi - lo)
        if self.log:
            x = np.exp(x)
        return np.clip(np.floor(x + 0.5), self.low, self.high).astype(np.int64)

    def _to_unit(self, values: np.ndarray) -> np.ndarray:
        lo, hi = self._edges()
        values = values.astype(np.float64)
        # In log space the centre of [v - 0.5, v + 0.5] is the mean of its log end points.
        centre = 0.5 * (np.log(values - 0.5) + np.log(values + 0.5)) if self.log else values
        return (centre - lo) / (hi - lo)

    def _grid(self, num_points: int) -> list[int]:
        if num_points == 1:
            return [int(self._from_unit(np.array(0.5)))]
        if self.log:
            points = np.geomspace(self.low, self.high, num_points)
        else:
            points = np.linspace(self.low, self.high, num_points)
        rounded = np.clip(np.floor(points + 0.5), self.low, self.high).astype(np.int64)
        return list(dict.fromkeys(int(p) for p in rounded))

    def _check_value(self, name: str, value: Any) -> None:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool | np.bool_):
            raise TypeError(
                f"config[{name!r}] = {value!r} ({type(value).__name__}) must be an int "
                "for an Int parameter."
            )
        if not self.low <= int(value) <= self.high:
            raise ValueError(
                f"config[{name!r}] = {value!r} is outside [{self.low}, {self.high}]; "
                "give a value inside the range of the space."
            )

    def _spec(self) -> dict[str, Any]:
        return {
            "type": "int",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "static": self.static,
        }


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a finite list of values.

    Attributes:
      values: the candidates, stored as a tuple (lists inside become tuples). Non-empty,
        no duplicates.
      static: the value changes a shape or code path (default). A dynamic Choice
        (``static=False``) must hold finite numbers, which become traced ``float32`` values.
    """

    values: tuple[Any, ...]
    static: bool = True

    kind: ClassVar[str] = "choice"

    def __post_init__(self) -> None:
        _check_flag("Choice", "static", self.static)
        values = self.values
        if isinstance(values, str | bytes | Mapping) or not isinstance(
            values, Sequence | np.ndarray
        ):
            raise TypeError(
                f"Choice.values must be a list or tuple of candidates, got {values!r} "
                f"({type(values).__name__}); e.g. Choice([64, 128])."
            )
        values = tuple(_freeze(v) for v in values)
        if not values:
            raise ValueError("Choice.values is empty; give at least one candidate value.")
        for i, value in enumerate(values):
            if _is_nan(value):
                raise ValueError(
                    f"Choice.values[{i}] is NaN, which never equals itself; remove it."
                )
        index, unhashable = _value_index(values)
        for value in unhashable:  # rare (dicts inside a value): compared pairwise
            if sum(_same(value, other) for other in unhashable) > 1:
                index = None
        if index is None:
            raise ValueError(
                f"Choice.values has a duplicate value{_first_duplicate(values)}; list each "
                "candidate once."
            )
        if not self.static:
            for value in values:
                if not _is_real(value) or not _is_finite(value):
                    raise ValueError(
                        f"Choice.values contains {value!r} but a dynamic Choice (static=False) "
                        "needs finite numbers; use static=True for non-numeric candidates."
                    )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "static", bool(self.static))
        object.__setattr__(self, "_lookup", index)

    def _index(self, value: Any) -> int | None:
        frozen = _freeze(value)
        try:
            return self._lookup.get(_canonical(frozen))
        except TypeError:  # unhashable: compared one by one
            for i, candidate in enumerate(self.values):
                if _same(frozen, candidate):
                    return i
            return None

    def _from_unit(self, u: np.ndarray) -> list[Any]:
        k = len(self.values)
        indices = np.minimum(np.floor(u * k).astype(np.int64), k - 1)
        return [self.values[i] for i in indices]

    def _to_unit(self, values: Sequence[Any]) -> np.ndarray:
        k = len(self.values)
        return np.array([(self._index(v) + 0.5) / k for v in values], np.float64)

    def _grid(self, num_points: int) -> list[Any]:
        del num_points
        return list(self.values)

    def _check_value(self, name: str, value: Any) -> None:
        if self._index(value) is None:
            raise ValueError(
                f"config[{name!r}] = {value!r} is not one of the choices {list(self.values)!r}."
            )

    def _spec(self) -> dict[str, Any]:
        return {"type": "choice", "values": _thaw(self.values), "static": self.static}


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A constant hyperparameter, never searched; static by default.

    Attributes:
      value: the constant (lists inside become tuples).
      static: the value selects a static group (default). ``static=False`` makes it a traced
        ``float32`` value like a Float's, so sweeps that differ only in this constant (say, two
        sweeps at different fixed learning rates) share one compiled program; it must then be
        a finite number (not a bool or string).
    """

    value: Any
    static: bool = True

    kind: ClassVar[str] = "fixed"

    def __post_init__(self) -> None:
        _check_flag("Fixed", "static", self.static)
        value = _freeze(self.value)
        if _is_nan(value):
            raise ValueError("Fixed.value is NaN, which never equals itself; give a number.")
        if not self.static and (not _is_real(value) or not _is_finite(value)):
            raise ValueError(
                f"Fixed.value = {value!r} ({type(value).__name__}) cannot be dynamic "
                "(static=False): only finite numbers become traced values. Use static=True "
                "for strings, bools, None and lists."
            )
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "static", bool(self.static))

    def _grid(self, num_points: int) -> list[Any]:
        del num_points
        return [self.value]

    def _check_value(self, name: str, value: Any) -> None:
        if not _same(_freeze(value), self.value):
            raise ValueError(
                f"config[{name!r}] = {value!r} differs from the Fixed value {self.value!r}."
            )

    def _spec(self) -> Any:
        if not self.static:
            return {"type": "fixed", "value": self.value, "static": False}
        if self.value is None or isinstance(self.value, str | bool | int | float):
            return self.value
        return {"type": "fixed", "value": _thaw(self.value)}


Param = Float | Int | Choice | Fixed
_PARAM_TYPES = (Float, Int, Choice, Fixed)


# --------------------------------------------------------------------------------------------
# Dict / file schema

_SPEC_KEYS = {
    "float": ("type", "low", "high", "log", "static"),
    "int": ("type", "low", "high", "log", "static"),
    "choice": ("type", "values", "static"),
    "fixed": ("type", "value", "static"),
}
_REQUIRED_KEYS = {
    "float": ("low", "high"),
    "int": ("low", "high"),
    "choice": ("values",),
    "fixed": ("value",),
}


def _param_from_spec(name: str, spec: Any) -> Param:
    if isinstance(spec, _PARAM_TYPES):
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

    __slots__ = ("_params",)
    _params: Mapping[str, Param]

    def __init__(self, params: Mapping[str, Param]) -> None:
        if isinstance(params, Space):
            params = params._params
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
            if not isinstance(param, _PARAM_TYPES):
                raise TypeError(
                    f"parameter {name!r} = {param!r} ({type(param).__name__}) is not a "
                    f"Float, Int, Choice or Fixed; wrap constants as Fixed({param!r})."
                )
            checked[name] = param
        # Canonical order: the names sorted, whatever order they were given in, so that the
        # unit-cube columns, every draw and the grid depend on the names, not on key order.
        ordered = {name: checked[name] for name in sorted(checked)}
        object.__setattr__(self, "_params", MappingProxyType(ordered))

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
    def dim(self) -> int:
        """Dimension of the unit cube (the number of searchable parameters)."""
        return len(self.searchable_names)

    # Configs ---------------------------------------------------------------------------------

    def validate_config(self, config: Mapping[str, Any]) -> None:
        """Checks that ``config`` names exactly this space's parameters, with valid values.

        Raises:
          ValueError: missing or unknown names, or a value out of range / not a choice.
          TypeError: ``config`` is not a mapping, or a value has the wrong type.
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"a config must be a mapping of names to values, got {type(config).__name__}."
            )
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
            param._check_value(name, config[name])

    def static_key(self, config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The static group of ``config``: sorted ``(name, value)`` pairs of the static names.

        Configs with equal keys share one compiled program. Values are made hashable (lists
        become tuples, numpy scalars Python scalars).
        """
        missing = [name for name in self.static_names if name not in config]
        if missing:
            raise ValueError(f"config is missing the static parameters {missing}.")
        return tuple(sorted((name, _freeze(config[name])) for name in self.static_names))

    def encode(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Maps configs to points of the unit cube.

        Args:
          configs: ``num`` configs of this space (validated).

        Returns:
          ``np.ndarray [num, dim]`` float64 in ``[0, 1]``, columns in the order of
          :attr:`searchable_names`.
        """
        if isinstance(configs, Mapping):
            raise TypeError("encode takes a list of configs; wrap a single config in a list.")
        configs = list(configs)
        for config in configs:
            self.validate_config(config)
        u = np.zeros((len(configs), self.dim), np.float64)
        for column, name in enumerate(self.searchable_names):
            param = self._params[name]
            values = [config[name] for config in configs]
            if isinstance(param, Choice):
                u[:, column] = param._to_unit(values)
            else:
                u[:, column] = param._to_unit(np.asarray(values, np.float64))
        return np.clip(u, 0.0, 1.0)

    def decode(self, u: np.ndarray) -> list[dict[str, Any]]:
        """Maps points of the unit cube to configs.

        Args:
          u: ``[num, dim]`` array (numpy or JAX), columns in the order of
            :attr:`searchable_names`; clipped to ``[0, 1]``.

        Returns:
          ``num`` configs, each with a Python value for every name (Fixed ones included).
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
                columns[name] = param._from_unit(u[:, column])
            else:
                columns[name] = param._from_unit(u[:, column]).tolist()
        configs = []
        for row in range(u.shape[0]):
            config = {}
            for name, param in self._params.items():
                config[name] = param.value if isinstance(param, Fixed) else columns[name][row]
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
        axes = [param._grid(int(num_float_points)) for param in self._params.values()]
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
        return {name: param._spec() for name, param in self._params.items()}

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
