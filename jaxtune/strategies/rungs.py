"""The rungs of successive halving and the brackets of Hyperband: pure step arithmetic.

:mod:`jaxtune.strategies.halving` builds its schedulers on these (and re-exports them).
"""

from __future__ import annotations

import math

from jaxtune.strategies.base import check_int_at_least

__all__ = ["hyperband_brackets", "rung_steps"]


def rung_steps(min_steps: int, eta: int, num_steps: int, steps_per_segment: int = 1) -> tuple[
    int, ...
]:
    """The rungs of one bracket: ``min_steps * eta**k`` below ``num_steps``, then ``num_steps``.

    Each rung is rounded up to a multiple of ``steps_per_segment`` (the engine decides only at
    segment boundaries); rungs that collide after rounding are merged.

    Args:
      min_steps: steps of the first rung (>= 1).
      eta: reduction factor (>= 2).
      num_steps: steps of a member that completes.
      steps_per_segment: steps per engine segment.

    Returns:
      The rung steps, ascending, ending with ``num_steps``.

    Example:
      >>> rung_steps(10, 3, 100, steps_per_segment=10)
      (10, 30, 90, 100)
    """
    check_int_at_least("min_steps", min_steps, 1)
    check_int_at_least("eta", eta, 2)
    check_int_at_least("num_steps", num_steps, 1)
    check_int_at_least("steps_per_segment", steps_per_segment, 1)
    rungs: list[int] = []
    r = int(min_steps)
    while r < num_steps:
        aligned = -(-r // steps_per_segment) * steps_per_segment
        if aligned >= num_steps:
            break
        if not rungs or aligned > rungs[-1]:
            rungs.append(aligned)
        r *= eta
    rungs.append(int(num_steps))
    return tuple(rungs)


def hyperband_brackets(
    min_steps: int, eta: int, num_steps: int, num_brackets: int | None = None
) -> list[tuple[int, int]]:
    """Hyperband's brackets: ``(first_rung_steps, n_s)`` from most to least aggressive.

    With ``s_max = floor(log_eta(num_steps / min_steps))``, bracket ``s`` (``s = s_max, ..., 0``)
    starts ``n_s = ceil((s_max + 1) / (s + 1) * eta**s)`` configurations at
    ``num_steps * eta**-s`` steps (Li et al., 2017, Algorithm 1); here its first rung is
    ``min_steps * eta**(s_max - s)`` so the rungs of every bracket lie on one grid. In the
    asynchronous version the ``n_s`` are not used: members join the least-loaded bracket, which
    gives each bracket the same budget and so about ``n_s`` members per ``n_s * r_s * (s + 1)``
    member-steps.

    Args:
      min_steps: first rung of the most aggressive bracket.
      eta: reduction factor.
      num_steps: steps of a member that completes.
      num_brackets: keep only the most aggressive brackets (default: all ``s_max + 1``).

    Returns:
      ``[(first_rung_steps, n_s), ...]``.
    """
    check_int_at_least("min_steps", min_steps, 1)
    check_int_at_least("eta", eta, 2)
    if min_steps >= num_steps:
        raise ValueError(
            f"min_steps={min_steps} must be smaller than num_steps={num_steps} for early "
            "stopping to happen; lower min_steps."
        )
    s_max = 0
    while min_steps * eta ** (s_max + 1) <= num_steps:
        s_max += 1
    brackets = []
    for b in range(s_max + 1):
        s = s_max - b
        size = math.ceil((s_max + 1) / (s + 1) * eta**s)
        brackets.append((int(min_steps * eta**b), int(size)))
    if num_brackets is not None:
        check_int_at_least("num_brackets", num_brackets, 1)
        brackets = brackets[:num_brackets]
    return brackets
