"""Conditional parameters: a parameter that exists only when its parents take some values.

A parameter of a :class:`~jaxtune.space.Space` may carry ``when=``, a mapping from parent
names to what the parent's value must be, all of which must hold (a logical *and*)::

    Float(0.5, 0.99, when={"optimizer": ["momentum", "nesterov"]})   # one of these values
    Choice([32, 64], when={"depth": {">=": 2}})                       # a comparison
    Int(1, 4, when={"depth": {">=": 2, "<": 4}, "optimizer": "sgd"})  # several clauses

A parent's condition is written as a list of values (the value is one of them), a single
value (equal to it), or a mapping of operators to operands: ``"in"`` (a list), ``"=="``,
``"!="`` (a value), ``">="``, ``">"``, ``"<="``, ``"<"`` (a number). The same form is the
space file's ``"when"`` key.

The rules, checked when the :class:`~jaxtune.space.Space` is built (:func:`check_conditions`,
a ``ValueError`` naming the parameter):

* a parent is a name of the space, a :class:`~jaxtune.params.Choice`,
  :class:`~jaxtune.params.Int` or :class:`~jaxtune.params.Fixed`, and **static**: which
  parameters exist is then a function of the static values, so every member of a static group
  has the same names and a conditional parameter never reaches a group that does not read it;
* the values a clause names are values the parent can take (a Choice's choices, an Int's
  range; a Fixed parent is not checked, so a group's space with its static values fixed stays
  valid); comparisons need a numeric parent;
* conditions do not form a cycle (``a`` under ``b`` under ``a``).

A parameter is **active** in a config when every parent is active and every clause holds;
a config holds exactly its active names (:func:`active_names`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["COMPARISONS", "OPERATORS", "When", "active_names", "check_conditions",
           "conditional_grid", "topological_order"]

#: Operators that compare a numeric parent with a number.
COMPARISONS = (">=", ">", "<=", "<")
#: Every operator of a clause.
OPERATORS = ("in", "==", "!=", *COMPARISONS)


def _plain(value: Any) -> Any:
    """Numpy scalars unwrapped and lists as tuples (hashable), as the parameters store them."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(_plain(item) for item in value)
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps bools apart from numbers (``True == 1`` in Python)."""
    if (type(a) is bool) != (type(b) is bool):
        return False
    return bool(a == b)


def _is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
            and math.isfinite(float(value)))


def _thaw(value: Any) -> Any:
    return [_thaw(item) for item in value] if isinstance(value, tuple) else value


def _clause(where: str, parent: str, op: str, operand: Any) -> tuple[str, str, Any]:
    if op not in OPERATORS:
        raise ValueError(f"{where}: unknown operator {op!r} for parent {parent!r}; use one of "
                         f"{', '.join(map(repr, OPERATORS))}.")
    if op in COMPARISONS and not _is_number(operand):
        raise ValueError(f"{where}: {parent} {op} {operand!r} needs a finite number.")
    if op == "in":
        if isinstance(operand, str | bytes | Mapping) or not isinstance(
                operand, list | tuple | np.ndarray):
            raise ValueError(f"{where}: {parent!r} 'in' needs a list of values, got "
                             f"{operand!r}.")
        operand = _plain(operand)
        if not operand:
            raise ValueError(f"{where}: {parent!r} 'in' [] can never hold; list the values "
                             "under which the parameter exists.")
    else:
        operand = _plain(operand)
    return (parent, op, operand)


@dataclasses.dataclass(frozen=True)
class When:
    """When a parameter exists: clauses ``(parent, operator, operand)``, all of which hold.

    Build it from the mapping form of the module docstring with :meth:`of`; parameters do this
    for their ``when=`` argument.

    Attributes:
      clauses: sorted ``(parent, operator, operand)`` triples (operands hashable).
    """

    clauses: tuple[tuple[str, str, Any], ...]

    @classmethod
    def of(cls, spec: Any, where: str = "when") -> When | None:
        """The condition of a ``when=`` argument (``None`` and a :class:`When` pass through).

        Raises:
          ValueError: not a mapping, an empty one, a parent that is not a non-empty string,
            an unknown operator or an operand of the wrong kind (naming ``where``).
        """
        if spec is None or isinstance(spec, When):
            return spec
        if not isinstance(spec, Mapping) or not spec:
            raise ValueError(
                f"{where} = {spec!r} must be a non-empty mapping of parent names to values, "
                "e.g. when={'optimizer': ['momentum', 'nesterov']} or "
                "when={'depth': {'>=': 2}}.")
        clauses = []
        for parent, condition in spec.items():
            if not isinstance(parent, str) or not parent:
                raise ValueError(f"{where}: the parent {parent!r} must be a parameter name.")
            if isinstance(condition, Mapping):
                if not condition:
                    raise ValueError(f"{where}: the condition on {parent!r} is empty.")
                for op, operand in condition.items():
                    clauses.append(_clause(where, parent, op, operand))
            elif isinstance(condition, list | tuple | np.ndarray):
                clauses.append(_clause(where, parent, "in", condition))
            else:
                clauses.append(_clause(where, parent, "in", [condition]))
        return cls(tuple(sorted(clauses, key=lambda c: (c[0], OPERATORS.index(c[1])))))

    @property
    def parents(self) -> tuple[str, ...]:
        """The parent names, sorted, each once."""
        return tuple(dict.fromkeys(parent for parent, _, _ in self.clauses))

    def holds(self, config: Mapping[str, Any]) -> bool:
        """Whether every clause holds for ``config``'s values (a parent absent: ``False``)."""
        for parent, op, operand in self.clauses:
            if parent not in config:
                return False
            value = _plain(config[parent])
            if op == "in":
                ok = any(_same(value, item) for item in operand)
            elif op == "==":
                ok = _same(value, operand)
            elif op == "!=":
                ok = not _same(value, operand)
            elif not _is_number(value):
                ok = False
            else:
                ok = {">=": value >= operand, ">": value > operand, "<=": value <= operand,
                      "<": value < operand}[op]
            if not ok:
                return False
        return True

    def spec(self) -> dict[str, Any]:
        """The mapping form (inverse of :meth:`of`): a list for ``in``, else ``{op: operand}``."""
        out: dict[str, Any] = {}
        for parent, op, operand in self.clauses:
            if op == "in" and parent not in out:
                out[parent] = _thaw(operand)
                continue
            current = out.get(parent)
            if isinstance(current, list):  # an "in" list already there: spell both as ops
                current = {"in": current}
            current = dict(current or {})
            current[op] = _thaw(operand)
            out[parent] = current
        return out

    def describe(self, config: Mapping[str, Any] | None = None) -> str:
        """The condition in words, with the parents' values in ``config`` when given."""
        text = " and ".join(
            f"{parent} {op} {_thaw(operand)!r}" for parent, op, operand in self.clauses)
        if config is not None:
            values = ", ".join(f"{p} = {config[p]!r}" if p in config else f"{p} is inactive"
                               for p in self.parents)
            text += f" ({values})"
        return text


