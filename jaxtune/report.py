"""Rendering a sweep's results: number formatting, the plain-text table and the CSV text.

Host-only (the standard library). :class:`jaxtune.results.Results` calls :func:`table` and
:func:`csv_text`; :mod:`jaxtune.plot` shares :func:`is_number` and :func:`is_log_spread` to choose
its axes.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from jaxtune import jsonio
from jaxtune.member_result import (
    FLAT_FIELDS,
    MemberResult,
    config_key,
    hp_names,
    metric_names,
    row_fields,
)
from jaxtune.ranking import Ranking

__all__ = [
    "ROW_FIELDS",
    "csv_cell",
    "csv_text",
    "default_columns",
    "flat_columns",
    "flat_records",
    "format_column",
    "is_log_spread",
    "is_number",
    "table",
]

#: Row attributes a table may show as columns, besides hyperparameters and metrics
#: (``feasible``: ``extra["feasible"]``, set by a sweep with constraints).
ROW_FIELDS = ("seed", "fold", "static_group", "diverged_step", "wall_time_s", "feasible")
#: The ``extra`` entry a sweep with constraints writes (``jaxtune.ranking.FEASIBLE``).
_FEASIBLE = "feasible"


def _constrained(rows: Sequence[MemberResult]) -> bool:
    return any(_FEASIBLE in row.extra for row in rows)


# --------------------------------------------------------------------------------------------
# Numbers.


def is_number(value: Any) -> bool:
    """Whether ``value`` is an ``int`` or ``float`` (not a ``bool``).

    Args:
        value: Any value.

    Returns:
        ``True`` for a number.
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_log_spread(values: Iterable[Any], decades: float = 2.0) -> bool:
    """Whether the finite numbers among ``values`` are all positive and span > ``decades``.

    Args:
        values: Any values; those that are not finite numbers are ignored.
        decades: How many powers of ten the numbers must span.

    Returns:
        ``True`` when a log scale suits the numbers.
    """
    finite = [float(v) for v in values if is_number(v) and math.isfinite(v)]
    if not finite or min(finite) <= 0:
        return False
    return math.log10(max(finite) / min(finite)) > decades


