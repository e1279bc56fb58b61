"""One row of a sweep's results: :class:`MemberResult`, the outcome of one member.

Host-only (the standard library and :mod:`jaxtune.jsonio`). Values are canonicalized at
construction, as :mod:`jaxtune.results` describes, so a row compares equal to itself after a JSON
round trip. :func:`config_key`, :func:`hp_names` and :func:`metric_names` are the small rules the
results' ranking, aggregation and rendering share.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Iterable, Mapping
from typing import Any

from jaxtune import jsonio

__all__ = [
    "FLAT_FIELDS", "STATUSES", "MemberResult", "config_key", "hp_names", "metric_names",
    "row_fields",
]

#: The values ``MemberResult.status`` may take.
STATUSES = ("completed", "diverged", "stopped")
#: A row's own fields, in the order every flat view of a row (CSV, pandas, Optuna) starts with.
FLAT_FIELDS = ("member_id", "seed", "fold", "static_group", "status", "diverged_step",
              "wall_time_s")


# --------------------------------------------------------------------------------------------
# Canonical values and their JSON encoding.


def _to_int(value: Any, where: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: expected an integer, got {value!r}") from None


def _optional_int(value: Any, where: str) -> int | None:
    return None if value is None else _to_int(value, where)


def config_key(config: Mapping[str, Any]) -> str:
    """A canonical string key for a (canonical) config: equal configs give equal keys.

    Args:
        config: A canonical config (or any mapping of canonical values).

    Returns:
        Its sorted, strict JSON text.
    """
    return json.dumps(jsonio.encode(dict(config)), sort_keys=True, allow_nan=False)


# --------------------------------------------------------------------------------------------
# One member.


@dataclasses.dataclass(frozen=True, eq=False)
class MemberResult:
    """The outcome of one member (one training run) of a sweep.

    Values are canonicalized at construction (see the module docstring): numpy and JAX scalars
    become Python values and sequences inside ``config`` become tuples, so a row compares equal
    to itself after a JSON round trip. Equality treats NaN as equal to NaN. The row is frozen;
    do not mutate the dicts it holds.

    Attributes:
        member_id: Identity of the member within the sweep (unique within a :class:`Results`).
        config: Hyperparameter name -> value (static and dynamic), as produced by the space.
        seed: The member's seed (part of its identity, with the config and the fold).
        fold: Cross-validation fold, or ``None`` without cross-validation.
        static_group: Name of the compiled program (static group) the member ran in.
        status: ``"completed"``, ``"diverged"`` (loss or update became non-finite; the member was
            frozen at its last finite state) or ``"stopped"`` (stopped early by a scheduler).
        diverged_step: Step at which the member diverged, else ``None``.
        metrics: Final metrics, e.g. ``{"valid_accuracy": 0.93, "valid_loss": 0.21}``.
        curve_steps: Steps ``[num_points]`` at which the learning curves were recorded.
        curves: Metric name -> values ``[num_points]`` aligned with ``curve_steps``.
        wall_time_s: Wall-clock training time attributed to the member, in seconds.
        hp_schedule: For schedulers that change hyperparameters during training (PBT): a list of
            ``{"step": ..., name: value, ...}`` entries; ``None`` otherwise.
        extra: Free-form JSON-like data.
    """

    member_id: int
    config: dict[str, Any]
    seed: int
    fold: int | None
    static_group: str
    status: str
    diverged_step: int | None
    metrics: dict[str, float]
    curve_steps: list[int] = dataclasses.field(repr=False)
    curves: dict[str, list[float]] = dataclasses.field(repr=False)
    wall_time_s: float
    hp_schedule: list[dict[str, Any]] | None = dataclasses.field(default=None, repr=False)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        where = f"MemberResult(member_id={self.member_id!r})"
        if self.status not in STATUSES:
            raise ValueError(f"{where}.status: got {self.status!r}, expected one of {STATUSES}")
        if not isinstance(self.static_group, str):
            raise TypeError(
                f"{where}.static_group: expected a str, got {type(self.static_group).__name__}"
            )
        if not isinstance(self.config, Mapping):
            raise TypeError(f"{where}.config: expected a mapping, got {type(self.config).__name__}")
        steps = [_to_int(step, f"{where}.curve_steps") for step in self.curve_steps]
        curves = {}
        for name, values in dict(self.curves).items():
            curves[str(name)] = [jsonio.to_float(v, f"{where}.curves[{name!r}]") for v in values]
            if len(curves[name]) != len(steps):
                raise ValueError(
                    f"{where}.curves[{name!r}]: {len(curves[name])} values but "
                    f"{len(steps)} curve_steps; each curve must be aligned with curve_steps"
                )
        hp_schedule = None
        if self.hp_schedule is not None:
            hp_schedule = [
                jsonio.canonical(entry, f"{where}.hp_schedule[{i}]")
                for i, entry in enumerate(self.hp_schedule)
            ]
            if not all(isinstance(entry, dict) for entry in hp_schedule):
                raise TypeError(f"{where}.hp_schedule: every entry must be a mapping")
        canonical = {
            "member_id": _to_int(self.member_id, f"{where}.member_id"),
            "config": jsonio.canonical(self.config, f"{where}.config"),
            "seed": _to_int(self.seed, f"{where}.seed"),
            "fold": _optional_int(self.fold, f"{where}.fold"),
            "static_group": str(self.static_group),
            "diverged_step": _optional_int(self.diverged_step, f"{where}.diverged_step"),
            "metrics": {
                str(name): jsonio.to_float(value, f"{where}.metrics[{name!r}]")
                for name, value in dict(self.metrics).items()
            },
            "curve_steps": steps,
            "curves": curves,
            "wall_time_s": jsonio.to_float(self.wall_time_s, f"{where}.wall_time_s"),
            "hp_schedule": hp_schedule,
            "extra": jsonio.canonical(self.extra, f"{where}.extra"),
        }
        if not isinstance(canonical["extra"], dict):
            raise TypeError(f"{where}.extra: expected a mapping")
        for name, value in canonical.items():
            object.__setattr__(self, name, value)

    @property
    def diverged(self) -> bool:
        """Whether the member diverged."""
        return self.status == "diverged"

    def score(self, metric: str) -> float:
        """The final value of ``metric``, or NaN when the member diverged or lacks the metric."""
        if self.diverged:
            return math.nan
        return self.metrics.get(metric, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-safe dict (strict JSON: non-finite floats encoded, tuples as lists)."""
        return {
            "member_id": self.member_id,
            "config": jsonio.encode(self.config),
            "seed": self.seed,
            "fold": self.fold,
            "static_group": self.static_group,
            "status": self.status,
            "diverged_step": self.diverged_step,
            "metrics": {name: jsonio.encode_float(v) for name, v in self.metrics.items()},
            "curve_steps": list(self.curve_steps),
            "curves": {
                name: [jsonio.encode_float(v) for v in values]
                for name, values in self.curves.items()
            },
            "wall_time_s": jsonio.encode_float(self.wall_time_s),
            "hp_schedule": None if self.hp_schedule is None else jsonio.encode(self.hp_schedule),
            "extra": jsonio.encode(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemberResult:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: For a missing or unknown key or a malformed value.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a mapping for a member, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if _is_required(f)]
        missing = [name for name in required if name not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise ValueError(f"member fields: missing {missing}, unknown {unknown}")
        where = f"member {data.get('member_id')!r}"
        for name in ("config", "metrics", "curves", "extra"):
            if name in data and not isinstance(data[name], Mapping):
                raise ValueError(f"{where}: {name!r} must be an object")
        if not isinstance(data["curve_steps"], list):
            raise ValueError(f"{where}: 'curve_steps' must be a list")
        hp_schedule = data.get("hp_schedule")
        if hp_schedule is not None and not isinstance(hp_schedule, list):
            raise ValueError(f"{where}: 'hp_schedule' must be a list or null")
        curves = {}
        for name, values in data["curves"].items():
            if not isinstance(values, list):
                raise ValueError(f"{where}: curves[{name!r}] must be a list")
            curves[name] = [jsonio.decode_float(v, f"{where}: curves[{name!r}]") for v in values]
        return cls(
            member_id=data["member_id"],
            config=jsonio.decode(data["config"], tuple),
            seed=data["seed"],
            fold=data["fold"],
            static_group=data["static_group"],
            status=data["status"],
            diverged_step=data["diverged_step"],
            metrics={
                name: jsonio.decode_float(v, f"{where}: metrics[{name!r}]")
                for name, v in data["metrics"].items()
            },
            curve_steps=data["curve_steps"],
            curves=curves,
            wall_time_s=jsonio.decode_float(data["wall_time_s"], f"{where}: wall_time_s"),
            hp_schedule=(
                None if hp_schedule is None else [jsonio.decode(e, tuple) for e in hp_schedule]
            ),
            extra=jsonio.decode(data.get("extra", {}), tuple),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemberResult):
            return NotImplemented
        return self.to_dict() == other.to_dict()


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING



def metric_names(rows: Iterable[MemberResult]) -> list[str]:
    """Sorted names of the final metrics present in any of ``rows``."""
    return sorted({name for row in rows for name in row.metrics})


def hp_names(rows: Iterable[MemberResult]) -> list[str]:
    """Sorted hyperparameter names present in any of ``rows``' configs."""
    return sorted({name for row in rows for name in row.config})


def row_fields(row: MemberResult) -> dict[str, Any]:
    """``{name: value}`` of a row's :data:`FLAT_FIELDS`, in that order."""
    return {name: getattr(row, name) for name in FLAT_FIELDS}
