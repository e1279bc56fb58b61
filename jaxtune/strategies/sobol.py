"""Quasi-random search: scrambled Sobol points in the unit cube, decoded by the space.

A Sobol sequence (Sobol 1967) fills the unit cube far more evenly than independent uniform
draws: its first ``2^m`` points are a ``(t, m, d)``-net in base 2, so every dyadic interval
``[k / 2^m, (k + 1) / 2^m)`` of any single coordinate holds exactly one of them. Scrambling
(Owen 1995, nested uniform scrambling) keeps that balance while making each point uniform in the
cube, so sweeps from different keys are independent draws of an equally balanced design.

Point ``i`` is computed directly from its index (Gray-code order, Antonov & Saleev 1979), so
``ask`` is a pure function of ``(key, index)`` and batches of any size concatenate to the same
sequence. Ask in powers of two where you can: balance is exact for the first ``2^m`` points.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.space import Space
from jaxtune.strategies.base import (
    Config,
    History,
    Strategy,
    append_history,
    check_num,
    empty_history,
)

__all__ = ["MAX_SOBOL_DIM", "SobolState", "scramble_seeds", "sobol_points", "sobol_search"]

#: Bits per coordinate: points are multiples of ``2^-32`` and at most ``2^32`` can be drawn.
SOBOL_BITS = 32

# Primitive polynomials and initial direction numbers of Joe & Kuo, "Constructing Sobol
# sequences with better two-dimensional projections", SIAM J. Sci. Comput. 30 (2008) 2635-2654,
# file new-joe-kuo-6.21201 (https://web.maths.unsw.edu.au/~fkuo/sobol/new-joe-kuo-6.21201),
# rows for dimensions 2..64. Columns as in that file: dimension d, polynomial degree s, the
# polynomial's inner coefficients a (as an integer, a_1 the most significant bit), then the
# initial values m_1..m_s. Dimension 1 is the van der Corput sequence (all m_k = 1).
_JOE_KUO_6_21201 = """
 2 1  0  1
 3 2  1  1 3
 4 3  1  1 3 1
 5 3  2  1 1 1
 6 4  1  1 1 3 3
 7 4  4  1 3 5 13
 8 5  2  1 1 5 5 17
 9 5  4  1 1 5 5 5