def _fits_float(value: Any) -> bool:
    """Finite, and not an int too large for a float (a config may hold ``10**400``)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def format_column(values: Sequence[Any], scale_values: Sequence[Any]) -> tuple[list[str], bool]:
    """Formats one table column; returns the texts and whether to right-align them.

    Floats get 4 significant digits, in scientific notation when ``scale_values`` (the column
    over all members) are positive and span at least two decades or go below 1e-3.

    Args:
        values: The column's values, one per row shown.
        scale_values: The column's values over every member (to judge the scale).

    Returns:
        ``(texts, numeric)``.
    """
    present = [v for v in values if v is not None]
    numeric = bool(present) and all(is_number(v) for v in present)
    finite = [float(v) for v in scale_values if is_number(v) and _fits_float(v)]
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


# --------------------------------------------------------------------------------------------
# The plain-text table.


def default_columns(rows: Sequence[MemberResult], metric: str) -> list[str]:
    """The columns :func:`table` shows when none are given.

    Args:
        rows: Every member.
        metric: The metric ranked by (shown first among the metrics).

    Returns:
        ``seed``/``fold``/``static_group`` when they vary, the hyperparameters that vary (all
        of them if none varies), then the metrics with ``metric`` first.
    """
    columns = []
    if len({row.seed for row in rows}) > 1:
        columns.append("seed")
    if any(row.fold is not None for row in rows):
        columns.append("fold")
    if len({row.static_group for row in rows}) > 1:
        columns.append("static_group")
    if _constrained(rows):
        columns.append(_FEASIBLE)
    names = hp_names(rows)
    varying = [
        name for name in names if len({config_key({"v": row.config.get(name)}) for row in rows}) > 1
    ]
    columns += varying or names
    columns += [metric, *(name for name in metric_names(rows) if name != metric)]
    return columns


def _cell(row: MemberResult, name: str) -> Any:
    if name == _FEASIBLE:
        return row.extra.get(_FEASIBLE)
    if name in ROW_FIELDS:
        return getattr(row, name)
    if name in row.config:
        return row.config[name]
    return row.metrics.get(name)


def table(
    rows: Sequence[MemberResult], ranking: Ranking, k: int, columns: Sequence[str]
) -> str:
    """The text of :meth:`jaxtune.results.Results.table`.

    Args:
        rows: Every member (the scale of a column is judged on all of them).
        ranking: The members ranked by the table's metric.
        k: Number of rows to show.
        columns: The (checked) columns after ``rank``, ``member`` and ``status``.

    Returns:
        The table, lines separated by ``\\n``, with a caption line first.
    """
    ordered = [(str(i + 1), row) for i, row in enumerate(ranking.eligible)]
    ordered += [("-", row) for row in ranking.rest]
    shown = ordered[: max(k, 0)]
    header = ["rank", "member", "status", *columns]
    raw_columns = [
        [rank for rank, _ in shown],
        [row.member_id for _, row in shown],
        [row.status for _, row in shown],
        *[[_cell(row, name) for _, row in shown] for name in columns],
    ]
    # Whether a column looks log-scaled is judged on every member, not only those shown.
    scale_columns = [[], [], [], *[[_cell(row, name) for row in rows] for name in columns]]
    text_columns, right = [], []
    for values, scale_values in zip(raw_columns, scale_columns, strict=True):
        text, numeric = format_column(values, scale_values)
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
        f"{len(shown)} of {len(rows)} members, ranked by {ranking.metric} ({ranking.mode}); "
        f"{len(ranking.eligible)} ranked, diverged/non-finite"
        f"{'/infeasible' if _constrained(rows) else ''} rank '-'"
    )
    lines = [caption, line(header), line(["-" * w for w in widths])]
    lines += [line([text[i] for text in text_columns]) for i in range(len(shown))]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Flat records and the CSV text.


def flat_columns(rows: Sequence[MemberResult]) -> list[str]:
    """The columns of ``results.csv`` (and of ``Results.to_pandas``).

    Args:
        rows: Every member.

    Returns:
        The row fields (and ``feasible`` in a sweep with constraints), then ``config.<name>``
        and ``metrics.<name>``, each block sorted.
    """
    return [
        *FLAT_FIELDS,
        *((_FEASIBLE,) if _constrained(rows) else ()),
        *(f"config.{name}" for name in hp_names(rows)),
        *(f"metrics.{name}" for name in metric_names(rows)),
    ]


def flat_records(rows: Sequence[MemberResult]) -> list[dict[str, Any]]:
    """One flat record per member, keyed by :func:`flat_columns`.

    Args:
        rows: Every member.

    Returns:
        The records; a missing config value is ``None``, a missing metric NaN.
    """
    names, metrics = hp_names(rows), metric_names(rows)
    constrained = _constrained(rows)
    records = []
    for row in rows:
        record = row_fields(row)
        if constrained:
            record[_FEASIBLE] = row.extra.get(_FEASIBLE)
        record.update({f"config.{n}": row.config.get(n) for n in names})
        record.update({f"metrics.{n}": row.metrics.get(n, math.nan) for n in metrics})
        records.append(record)
    return records


def csv_cell(value: Any) -> str:
    """One CSV cell: ``None`` empty, floats exact (``repr``), tuples and dicts as JSON.

    Args:
        value: A canonical value.

    Returns:
        The cell's text.
    """
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, tuple)):
        return json.dumps(jsonio.encode(value), sort_keys=True, allow_nan=False)
    return str(value)


def csv_text(rows: Sequence[MemberResult]) -> str:
    """The text of ``results.csv``: a header, then one line per member.

    Args:
        rows: Every member.

    Returns:
        The CSV text, lines ending in ``\\n``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = flat_columns(rows)
    writer.writerow(columns)
    for record in flat_records(rows):
        writer.writerow([csv_cell(record[name]) for name in columns])
    return buffer.getvalue()
