"""A sweep's time budget: stop proposing, finish the running segment, save.

``time_budget=`` of :func:`jaxtune.tune`, :func:`jaxtune.run_halving`, :func:`jaxtune.run_pbt`
and :func:`jaxtune.run_early_stopping` (``jaxtune sweep --time-budget SECONDS``) is a number of
seconds, or a :class:`TimeBudget` with its own clock. The driver turns it into a
:class:`Deadline` when the call starts and hands it to the engine
(:class:`~jaxtune.engine.options.Hooks`); the engine looks at it after every segment (once the
scheduler has acted) and between chunks, never inside a compiled program. Once it has passed:

* the running segment ends as usual, the chunk is saved to the checkpoint (if any), and no
  other chunk starts;
* members that were still training are returned with status ``"stopped"`` and
  ``extra["stopped_by"] == STOPPED_BY`` (their metrics are those of their last segment);
* ``tune`` asks the strategy for no more configurations;
* with a checkpoint, ``resume=True`` continues the sweep to the rows an uninterrupted run
  gives.

This module imports nothing from jaxtune.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["STOPPED_BY", "Deadline", "TimeBudget", "check_time_budget", "start_deadline"]

#: ``extra["stopped_by"]`` of a member the time budget stopped, and the reason in metadata.
STOPPED_BY = "time_budget"


class Deadline(NamedTuple):
    """The moment a sweep stops proposing, on a clock.

    Attributes:
      at: the clock value at which the deadline passes.
      clock: a function returning the current time in seconds (``time.monotonic``).
    """

    at: float
    clock: Callable[[], float] = time.monotonic

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.clock() >= self.at


class TimeBudget(NamedTuple):
    """A time budget with its clock (tests pass a fake one; the default is monotonic).

    Attributes:
      seconds: the budget, a positive finite number of seconds.
      clock: a function returning the current time in seconds.
    """

    seconds: float
    clock: Callable[[], float] = time.monotonic


def check_time_budget(value: Any, name: str = "time_budget") -> TimeBudget | None:
    """``value`` (seconds, a :class:`TimeBudget` or ``None``) as a checked :class:`TimeBudget`.

    Raises:
      TypeError: not a number (nor a :class:`TimeBudget`), a bool, or a clock that is not
        callable.
      ValueError: zero, negative, NaN or infinite seconds.
    """
    if value is None:
        return None
    budget = value if isinstance(value, TimeBudget) else TimeBudget(value)
    seconds = budget.seconds
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError(
            f"{name}: got {seconds!r}; give a number of seconds, e.g. {name}=3600, or None for "
            "no limit")
    if not math.isfinite(float(seconds)) or float(seconds) <= 0.0:
        raise ValueError(
            f"{name}: got {seconds!r}; give a positive, finite number of seconds, e.g. "
            f"{name}=3600, or None for no limit")
    if not callable(budget.clock):
        raise TypeError(f"{name}: the clock {budget.clock!r} is not callable")
    return TimeBudget(float(seconds), budget.clock)


def start_deadline(budget: TimeBudget | None) -> Deadline | None:
    """The deadline of a budget that starts now (``None`` without a budget)."""
    if budget is None:
        return None
    return Deadline(budget.clock() + budget.seconds, budget.clock)