10 5  7  1 1 7 11 19
11 5 11  1 1 5 1 1
12 5 13  1 1 1 3 11
13 5 14  1 3 5 5 31
14 6  1  1 3 3 9 7 49
15 6 13  1 1 1 15 21 21
16 6 16  1 3 1 13 27 49
17 6 19  1 1 1 15 7 5
18 6 22  1 3 1 15 13 25
19 6 25  1 1 5 5 19 61
20 7  1  1 3 7 11 23 15 103
21 7  4  1 3 7 13 13 15 69
22 7  7  1 1 3 13 7 35 63
23 7  8  1 3 5 9 1 25 53
24 7 14  1 3 1 13 9 35 107
25 7 19  1 3 1 5 27 61 31
26 7 21  1 1 5 11 19 41 61
27 7 28  1 3 5 3 3 13 69
28 7 31  1 1 7 13 1 19 1
29 7 32  1 3 7 5 13 19 59
30 7 37  1 1 3 9 25 29 41
31 7 41  1 3 5 13 23 1 55
32 7 42  1 3 7 3 13 59 17
33 7 50  1 3 1 3 5 53 69
34 7 55  1 1 5 5 23 33 13
35 7 56  1 1 7 7 1 61 123
36 7 59  1 1 7 9 13 61 49
37 7 62  1 3 3 5 3 55 33
38 8 14  1 3 1 15 31 13 49 245
39 8 21  1 3 5 15 31 59 63 97
40 8 22  1 3 1 11 11 11 77 249
41 8 38  1 3 1 11 27 43 71 9
42 8 47  1 1 7 15 21 11 81 45
43 8 49  1 3 7 3 25 31 65 79
44 8 50  1 3 1 1 19 11 3 205
45 8 52  1 1 5 9 19 21 29 157
46 8 56  1 3 7 11 1 33 89 185
47 8 67  1 3 3 3 15 9 79 71
48 8 70  1 3 7 11 15 39 119 27
49 8 84  1 1 3 1 11 31 97 225
50 8 97  1 1 1 3 23 43 57 177
51 8 103  1 3 7 7 17 17 37 71
52 8 115  1 3 1 5 27 63 123 213
53 8 122  1 1 3 5 11 43 53 133
54 9  8  1 3 5 5 29 17 47 173 479
55 9 13  1 3 3 11 3 1 109 9 69
56 9 16  1 1 1 5 17 39 23 5 343
57 9 22  1 3 1 5 25 15 31 103 499
58 9 25  1 1 1 11 11 17 63 105 183
59 9 44  1 1 5 11 9 29 97 231 363
60 9 47  1 1 5 15 19 45 41 7 383
61 9 52  1 3 7 7 31 19 83 137 221
62 9 55  1 1 1 3 23 15 111 223 83
63 9 59  1 1 5 13 31 15 55 25 161
64 9 62  1 1 3 13 25 47 39 87 257
"""

#: Largest unit-cube dimension with tabulated direction numbers.
MAX_SOBOL_DIM = 64

_UINT64_MASK = (1 << 64) - 1


@functools.cache
def _direction_numbers(dim: int) -> np.ndarray:
    """Direction numbers ``v[j, k] = m_{k+1} 2^(SOBOL_BITS-1-k)``, ``np.ndarray [dim, 32]`` uint64.

    For ``k > s`` the Joe-Kuo recurrence (bitwise xor ``^``):
    ``m_k = 2 a_1 m_{k-1} ^ 4 a_2 m_{k-2} ^ ... ^ 2^(s-1) a_{s-1} m_{k-s+1}
    ^ 2^s m_{k-s} ^ m_{k-s}``.
    """
    rows = [line.split() for line in _JOE_KUO_6_21201.strip().splitlines()]
    directions = np.zeros((dim, SOBOL_BITS), np.uint64)
    for j in range(dim):
        if j == 0:
            m = [1] * SOBOL_BITS
        else:
            _, degree, coefficients, *initial = (int(field) for field in rows[j - 1])
            m = list(initial)
            for k in range(degree, SOBOL_BITS):
                value = m[k - degree] ^ (m[k - degree] << degree)
                for i in range(1, degree):
                    if (coefficients >> (degree - 1 - i)) & 1:
                        value ^= m[k - i] << i
                m.append(value)
        for k in range(SOBOL_BITS):
            directions[j, k] = m[k] << (SOBOL_BITS - 1 - k)
    directions.setflags(write=False)
    return directions


def _mix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer (Steele et al. 2014): a bijective 64-bit integer hash."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _owen_scramble(points: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Nested uniform (Owen) scrambling of ``SOBOL_BITS``-bit integer coordinates.

    Bit ``b`` (from the most significant) of coordinate ``j`` is flipped by a random bit that
    depends on ``seeds[j]``, on ``b`` and on the ``b`` leading bits of the unscrambled
    coordinate: a random permutation at every node of the binary tree of dyadic intervals, drawn
    lazily by hashing instead of stored. This maps each elementary interval onto one of the same
    size, so net (balance) properties are kept, and makes every point uniform on the grid.

    Args:
      points: ``np.ndarray [num, dim]`` uint64, unscrambled integer coordinates.
      seeds: ``np.ndarray [dim]`` uint64, one seed per coordinate.

    Returns:
      ``np.ndarray [num, dim]`` uint64, scrambled coordinates.
    """
    scrambled = np.zeros_like(points)
    for b in range(SOBOL_BITS):
        shift = np.uint64(SOBOL_BITS - 1 - b)
        prefix = points >> np.uint64(SOBOL_BITS - b) if b else np.zeros_like(points)
        node = prefix | np.uint64(b << SOBOL_BITS)  # (depth, prefix) names a tree node uniquely
        flip = _mix64(_mix64(node) ^ seeds) >> np.uint64(63)
        scrambled |= (((points >> shift) & np.uint64(1)) ^ flip) << shift
    return scrambled


def scramble_seeds(key: jax.Array, dim: int) -> np.ndarray:
    """Per-coordinate 64-bit scrambling seeds drawn from a JAX PRNG key.

    Args:
      key: a JAX PRNG key (raw ``uint32 [2]`` or typed).
      dim: number of coordinates.

    Returns:
      ``np.ndarray [dim]`` uint64; the same key always gives the same seeds.
    """
    words = np.asarray(jax.random.bits(key, (dim, 2), jnp.uint32)).astype(np.uint64)
    return (words[:, 0] << np.uint64(32)) | words[:, 1]


