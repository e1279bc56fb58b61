"""Peers and the result cache of ``benchmarks/strategies.py`` part 1.

* :func:`ackley`: Ackley's function (VLSE's definition, ``a=20, b=0.2, c=2 pi``, minimum 0 at
  the origin).
* :func:`skopt_strategy`: scikit-optimize's ``Optimizer`` (a GP with its defaults) as a jaxtune
  ask/tell :class:`~jaxtune.strategies.Strategy`; a batch is ``ask(n_points=num)`` (its
  constant-liar strategy, ``cl_min``), one config ``ask()``.
* :func:`optuna_gp_strategy`: Optuna's ``GPSampler`` through
  :func:`jaxtune.integrations.optuna.optuna_strategy` (a batch is ``num`` trials asked in a row,
  then told; ``GPSampler`` proposes each with the earlier ones as running trials, qLogEI).
* :class:`RegretCache`: the best-so-far curve of every (tool, version, function, batch, seed,
  evaluations) run in one JSON file, so a rerun only computes what is missing. The version of
  jaxtune's own tools is a hash of ``jaxtune/strategies/*.py`` and ``jaxtune/space*.py``, so
  changing Bayesian optimization's code recomputes its rows (and only them); a peer's version is
  its package's version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

import jaxtune as jt
from jaxtune.strategies import Strategy

JAXTUNE_TOOLS = ("random", "sobol", "bayes")
PEERS = ("skopt", "optuna_gp")  # the peers Bayesian optimization is compared against


def ackley(x: np.ndarray) -> np.ndarray:
    """Ackley's function on ``[n, dim]`` points; returns ``[n]`` (0 at the origin).

    ``-20 exp(-0.2 sqrt(mean(x^2))) - exp(mean(cos(2 pi x))) + 20 + e``.
    """
    x = np.asarray(x, np.float64)
    radius = np.sqrt(np.mean(x**2, axis=-1))
    waves = np.mean(np.cos(2 * np.pi * x), axis=-1)
    return -20.0 * np.exp(-0.2 * radius) - np.exp(waves) + 20.0 + np.e


# --------------------------------------------------------------------------------------------
# scikit-optimize


class SkoptState(NamedTuple):
    """A mutable ``skopt.Optimizer`` and the parameter names in its dimension order."""

    optimizer: Any
    names: tuple[str, ...]


def skopt_strategy() -> Strategy:
    """scikit-optimize's ``Optimizer`` (GP, all its defaults) as an ask/tell strategy.

    Every parameter must be a :class:`jaxtune.Float` without a log scale (the test functions'
    boxes); ``init`` seeds the optimizer with a seed drawn from the key, as
    :func:`~jaxtune.integrations.optuna.optuna_strategy` does. Like that adapter, the state is
    mutable (ask, then tell those configs, in order).
    """

    def init(space: jt.Space, key: jax.Array) -> SkoptState:
        bounds = []
        for name, param in space.items():
            if not isinstance(param, jt.Float) or param.log:
                raise TypeError(f"skopt_strategy: parameter {name!r} must be a linear jt.Float "
                                f"(got {param!r})")
            bounds.append((float(param.low), float(param.high)))
        import skopt

        seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
        return SkoptState(skopt.Optimizer(bounds, base_estimator="GP", random_state=seed),
                          tuple(space))

    def ask(state: SkoptState, num: int) -> tuple[list[dict[str, float]], SkoptState]:
        points = [state.optimizer.ask()] if num == 1 else state.optimizer.ask(n_points=num)
        return [dict(zip(state.names, map(float, p), strict=True)) for p in points], state

    def tell(state: SkoptState, configs: list[dict[str, float]], losses: Any) -> SkoptState:
        points = [[c[n] for n in state.names] for c in configs]
        state.optimizer.tell(points, [float(v) for v in np.asarray(losses)])
        return state

    return Strategy(init, ask, tell)


def optuna_gp_strategy() -> Strategy:
    """Optuna's ``GPSampler`` (its defaults, seeded from the key) through ``optuna_strategy``."""
    import optuna

    from jaxtune.integrations.optuna import optuna_strategy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna_strategy(lambda seed: optuna.samplers.GPSampler(seed=seed))


def peer_factories() -> dict[str, Any]:
    """The installed peers: name -> strategy factory (a missing package leaves its peer out)."""
    chosen: dict[str, Any] = {}
    try:
        import skopt  # noqa: F401
    except ImportError:
        print("scikit-optimize is not installed: skopt is left out", flush=True)
    else:
        chosen["skopt"] = skopt_strategy
    try:
        import optuna  # noqa: F401
        import torch  # noqa: F401  (GPSampler needs it)
    except ImportError:
        print("optuna or torch is not installed: optuna_gp is left out", flush=True)
    else:
        chosen["optuna_gp"] = optuna_gp_strategy
    return chosen


# --------------------------------------------------------------------------------------------
# The cache


def tool_version(tool: str) -> str:
    """What a cached run of ``tool`` depends on: a source hash or a package version."""
    if tool in JAXTUNE_TOOLS:
        root = Path(jt.__file__).resolve().parent
        files = sorted((root / "strategies").glob("*.py")) + sorted(root.glob("space*.py"))
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return "jaxtune-" + digest.hexdigest()[:12]
    from importlib.metadata import PackageNotFoundError, version

    package = {"skopt": "scikit-optimize", "optuna_gp": "optuna", "tpe": "optuna"}[tool]
    try:
        return f"{package}-{version(package)}"
    except PackageNotFoundError:
        return f"{package}-missing"


class RegretCache:
    """Best-so-far curves in a JSON file: ``{key: {"best": [num_evals], "wall_time_s": s}}``.

    Writes go through a lock file and re-read the file first, so several processes can fill
    one cache at once; a missing or empty file is an empty cache.

    Args:
      path: the JSON file (created on the first :meth:`put`); ``None``: nothing is kept.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self._entries: dict[str, Any] = self._read()
        self._versions: dict[str, str] = {}

    def _read(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists() or self.path.stat().st_size == 0:
            return {}
        return json.loads(self.path.read_text())

    def key(self, tool: str, function: str, batch: int, seed: int, num_evals: int) -> str:
        if tool not in self._versions:
            self._versions[tool] = tool_version(tool)
        return f"{tool}|{self._versions[tool]}|{function}|b{batch}|s{seed}|n{num_evals}"

    def get(self, key: str) -> dict[str, Any] | None:
        if key not in self._entries:  # another process may have added it since
            self._entries = self._read()
        return self._entries.get(key)

    def put(self, key: str, best: np.ndarray, wall_time_s: float) -> None:
        entry = {"best": [float(v) for v in best], "wall_time_s": round(wall_time_s, 2)}
        self._entries[key] = entry
        if self.path is None:
            return
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            entries = self._read()
            entries[key] = entry
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(entries, indent=0, sort_keys=True))
            temporary.replace(self.path)
            self._entries = entries
