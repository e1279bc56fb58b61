"""Conditional spaces: parameters that exist only under a choice (``when=``)."""

from __future__ import annotations

import itertools
import json

import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune.space import INACTIVE_COORDINATE, Choice, Fixed, Float, Int, Space
from jaxtune.strategies import (
    bayes_search,
    grid_search,
    pbt,
    random_search,
    sobol_search,
    successive_halving,
)

KEY = jax.random.PRNGKey(0)
FAST = dict(num_restarts=64, num_ascent=8, acquisition_steps=20, fit_steps=100, fit_restarts=2)

MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")
SPACE = Space({
    "optimizer": Choice(["sgd", "momentum", "nesterov", "adam"]),
    "momentum": Float(0.5, 0.99, when={"optimizer": list(MOMENTUM_OPTIMIZERS)}),
    "learning_rate": Float(1e-3, 1e-1, log=True),
    "depth": Int(1, 3),
    "width_2": Choice([8, 16], when={"depth": {">=": 2}}),
    "width_3": Choice([8, 16], when={"depth": {">=": 3}}),
})


def active(config):
    """The names a config of SPACE must hold, written out by hand."""
    names = {"optimizer", "learning_rate", "depth"}
    if config["optimizer"] in MOMENTUM_OPTIMIZERS:
        names.add("momentum")
    names |= {f"width_{i}" for i in range(2, config["depth"] + 1)}
    return names


def test_grid_matches_a_hand_enumeration():
    grid = SPACE.grid(num_float_points=3)
    expected = []
    for optimizer, lr, depth in itertools.product(
            ["sgd", "momentum", "nesterov", "adam"], [1e-3, 1e-2, 1e-1], [1, 2, 3]):
        momenta = [0.5, 0.745, 0.99] if optimizer in MOMENTUM_OPTIMIZERS else [None]
        widths = list(itertools.product([8, 16], repeat=depth - 1))
        for momentum, width in itertools.product(momenta, widths):
            config = {"optimizer": optimizer, "learning_rate": lr, "depth": depth,
                      **{f"width_{i + 2}": w for i, w in enumerate(width)}}
            if momentum is not None:
                config["momentum"] = momentum
            expected.append(config)
    # 3 learning rates x (1 + 3 + 3 + 1 optimizer cells) x (1 + 2 + 4 depth cells).
    assert len(grid) == len(expected) == 3 * 8 * 7
    key = lambda c: json.dumps({k: round(v, 9) if isinstance(v, float) else v  # noqa: E731
                                for k, v in c.items()}, sort_keys=True)
    assert len({key(c) for c in grid}) == len(grid)  # no duplicates
    assert sorted(map(key, grid)) == sorted(map(key, expected))
    for config in grid:
        SPACE.validate_config(config)
    # Through the strategy: the same cells, shuffled or not.
    state = grid_search(3, shuffle=True).init(SPACE, KEY)
    asked, _ = grid_search(3, shuffle=True).ask(state, 1000)
    assert sorted(map(key, asked)) == sorted(map(key, grid))


def test_unconditional_grid_order_is_unchanged():
    space = Space({"a": Choice([1, 2]), "b": Int(0, 2), "c": Fixed("x")})
    assert space.grid(3) == [{"a": a, "b": b, "c": "x"} for a in (1, 2) for b in (0, 1, 2)]


@pytest.mark.parametrize("strategy", [random_search(), sobol_search()], ids=["random", "sobol"])
def test_sampled_configs_hold_exactly_their_active_names(strategy):
    configs, _ = strategy.ask(strategy.init(SPACE, KEY), 256)
    for config in configs:
        assert set(config) == active(config)
        SPACE.validate_config(config)
    # Parents first: every optimizer and depth is drawn, so children appear and vanish.
    assert {c["optimizer"] for c in configs} == {"sgd", "momentum", "nesterov", "adam"}
    assert 0 < sum("momentum" in c for c in configs) < len(configs)
    assert 0 < sum("width_3" in c for c in configs) < sum("width_2" in c for c in configs)


def test_validate_config_names_the_inactive_or_missing_name():
    config = {"optimizer": "adam", "learning_rate": 0.01, "depth": 2, "width_2": 8}
    SPACE.validate_config(config)
    with pytest.raises(ValueError, match=r"config\['momentum'\] is given but inactive.*adam"):
        SPACE.validate_config({**config, "momentum": 0.9})
    with pytest.raises(ValueError, match=r"missing \['momentum'\]"):
        SPACE.validate_config({**config, "optimizer": "nesterov"})
    with pytest.raises(ValueError, match=r"missing \['width_3'\]"):
        SPACE.validate_config({**config, "depth": 3})
    with pytest.raises(ValueError, match=r"config\['width_2'\] is given but inactive"):
        SPACE.validate_config({**config, "depth": 1})
    assert SPACE.static_key(config) == (("depth", 2), ("optimizer", "adam"), ("width_2", 8))