def sobol_points(
    start: int, num: int, dim: int, seeds: np.ndarray | None = None
) -> np.ndarray:
    """Points ``start, ..., start + num - 1`` of the (optionally scrambled) Sobol sequence.

    Point ``i`` is the xor of the direction numbers selected by the bits of its Gray code
    ``i ^ (i >> 1)`` (the order of Antonov & Saleev, as in ``scipy.stats.qmc.Sobol``).

    Args:
      start: index of the first point (>= 0).
      num: number of points (>= 0).
      dim: dimension, ``1 <= dim <= MAX_SOBOL_DIM``.
      seeds: ``np.ndarray [dim]`` uint64 from :func:`scramble_seeds` for Owen scrambling, or
        ``None`` for the plain sequence (whose point 0 is the origin).

    Returns:
      ``np.ndarray [num, dim]`` float64 in ``[0, 1)``.

    Raises:
      ValueError: ``dim`` outside ``[1, MAX_SOBOL_DIM]``, or more than ``2^32`` points.
    """
    if not 1 <= dim <= MAX_SOBOL_DIM:
        raise ValueError(
            f"Sobol points are tabulated for 1 to {MAX_SOBOL_DIM} dimensions, got dim={dim}; "
            "search fewer parameters or use random_search()."
        )
    if start < 0 or num < 0 or start + num > 1 << SOBOL_BITS:
        raise ValueError(
            f"Sobol points {start}..{start + num - 1} are outside the 2^{SOBOL_BITS} points "
            "of the sequence."
        )
    directions = _direction_numbers(dim)
    index = np.arange(start, start + num, dtype=np.uint64)
    gray = index ^ (index >> np.uint64(1))
    points = np.zeros((num, dim), np.uint64)
    for k in range(SOBOL_BITS):
        selected = ((gray >> np.uint64(k)) & np.uint64(1)).astype(bool)
        points[selected] ^= directions[:, k]
    if seeds is not None:
        points = _owen_scramble(points, np.asarray(seeds, np.uint64))
    return points.astype(np.float64) / float(1 << SOBOL_BITS)


class SobolState(NamedTuple):
    """State of :func:`sobol_search`.

    Attributes:
      space: the search space.
      key: the PRNG key given to ``init``; its bits seed the scrambling.
      index: how many points have been asked (the index of the next one).
      history: told configs (encoded, ``[num_told, dim]``) and their scores (``[num_told]``).
    """

    space: Space
    key: jax.Array
    index: int
    history: History


def sobol_search(scramble: bool = True) -> Strategy:
    """Quasi-random search: consecutive points of a Sobol sequence, decoded by the space.

    Point ``i`` of the sequence (Joe & Kuo 2008 direction numbers, up to
    ``MAX_SOBOL_DIM = 64`` searchable parameters) is a pure function of ``i`` and the ``init``
    key, so the same state always asks the same configs. The first ``2^m`` points put exactly
    one point in each interval ``[k / 2^m, (k + 1) / 2^m)`` of every coordinate, which random
    search only achieves on average; ask batches whose running total is a power of two to get
    that balance. Int and Choice coordinates are rounded by :meth:`Space.decode` as in random
    search. ``tell`` records scores without changing what is proposed.

    Args:
      scramble: apply Owen's nested uniform scrambling seeded by the ``init`` key (each point
        uniform in the cube, balance kept). ``False`` gives the plain sequence, identical to
        ``scipy.stats.qmc.Sobol(d, scramble=False)``, whose first point is the corner of all
        lower bounds.

    Returns:
      A :class:`~jaxtune.strategies.Strategy`.

    Raises:
      ValueError: at ``init``, a space with more than ``MAX_SOBOL_DIM`` searchable parameters.

    Example:
      >>> import jax
      >>> from jaxtune.space import Float, Space
      >>> strategy = sobol_search()
      >>> state = strategy.init(Space({"lr": Float(1e-4, 1e-1, log=True)}), jax.random.PRNGKey(0))
      >>> configs, state = strategy.ask(state, 4)
      >>> len(configs), state.index
      (4, 4)
    """
    if not isinstance(scramble, bool):
        raise TypeError(f"scramble = {scramble!r} must be a bool.")

    def init(space: Space, key: jax.Array) -> SobolState:
        if space.dim > MAX_SOBOL_DIM:
            raise ValueError(
                f"sobol_search supports up to {MAX_SOBOL_DIM} searchable parameters, the space "
                f"has {space.dim}; use random_search() for larger spaces."
            )
        return SobolState(space, key, 0, empty_history(space))

    def ask(state: SobolState, num: int) -> tuple[list[Config], SobolState]:
        num = check_num(num)
        space = state.space
        if space.dim == 0:  # only Fixed parameters: every config is the same
            return space.decode(np.zeros((num, 0))), state._replace(index=state.index + num)
        seeds = scramble_seeds(state.key, space.dim) if scramble else None
        u = sobol_points(state.index, num, space.dim, seeds)
        return space.decode(u), state._replace(index=state.index + num)

    def tell(state: SobolState, configs: list[Config], scores: Any) -> SobolState:
        return state._replace(history=append_history(state.history, state.space, configs, scores))

    return Strategy(init, ask, tell)
