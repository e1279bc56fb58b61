"""benchmarks/_peers.py: Ackley's function, the regret cache, the skopt adapter's check."""

import importlib.util
import math
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxtune as jt

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_peers.py"
_spec = importlib.util.spec_from_file_location("benchmarks_peers", _PATH)
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)


def test_ackley_minimum_and_known_values():
    np.testing.assert_allclose(peers.ackley(np.zeros((1, 5))), [0.0], atol=1e-12)
    # At (1, ..., 1): cos(2 pi) = 1, so the value is 20 (1 - exp(-0.2)) in every dimension.
    ones = peers.ackley(np.ones((3, 5)))
    np.testing.assert_allclose(ones, 20 * (1 - math.exp(-0.2)), rtol=1e-12)
    np.testing.assert_allclose(ones, 3.6253849384403627, rtol=1e-12)
    # At (0.5, 0.5): radius 0.5, cos(pi) = -1.
    half = 20 - 20 * math.exp(-0.1) - math.exp(-1) + math.e
    np.testing.assert_allclose(peers.ackley(np.full((1, 2), 0.5)), [half], rtol=1e-12)
    # The minimum is the origin: random points of the benchmark's box are all above it.
    box = np.random.default_rng(0).uniform(-32.768, 32.768, (1000, 5))
    assert np.all(peers.ackley(box) > 0.0)


def test_regret_cache_round_trip_and_merge(tmp_path):
    path = tmp_path / "cache.json"
    first, second = peers.RegretCache(path), peers.RegretCache(path)
    key = first.key("bayes", "branin", 8, 0, 100)
    assert key != first.key("bayes", "branin", 1, 0, 100) != first.key("bayes", "branin", 8, 1, 100)
    assert key.split("|")[1].startswith("jaxtune-")  # a hash of jaxtune's strategy sources
    first.put(key, np.array([3.0, 2.0, 2.0]), 1.5)
    other = second.key("random", "branin", 8, 0, 100)
    second.put(other, np.array([1.0]), 0.5)  # written by another process: both are kept
    reread = peers.RegretCache(path)
    assert reread.get(key) == {"best": [3.0, 2.0, 2.0], "wall_time_s": 1.5}
    assert reread.get(other) == {"best": [1.0], "wall_time_s": 0.5}
    assert peers.RegretCache(None).get(key) is None


def test_skopt_strategy_refuses_a_log_scale_before_importing_skopt():
    space = jt.Space({"lr": jt.Float(1e-4, 1e-1, log=True)})
    with pytest.raises(TypeError, match=r"'lr' must be a linear jt\.Float"):
        peers.skopt_strategy().init(space, jax.random.PRNGKey(0))
