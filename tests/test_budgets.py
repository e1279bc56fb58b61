"""Step budgets are runtime values: an epochs grid is one program, each member its solo run."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import compile_cache, engine


@pytest.fixture(scope="module")
def digits_split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))


def _task():
    return jt.classification_task("mlp", num_classes=10, input_shape=(64,))


def _grid(budgets, **extra):
    return [{"learning_rate": lr, "optimizer": "adam", "width": 16, "depth": 1,
             "num_steps": n, **extra} for n in budgets for lr in (3e-3, 1e-2)]


KWARGS = dict(num_steps=12, batch_size=32, steps_per_segment=5, evaluate_test=False,
              return_params=True)


def test_epochs_grid_is_one_program_and_every_member_its_solo_run(digits_split):
    configs = _grid((4, 7, 12))
    results, params = engine.train(_task(), configs, digits_split, **KWARGS)
    assert results.metadata["num_segment_compilations"] == 1
    assert results.metadata["num_static_groups"] == 1
    for i, config in enumerate(configs):
        row = results[i]
        assert row.config == config and row.status == "completed"
        assert row.curve_steps[-1] == config["num_steps"]
    for i in (0, 3, 4):  # one member of each budget
        row, config = results[i], configs[i]
        # The curve is the solo run's: a member whose budget ends inside a segment is frozen
        # there (the guarded scan), as a solo run's last, shorter segment ends.
        solo, solo_params = engine.train(_task(), [config], digits_split, **KWARGS)
        assert row.curve_steps == solo[0].curve_steps
        assert row.curves == solo[0].curves
        assert row.metrics == solo[0].metrics
        for a, b in zip(jax.tree_util.tree_leaves(params[i]),
                        jax.tree_util.tree_leaves(solo_params[0]), strict=True):
            np.testing.assert_array_equal(a, b)


def test_schedules_that_read_the_horizon_keep_one_program_per_budget(digits_split):
    configs = _grid((6, 12), schedule="cosine", alpha=0.1)
    results = engine.train(_task(), configs, digits_split, **{**KWARGS, "return_params": False})
    assert results.metadata["num_segment_compilations"] == 2
    assert [row.curve_steps[-1] for row in results] == [6, 6, 12, 12]


def test_configs_without_a_budget_take_the_runs(digits_split):
    """Configs that name no num_steps group apart from those that do: they take the run's."""
    configs = _grid((4,)) + [{k: v for k, v in c.items() if k != "num_steps"} for c in _grid((4,))]
    results = engine.train(_task(), configs, digits_split, **{**KWARGS, "return_params": False})
    assert [row.curve_steps[-1] for row in results] == [4, 4, 12, 12]


def test_a_bad_budget_is_refused_before_compiling(digits_split):
    with pytest.raises(ValueError, match="num_steps"):
        engine.train(_task(), _grid((4, 0)), digits_split, **KWARGS)
    with pytest.raises(ValueError, match="warmup_steps"):
        engine.train(_task(), _grid((4, 12), warmup_steps=6), digits_split, **KWARGS)


def test_another_num_steps_reuses_the_program(digits_split):
    """The run's ``num_steps`` is a budget too: a second run with another compiles nothing, and
    its members are the solo runs of that budget (a fresh program's)."""
    configs = [{k: v for k, v in c.items() if k != "num_steps"} for c in _grid((1,))]
    kwargs = {**KWARGS, "return_params": False, "steps_per_segment": 4}
    engine.train(_task(), configs, digits_split, **{**kwargs, "num_steps": 12})
    again = engine.train(_task(), configs, digits_split, **{**kwargs, "num_steps": 9})
    assert again.metadata["num_segment_compilations"] == 0
    assert [row.curve_steps for row in again] == [[4, 8, 9]] * 2
    jax.clear_caches()
    fresh = engine.train(_task(), configs, digits_split, **{**kwargs, "num_steps": 9})
    assert fresh.metadata["num_segment_compilations"] == 1
    assert [row.curves for row in again] == [row.curves for row in fresh]


def test_batch_sizes_share_the_set_up_program(digits_split):
    """Groups that differ only in what training reads (batch size) share the set-up program:
    one init compile for two batch sizes, and each member is its solo run."""
    configs = [{**c, "batch_size": b} for b in (16, 32) for c in _grid((6,))[:1]]
    kwargs = {**KWARGS, "return_params": False}
    jax.clear_caches()
    with compile_cache.CompileCounter() as counter:
        results = engine.train(_task(), configs, digits_split, **kwargs)
    assert results.metadata["num_segment_compilations"] == 2
    assert counter.by_function["jit(_init_over_members)"] == 1
    for row, config in zip(results, configs, strict=True):
        assert row.curves == engine.train(_task(), [config], digits_split, **kwargs)[0].curves


def _refill_once(budget):
    """A scheduler that, after the first segment, refills slot 0 with ``budget`` steps."""

    def update(state, view):
        if state:
            return None, state
        return engine.PopulationUpdate(refill={0: {**view.configs[0], "num_steps": budget}}), True

    return engine.Scheduler(lambda view: False, update)


def test_a_scheduler_refills_with_its_own_budget_up_to_the_groups(digits_split):
    """A refilled member runs its own budget; one above the group's largest is refused."""
    configs = _grid((10,))
    kwargs = {**KWARGS, "return_params": False}
    results = engine.train(_task(), configs, digits_split, scheduler=_refill_once(7), **kwargs)
    refilled = [row for row in results if row.member_id >= len(configs)]
    assert [row.curve_steps[-1] for row in refilled] == [7]
    assert [row.status for row in refilled] == ["completed"]
    with pytest.raises(ValueError, match=r"num_steps=11 must be an int in 1\.\.10"):
        engine.train(_task(), configs, digits_split, scheduler=_refill_once(11), **kwargs)