def test_encoding_ignores_inactive_dimensions():
    a = {"optimizer": "sgd", "learning_rate": 0.01, "depth": 1}
    b = {"optimizer": "adam", "learning_rate": 0.01, "depth": 1}
    u = SPACE.encode([a, b])
    columns = {name: i for i, name in enumerate(SPACE.searchable_names)}
    for name in ("momentum", "width_2", "width_3"):
        assert np.all(u[:, columns[name]] == INACTIVE_COORDINATE)
    # Only the optimizer's coordinate differs.
    assert np.flatnonzero(u[0] != u[1]).tolist() == [columns["optimizer"]]
    # Decoding drops what is inactive under the point's own values.
    for decoded, config in zip(SPACE.decode(u), [a, b], strict=True):
        assert decoded == {**config, "learning_rate": pytest.approx(0.01, rel=1e-12)}


def test_bayes_proposals_are_valid_and_new():
    # Two coordinates (as tests/test_bayes.py's spaces: the GP programs are shared). Under
    # "sgd" the config has one value only: every point of the cube's sgd half is that one
    # config, which the acquisition (working in the whole cube) cannot tell apart.
    space = Space({"optimizer": Choice(["sgd", "momentum"]),
                   "momentum": Float(0.0, 1.0, when={"optimizer": "momentum"})})
    strategy = bayes_search(num_initial=4, **FAST)
    state = strategy.init(space, KEY)
    configs, state = strategy.ask(state, 8)
    loss = lambda c: (c.get("momentum", 0.0) - 0.3) ** 2  # noqa: E731
    state = strategy.tell(state, configs, [loss(c) for c in configs])
    proposed, state = strategy.ask(state, 4)
    keys = [json.dumps(c, sort_keys=True) for c in configs + proposed]
    assert len(keys) == len(set(keys)) == 12  # the design's repeats replaced, none re-proposed
    assert sum(c["optimizer"] == "sgd" for c in configs + proposed) == 1
    for config in configs + proposed:
        space.validate_config(config)
        assert ("momentum" in config) == (config["optimizer"] == "momentum")
    # The model's proposals exploit the history: near the best momentum.
    assert min(abs(c["momentum"] - 0.3) for c in proposed if "momentum" in c) < 0.1


def test_pbt_explore_never_creates_an_inactive_name():
    space = Space({"optimizer": Choice(["sgd", "momentum"]),
                   "momentum": Float(0.5, 0.99, when={"optimizer": "momentum"}),
                   "learning_rate": Float(1e-3, 1e-1, log=True)})
    scheduler = pbt(space, fraction=0.5, resample_probability=0.5, metric="valid_loss",
                    key=KEY)
    configs = [{"optimizer": "sgd", "learning_rate": 0.01},
               {"optimizer": "sgd", "learning_rate": 0.02},
               {"optimizer": "momentum", "momentum": 0.9, "learning_rate": 0.01},
               {"optimizer": "momentum", "momentum": 0.8, "learning_rate": 0.02}]
    view = jt.SlotView(segment=1, step=np.full(4, 10), alive=np.ones(4, bool),
                       finished=np.zeros(4, bool),
                       metrics={"valid_loss": np.array([1.0, 0.5, 2.0, 0.1])},
                       configs=configs, member_ids=list(range(4)), num_steps=100,
                       steps_per_segment=10)
    state = scheduler.init(view)
    for segment in range(1, 6):
        decision, state = scheduler.update(state, view._replace(segment=segment))
        for slot, config in decision.explore.items():
            donor = configs[decision.exploit[slot]]
            assert set(config) == set(donor)  # the donor's static group, its names
            space.validate_config(config)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_halving_refills_with_the_static_group_names(optimizer):
    space = Space({"optimizer": Choice(["sgd", "momentum"]),
                   "momentum": Float(0.5, 0.99, when={"optimizer": "momentum"}),
                   "learning_rate": Float(1e-3, 1e-1, log=True)})
    configs = [c for c in space.sample(KEY, 64) if c["optimizer"] == optimizer][:3]
    scheduler = successive_halving(space, random_search(), min_steps=1, eta=3,
                                   metric="valid_loss", key=KEY)
    view = jt.SlotView(segment=1, step=np.full(3, 1), alive=np.ones(3, bool),
                       finished=np.zeros(3, bool),
                       metrics={"valid_loss": np.array([1.0, 2.0, 3.0])}, configs=configs,
                       member_ids=[0, 1, 2], num_steps=9, steps_per_segment=1)
    state = scheduler.init(view._replace(step=np.zeros(3, int)))
    decision, state = scheduler.update(state, view)
    assert decision.refill  # members that were not promoted are replaced
    for config in decision.refill.values():
        assert config["optimizer"] == optimizer
        assert set(config) == set(configs[0])
        space.validate_config(config)


