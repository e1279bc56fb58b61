"""chex counts the traces of the engine's programs: one per static group, never one per value.

The engine's metadata counts XLA compilations; these tests count the Python traces themselves
with ``chex.assert_max_traces``, which raises on the trace past its limit, so a retrace caused
by a hyperparameter *value* (a Python float leaking into a static argument, a shape that
depends on a value) fails here even where the compilation cache would hide it.
"""

from __future__ import annotations

import chex
import jax
import pytest

import jaxtune as jt
from jaxtune import engine
from jaxtune.engine import population
from jaxtune.engine.population import init_population, pinned, run_guarded_segment, run_segment


@pytest.fixture(scope="module")
def wine_split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))


def _task():
    # A model factory of its own: a program no other test has compiled in this process.
    def factory(hp):
        return jt.MLP((int(hp["width"]),), 3)

    return jt.classification_task(factory, num_classes=3, input_shape=(13,))


def _count_traces(monkeypatch, n):
    """Swap the engine's init and segment programs (fast and guarded) for ones traced at most
    ``n`` times each."""
    chex.clear_trace_counter()
    init = chex.assert_max_traces(pinned(init_population), n=n)
    segment = chex.assert_max_traces(pinned(run_segment, pass_sharding=True), n=n)
    guarded = chex.assert_max_traces(pinned(run_guarded_segment, pass_sharding=True), n=n)
    monkeypatch.setattr(population, "init_jit", jax.jit(init, static_argnums=(0, 1)))
    monkeypatch.setattr(population, "segment_jit", jax.jit(segment, static_argnums=(0, 1)))
    monkeypatch.setattr(population, "guarded_jit", jax.jit(guarded, static_argnums=(0, 1)))
    monkeypatch.setattr(population, "guarded_jit_donating",
                        jax.jit(guarded, static_argnums=(0, 1), donate_argnums=2))


SPACE = jt.Space({
    "learning_rate": jt.Float(1e-3, 1e-1, log=True),
    "dropout": jt.Float(0.0, 0.3),
    "weight_decay": jt.Float(1e-6, 1e-2, log=True),
    "width": jt.Fixed(8),
    "optimizer": jt.Fixed("adamw"),
})
KWARGS = dict(num_steps=20, batch_size=16, steps_per_segment=10, evaluate_test=False)


def test_new_values_are_not_retraced(monkeypatch, wine_split):
    _count_traces(monkeypatch, n=1)
    task = _task()
    for seed in (0, 1, 2):  # three populations of different values, one trace of each program
        results = engine.train(task, SPACE.sample(seed, 4), wine_split,
                               static_names=SPACE.static_names, **KWARGS)
        assert len(results) == 4
    # A whole multi-round sweep of new values reuses the same two traces.
    tuned = jt.tune(task, wine_split, SPACE, jt.random_search(), num_configs=8,
                    population_size=4, seed=5, num_steps=20, batch_size=16, steps_per_segment=10)
    assert len(tuned) == 8


def test_a_static_change_is_a_new_trace(monkeypatch, wine_split):
    # The counter does bite: a new static value (the width) is a new program, one trace past n=1.
    _count_traces(monkeypatch, n=1)
    task = _task()
    configs = [{"learning_rate": 0.01, "optimizer": "adam", "width": 8}]
    engine.train(task, configs, wine_split, **KWARGS)
    with pytest.raises(AssertionError, match="traced"):
        engine.train(task, [{**configs[0], "width": 16}], wine_split, **KWARGS)
