"""Search strategies: pure ``init`` / ``ask`` / ``tell`` functions over explicit state.

See :mod:`jaxtune.strategies.base` for the interface. Scores are losses to minimize; NaN and
infinities count as ``+inf``.
"""

from jaxtune.strategies.base import History, Strategy, sanitize_scores
from jaxtune.strategies.bayes import BayesState, bayes_search
from jaxtune.strategies.grid import GridState, grid_search
from jaxtune.strategies.random import RandomState, random_search
from jaxtune.strategies.sobol import SobolState, sobol_search

__all__ = [
    "BayesState",
    "GridState",
    "History",
    "RandomState",
    "SobolState",
    "Strategy",
    "bayes_search",
    "grid_search",
    "random_search",
    "sanitize_scores",
    "sobol_search",
]

# Schedulers acting between segments (engine.Scheduler), after the strategies they draw from.
from jaxtune.strategies.halving import (
    HalvingState,
    hyperband,
    run_halving,
    successive_halving,
)
from jaxtune.strategies.pbt import PBTState, pbt, replay_pbt_member, run_pbt

__all__ += [
    "HalvingState",
    "PBTState",
    "hyperband",
    "pbt",
    "replay_pbt_member",
    "run_halving",
    "run_pbt",
    "successive_halving",
]
