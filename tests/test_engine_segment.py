"""The segment's two programs: the fast one (runtime step counts, no checks) and the guarded one.

The host runs the guarded program only when the fast one returns ``redo``. For a healthy
population the two must give the same state and metrics bit for bit, including members whose
budget ends inside the segment (the fast program's runtime counts) and members that are not
alive; a member that goes wrong in the fast program sets ``redo``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune.engine import population
from jaxtune.engine.layout import Layout, to_host
from jaxtune.engine.plan import member_keys
from jaxtune.step import from_task

STEPS_PER_SEGMENT = 4
STATIC = {"optimizer": "adam", "width": 4, "depth": 1}


@pytest.fixture(scope="module")
def wine():
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    train = {"x": jax.numpy.asarray(split.x_train), "y": jax.numpy.asarray(split.y_train)}
    valid = {"x": jax.numpy.asarray(split.x_valid), "y": jax.numpy.asarray(split.y_valid)}
    return train, valid


def _programs_args(wine, member_loop, learning_rates, alive, steps, budgets):
    """The arguments of both segment programs for a population of the tiny MLP, every member
    at its own ``steps`` of its own ``budgets``."""
    task = jt.classification_task("mlp", num_classes=3, input_shape=(13,))
    layout = Layout.build(None)
    spec = population.GroupSpec(
        step=from_task(task), static_hp=tuple(sorted(STATIC.items())),
        dynamic_names=("learning_rate",), num_steps=max(budgets), batch_size=8,
        steps_per_segment=STEPS_PER_SEGMENT, member_loop=member_loop)
    configs = [{"learning_rate": lr, **STATIC} for lr in learning_rates]
    num = len(configs)
    keys = layout.put(member_keys(0, [0] * num, configs, [None] * num))
    dynamic = layout.put({"learning_rate": np.asarray(learning_rates, np.float32)})
    train, valid = wine
    state = population.init_jit(spec.setup, layout.population, keys, dynamic, None, train,
                                layout.put(np.asarray(alive)))
    state = state._replace(step=layout.put(np.asarray(steps, np.int32)))
    budgets = layout.put(np.asarray(budgets, np.int32))
    return (spec, layout.population, state, dynamic, None, jax.random.PRNGKey(1), np.int32(3),
            train, valid, budgets)


def _assert_same(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("member_loop", ["map", "vmap"])  # vmap (the GPU default): slow tier
def test_fast_program_equals_guarded_program_bit_for_bit(wine, member_loop):
    # map: every live member takes its own count (4, 2, 3 steps; the 4th is not alive, the
    # 5th at its budget). vmap: the batch takes one count, so the live members all have 3.
    steps = [0, 2, 5, 0, 6]
    budgets = [8, 4, 8, 8, 6] if member_loop == "map" else [3, 5, 8, 8, 6]
    alive = [True, True, True, False, True]
    args = _programs_args(wine, member_loop, [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], alive, steps,
                          budgets)
    fast_state, fast_metrics, redo = to_host(population.segment_jit(*args))
    guarded_state, guarded_metrics = to_host(population.guarded_jit(*args))
    assert not redo
    taken = [4, 2, 3, 0, 0] if member_loop == "map" else [3, 3, 3, 0, 0]
    np.testing.assert_array_equal(fast_state.step, np.asarray(steps) + taken)
    _assert_same(fast_state, guarded_state)
    assert fast_metrics.keys() == guarded_metrics.keys()
    _assert_same(fast_metrics, guarded_metrics)
    # Members that took no step keep their carry and report no training metric.
    start = to_host(args[2])
    for leaf, before in zip(jax.tree_util.tree_leaves(fast_state.carry),
                            jax.tree_util.tree_leaves(start.carry), strict=True):
        np.testing.assert_array_equal(leaf[3:], before[3:])
    assert np.isnan(fast_metrics["train_loss"][3:]).all()
    assert np.isfinite(fast_metrics["train_loss"][:3]).all()


def test_fast_program_asks_for_the_guarded_one(wine):
    # vmap: live members with different counts left (4 and 2) cannot share the batch's loop.
    args = _programs_args(wine, "vmap", [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], [True] * 5,
                          [0, 2, 0, 0, 0], [8, 4, 8, 8, 8])
    assert bool(to_host(population.segment_jit(*args)[2]))
    # map: a member whose learning rate blows up (its parameters overflow) goes wrong in the
    # fast program. (Both populations have the shapes above: no program compiles again.)
    args = _programs_args(wine, "map", [1e-3, 3e-3, 1e-2, 3e-2, 1e30], [True] * 5, [0] * 5,
                          [8] * 5)
    assert bool(to_host(population.segment_jit(*args)[2]))
    _, guarded_metrics = to_host(population.guarded_jit(*args))
    assert np.isfinite(guarded_metrics["train_loss"][:4]).all()
