"""Random search: configs drawn uniformly from the unit cube and decoded by the space."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from jaxtune.space import Space
from jaxtune.strategies.base import (
    Config,
    History,
    Strategy,
    append_history,
    check_num,
    empty_history,
)

__all__ = ["RandomState", "random_search"]


class RandomState(NamedTuple):
    """State of :func:`random_search`.

    Attributes:
      space: the search space.
      key: the PRNG key given to ``init``; batch ``i`` uses ``fold_in(key, num_asked)``.
      num_asked: how many configs have been asked so far.
      history: told configs (encoded, ``[num_told, dim]``) and their scores (``[num_told]``).
    """

    space: Space
    key: jax.Array
    num_asked: int
    history: History


def random_search() -> Strategy:
    """Random search: each config uniform in the unit cube (log-uniform for log parameters).

    Every batch draws from ``jax.random.fold_in(key, num_asked)``, so the configs depend only on
    the ``init`` key and how many were asked before; ``tell`` records the scores in
    ``state.history`` without changing what is proposed.

    Returns:
      A :class:`~jaxtune.strategies.Strategy`.

    Example:
      >>> import jax
      >>> from jaxtune.space import Float, Space
      >>> strategy = random_search()
      >>> state = strategy.init(Space({"lr": Float(1e-4, 1e-1, log=True)}), jax.random.PRNGKey(0))
      >>> configs, state = strategy.ask(state, 4)
      >>> len(configs), state.num_asked
      (4, 4)
    """

    def init(space: Space, key: jax.Array) -> RandomState:
        return RandomState(space, key, 0, empty_history(space))

    def ask(state: RandomState, num: int) -> tuple[list[Config], RandomState]:
        num = check_num(num)
        configs = state.space.sample(jax.random.fold_in(state.key, state.num_asked), num)
        return configs, state._replace(num_asked=state.num_asked + num)

    def tell(state: RandomState, configs: list[Config], scores: Any) -> RandomState:
        history = append_history(state.history, state.space, configs, scores)
        return state._replace(history=history)

    return Strategy(init, ask, tell)
