"""The strategy interface: a NamedTuple of pure ``init`` / ``ask`` / ``tell`` functions.

A strategy proposes configurations and learns from their scores, over an explicit state value
(as Optax's ``GradientTransformation`` does for optimizers)::

    state = strategy.init(space, key)
    configs, state = strategy.ask(state, num)       # num configs (fewer when exhausted)
    state = strategy.tell(state, configs, scores)   # scores: losses, lower is better

The functions are pure: the same state asked twice gives the same configs, and no state is
changed in place. ``scores`` are **losses to minimize** (``np.ndarray [num]``); the tune loop
negates metrics it maximizes. NaN and +-inf scores count as ``+inf``, so a diverged or failed
member is never the best.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxtune.contracts import Config, Strategy
from jaxtune.space import Space

__all__ = [
    "History",
    "Strategy",
    "append_history",
    "check_int_at_least",
    "check_num",
    "deprecated_driver",
    "empty_history",
    "sanitize_scores",
]


class History(NamedTuple):
    """Every told config and its score, in the unit cube.

    Attributes:
      encoded: ``np.ndarray [num_told, dim]`` float64, ``space.encode`` of the configs.
      scores: ``np.ndarray [num_told]`` float64 losses, non-finite ones already ``+inf``.
    """

    encoded: np.ndarray
    scores: np.ndarray


def sanitize_scores(scores: Any, num_configs: int | None = None) -> np.ndarray:
    """Scores as float64 losses, with NaN, +inf and -inf all mapped to ``+inf``.

    Args:
      scores: ``[num]`` array-like of losses to minimize.
      num_configs: if given, the number of configs the scores belong to.

    Returns:
      ``np.ndarray [num]`` float64, a new array.

    Raises:
      ValueError: ``scores`` is not 1-D, or its length differs from ``num_configs``.
    """
    scores = np.array(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(
            f"scores must be a 1-D array with one loss per config, got shape {scores.shape}."
        )
    if num_configs is not None and len(scores) != num_configs:
        raise ValueError(
            f"got {len(scores)} scores for {num_configs} configs; give one score per config."
        )
    scores[~np.isfinite(scores)] = np.inf
    return scores


def check_num(num: Any) -> int:
    """Validates the ``num`` argument of ``ask``: a non-negative int."""
    if isinstance(num, bool) or not isinstance(num, int | np.integer) or num < 0:
        raise ValueError(f"ask(state, num): num = {num!r} must be a non-negative int.")
    return int(num)


def empty_history(space: Space) -> History:
    """A history with no entries: ``encoded [0, dim]``, ``scores [0]``."""
    return History(np.zeros((0, space.dim), np.float64), np.zeros((0,), np.float64))


def append_history(
    history: History, space: Space, configs: Sequence[Config], scores: Any
) -> History:
    """A new history with ``configs`` (encoded) and their sanitized ``scores`` appended.

    Raises:
      ValueError: lengths differ, or a config does not belong to ``space``.
    """
    scores = sanitize_scores(scores, len(configs))
    encoded = space.encode(configs)
    return History(
        np.concatenate([history.encoded, encoded], axis=0),
        np.concatenate([history.scores, scores], axis=0),
    )


def check_int_at_least(field: str, value: Any, minimum: int) -> None:
    """Refuses anything but an int (or numpy integer) ``>= minimum``, naming ``field``.

    Raises:
      ValueError: ``"{field} must be an int >= {minimum}, got {value!r}."``
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{field} must be an int >= {minimum}, got {value!r}.")


#: Where the sweep drivers live since they left :mod:`jaxtune.strategies`.
DRIVERS_MODULE = "jaxtune.scheduled"


def deprecated_driver(old_module: str, name: str) -> Any:
    """A driver asked for at its old path (``{old_module}.{name}``), with a warning.

    The drivers (``run_halving``, ``run_pbt``, ``replay_pbt_member``, ``lineage``) moved to
    :mod:`jaxtune.scheduled`, which imports the schedulers: the old paths are served by the
    modules' PEP 562 ``__getattr__`` through :func:`importlib.import_module`, which runs only
    when the name is asked for, so no import circle exists.

    Raises:
      AttributeError: ``name`` is not a driver of :mod:`jaxtune.scheduled`.
    """
    warnings.warn(
        f"{old_module}.{name} moved: use jaxtune.{name} (or {DRIVERS_MODULE}.{name}); the old "
        "path will be removed in a later release",
        DeprecationWarning, stacklevel=3,
    )
    driver = getattr(importlib.import_module(DRIVERS_MODULE), name)
    setattr(sys.modules[old_module], name, driver)  # warned once: later uses find it there
    return driver
