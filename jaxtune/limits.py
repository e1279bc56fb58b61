"""Limits on the sizes and values jaxtune accepts, checked on the host before anything is built.

One place for the bounds that the space, the engine, ``tune`` and the command line check, so
that an input beyond what JAX, XLA or the host can hold is refused with a one-line message
naming the field, instead of overflowing inside a compiled program or aborting XLA:

* :data:`INT32_MAX`: step counts and sizes are ``int32`` inside the compiled programs.
* :data:`MAX_SEED`: ``jax.random.PRNGKey`` keeps 32 bits of a seed (without ``jax_enable_x64``
  ``PRNGKey(2**32)`` is ``PRNGKey(0)``); :data:`MAX_MEMBER_SEED`: member seeds are folded into
  the keys as ``int32``.
* :data:`MAX_EXACT_INT`: the unit-cube encoding of an ``Int`` is ``float64``, exact for integers
  up to ``2**53``.
* :data:`MAX_ALIAS_EXPANSION`: values a YAML file's aliases may add (``jaxtune.spacefile``).
* :func:`check_population`: a population whose configs, keys and result rows cannot fit in the
  host's memory (``--num-configs 10**12``) is refused before a single config is drawn.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

__all__ = [
    "BYTES_PER_MEMBER",
    "BYTES_PER_PARAM",
    "INT32_MAX",
    "MAX_ALIAS_EXPANSION",
    "MAX_EXACT_INT",
    "MAX_MEMBER_SEED",
    "MAX_SEED",
    "check_int32",
    "check_population",
    "check_seed",
    "host_memory_bytes",
    "population_bytes",
]

#: Largest step count or size (``num_steps``, ``steps_per_segment``...): they are int32 in jit.
INT32_MAX = 2**31 - 1
#: Largest sweep seed: ``jax.random.PRNGKey`` keys hold 32 bits of it.
MAX_SEED = 2**32 - 1
#: Largest member seed (``seeds``/``--seeds``): folded into a member's key as an int32.
MAX_MEMBER_SEED = 2**31 - 1
#: Largest magnitude of an ``Int`` bound: integers a float64 (the unit-cube encoding) holds exactly.
MAX_EXACT_INT = 2**53
#: Most values the aliases of a YAML file may add when expanded (an "alias bomb" adds billions).
MAX_ALIAS_EXPANSION = 100_000
#: Host bytes one member costs at least (its config dict, keys, row, curve lists), and per
#: hyperparameter of its config; an underestimate, so only hopeless populations are refused.
BYTES_PER_MEMBER = 1024
BYTES_PER_PARAM = 64


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int32(field: str, value: Any) -> None:
    """Refuses an integer count above :data:`INT32_MAX` (the type of counts inside jit).

    Raises:
      ValueError: naming ``field`` and the limit. Non-integers are left to the caller's own
        type check.
    """
    if _is_int(value) and int(value) > INT32_MAX:
        raise ValueError(
            f"{field} = {value} is above {INT32_MAX} (2**31 - 1), the largest count the compiled "
            "programs hold (int32); give a smaller value."
        )


def check_seed(field: str, value: Any, maximum: int = MAX_SEED) -> None:
    """Checks that a seed is an int in ``[0, maximum]``.

    Args:
      field: the name in messages (``"--seed"``, ``"seeds[2]"``).
      value: the seed.
      maximum: :data:`MAX_SEED` for a sweep seed, :data:`MAX_MEMBER_SEED` for a member seed.

    Raises:
      TypeError: not an int.
      ValueError: outside the range, saying why (larger seeds repeat smaller ones).
    """
    if not _is_int(value):
        raise TypeError(f"{field} = {value!r} ({type(value).__name__}) must be an int seed.")
    if not 0 <= int(value) <= maximum:
        raise ValueError(
            f"{field} = {value} is outside [0, {maximum}], the seeds JAX keys distinguish here "
            "(a larger one would repeat a smaller one's random numbers, or overflow); give a "
            "seed in that range."
        )


def host_memory_bytes() -> int:
    """The host's physical memory in bytes (a large default where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**40


def population_bytes(num_members: int, num_params: int) -> int:
    """A lower estimate of the host bytes ``num_members`` members of ``num_params`` names need."""
    return int(num_members) * (BYTES_PER_MEMBER + BYTES_PER_PARAM * max(int(num_params), 1))


def check_population(field: str, num_members: int, num_params: int,
                     memory_bytes: int | None = None) -> None:
    """Refuses a population whose host arrays cannot be built, before any config is drawn.

    Args:
      field: what to name in the message (``"--num-configs"``, ``"num_configs"``).
      num_members: configs x seeds x folds.
      num_params: hyperparameters per config.
      memory_bytes: the host memory to compare with (default :func:`host_memory_bytes`).

    Raises:
      ValueError: more than :data:`INT32_MAX` members, or an estimate above the host memory.
    """
    if num_members > INT32_MAX:
        raise ValueError(
            f"{field}: {num_members} members (configs x seeds x folds) is more than {INT32_MAX}, "
            "the most one sweep indexes; sweep fewer configurations."
        )
    needed = population_bytes(num_members, num_params)
    available = host_memory_bytes() if memory_bytes is None else int(memory_bytes)
    if needed > available:
        raise ValueError(
            f"{field}: {num_members} members (configs x seeds x folds) need at least "
            f"{needed / 2**30:.1f} GiB of host memory for their configs and results, more than "
            f"this host's {available / 2**30:.1f} GiB; sweep fewer configurations."
        )


def check_positive_int(field: str, value: Any) -> None:
    """Refuses anything but a positive integer that fits an int32 (step counts and sizes are
    int32 inside jit).

    Raises:
      ValueError: naming ``field`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{field} must be a positive integer, got {value!r}.")
    check_int32(field, value)
