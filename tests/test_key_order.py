"""The order of keys in a space (a dict, a JSON or YAML file) never changes what is drawn.

A checkpoint stores the space with sorted keys; a space file may list them in any order. Every
strategy must give the same configs for the same seed from either (issue 11, item 4).
"""

from __future__ import annotations

import importlib.util
import itertools
import json

import jax
import numpy as np
import pytest

from jaxtune.space import Choice, Fixed, Float, Int, Space
from jaxtune.strategies import grid_search, random_search
from jaxtune.strategies.bayes import bayes_search
from jaxtune.strategies.sobol import sobol_search

#: Unsorted on purpose: sorted, the searchable names are learning_rate, momentum, weight_decay.
SPEC = {
    "width": {"type": "choice", "values": [8, 16, 32]},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "optimizer": "adamw",
    "momentum": {"type": "float", "low": 0.5, "high": 0.99},
}


def permutations() -> list[dict]:
    """The spec in 6 key orders (its own, sorted, reversed, ...)."""
    names = list(SPEC)
    orders = [names, sorted(names), sorted(names, reverse=True)]
    orders += [list(p) for p in itertools.islice(itertools.permutations(names), 1, 4)]
    return [{name: SPEC[name] for name in order} for order in orders]


def spaces() -> list[Space]:
    return [Space.from_dict(spec) for spec in permutations()]


def test_key_order_gives_one_space():
    first, *others = spaces()
    for space in others:
        assert space == first and hash(space) == hash(first)
        assert space.names == tuple(sorted(SPEC))
        assert space.searchable_names == first.searchable_names
        assert space.to_dict() == first.to_dict()


def test_files_in_any_key_order_sample_the_same(tmp_path):
    configs = []
    for i, spec in enumerate(permutations()):
        path = tmp_path / f"space{i}.json"
        path.write_text(json.dumps(spec))  # the file keeps this key order
        space = Space.from_file(path)
        configs.append(space.sample(jax.random.PRNGKey(3), 6))
        # Configs list their names in the canonical order too.
        assert all(list(config) == sorted(SPEC) for config in configs[-1])
    assert all(c == configs[0] for c in configs)
    assert len({c["learning_rate"] for c in configs[0]}) == 6


def _ask_rounds(strategy, space, rounds=2, num=4):
    """The configs a strategy proposes over ``rounds`` ask/tell rounds (scores from the
    configs themselves, so every order sees the same feedback)."""
    state = strategy.init(space, jax.random.PRNGKey(7))
    asked = []
    for _ in range(rounds):
        configs, state = strategy.ask(state, num)
        scores = np.array([c["learning_rate"] * 10 + c["momentum"] for c in configs])
        state = strategy.tell(state, configs, scores)
        asked.append(configs)
    return asked


STRATEGIES = {
    "random": random_search,
    "sobol": sobol_search,
    "grid": lambda: grid_search(num_float_points=2),
    "grid-shuffled": lambda: grid_search(num_float_points=2, shuffle=True),
    "bayes": lambda: bayes_search(num_initial=4, num_restarts=32, fit_steps=20),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_ignores_key_order(name):
    reference, *others = [_ask_rounds(STRATEGIES[name](), space) for space in spaces()[:3]]
    for asked in others:
        assert asked == reference, name
    # Not trivially equal: distinct configs.
    flat = [json.dumps(c, sort_keys=True) for configs in reference for c in configs]
    assert len(set(flat)) == len(flat)


@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="needs optuna")
def test_optuna_sampler_ignores_key_order():
    import optuna

    from jaxtune.integrations.optuna import optuna_strategy

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def strategy():
        return optuna_strategy(lambda seed: optuna.samplers.TPESampler(seed=seed))

    reference, *others = [_ask_rounds(strategy(), space) for space in spaces()[:3]]
    for asked in others:
        assert asked == reference


def test_pbt_resampling_walks_the_canonical_order():
    # PBT draws one uniform per dynamic name, in dynamic_names order: canonical.
    for space in spaces():
        assert space.dynamic_names == ("learning_rate", "momentum", "weight_decay")


def test_direct_spaces_in_any_order_are_equal():
    a = Space({"b": Float(0, 1), "a": Int(1, 5), "c": Choice(["x", "y"]), "d": Fixed(1)})
    b = Space({"d": Fixed(1), "c": Choice(["x", "y"]), "a": Int(1, 5), "b": Float(0, 1)})
    assert a == b
    assert a.grid(3) == b.grid(3)
    u = np.random.default_rng(0).uniform(size=(5, a.dim))
    assert a.decode(u) == b.decode(u)
