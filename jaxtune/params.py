"""The parameter types of a search space: :class:`Float`, :class:`Int`, :class:`Choice`,
:class:`Fixed`.

:mod:`jaxtune.space` describes what each type means and builds a :class:`~jaxtune.space.Space`
from them (both are re-exported there). Every type answers the same questions, which the space
asks column by column:

* ``from_unit(u)`` / ``to_unit(values)``: the unit-cube map (searchable types: not Fixed);
* ``grid_axis(num_points)``: the values of the type's axis in ``Space.grid``;
* ``check_value(name, value)``: raise, naming ``config[name]``, for a value that does not fit;
* ``spec()``: the type in the file / dict schema.

Values are frozen with :func:`freeze` (numpy scalars unwrapped, lists as tuples) so that
parameters and static groups are hashable.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from jaxtune import limits
from jaxtune.conditions import When

__all__ = ["PARAM_TYPES", "Choice", "Fixed", "Float", "Int", "Param", "freeze"]


# --------------------------------------------------------------------------------------------
# Value helpers


def _is_real(value: Any) -> bool:
    """True for ints and floats (Python or numpy), False for bools and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def freeze(value: Any) -> Any:
    """Plain, hashable-where-possible Python value: numpy scalars unwrapped, lists as tuples.

    Args:
      value: Any value (a numpy scalar or array, a list, a tuple, ...).

    Returns:
      The value with numpy scalars as Python scalars and sequences as tuples.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return freeze(value.tolist())
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    """Inverse of :func:`freeze` for serialization: tuples back to lists."""
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


def _set_when(param: Any, cls_name: str) -> None:
    """Normalizes ``param.when`` (a mapping, a :class:`When` or ``None``) in place."""
    object.__setattr__(param, "when", When.of(param.when, f"{cls_name}.when"))


def _repr(param: Any) -> str:
    """The dataclass repr, with ``when=`` (its mapping form) only when there is a condition."""
    fields = [f"{field.name}={getattr(param, field.name)!r}"
              for field in dataclasses.fields(param) if field.name != "when"]
    if param.when is not None:
        fields.append(f"when={param.when.spec()!r}")
    return f"{type(param).__name__}({', '.join(fields)})"


def _with_when(param: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the parameter's ``"when"`` added when it has a condition."""
    if param.when is not None:
        spec["when"] = param.when.spec()
    return spec


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
      when: the parameter exists only when this holds (:mod:`jaxtune.conditions`), e.g.
        ``{"optimizer": ["momentum", "nesterov"]}``; ``None``: always.
    """

    low: float
    high: float
    log: bool = False
    static: bool = False
    when: When | None = None

    kind: ClassVar[str] = "float"

    def __repr__(self) -> str:
        return _repr(self)

    def __post_init__(self) -> None:
        _set_when(self, "Float")
        _check_flag("Float", "log", self.log)
        _check_flag("Float", "static", self.static)
        low, high = _check_bounds("Float", self.low, self.high)
        _check_log("Float", low, self.log)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", bool(self.log))
        object.__setattr__(self, "static", bool(self.static))

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube coordinates ``[num]`` -> values ``[num]`` (the module docstring's map)."""
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            values = np.exp(lo + u * (hi - lo))
        else:
            values = self.low + u * (self.high - self.low)
        # exp/log round-off can step just off the range: clip, and pin the end points exactly.
        values = np.clip(values, self.low, self.high)
        return np.where(u <= 0.0, self.low, np.where(u >= 1.0, self.high, values))

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Values ``[num]`` -> unit-cube coordinates ``[num]`` (inverse of :meth:`from_unit`)."""
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return (np.log(values) - lo) / (hi - lo)
        return (values - self.low) / (self.high - self.low)

    def grid_axis(self, num_points: int) -> list[float]:
        """The values of this parameter\'s axis in :meth:`jaxtune.space.Space.grid`."""
        if num_points == 1:
            return [float(self.from_unit(np.array(0.5)))]
        if self.log:
            points = np.geomspace(self.low, self.high, num_points)
        else:
            points = np.linspace(self.low, self.high, num_points)
        return [float(p) for p in np.clip(points, self.low, self.high)]

    def check_value(self, name: str, value: Any) -> None:
        """Raises ``TypeError``/``ValueError`` naming ``config[name]`` if ``value`` does not fit."""
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

    def spec(self) -> dict[str, Any]:
        """This parameter in the file / dict schema (inverse of ``Space.from_dict``)."""
        return _with_when(self, {
            "type": "float",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "static": self.static,
        })


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer hyperparameter in ``[low, high]`` (both included).

    Attributes:
      low: smallest value (an integer; >= 1 when ``log``).
      high: largest value (an integer, > low).
      log: sample in log space (sizes spanning orders of magnitude).
      static: the value changes a shape or loop count; default static.
      when: the parameter exists only when this holds (:mod:`jaxtune.conditions`), e.g.
        ``{"depth": {">=": 2}}``; ``None``: always.
    """

    low: int
    high: int
    log: bool = False
    static: bool = True
    when: When | None = None

    kind: ClassVar[str] = "int"

    def __repr__(self) -> str:
        return _repr(self)

    def __post_init__(self) -> None:
        _set_when(self, "Int")
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

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube coordinates ``[num]`` -> values ``[num]`` (the module docstring's map)."""
        lo, hi = self._edges()
        x = lo + u * (hi - lo)
        if self.log:
            x = np.exp(x)
        return np.clip(np.floor(x + 0.5), self.low, self.high).astype(np.int64)

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Values ``[num]`` -> unit-cube coordinates ``[num]`` (inverse of :meth:`from_unit`)."""
        lo, hi = self._edges()
        values = values.astype(np.float64)
        # In log space the centre of [v - 0.5, v + 0.5] is the mean of its log end points.
        centre = 0.5 * (np.log(values - 0.5) + np.log(values + 0.5)) if self.log else values
        return (centre - lo) / (hi - lo)

    def grid_axis(self, num_points: int) -> list[int]:
        """The values of this parameter\'s axis in :meth:`jaxtune.space.Space.grid`."""
        if num_points == 1:
            return [int(self.from_unit(np.array(0.5)))]
        if self.log:
            points = np.geomspace(self.low, self.high, num_points)
        else:
            points = np.linspace(self.low, self.high, num_points)
        rounded = np.clip(np.floor(points + 0.5), self.low, self.high).astype(np.int64)
        return list(dict.fromkeys(int(p) for p in rounded))

    def check_value(self, name: str, value: Any) -> None:
        """Raises ``TypeError``/``ValueError`` naming ``config[name]`` if ``value`` does not fit."""
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

    def spec(self) -> dict[str, Any]:
        """This parameter in the file / dict schema (inverse of ``Space.from_dict``)."""
        return _with_when(self, {
            "type": "int",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "static": self.static,
        })


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of a finite list of values.

    Attributes:
      values: the candidates, stored as a tuple (lists inside become tuples). Non-empty,
        no duplicates.
      static: the value changes a shape or code path (default). A dynamic Choice
        (``static=False``) must hold finite numbers, which become traced ``float32`` values.
      when: the parameter exists only when this holds (:mod:`jaxtune.conditions`);
        ``None``: always.
    """

    values: tuple[Any, ...]
    static: bool = True
    when: When | None = None

    kind: ClassVar[str] = "choice"

    def __repr__(self) -> str:
        return _repr(self)

    def __post_init__(self) -> None:
        _set_when(self, "Choice")
        _check_flag("Choice", "static", self.static)
        values = self.values
        if isinstance(values, str | bytes | Mapping) or not isinstance(
            values, Sequence | np.ndarray
        ):
            raise TypeError(
                f"Choice.values must be a list or tuple of candidates, got {values!r} "
                f"({type(values).__name__}); e.g. Choice([64, 128])."
            )
        values = tuple(freeze(v) for v in values)
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

    def index(self, value: Any) -> int | None:
        """Position of ``value`` among :attr:`values` (bools apart from numbers), or ``None``."""
        frozen = freeze(value)
        try:
            return self._lookup.get(_canonical(frozen))
        except TypeError:  # unhashable: compared one by one
            for i, candidate in enumerate(self.values):
                if _same(frozen, candidate):
                    return i
            return None

    def from_unit(self, u: np.ndarray) -> list[Any]:
        """Unit-cube coordinates ``[num]`` -> values (bin ``min(floor(u k), k - 1)``)."""
        k = len(self.values)
        indices = np.minimum(np.floor(u * k).astype(np.int64), k - 1)
        return [self.values[i] for i in indices]

    def to_unit(self, values: Sequence[Any]) -> np.ndarray:
        """Values (each a choice) -> bin centres ``(i + 0.5) / k``, float64 ``[num]``."""
        k = len(self.values)
        return np.array([(self.index(v) + 0.5) / k for v in values], np.float64)

    def grid_axis(self, num_points: int) -> list[Any]:
        """The values of this parameter\'s axis in :meth:`jaxtune.space.Space.grid`."""
        del num_points
        return list(self.values)

    def check_value(self, name: str, value: Any) -> None:
        """Raises ``TypeError``/``ValueError`` naming ``config[name]`` if ``value`` does not fit."""
        if self.index(value) is None:
            raise ValueError(
                f"config[{name!r}] = {value!r} is not one of the choices {list(self.values)!r}."
            )

    def spec(self) -> dict[str, Any]:
        """This parameter in the file / dict schema (inverse of ``Space.from_dict``)."""
        return _with_when(
            self, {"type": "choice", "values": _thaw(self.values), "static": self.static})


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A constant hyperparameter, never searched; static by default.

    Attributes:
      value: the constant (lists inside become tuples).
      static: the value selects a static group (default). ``static=False`` makes it a traced
        ``float32`` value like a Float's, so sweeps that differ only in this constant (say, two
        sweeps at different fixed learning rates) share one compiled program; it must then be
        a finite number (not a bool or string).
      when: the parameter exists only when this holds (:mod:`jaxtune.conditions`);
        ``None``: always.
    """

    value: Any
    static: bool = True
    when: When | None = None

    kind: ClassVar[str] = "fixed"

    def __repr__(self) -> str:
        return _repr(self)

    def __post_init__(self) -> None:
        _set_when(self, "Fixed")
        _check_flag("Fixed", "static", self.static)
        value = freeze(self.value)
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

    def grid_axis(self, num_points: int) -> list[Any]:
        """The values of this parameter\'s axis in :meth:`jaxtune.space.Space.grid`."""
        del num_points
        return [self.value]

    def check_value(self, name: str, value: Any) -> None:
        """Raises ``TypeError``/``ValueError`` naming ``config[name]`` if ``value`` does not fit."""
        if not _same(freeze(value), self.value):
            raise ValueError(
                f"config[{name!r}] = {value!r} differs from the Fixed value {self.value!r}."
            )

    def spec(self) -> Any:
        """This parameter in the file / dict schema (inverse of ``Space.from_dict``)."""
        if self.when is not None:
            return _with_when(self, {"type": "fixed", "value": _thaw(self.value),
                                     "static": self.static})
        if not self.static:
            return {"type": "fixed", "value": self.value, "static": False}
        if self.value is None or isinstance(self.value, str | bool | int | float):
            return self.value
        return {"type": "fixed", "value": _thaw(self.value)}


Param = Float | Int | Choice | Fixed
PARAM_TYPES = (Float, Int, Choice, Fixed)