# --------------------------------------------------------------------------------------------
# Checks of a whole space


def _check_operands(name: str, parent: str, param: Any, clauses: Iterable[tuple]) -> None:
    """The values a clause names must be ones the parent can take (not checked for Fixed)."""
    kind = param.kind
    if kind == "fixed":
        return
    numeric = kind == "int" or all(_is_number(v) for v in param.values)
    for _, op, operand in clauses:
        if op in COMPARISONS:
            if not numeric:
                raise ValueError(
                    f"parameter {name!r}: when {parent} {op} {operand!r} compares a parent "
                    f"whose values are not all numbers; list its values instead, e.g. "
                    f"when={{{parent!r}: [...]}}.")
            continue
        for value in operand if op == "in" else (operand,):
            if kind == "choice":
                fits = param.index(value) is not None
                allowed = f"one of its choices {list(param.values)!r}"
            else:
                fits = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                        and param.low <= value <= param.high)
                allowed = f"an int in [{param.low}, {param.high}]"
            if not fits:
                raise ValueError(
                    f"parameter {name!r}: its condition names {parent} = {value!r}, which "
                    f"{parent!r} never takes; give {allowed}.")


def topological_order(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The names with every parent before its children; among names that are ready, the
    smallest first (so without conditions: the names sorted).

    Raises:
      ValueError: the conditions form a cycle (naming it).
    """
    children: dict[str, list[str]] = {name: [] for name in params}
    waiting = {}
    for name, param in params.items():
        parents = param.when.parents if param.when is not None else ()
        waiting[name] = len(parents)
        for parent in parents:
            children[parent].append(name)
    ready = sorted(name for name, count in waiting.items() if count == 0)
    order = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
                ready.sort()
    if len(order) < len(params):
        raise ValueError(f"the conditions form a cycle: {_cycle(params, set(order))}; a "
                         "parameter cannot exist only under itself.")
    return tuple(order)


def _cycle(params: Mapping[str, Any], done: set[str]) -> str:
    """One cycle among the names left out of a topological order, as ``a -> b -> a``."""
    name = min(n for n in params if n not in done)
    path: list[str] = []
    while name not in path:
        path.append(name)
        name = next(p for p in params[name].when.parents if p not in done)
    path = path[path.index(name):]
    return " under ".join(repr(n) for n in [*path, name])


def check_conditions(params: Mapping[str, Any]) -> tuple[str, ...]:
    """Checks every parameter's condition against the space; returns the topological order.

    Args:
      params: name -> parameter (each with a ``when`` attribute, ``None`` or a :class:`When`).

    Returns:
      :func:`topological_order` of the names.

    Raises:
      ValueError: an unknown parent (with a close name), a parent that is a Float or is
        dynamic, a value the parent never takes, a comparison on a non-numeric parent, a cycle.
    """
    for name, param in params.items():
        if param.when is None:
            continue
        for parent in param.when.parents:
            if parent == name:
                raise ValueError(f"parameter {name!r}: its condition names itself; a "
                                 "parameter cannot exist only under itself.")
            if parent not in params:
                close = difflib.get_close_matches(parent, list(params), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"parameter {name!r}: its condition names {parent!r}, which is not in the "
                    f"space{hint}; its names are {sorted(params)}.")
            parent_param = params[parent]
            if parent_param.kind == "float":
                raise ValueError(
                    f"parameter {name!r}: its parent {parent!r} is a Float; a condition's "
                    "parent must be a Choice, Int or Fixed (a choice of code path).")
            if not parent_param.static:
                raise ValueError(
                    f"parameter {name!r}: its parent {parent!r} is dynamic (static=False); "
                    f"make {parent!r} static, since which parameters exist selects the "
                    "static group.")
            _check_operands(name, parent, parent_param,
                            [c for c in param.when.clauses if c[0] == parent])
    return topological_order(params)


def active_names(params: Mapping[str, Any], order: Iterable[str],
                 config: Mapping[str, Any]) -> set[str]:
    """The names active under ``config``'s values (only the parents' values are read).

    Args:
      params: name -> parameter.
      order: :func:`topological_order` of the names.
      config: values of (at least) the active parents; other names may be present.

    Returns:
      The active names: those without a condition, and those whose parents are all active
      and whose clauses all hold.
    """
    active: set[str] = set()
    for name in order:
        when = params[name].when
        if when is None or (all(p in active for p in when.parents) and when.holds(config)):
            active.add(name)
    return active


def conditional_grid(params: Mapping[str, Any], order: Iterable[str],
                     axes: Mapping[str, list[Any]], max_size: int) -> list[dict[str, Any]]:
    """Every valid combination of the axes, each once: a name is branched over only where it
    is active (its parents come first in ``order``), so an inactive one never multiplies the
    grid. The last name of ``order`` varies fastest; keys of each config are sorted.

    Raises:
      ValueError: more than ``max_size`` configs.
    """
    order = tuple(order)
    configs: list[dict[str, Any]] = []
    # Depth-first over order, iteratively: (position in order, partial config).
    stack: list[tuple[int, dict[str, Any]]] = [(0, {})]
    while stack:
        position, partial = stack.pop()
        if position == len(order):
            configs.append({name: partial[name] for name in sorted(partial)})
            if len(configs) > max_size:
                raise ValueError(
                    f"the grid has more than max_size={max_size} configs; lower "
                    "num_float_points, search fewer parameters, or use random search.")
            continue
        name = order[position]
        when = params[name].when
        if when is not None and not (all(p in partial for p in when.parents)
                                     and when.holds(partial)):
            stack.append((position + 1, partial))
            continue
        for value in reversed(axes[name]):  # popped first to last
            stack.append((position + 1, {**partial, name: value}))
    return configs
