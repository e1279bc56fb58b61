"""Tests for jaxtune.strategies: the ask/tell contract of grid and random search."""

import chex
import jax
import numpy as np
import pytest

from jaxtune.space import Choice, Fixed, Float, Int, Space
from jaxtune.strategies import (
    History,
    Strategy,
    grid_search,
    random_search,
    sanitize_scores,
)

KEY = jax.random.PRNGKey(0)


def make_space() -> Space:
    return Space(
        {
            "learning_rate": Float(1e-4, 1e-1, log=True),
            "depth": Int(1, 2),
            "width": Choice([64, 128]),
            "optimizer": Fixed("adam"),
        }
    )


# ----------------------------------------------------------------------------------------------
# sanitize_scores


def test_sanitize_scores_maps_non_finite_to_plus_inf():
    raw = np.array([0.5, np.nan, np.inf, -np.inf, -2.0], np.float32)
    scores = sanitize_scores(raw)
    assert scores.dtype == np.float64
    chex.assert_trees_all_close(scores, np.array([0.5, np.inf, np.inf, np.inf, -2.0]), atol=1e-7)
    assert np.isnan(raw[1])  # the input is not changed
    assert int(np.argmin(sanitize_scores([np.nan, 3.0, np.inf]))) == 1
    chex.assert_shape(sanitize_scores([]), (0,))


def test_sanitize_scores_checks_shape_and_length():
    with pytest.raises(ValueError, match="1-D"):
        sanitize_scores(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="3 scores for 2 configs"):
        sanitize_scores([1.0, 2.0, 3.0], num_configs=2)


# ----------------------------------------------------------------------------------------------
# Grid search


def test_grid_search_is_a_strategy():
    strategy = grid_search()
    assert isinstance(strategy, Strategy)
    assert isinstance(random_search(), Strategy)


def test_grid_search_hands_out_the_grid_then_exhausts():
    space = make_space()
    strategy = grid_search(num_float_points=3)
    state = strategy.init(space, KEY)
    expected = space.grid(num_float_points=3)
    assert len(expected) == 3 * 2 * 2
    asked = []
    for size in (5, 5, 5):
        configs, state = strategy.ask(state, size)
        asked.append(configs)
        state = strategy.tell(state, configs, np.arange(len(configs), dtype=np.float64))
    assert [len(c) for c in asked] == [5, 5, 2]
    assert [c for batch in asked for c in batch] == expected
    configs, state = strategy.ask(state, 4)
    assert configs == []
    assert state.position == 12
    assert strategy.tell(state, [], np.zeros(0)) == state


def test_grid_search_is_pure():
    strategy = grid_search(num_float_points=2)
    state = strategy.init(make_space(), KEY)
    first, next_state = strategy.ask(state, 3)
    again, _ = strategy.ask(state, 3)
    assert first == again
    assert state.position == 0 and next_state.position == 3
    first[0]["width"] = 999  # editing a returned config must not leak into the state
    assert strategy.ask(state, 3)[0] == again


def test_grid_search_shuffle():
    space = make_space()
    strategy = grid_search(num_float_points=3, shuffle=True)
    configs, _ = strategy.ask(strategy.init(space, KEY), 100)
    grid = space.grid(3)
    assert configs != grid
    assert sorted(map(repr, configs)) == sorted(map(repr, grid))  # a permutation
    again, _ = strategy.ask(strategy.init(space, KEY), 100)
    assert again == configs
    other, _ = strategy.ask(strategy.init(space, jax.random.PRNGKey(1)), 100)
    assert other != configs


def test_grid_search_tell_checks_lengths():
    strategy = grid_search()
    state = strategy.init(make_space(), KEY)
    configs, state = strategy.ask(state, 2)
    with pytest.raises(ValueError, match="1 scores for 2 configs"):
        strategy.tell(state, configs, np.zeros(1))


def test_grid_search_argument_errors():
    with pytest.raises(ValueError, match="num_float_points"):
        grid_search(num_float_points=0)
    with pytest.raises(TypeError, match="shuffle"):
        grid_search(shuffle="yes")
    strategy = grid_search()
    state = strategy.init(make_space(), KEY)
    with pytest.raises(ValueError, match="num"):
        strategy.ask(state, -1)


# ----------------------------------------------------------------------------------------------
# Random search


def test_random_search_is_reproducible_and_pure():
    space = make_space()
    strategy = random_search()
    state = strategy.init(space, KEY)
    first, next_state = strategy.ask(state, 6)
    again, _ = strategy.ask(state, 6)
    assert first == again
    assert state.num_asked == 0 and next_state.num_asked == 6
    # A fresh run with the same key proposes the same sequence, batch by batch.
    rerun = strategy.init(space, KEY)
    assert strategy.ask(rerun, 6)[0] == first
    second, _ = strategy.ask(next_state, 6)
    assert second != first  # later batches draw fresh keys
    other, _ = strategy.ask(strategy.init(space, jax.random.PRNGKey(1)), 6)
    assert other != first
    for config in first + second:
        space.validate_config(config)


def test_random_search_uses_fold_in_of_num_asked():
    space = make_space()
    strategy = random_search()
    state = strategy.init(space, KEY)
    _, state = strategy.ask(state, 3)
    configs, _ = strategy.ask(state, 4)
    assert configs == space.sample(jax.random.fold_in(KEY, 3), 4)


def test_random_search_tell_records_history():
    space = make_space()
    strategy = random_search()
    state = strategy.init(space, KEY)
    assert isinstance(state.history, History)
    chex.assert_shape(state.history.encoded, (0, space.dim))
    configs, state = strategy.ask(state, 4)
    told = strategy.tell(state, configs, np.array([1.0, np.nan, 0.5, np.inf]))
    chex.assert_shape(told.history.encoded, (4, space.dim))
    chex.assert_trees_all_close(told.history.encoded, space.encode(configs), atol=0.0)
    chex.assert_trees_all_close(told.history.scores, np.array([1.0, np.inf, 0.5, np.inf]), atol=0.0)
    chex.assert_shape(state.history.scores, (0,))  # the old state is unchanged
    more, told = strategy.ask(told, 2)
    told = strategy.tell(told, more, [3.0, 4.0])
    chex.assert_shape(told.history.encoded, (6, space.dim))
    assert isinstance(told.history.scores, np.ndarray)
    # Telling does not change what is proposed next.
    assert strategy.ask(told, 2)[0] == strategy.ask(told._replace(history=state.history), 2)[0]


def test_random_search_tell_errors():
    strategy = random_search()
    state = strategy.init(make_space(), KEY)
    configs, state = strategy.ask(state, 2)
    with pytest.raises(ValueError, match="3 scores for 2 configs"):
        strategy.tell(state, configs, np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        strategy.tell(state, [{"learning_rate": 0.01}], np.zeros(1))
    assert strategy.ask(state, 0)[0] == []
