"""Grid search: every config of ``Space.grid``, in order or shuffled."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune.space import Space
from jaxtune.strategies.base import Config, Strategy, check_num, sanitize_scores

__all__ = ["GridState", "grid_search"]


class GridState(NamedTuple):
    """State of :func:`grid_search`.

    Attributes:
      space: the search space.
      configs: every config of the grid, in the order they are asked.
      position: how many configs have been asked.
      key: the PRNG key given to ``init``.
    """

    space: Space
    configs: tuple[Config, ...]
    position: int
    key: jax.Array


def grid_search(num_float_points: int = 5, shuffle: bool = False) -> Strategy:
    """Grid search over the cartesian product of the space's axes.

    ``ask`` hands out the grid (see :meth:`jaxtune.space.Space.grid`) in order, ``num`` configs
    at a time; the last batch may be smaller, and once the grid is exhausted ``ask`` returns an
    empty list. Scores are checked but not used.

    Args:
      num_float_points: points per Float/Int axis (log-spaced for log parameters).
      shuffle: visit the grid in a random order drawn from the ``init`` key, so that a partial
        sweep covers the whole grid evenly.

    Returns:
      A :class:`~jaxtune.strategies.Strategy`.

    Example:
      >>> import jax
      >>> from jaxtune.space import Choice, Space
      >>> strategy = grid_search()
      >>> state = strategy.init(Space({"width": Choice([64, 128, 256])}), jax.random.PRNGKey(0))
      >>> configs, state = strategy.ask(state, 2)
      >>> configs
      [{'width': 64}, {'width': 128}]
    """
    if (
        isinstance(num_float_points, bool)
        or not isinstance(num_float_points, int | np.integer)
        or num_float_points < 1
    ):
        raise ValueError(f"num_float_points = {num_float_points!r} must be an int >= 1.")
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle = {shuffle!r} must be a bool.")

    def init(space: Space, key: jax.Array) -> GridState:
        configs = space.grid(int(num_float_points))
        if shuffle:
            order = np.asarray(jax.random.permutation(key, len(configs)))
            configs = [configs[i] for i in order]
        return GridState(space, tuple(configs), 0, key)

    def ask(state: GridState, num: int) -> tuple[list[Config], GridState]:
        num = check_num(num)
        batch = state.configs[state.position : state.position + num]
        # Copies: a caller editing a returned dict must not change the state.
        return [dict(c) for c in batch], state._replace(position=state.position + len(batch))

    def tell(state: GridState, configs: list[Config], scores: Any) -> GridState:
        sanitize_scores(scores, len(configs))
        return state

    return Strategy(init, ask, tell)
