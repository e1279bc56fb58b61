"""Search strategies: pure ``init`` / ``ask`` / ``tell`` functions over explicit state.

See :mod:`jaxtune.strategies.base` for the interface. Scores are losses to minimize; NaN and
infinities count as ``+inf``.
"""

from typing import Any

from jaxtune.strategies.base import History, Strategy, deprecated_driver, sanitize_scores
from jaxtune.strategies.bayes import BayesState, bayes_search
from jaxtune.strategies.grid import GridState, grid_search
from jaxtune.strategies.random import RandomState, random_search
from jaxtune.strategies.sobol import SobolState, sobol_search
from jaxtune.strategies.warm import WarmState, warm_started

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
    "WarmState",
    "warm_started",
]

# Schedulers acting between segments (contracts.Scheduler), after the strategies they draw from.
from jaxtune.strategies.halving import HalvingState, hyperband, successive_halving
from jaxtune.strategies.pb2 import PB2State, pb2
from jaxtune.strategies.pbt import PBTState, pbt
from jaxtune.strategies.stopping import StoppingState, median_stopping, patience_stopping

__all__ += ["HalvingState", "PB2State", "PBTState", "StoppingState", "hyperband",
            "median_stopping", "patience_stopping", "pb2", "pbt", "successive_halving"]

#: Drivers that lived here and moved to :mod:`jaxtune.scheduled` (see :func:`__getattr__`).
_MOVED_DRIVERS = ("lineage", "replay_pbt_member", "run_halving", "run_pbt")


def __getattr__(name: str) -> Any:
    """The drivers' old paths (deprecated): ``jaxtune.strategies.run_halving`` and
    ``run_pbt``, ``replay_pbt_member``, ``lineage`` are those of :mod:`jaxtune.scheduled`,
    loaded on first use (PEP 562; an import here would be a circle: the drivers import the
    schedulers of this package)."""
    if name in _MOVED_DRIVERS:
        return deprecated_driver(__name__, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
