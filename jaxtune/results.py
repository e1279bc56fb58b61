"""The results of a sweep: one row per member, ranking, aggregation over seeds/folds, persistence.

Host-only (numpy and the standard library). A *member* is one training run: a configuration, a
seed and (for cross-validation) a fold. The engine returns one :class:`MemberResult` per member,
collected in a :class:`Results`. The parts live by job: the row in :mod:`jaxtune.member_result`,
ranking and aggregation rules in :mod:`jaxtune.ranking`, the table and CSV text in
:mod:`jaxtune.report`, the files in :mod:`jaxtune.results_io`; :class:`Results` holds the rows,
selects among them and delegates.

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

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from jaxtune import contracts, jsonio, member_result, pareto, ranking, report, results_io
from jaxtune.member_result import STATUSES, MemberResult
from jaxtune.ranking import REGULARIZATION_HPARAMS, default_complexity

# RESULTS_JSON and RESULTS_CSV keep their old import path (``from jaxtune.results import ...``).
from jaxtune.results_io import FORMAT
from jaxtune.results_io import RESULTS_CSV as RESULTS_CSV
from jaxtune.results_io import RESULTS_JSON as RESULTS_JSON

__all__ = [
    "FORMAT",
    "REGULARIZATION_HPARAMS",
    "STATUSES",
    "MemberResult",
    "Results",
    "default_complexity",
]

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
        return member_result.metric_names(self._rows)

    @property
    def hp_names(self) -> list[str]:
        """Sorted hyperparameter names present in any row's config."""
        return member_result.hp_names(self._rows)

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

    def _ranking(self, metric: str | None, mode: str | None) -> ranking.Ranking:
        """The rows ranked by ``metric`` (resolved and checked)."""
        metric, mode = self.resolve_metric(metric, mode)
        self._check_metric(metric)
        return ranking.rank(self._rows, metric, mode)

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
        if rule not in ranking.ROW_RULES:
            raise ValueError(f"rule: got {rule!r}, expected one of {ranking.ROW_RULES}")
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

    def objectives(
        self, metrics: Sequence[str] | None = None, modes: Sequence[str | None] | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The metrics a Pareto front is over and their directions.

        Default: the sweep's own (``metadata["metrics"]`` of a multi-objective sweep); each
        mode resolved as in :meth:`resolve_metric`.

        Raises:
            ValueError: no metrics (none given, none stored), fewer than two, modes of another
                count, or an unknown metric.
        """
        if metrics is None:
            metrics = self._metadata.get("metrics")
            if metrics is None:
                raise ValueError("metrics: this sweep had one objective; give the metrics of "
                                 "the front, e.g. metrics=['valid_accuracy', 'valid_loss']")
            modes = self._metadata.get("modes") if modes is None else modes
        metrics = list(metrics)
        modes = [None] * len(metrics) if modes is None else list(modes)
        if len(metrics) < 2 or len(modes) != len(metrics):
            raise ValueError(f"metrics={metrics}, modes={modes}: give two or more metrics and "
                             "one mode (or None) per metric")
        for metric in metrics:
            self._check_metric(metric)
        resolved = [self.resolve_metric(m, d)[1] for m, d in zip(metrics, modes, strict=True)]
        return tuple(metrics), tuple(resolved)

    def pareto_front(
        self, metrics: Sequence[str] | None = None, modes: Sequence[str | None] | None = None
    ) -> Results:
        """The members no other member dominates in ``metrics`` (the Pareto front).

        A member dominates another when it is no worse in every metric and better in one.
        Diverged, infeasible or non-finite members are never on the front; members with equal
        values are all on it. Metrics and modes: see :meth:`objectives`.

        Returns:
            A ``Results`` (same metadata), ordered by the first metric, best first.
        """
        metrics, modes = self.objectives(metrics, modes)
        return Results(ranking.pareto_rows(self._rows, metrics, modes), self._metadata)

    def hypervolume(
        self, reference: Sequence[float], metrics: Sequence[str] | None = None,
        modes: Sequence[str | None] | None = None,
    ) -> float:
        """The hypervolume of the front (:func:`jaxtune.pareto.hypervolume`), larger is better.

        Args:
            reference: One value per metric, in the metrics' own units, worse than every
                member of interest (e.g. accuracy 0 and loss 10).
            metrics, modes: see :meth:`objectives`.
        """
        metrics, modes = self.objectives(metrics, modes)
        front = ranking.pareto_rows(self._rows, metrics, modes)
        values = [[row.score(m) for m in metrics] for row in front]
        losses = pareto.as_losses(np.reshape(values, (len(front), len(metrics))), modes)
        return pareto.hypervolume(losses, pareto.as_losses([list(reference)], modes)[0])

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
        return ranking.aggregate(self._rows, metric, mode, by)

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
        if rule not in ranking.CONFIG_RULES:
            raise ValueError(f"rule: got {rule!r}, expected one of {ranking.CONFIG_RULES}")
        metric, mode = self.resolve_metric(metric, mode)
        groups = self.aggregate(metric, mode, by=by)
        return ranking.choose_config(groups, metric, mode, rule, complexity)

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
        ranked = self._ranking(metric, mode)
        if columns is None:
            columns = report.default_columns(self._rows, ranked.metric)
        else:
            columns = list(columns)
            known = set(self.hp_names) | set(self.metric_names) | set(report.ROW_FIELDS)
            unknown = [name for name in columns if name not in known]
            if unknown:
                raise ValueError(
                    f"columns: unknown {unknown}; choose from hyperparameters {self.hp_names}, "
                    f"metrics {self.metric_names} or {list(report.ROW_FIELDS)}"
                )
        return report.table(self._rows, ranked, k, columns)

    # ---- persistence ----

    def to_dict(self) -> dict[str, Any]:
        """The JSON document written to ``results.json``."""
        return results_io.document(self._rows, self._metadata)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], source: str = "document") -> Results:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: For a document that is not jaxtune results, of another format version,
                or with a malformed row.
        """
        return cls(*results_io.parse(document, source))

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
        return results_io.write(
            directory, self.to_dict(), report.csv_text(self._rows), lock=lock
        )

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
        document, source = results_io.read(path)
        return cls.from_dict(document, source=source)

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
        return pd.DataFrame.from_records(
            report.flat_records(self._rows), columns=report.flat_columns(self._rows)
        )

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