def test_space_file_round_trip(tmp_path):
    for suffix, dump in ((".json", json.dumps), (".yaml", None)):
        path = tmp_path / f"space{suffix}"
        if dump is None:
            yaml = pytest.importorskip("yaml")
            path.write_text(yaml.safe_dump(SPACE.to_dict()))
        else:
            path.write_text(dump(SPACE.to_dict()))
        assert Space.from_file(path) == SPACE
    text = """
optimizer: {type: choice, values: [sgd, momentum]}
momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: momentum}}
depth: {type: int, low: 1, high: 3}
width_2: {type: choice, values: [8, 16], when: {depth: {">=": 2}}}
label: {type: fixed, value: [1, 2], when: {depth: [3]}}
"""
    pytest.importorskip("yaml")
    path = tmp_path / "hand.yaml"
    path.write_text(text)
    space = Space.from_file(path)
    assert space.conditional_names == ("label", "momentum", "width_2")
    assert space.active_names({"optimizer": "sgd", "depth": 3}) == (
        "depth", "label", "optimizer", "width_2")
    assert Space.from_dict(space.to_dict()) == space
    assert "when={'optimizer': ['momentum']}" in repr(space["momentum"])
    assert "when" not in repr(space["depth"])


@pytest.mark.parametrize("spec, message", [
    ({"a": {"type": "float", "low": 0, "high": 1, "when": {"b": [1]}}},
     "names 'b', which is not in the space"),
    ({"a": {"type": "float", "low": 0, "high": 1}, "b": {"type": "float", "low": 0,
      "high": 1, "when": {"a": {">=": 0.5}}}}, "parent 'a' is a Float"),
    ({"a": {"type": "choice", "values": [1, 2], "static": False},
      "b": {"type": "float", "low": 0, "high": 1, "when": {"a": [1]}}},
     "parent 'a' is dynamic"),
    ({"a": {"type": "choice", "values": [1, 2], "when": {"b": [1]}},
      "b": {"type": "choice", "values": [1, 2], "when": {"a": [1]}}}, "form a cycle"),
    ({"a": {"type": "choice", "values": ["x", "y"]},
      "b": {"type": "float", "low": 0, "high": 1, "when": {"a": ["z"]}}},
     "a = 'z', which 'a' never takes"),
    ({"a": {"type": "int", "low": 1, "high": 3},
      "b": {"type": "float", "low": 0, "high": 1, "when": {"a": {"~": 1}}}},
     "unknown operator '~'"),
    ({"a": {"type": "float", "low": 0, "high": 1, "when": {}}}, "non-empty mapping"),
])
def test_bad_conditions_are_refused_naming_the_parameter(tmp_path, spec, message):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message) as error:
        Space.from_file(path)
    assert str(path) in str(error.value)


def test_tune_over_a_conditional_space(wine):
    split, task = wine
    # The static group of sgd is tests/test_warm_start.py's (one program when they share a
    # process): same task, names and shapes.
    space = Space({"optimizer": Choice(["sgd", "momentum"]),
                   "momentum": Float(0.5, 0.9, when={"optimizer": "momentum"}),
                   "learning_rate": Choice([0.01, 0.02], static=False),
                   "depth": Fixed(1), "width": Fixed(4)})
    results = jt.tune(task, split, space, grid_search(num_float_points=1), num_configs=8,
                      num_steps=2, batch_size=8, steps_per_segment=2)
    assert len(results) == 2 + 2  # sgd x 2 learning rates, momentum (one grid point) x 2
    assert results.metadata["num_static_groups"] == 2
    for row in results:
        assert ("momentum" in row.config) == (row.config["optimizer"] == "momentum")
        assert row.status == "completed"
    assert {r.config.get("momentum") for r in results} == {None, 0.7}


@pytest.fixture(scope="module")
def wine():
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    return split, jt.classification_task("mlp", num_classes=3, input_shape=(13,))
