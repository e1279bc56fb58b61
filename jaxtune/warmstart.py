"""Earlier results as a strategy's history: ``tune(..., history=...)`` and ``--warm-start``.

A history is a :class:`~jaxtune.results.Results` (an earlier sweep, e.g.
``Results.load(directory)``) or a list of ``(config, score)`` pairs, ``score`` being the value
of the sweep's selection metric (in its own direction: an accuracy when the sweep maximizes
accuracy; NaN or inf for a failed run). :func:`history_losses` turns it into one loss per
distinct config, as ``tell`` wants them: the metric's mean over the config's rows (seeds,
folds), negated when maximized, ``+inf`` when any row did not complete or has no finite value.

**Compatibility** is strict: every config must be a valid config of the sweep's space (the
same names, active ones only, each value inside its range or among its choices), or
:func:`history_losses` raises a ``ValueError`` naming the row and the name, before anything
trains. To warm-start a narrower space, filter the history first
(``earlier.filter(...)`` or a list comprehension).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxtune.contracts import Config
from jaxtune.member_result import config_key
from jaxtune.results import Results
from jaxtune.space import Space

__all__ = ["History", "history_digest", "history_losses", "history_summary"]

#: What ``history=`` accepts.
History = Results | Sequence[tuple[Mapping[str, Any], float]]


def _loss(value: Any, mode: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        return math.inf
    return -value if mode == "max" else value


def _pairs(history: Any, metric: str) -> list[tuple[Mapping[str, Any], float, str]]:
    """``(config, metric value, where)`` for every row or pair (NaN for a failed row)."""
    if isinstance(history, Results):
        rows = []
        for index, row in enumerate(history):
            where = f"history row {index} (member {row.member_id})"
            if row.status != "completed":
                rows.append((row.config, math.nan, where))
                continue
            if metric not in row.metrics:
                raise ValueError(
                    f"{where} has no metric {metric!r} (it has {sorted(row.metrics)}); warm-start "
                    "from a sweep that reported it, or select the metric it has (metric=...)")
            rows.append((row.config, row.metrics[metric], where))
        return rows
    if isinstance(history, str | bytes | Mapping) or not isinstance(history, Sequence):
        raise TypeError(
            f"history must be a Results or a list of (config, score) pairs, got "
            f"{type(history).__name__}; e.g. history=Results.load('out') or "
            "history=[({'learning_rate': 0.01}, 0.93)]")
    pairs = []
    for index, item in enumerate(history):
        where = f"history[{index}]"
        if not isinstance(item, Sequence) or isinstance(item, str | bytes) or len(item) != 2:
            raise TypeError(f"{where} = {item!r} must be a (config, score) pair.")
        config, score = item
        if not isinstance(config, Mapping):
            raise TypeError(f"{where}: the config {config!r} must be a mapping of names to "
                            "values.")
        if isinstance(score, bool) or not isinstance(score, numbers.Real):
            raise TypeError(f"{where}: the score {score!r} must be a number (the metric's "
                            "value; NaN for a failed run).")
        pairs.append((config, score, where))
    return pairs


def history_losses(history: History, space: Space, metric: str,
                   mode: str) -> tuple[list[Config], np.ndarray]:
    """One loss per distinct config of ``history`` (module docstring), checked against ``space``.

    Args:
      history: a :class:`~jaxtune.results.Results` or ``(config, score)`` pairs.
      space: the sweep's space; every config must be valid in it.
      metric: the selection metric (read from a Results' rows).
      mode: ``"max"`` or ``"min"``: the metric's direction (scores are negated for ``max``).

    Returns:
      ``(configs, losses)``: the distinct configs in first-seen order, and
      ``np.ndarray [num_configs]`` float64 losses (``+inf`` for a failed config).

    Raises:
      TypeError, ValueError: a history of the wrong form, a completed row without the metric,
        a config that does not belong to ``space`` (naming the row and the name).
    """
    configs: dict[str, Config] = {}
    losses: dict[str, list[float]] = {}
    for config, value, where in _pairs(history, metric):
        try:
            space.validate_config(config)
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"{where} does not fit the sweep's space: {error} (a warm start needs the same "
                "or a compatible space; filter the history to the rows that fit)") from error
        key = config_key(config)
        configs.setdefault(key, dict(config))
        losses.setdefault(key, []).append(_loss(value, mode))
    means = [float(np.mean(values)) for values in losses.values()]
    return list(configs.values()), np.asarray(means, np.float64).reshape(-1)


def history_digest(configs: Sequence[Config], losses: np.ndarray) -> str:
    """A short fingerprint of a history (a resumed sweep must be given the same one)."""
    text = "\n".join(f"{config_key(c)} {float(v)!r}" for c, v in zip(configs, losses,
                                                                         strict=True))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def history_summary(configs: Sequence[Config], losses: np.ndarray,
                    mode: str) -> dict[str, Any]:
    """What a warm-started sweep's metadata records: ``num_configs`` of the history and its
    best config with its ``best_score`` (the metric's value; ``None`` if none finished)."""
    finite = np.flatnonzero(np.isfinite(losses))
    if len(finite) == 0:
        return {"num_configs": len(configs), "best_config": None, "best_score": None}
    best = int(finite[np.argmin(losses[finite])])
    score = -float(losses[best]) if mode == "max" else float(losses[best])
    return {"num_configs": len(configs), "best_config": dict(configs[best]),
            "best_score": score}
