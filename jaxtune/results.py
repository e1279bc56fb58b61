"""The results of a sweep: one row per member, ranking, aggregation over seeds/folds, persistence.

Host-only (numpy and the standard library). A *member* is one training run: a configuration, a
seed and (for cross-validation) a fold. The engine returns one :class:`MemberResult` per member,
collected in a :class:`Results`.

Values are stored in a canonical, JSON-native form so that ``Results.load(results.save(d))``
gives back equal objects:

* numpy/JAX scalars become Python ``int``/``float``/``bool``/``str``;
* in configs, ``extra``, ``hp_schedule`` entries and metadata, sequences (lists, tuples, arrays)
  become tuples (hashable, and what JSON lists are read back as), mappings become ``dict`` with
  ``str`` keys, dataclasses and NamedTuples become ``dict``;
* metrics, curve values and ``wall_time_s`` become Python ``float``.

Non-finite floats: in the float-typed fields (metrics, curves, ``wall_time_s``) they are written
to JSON as the strings ``"nan"``, ``"inf"`` and ``"-inf"``; in free-form values (configs, extra,
metadata) as ``{"__float__": "nan"}`` (and ``"inf"``, ``"-inf"``), so that a string hyperparameter
that happens to read ``"nan"`` stays a string. The JSON written is strict (no ``NaN`` literals).

Example:
    >>> results = Results([...])                      # doctest: +SKIP
    >>> results.best("valid_accuracy").config          # doctest: +SKIP
    >>> print(results.table(k=5))                      # doctest: +SKIP
    >>> results.best_config(rule="one_standard_error") # doctest: +SKIP
    >>> results.save("runs/sweep1"); Results.load("runs/sweep1") == results  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import operator
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import numpy as np

from jaxtune import contracts, jsonio, storage

__all__ = [
    "FORMAT",
    "REGULARIZATION_HPARAMS",
    "STATUSES",
    "MemberResult",
    "Results",
    "default_complexity",
]

#: The ``"format"`` key of ``results.json``; bumped when the layout changes incompatibly.
FORMAT = "jaxtune.results/1"
#: The values ``MemberResult.status`` may take.
STATUSES = ("completed", "diverged", "stopped")
#: Hyperparameters that make a model *simpler* the larger they are, in the order the default
#: complexity of :meth:`Results.best_config` compares them.
REGULARIZATION_HPARAMS = ("l2", "weight_decay", "l1", "dropout")

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
_ROW_RULES = ("best", "best_mean", "one_standard_error")
_CONFIG_RULES = ("best_mean", "one_standard_error")


# --------------------------------------------------------------------------------------------
# Canonical values and their JSON encoding.


def _to_int(value: Any, where: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: expected an integer, got {value!r}") from None


def _optional_int(value: Any, where: str) -> int | None:
    return None if value is None else _to_int(value, where)


def _config_key(config: Mapping[str, Any]) -> str:
    """A canonical string key for a (canonical) config: equal configs give equal keys."""
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


# --------------------------------------------------------------------------------------------
# Helpers for ranking and aggregation.


def _better_key(value: float, mode: str) -> float:
    """Sort key: smaller is better."""
    return -value if mode == "max" else value


def default_complexity(config: Mapping[str, Any]) -> tuple[float, ...]:
    """Default complexity of a config for the one-standard-error rule (lower is simpler).

    More regularization makes a simpler model, so the key is the negated strengths of
    :data:`REGULARIZATION_HPARAMS` (``l2``, ``weight_decay``, ``l1``, ``dropout``), compared
    lexicographically in that order; an absent or non-numeric one counts as 0.

    Args:
        config: A hyperparameter configuration.

    Returns:
        A tuple; the config with the smallest tuple is the simplest.
    """
    key = []
    for name in REGULARIZATION_HPARAMS:
        value = config.get(name, 0.0)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        key.append(-float(value) if numeric and math.isfinite(value) else 0.0)
    return tuple(key)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_log_spread(values: Iterable[Any], decades: float = 2.0) -> bool:
    """Whether the finite numbers among ``values`` are all positive and span > ``decades``."""
    finite = [float(v) for v in values if _is_number(v) and math.isfinite(v)]
    if not finite or min(finite) <= 0:
        return False
    return math.log10(max(finite) / min(finite)) > decades


# --------------------------------------------------------------------------------------------
# The table of all members.


class Results:
    """The rows of a sweep, one :class:`MemberResult` per member, and the sweep's metadata.

    Immutable: the rows are a tuple, ``metadata`` a read-only view of canonical plain data;
    methods that select rows return new ``Results``. Member ids must be unique.

    Ranking rules shared by all methods: a member is *eligible* for a metric when it did not
    diverge and its value is finite; NaN/inf or a diverged member is never best. Ties go to the
    smaller ``member_id``.

    Args:
        rows: The members.
        metadata: JSON-like data about the sweep (seed, number of steps, the space as a dict...).
            Canonicalized like configs; a value that cannot be stored raises ``TypeError``.

    Raises:
        TypeError: If a row is not a :class:`MemberResult` or metadata holds unstorable values.
        ValueError: If member ids repeat.
    """

    def __init__(
        self, rows: Iterable[MemberResult], metadata: Mapping[str, Any] | None = None
    ) -> None:
        rows = tuple(rows)
        for i, row in enumerate(rows):
            if not isinstance(row, MemberResult):
                raise TypeError(f"rows[{i}]: expected a MemberResult, got {type(row).__name__}")
        seen: set[int] = set()
        repeated: set[int] = set()
        for row in rows:
            (repeated if row.member_id in seen else seen).add(row.member_id)
        duplicates = sorted(repeated)
        if duplicates:
            raise ValueError(
                f"duplicate member_id values {duplicates[:10]}: member ids must be unique within "
                "Results (when combining batches of a sweep, give later batches new ids)"
            )
        canonical = jsonio.canonical(dict(metadata or {}), "metadata")
        self._rows: tuple[MemberResult, ...] = rows
        self._metadata: dict[str, Any] = canonical

    # ---- container protocol ----

    @property
    def rows(self) -> tuple[MemberResult, ...]:
        """The members, in the order given."""
        return self._rows

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Read-only view of the sweep's metadata."""
        return MappingProxyType(self._metadata)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[MemberResult]:
        return iter(self._rows)

    def __getitem__(self, index: int | slice) -> MemberResult | Results:
        """A row by position, or a ``Results`` (same metadata) for a slice."""
        if isinstance(index, slice):
            return Results(self._rows[index], self._metadata)
        return self._rows[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Results):
            return NotImplemented
        same_metadata = jsonio.encode(self._metadata) == jsonio.encode(other._metadata)
        return self._rows == other._rows and same_metadata

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Results(num_members={len(self)}, metrics={self.metric_names}, "
            f"hparams={self.hp_names})"
        )

    @property
    def metric_names(self) -> list[str]:
        """Sorted names of the final metrics present in any row."""
        return sorted({name for row in self._rows for name in row.metrics})

    @property
    def hp_names(self) -> list[str]:
        """Sorted hyperparameter names present in any row's config."""
        return sorted({name for row in self._rows for name in row.config})

    # ---- selection ----

    def filter(
        self,
        status: str | Iterable[str] | None = None,
        static_group: str | Iterable[str] | None = None,
        predicate: Callable[[MemberResult], bool] | None = None,
    ) -> Results:
        """Rows matching every given condition (same metadata).

        Args:
            status: A status or several (``"completed"``, ``"diverged"``, ``"stopped"``).
            static_group: A static group name or several.
            predicate: A function of a row returning whether to keep it.

        Returns:
            A new ``Results``.
        """
        statuses = _as_set(status)
        if statuses is not None:
            unknown = sorted(statuses - set(STATUSES))
            if unknown:
                raise ValueError(f"status: unknown {unknown}, expected values from {STATUSES}")
        groups = _as_set(static_group)
        kept = [
            row
            for row in self._rows
            if (statuses is None or row.status in statuses)
            and (groups is None or row.static_group in groups)
            and (predicate is None or predicate(row))
        ]
        return Results(kept, self._metadata)

    def _check_metric(self, metric: str) -> None:
        names = self.metric_names
        if metric not in names:
            if not self._rows:
                raise ValueError(f"metric {metric!r}: the Results has no rows")
            raise ValueError(f"unknown metric {metric!r}; available metrics: {names}")

    def resolve_metric(
        self, metric: str | None = None, mode: str | None = None
    ) -> tuple[str, str]:
        """The metric and direction ranking uses when ``metric``/``mode`` are not given.

        ``metric``: default the sweep's own (``metadata["metric"]``), for results without one
        ``valid_accuracy`` (``valid_mse`` when only that was recorded). ``mode``: an explicit
        value wins, else :func:`jaxtune.contracts.resolve_mode` with this metadata (the sweep's
        ``mode`` for its metric, the task's ``metric_modes``, then the name).

        Returns:
            ``(metric, mode)``.

        Raises:
            ValueError: For a mode other than ``"max"``/``"min"``.

        Example:
            >>> Results([], {"metric": "valid_mse", "mode": "min"}).resolve_metric()
            ('valid_mse', 'min')
        """
        if metric is None:
            metric = contracts.sweep_metric(self._metadata, self.metric_names)
        return metric, contracts.resolve_mode(metric, mode, metadata=self._metadata)

    def _ranking(
        self, metric: str | None, mode: str | None
    ) -> tuple[str, str, list[MemberResult], list[MemberResult]]:
        """(metric, mode, eligible rows best first, the other rows in member_id order)."""
        metric, mode = self.resolve_metric(metric, mode)
        self._check_metric(metric)
        eligible = [row for row in self._rows if math.isfinite(row.score(metric))]
        eligible.sort(key=lambda row: (_better_key(row.score(metric), mode), row.member_id))
        ids = {row.member_id for row in eligible}
        rest = sorted(
            (row for row in self._rows if row.member_id not in ids), key=lambda row: row.member_id
        )
        return metric, mode, eligible, rest

    def best(
        self,
        metric: str | None = None,
        mode: str | None = None,
        rule: str = "best",
        complexity: Callable[[Mapping[str, Any]], Any] | None = None,
    ) -> MemberResult:
        """The best member.

        Args:
            metric: Final metric to rank by; default the sweep's own (see :meth:`resolve_metric`).
            mode: ``"max"`` if higher is better, ``"min"`` if lower is better; default the
                sweep's direction for ``metric`` (see :meth:`resolve_metric`).
            rule: ``"best"``: the single best eligible member. ``"best_mean"`` /
                ``"one_standard_error"``: the best member of the config chosen by
                :meth:`best_config` with that rule (aggregating over seeds/folds).
            complexity: Passed to :meth:`best_config` for ``"one_standard_error"``.

        Returns:
            The chosen row.

        Raises:
            ValueError: For an unknown metric (naming the available ones), mode or rule, or when
                no member is eligible (all diverged or non-finite).
        """
        if rule not in _ROW_RULES:
            raise ValueError(f"rule: got {rule!r}, expected one of {_ROW_RULES}")
        if rule != "best":
            chosen = self.best_config(metric, mode, rule=rule, complexity=complexity)
            members = set(chosen["members"])
            kept = self.filter(predicate=lambda row: row.member_id in members)
            return kept.best(chosen["metric"], chosen["mode"])
        metric, mode, eligible, _ = self._ranking(metric, mode)
        if not eligible:
            raise ValueError(
                f"no member has a finite {metric!r} without diverging "
                f"({len(self)} members; statuses: {self._status_counts()})"
            )
        return eligible[0]

    def top(
        self, k: int = 5, metric: str | None = None, mode: str | None = None
    ) -> list[MemberResult]:
        """The ``k`` best eligible members, best first (fewer if fewer are eligible).

        ``metric`` and ``mode`` as in :meth:`best` (default: the sweep's metric and direction).

        Raises:
            ValueError: For a negative ``k``, an unknown metric or mode.
        """
        if k < 0:
            raise ValueError(f"k: got {k}, expected a non-negative number of members")
        metric, mode, eligible, _ = self._ranking(metric, mode)
        return eligible[:k]

    def _status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    # ---- aggregation over seeds and folds ----

    def aggregate(
        self,
        metric: str | None = None,
        mode: str | None = None,
        by: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Groups members by configuration (everything but seed and fold) and summarizes.

        Statistics over the ``count`` members of a group: ``mean``, ``std`` (sample standard
        deviation, ``ddof=1``), ``sem = std / sqrt(count)``. A group of one member has
        ``std = sem = nan`` (undefined with ``ddof=1``).

        Failures: a member that diverged, or whose metric is missing or non-finite, makes the
        whole group *failed*: its ``mean``, ``std`` and ``sem`` are NaN and it sorts after every
        group that did not fail. A config that diverges for some seed is not a safe choice; to
        average the surviving members instead, aggregate ``results.filter(status=...)``.

        Args:
            metric: Final metric to summarize; default the sweep's own (see :meth:`resolve_metric`).
            mode: ``"max"`` if higher is better, ``"min"`` if lower is better; default the
                sweep's direction for ``metric`` (see :meth:`resolve_metric`).
            by: Group only by these hyperparameters (marginalizing over the others); default:
                the whole config.

        Returns:
            One dict per group, best first (ties: smallest first member id), with keys
            ``config`` (the group's config, or the ``by`` subset), ``mean``, ``std``, ``sem``,
            ``count``, ``num_failed`` and ``members`` (member ids in order).
        """
        metric, mode = self.resolve_metric(metric, mode)
        self._check_metric(metric)
        if by is not None:
            by = list(by)
            unknown = sorted(set(by) - set(self.hp_names))
            if unknown:
                raise ValueError(f"by: unknown hyperparameters {unknown}; have {self.hp_names}")
        groups: dict[str, list[MemberResult]] = {}
        configs: dict[str, dict[str, Any]] = {}
        for row in self._rows:
            config = dict(row.config) if by is None else {n: row.config.get(n) for n in by}
            key = _config_key(config)
            groups.setdefault(key, []).append(row)
            configs.setdefault(key, config)
        summaries = []
        for key, rows in groups.items():
            values = np.array([row.score(metric) for row in rows], dtype=np.float64)
            count = len(rows)
            num_failed = int(np.sum(~np.isfinite(values)))
            mean = std = sem = math.nan
            if num_failed == 0:
                mean = float(np.mean(values))
                if count > 1:
                    std = float(np.std(values, ddof=1))
                    sem = std / math.sqrt(count)
            summaries.append(
                {
                    "config": configs[key],
                    "mean": mean,
                    "std": std,
                    "sem": sem,
                    "count": count,
                    "num_failed": num_failed,
                    "members": [row.member_id for row in rows],
                }
            )
        summaries.sort(
            key=lambda s: (
                s["num_failed"] > 0,
                0.0 if s["num_failed"] else _better_key(s["mean"], mode),
                min(s["members"]),
            )
        )
        return summaries

    def best_config(
        self,
        metric: str | None = None,
        mode: str | None = None,
        rule: str = "best_mean",
        complexity: Callable[[Mapping[str, Any]], Any] | None = None,
        by: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The configuration to pick, by mean over seeds/folds or by the one-standard-error rule.

        ``"best_mean"``: the group with the best mean (see :meth:`aggregate`).

        ``"one_standard_error"`` (Breiman et al., *Classification and Regression Trees*, 1984;
        Hastie et al., *Elements of Statistical Learning*, 7.10): let ``b`` be the best-mean group
        and ``threshold = mean_b - sem_b`` (``mode="max"``) or ``mean_b + sem_b`` (``"min"``).
        Among the groups that did not fail and whose mean is within the threshold, pick the
        *simplest*: the smallest ``complexity(config)``, ties broken by the better mean, then the
        smallest first member id. When ``sem_b`` is NaN (a single member), it counts as 0 and the
        rule reduces to ``"best_mean"`` up to ties.

        Args:
            metric: Final metric; default the sweep's own (see :meth:`resolve_metric`).
            mode: ``"max"`` if higher is better, ``"min"`` if lower is better; default the
                sweep's direction for ``metric`` (see :meth:`resolve_metric`).
            rule: ``"best_mean"`` or ``"one_standard_error"``.
            complexity: ``config -> sortable``, lower is simpler. Default
                :func:`default_complexity`: larger regularization (``l2``, ``weight_decay``,
                ``l1``, ``dropout``, in that order) is simpler.
            by: As in :meth:`aggregate`.

        Returns:
            A dict with ``rule``, ``metric``, ``mode``, the chosen group's ``config``, ``mean``,
            ``std``, ``sem``, ``count``, ``members``, and ``best_mean``, ``best_sem`` (of the
            best-mean group), ``threshold`` (``None`` for ``"best_mean"``) and
            ``num_candidates`` (groups within the threshold; 1 for ``"best_mean"``).

        Raises:
            ValueError: For an unknown rule, metric or mode, or when every group failed.
        """
        if rule not in _CONFIG_RULES:
            raise ValueError(f"rule: got {rule!r}, expected one of {_CONFIG_RULES}")
        metric, mode = self.resolve_metric(metric, mode)
        groups = self.aggregate(metric, mode, by=by)
        ok = [group for group in groups if group["num_failed"] == 0]
        if not ok:
            raise ValueError(
                f"every configuration has a diverged or non-finite {metric!r} member; "
                "no configuration can be chosen"
            )
        best = ok[0]
        chosen, threshold, candidates = best, None, [best]
        if rule == "one_standard_error":
            complexity = default_complexity if complexity is None else complexity
            sem = 0.0 if math.isnan(best["sem"]) else best["sem"]
            if mode == "max":
                threshold = best["mean"] - sem
                candidates = [g for g in ok if g["mean"] >= threshold]
            else:
                threshold = best["mean"] + sem
                candidates = [g for g in ok if g["mean"] <= threshold]
            chosen = min(
                candidates,
                key=lambda g: (
                    complexity(g["config"]),
                    _better_key(g["mean"], mode),
                    min(g["members"]),
                ),
            )
        return {
            "rule": rule,
            "metric": metric,
            "mode": mode,
            "config": dict(chosen["config"]),
            "mean": chosen["mean"],
            "std": chosen["std"],
            "sem": chosen["sem"],
            "count": chosen["count"],
            "members": list(chosen["members"]),
            "best_mean": best["mean"],
            "best_sem": best["sem"],
            "threshold": threshold,
            "num_candidates": len(candidates),
        }

    # ---- display ----

    def table(
        self,
        k: int = 10,
        metric: str | None = None,
        mode: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> str:
        """A plain-text table of the ``k`` first members in rank order.

        Eligible members come first, best first, with their rank; diverged or non-finite members
        follow with rank ``-``. Columns: ``rank``, ``member``, ``status``, then ``columns``.
        Default columns: ``seed``/``fold``/``static_group`` when they vary, the hyperparameters
        that vary across members (all of them if none varies), then the metrics with ``metric``
        first. Floats have 4 significant digits; a column of positive values spanning at least
        two decades or below 1e-3 (log-scale-looking) is written in scientific notation.

        Args:
            k: Number of rows to show.
            metric: Metric to rank by; default the sweep's own (see :meth:`resolve_metric`).
            mode: ``"max"`` if higher is better, ``"min"`` if lower is better; default the
                sweep's direction for ``metric`` (see :meth:`resolve_metric`).
            columns: Names of hyperparameters, metrics or of ``seed``, ``fold``,
                ``static_group``, ``diverged_step``, ``wall_time_s``.

        Returns:
            The table, lines separated by ``\\n``, with a caption line first.
        """
        metric, mode, eligible, rest = self._ranking(metric, mode)
        ordered = [(str(i + 1), row) for i, row in enumerate(eligible)]
        ordered += [("-", row) for row in rest]
        shown = ordered[: max(k, 0)]
        fields = ("seed", "fold", "static_group", "diverged_step", "wall_time_s")
        if columns is None:
            columns = self._default_columns(metric)
        else:
            columns = list(columns)
            known = set(self.hp_names) | set(self.metric_names) | set(fields)
            unknown = [name for name in columns if name not in known]
            if unknown:
                raise ValueError(
                    f"columns: unknown {unknown}; choose from hyperparameters {self.hp_names}, "
                    f"metrics {self.metric_names} or {list(fields)}"
                )

        def cell(row: MemberResult, name: str) -> Any:
            if name in fields:
                return getattr(row, name)
            if name in row.config:
                return row.config[name]
            return row.metrics.get(name)

        header = ["rank", "member", "status", *columns]
        raw_columns = [
            [rank for rank, _ in shown],
            [row.member_id for _, row in shown],
            [row.status for _, row in shown],
            *[[cell(row, name) for _, row in shown] for name in columns],
        ]
        # Whether a column looks log-scaled is judged on every member, not only those shown.
        scale_columns = [[], [], [], *[[cell(row, name) for row in self._rows] for name in columns]]
        text_columns, right = [], []
        for values, scale_values in zip(raw_columns, scale_columns, strict=True):
            text, numeric = _format_column(values, scale_values)
            text_columns.append(text)
            right.append(numeric)
        right[0] = True
        widths = [
            max([len(h), *(len(t) for t in text)])
            for h, text in zip(header, text_columns, strict=True)
        ]

        def line(cells: Sequence[str]) -> str:
            parts = [
                c.rjust(w) if r else c.ljust(w)
                for c, w, r in zip(cells, widths, right, strict=True)
            ]
            return "  ".join(parts).rstrip()

        caption = (
            f"{len(shown)} of {len(self)} members, ranked by {metric} ({mode}); "
            f"{len(eligible)} ranked, diverged/non-finite rank '-'"
        )
        lines = [caption, line(header), line(["-" * w for w in widths])]
        lines += [line([text[i] for text in text_columns]) for i in range(len(shown))]
        return "\n".join(lines)

    def _default_columns(self, metric: str) -> list[str]:
        columns = []
        if len({row.seed for row in self._rows}) > 1:
            columns.append("seed")
        if any(row.fold is not None for row in self._rows):
            columns.append("fold")
        if len({row.static_group for row in self._rows}) > 1:
            columns.append("static_group")
        varying = [name for name in self.hp_names if self._varies(name)]
        columns += varying or self.hp_names
        columns += [metric, *(name for name in self.metric_names if name != metric)]
        return columns

    def _varies(self, name: str) -> bool:
        keys = {_config_key({"v": row.config.get(name)}) for row in self._rows}
        return len(keys) > 1

    # ---- persistence ----

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written to ``results.json``."""
        return {
            "format": FORMAT,
            "metadata": jsonio.encode(self._metadata),
            "rows": [row.to_dict() for row in self._rows],
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], source: str = "document") -> Results:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: For a document that is not jaxtune results, of another format version,
                or with a malformed row.
        """
        if not isinstance(document, Mapping) or "format" not in document:
            raise ValueError(
                f"{source} is not a jaxtune results file: no 'format' key (expected {FORMAT!r})"
            )
        found = document["format"]
        if found != FORMAT:
            if isinstance(found, str) and found.startswith("jaxtune.results/"):
                raise ValueError(
                    f"{source} has format {found!r}, which this version of jaxtune cannot read "
                    f"(it reads {FORMAT!r}); upgrade jaxtune"
                )
            raise ValueError(
                f"{source} is not a jaxtune results file: format {found!r}, expected {FORMAT!r}"
            )
        rows, metadata = document.get("rows"), document.get("metadata", {})
        if not isinstance(rows, list) or not isinstance(metadata, dict):
            raise ValueError(f"{source}: 'rows' must be a list and 'metadata' an object")
        members = []
        for i, data in enumerate(rows):
            try:
                members.append(MemberResult.from_dict(data))
            except (TypeError, ValueError) as error:
                raise ValueError(f"{source}: row {i} is malformed: {error}") from error
        return cls(members, jsonio.decode(metadata, tuple))

    def save(self, directory: str | os.PathLike[str], *, lock: bool = True) -> Path:
        """Writes ``results.json`` and ``results.csv`` into ``directory`` (created if needed).

        Each file is written to a temporary file in the same directory and moved into place with
        ``os.replace``, so a reader never sees a partial file and a failed save leaves the
        previous files intact. Both files get mode ``0644``. ``results.json`` ends with a
        ``"checksum"`` (SHA-256 of the bytes before it; :meth:`load` refuses a file that does not
        match). While it writes, the folder is locked (:class:`jaxtune.storage.FolderLock`): a
        second writer of the same folder is refused, so the two files are always of one save.

        ``results.csv`` has one line per member: ``member_id, seed, fold, static_group, status,
        diverged_step, wall_time_s``, then ``config.<name>`` and ``metrics.<name>`` columns, each
        block sorted by name. Missing values and ``None`` are empty cells; tuples and dicts are
        JSON. Curves are only in the JSON.

        Args:
            directory: Output folder.
            lock: Take the folder's lock while writing (``False`` when the caller holds it).

        Returns:
            The folder's path.

        Raises:
            jaxtune.storage.FolderBusyError: Another process holds the folder's lock.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with storage.FolderLock(directory, "Results.save") if lock else contextlib.nullcontext():
            self._write_files(directory)
        return directory

    def _write_files(self, directory: Path) -> None:
        document = self.to_dict()

        def write_json(file: Any) -> None:
            # One member per line: compact for large sweeps, still readable and diff-friendly.
            file.write(f'{{"format": {json.dumps(document["format"])},\n"metadata": ')
            json.dump(document["metadata"], file, allow_nan=False, sort_keys=True)
            file.write(',\n"rows": [')
            for i, row in enumerate(document["rows"]):
                file.write(",\n" if i else "\n")
                json.dump(row, file, allow_nan=False)
            file.write("\n]")  # the seal closes the object

        def write_csv(file: IO[str]) -> None:
            file.write(self._csv_text())

        staged: list[tuple[str, Path]] = []
        try:
            for name, write in ((RESULTS_JSON, storage.sealing(write_json)),
                                (RESULTS_CSV, write_csv)):
                staged.append((storage.stage(directory / name, write), directory / name))
            for temporary, final in staged:
                os.replace(temporary, final)
        except BaseException:
            # Clean up temporaries whatever went wrong (also KeyboardInterrupt), then re-raise.
            for temporary, _ in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Results:
        """Reads results written by :meth:`save`.

        Files with a checksum are checked against it; files of older versions (no checksum) are
        read as they are.

        Args:
            path: The folder given to :meth:`save`, or its ``results.json``.

        Raises:
            FileNotFoundError: If there is no such file.
            ValueError: For a corrupt or edited file (one line naming it), a foreign JSON file or
                an unsupported format version.
        """
        path = Path(path)
        file = path / RESULTS_JSON if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(
                f"no results at {file}: expected a folder written by Results.save or its "
                f"{RESULTS_JSON}"
            )
        try:
            document, _ = storage.read_sealed(file, required=False)
        except storage.DamagedFileError as error:
            raise ValueError(f"{error}; this is not a jaxtune results file as jaxtune wrote "
                             "it") from error
        unknown = set(document) - {"format", "metadata", "rows"}
        if unknown and "format" in document:
            raise ValueError(f"{file} is damaged: unexpected entries {sorted(unknown)}")
        return cls.from_dict(document, source=str(file))

    def _flat_columns(self) -> list[str]:
        return [
            "member_id",
            "seed",
            "fold",
            "static_group",
            "status",
            "diverged_step",
            "wall_time_s",
            *(f"config.{name}" for name in self.hp_names),
            *(f"metrics.{name}" for name in self.metric_names),
        ]

    def _flat_records(self) -> list[dict[str, Any]]:
        hp_names, metric_names = self.hp_names, self.metric_names
        records = []
        for row in self._rows:
            record = {
                "member_id": row.member_id,
                "seed": row.seed,
                "fold": row.fold,
                "static_group": row.static_group,
                "status": row.status,
                "diverged_step": row.diverged_step,
                "wall_time_s": row.wall_time_s,
            }
            record.update({f"config.{n}": row.config.get(n) for n in hp_names})
            record.update({f"metrics.{n}": row.metrics.get(n, math.nan) for n in metric_names})
            records.append(record)
        return records

    def _csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = self._flat_columns()
        writer.writerow(columns)
        for record in self._flat_records():
            writer.writerow([_csv_cell(record[name]) for name in columns])
        return buffer.getvalue()

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` with one row per member and the columns of ``results.csv``.

        Raises:
            ImportError: If pandas is not installed (``pip install 'jaxtune[pandas]'``).
        """
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError(
                "Results.to_pandas() needs pandas, which is not installed: "
                "pip install 'jaxtune[pandas]' (or pip install pandas)"
            ) from error
        return pd.DataFrame.from_records(self._flat_records(), columns=self._flat_columns())

    # ---- combining batches ----

    def merge(self, other: Results) -> Results:
        """The rows of ``self`` then ``other``; metadata of ``self``. Ids must stay unique."""
        return Results.concat([self, other])

    @staticmethod
    def concat(results: Sequence[Results], metadata: Mapping[str, Any] | None = None) -> Results:
        """Combines batches of a sweep.

        Args:
            results: The batches, rows kept in order.
            metadata: Metadata of the result; default: the first batch's.

        Raises:
            ValueError: If a member id appears twice.
        """
        results = list(results)
        for i, item in enumerate(results):
            if not isinstance(item, Results):
                raise TypeError(f"results[{i}]: expected Results, got {type(item).__name__}")
        if metadata is None:
            metadata = results[0].metadata if results else {}
        return Results([row for item in results for row in item], metadata)


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {value}
    return set(value)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, tuple)):
        return json.dumps(jsonio.encode(value), sort_keys=True, allow_nan=False)
    return str(value)


def _fits_float(value: Any) -> bool:
    """Finite, and not an int too large for a float (a config may hold ``10**400``)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _format_column(values: Sequence[Any], scale_values: Sequence[Any]) -> tuple[list[str], bool]:
    """Formats one table column; returns the texts and whether to right-align them.

    Floats get 4 significant digits, in scientific notation when ``scale_values`` (the column
    over all members) are positive and span at least two decades or go below 1e-3.
    """
    present = [v for v in values if v is not None]
    numeric = bool(present) and all(_is_number(v) for v in present)
    finite = [float(v) for v in scale_values if _is_number(v) and _fits_float(v)]
    scientific = (
        numeric
        and any(isinstance(v, float) for v in present)
        and bool(finite)
        and min(finite) > 0
        and (max(finite) / min(finite) >= 100 or min(finite) < 1e-3)
    )
    texts = []
    for value in values:
        if value is None:
            texts.append("-")
        elif isinstance(value, float):
            if not math.isfinite(value):
                texts.append(jsonio.float_name(value))
            else:
                texts.append(f"{value:.3e}" if scientific else f"{value:.4g}")
        elif isinstance(value, (dict, tuple)):
            texts.append(json.dumps(jsonio.encode(value), sort_keys=True))
        else:
            texts.append(str(value))
    return texts, numeric
