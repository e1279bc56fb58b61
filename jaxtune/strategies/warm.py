"""Warm starts: a strategy told earlier results before it proposes anything.

:func:`warm_started` wraps any strategy whose ``tell`` accepts configs it did not propose
(every searcher of :mod:`jaxtune.strategies`):

* ``init`` tells the inner strategy the history (configs and their losses), so a model-based
  strategy conditions on it before its first proposal (Bayesian optimization fits its GP on
  it: the history also counts towards its initial design);
* ``ask`` skips configs already evaluated (the history's, and this run's once told) and asks
  the inner strategy again until it has ``num`` new ones: grid search continues with the
  cells not yet tried, random and Sobol search draw on past the repeats. It stops early (fewer
  configs, or none) when the inner strategy runs out, or when
  :data:`MAX_REPEATED_ASKS` asks in a row bring nothing new (a small discrete space already
  covered);
* ``reuse_best`` hands out the history's best configs first, to be trained again (the initial
  population of successive halving or PBT seeded from an earlier sweep).

Configs are compared exactly (:func:`jaxtune.member_result.config_key`), so a Float value
counts as evaluated only if it is the very same number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune.contracts import Config, Strategy
from jaxtune.member_result import config_key
from jaxtune.space import Space
from jaxtune.strategies.base import check_int_at_least, check_num, sanitize_scores

__all__ = ["MAX_REPEATED_ASKS", "WarmState", "warm_started"]

#: Asks in a row that bring only configs already evaluated before ``ask`` gives up.
MAX_REPEATED_ASKS = 16


class WarmState(NamedTuple):
    """State of :func:`warm_started`.

    Attributes:
      inner: the wrapped strategy's state (told the history).
      evaluated: :func:`~jaxtune.member_result.config_key` of every config evaluated so far.
      reused: the history's best configs still to hand out (``reuse_best``), best first.
    """

    inner: Any
    evaluated: frozenset[str]
    reused: tuple[Config, ...]


def warm_started(strategy: Strategy, configs: Sequence[Config], losses: Any, *,
                 reuse_best: int = 0) -> Strategy:
    """``strategy`` warm-started with earlier results (see the module docstring).

    Args:
      strategy: the strategy to warm-start; its ``tell`` must accept configs it did not ask.
      configs: the history's configs (each valid in the space given to ``init``).
      losses: ``[len(configs)]`` their losses (lower is better; NaN and +-inf count as
        ``+inf``), e.g. from :func:`jaxtune.warmstart.history_losses`.
      reuse_best: hand out this many of the history's best configs (finite losses, best
        first) before new ones; ``0``: only new configs.

    Returns:
      A :class:`~jaxtune.strategies.Strategy` whose state is a :class:`WarmState`.

    Raises:
      ValueError: ``losses`` does not match ``configs``, a bad ``reuse_best``; at ``init``, a
        history config outside the space, or a strategy that refuses configs it did not ask.

    Example:
      >>> import jax
      >>> from jaxtune.space import Choice, Space
      >>> from jaxtune.strategies import grid_search
      >>> strategy = warm_started(grid_search(), [{"width": 64}], [0.3])
      >>> state = strategy.init(Space({"width": Choice([64, 128])}), jax.random.PRNGKey(0))
      >>> strategy.ask(state, 2)[0]
      [{'width': 128}]
    """
    configs = [dict(config) for config in configs]
    losses = sanitize_scores(losses, len(configs))
    check_int_at_least("reuse_best", reuse_best, 0)
    ranked = [configs[i] for i in np.argsort(losses, kind="stable") if np.isfinite(losses[i])]
    reused = tuple(ranked[: int(reuse_best)])
    keys = frozenset(config_key(config) for config in configs)

    def init(space: Space, key: jax.Array) -> WarmState:
        for index, config in enumerate(configs):
            try:
                space.validate_config(config)
            except (TypeError, ValueError) as error:
                raise type(error)(f"history[{index}]: {error}") from error
        inner = strategy.init(space, key)
        if configs:
            try:
                inner = strategy.tell(inner, [dict(c) for c in configs], losses.copy())
            except ValueError as error:
                raise ValueError(
                    f"history: the strategy refused earlier results it did not propose ({error});"
                    " warm starts need a strategy whose tell accepts them (grid, random, Sobol "
                    "or Bayesian search)") from error
        return WarmState(inner, keys, reused)

    def ask(state: WarmState, num: int) -> tuple[list[Config], WarmState]:
        num = check_num(num)
        out = [dict(c) for c in state.reused[:num]]
        state = state._replace(reused=state.reused[len(out):])
        inner, evaluated, repeated = state.inner, set(state.evaluated), 0
        while len(out) < num and repeated < MAX_REPEATED_ASKS:
            batch, inner = strategy.ask(inner, num - len(out))
            if not batch:
                break
            fresh = [c for c in batch if config_key(c) not in evaluated]
            evaluated.update(config_key(c) for c in fresh)
            out.extend(fresh)
            repeated = 0 if fresh else repeated + 1
        return out, state._replace(inner=inner, evaluated=frozenset(evaluated))

    def tell(state: WarmState, configs: list[Config], scores: Any) -> WarmState:
        evaluated = state.evaluated | {config_key(c) for c in configs}
        return state._replace(inner=strategy.tell(state.inner, configs, scores),
                              evaluated=evaluated)

    return Strategy(init, ask, tell)
