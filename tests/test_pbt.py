"""Tests of population-based training: decisions, the engine's exploit/explore, and replay.

Engine runs train digits with a width-16 MLP; they share one set of shapes (8 members, 80 steps,
segments of 20) so that the compiled programs are shared.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import engine
from jaxtune.scheduled import lineage, replay_pbt_member, run_pbt
from jaxtune.strategies.pbt import pbt

TRAIN = dict(population_size=8, num_steps=80, steps_per_segment=20, batch_size=32)

# Replaying with a different population size changes the batched programs' shapes and so
# their rounding: metrics then agree to this tolerance (bit-identical with the same layout).
REPLAY_ATOL = 1e-4


def _space(learning_rate=None):
    return jt.Space({
        "learning_rate": learning_rate or jt.Float(1e-4, 1.0, log=True),
        "optimizer": jt.Fixed("adam"),
        "width": jt.Fixed(16),
        "depth": jt.Fixed(1),
    })


@pytest.fixture(scope="module")
def digits_split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))


@pytest.fixture(scope="module")
def mlp_task():
    return jt.classification_task("mlp", num_classes=10, input_shape=(64,))


@pytest.fixture(scope="module")
def pbt_run(digits_split, mlp_task):
    return run_pbt(mlp_task, digits_split, _space(), seed=0, return_params=True, **TRAIN)


# --------------------------------------------------------------------------- decisions


def _view(configs, losses, *, segment=1, finished=None, alive=None):
    num = len(configs)
    return engine.SlotView(
        segment=segment,
        step=np.full(num, 20),
        alive=np.ones(num, bool) if alive is None else np.asarray(alive),
        finished=np.zeros(num, bool) if finished is None else np.asarray(finished),
        metrics={"valid_loss": np.asarray(losses, np.float64)},
        configs=configs,
        member_ids=list(range(num)),
        num_steps=100,
        steps_per_segment=20,
    )


def test_truncation_selection_and_bounded_explore():
    space = jt.Space({
        "learning_rate": jt.Float(1e-3, 1e-1, log=True),
        "momentum": jt.Float(0.5, 0.99),
        "steps": jt.Int(1, 5, static=False),
        "scale": jt.Choice([1.0, 2.0, 4.0], static=False),
        "width": jt.Choice([16, 32]),
        "optimizer": jt.Fixed("momentum"),
    })
    configs = space.sample(jax.random.PRNGKey(0), 8)
    for config in configs[4:]:  # the donors sit at the bounds: perturbing must clip
        config.update(learning_rate=1e-1, momentum=0.99, steps=5, scale=4.0)
    for config in configs:
        config["width"] = 16  # one static group
    losses = np.arange(8.0)[::-1]  # slot 7 best, slot 0 worst
    scheduler = pbt(space, fraction=0.25, resample_probability=0.3, key=jax.random.PRNGKey(1))
    state = scheduler.init(_view(configs, losses))
    for segment in range(1, 40):
        decision, state = scheduler.update(state, _view(configs, losses, segment=segment))
        assert set(decision.exploit) == {0, 1}  # the bottom quarter...
        assert set(decision.exploit.values()) <= {6, 7}  # ...copies the top quarter
        for slot, config in decision.explore.items():
            space.validate_config(config)  # within bounds, valid choices
            donor = configs[decision.exploit[slot]]
            assert config["width"] == donor["width"] and config["optimizer"] == "momentum"
    assert state.num_exploits == 2 * 39


def test_perturbation_factors_and_resampling():
    space = _space(jt.Float(1e-4, 1.0, log=True))
    configs = [{**c, "learning_rate": 0.01} for c in space.sample(jax.random.PRNGKey(0), 4)]
    losses = [3.0, 2.0, 1.0, 0.0]
    scheduler = pbt(space, perturb=(0.5, 2.0), resample_probability=0.0,
                    key=jax.random.PRNGKey(2))
    seen = set()
    state = scheduler.init(_view(configs, losses))
    for segment in range(1, 30):
        decision, state = scheduler.update(state, _view(configs, losses, segment=segment))
        seen.add(round(decision.explore[0]["learning_rate"], 8))
    assert seen == {0.005, 0.02}
    scheduler = pbt(space, resample_probability=1.0, key=jax.random.PRNGKey(3))
    decision, _ = scheduler.update(scheduler.init(_view(configs, losses)), _view(configs, losses))
    assert decision.explore[0]["learning_rate"] not in (0.008, 0.012)


def test_interval_finished_and_diverged_members():
    space = _space()
    configs = space.sample(jax.random.PRNGKey(0), 4)
    scheduler = pbt(space, interval_segments=2, key=jax.random.PRNGKey(0))
    state = scheduler.init(_view(configs, [0, 1, 2, 3]))
    assert scheduler.update(state, _view(configs, [0, 1, 2, 3], segment=1))[0] is None
    decision, _ = scheduler.update(
        state, _view(configs, [0, np.nan, 2, 3], segment=2, alive=[1, 0, 1, 1])
    )
    assert set(decision.exploit) == {1}  # the diverged member is the worst
    done = _view(configs, [0, 1, 2, 3], segment=2, finished=[1, 1, 1, 0])
    assert scheduler.update(state, done)[0] is None  # nothing left to train with
    with pytest.raises(ValueError, match="fraction"):
        pbt(space, fraction=0.6, key=jax.random.PRNGKey(0))


# --------------------------------------------------------------------------- engine


def test_exploit_copies_the_donors_parameters(digits_split, mlp_task):
    # Learning rate 0 (kept by explore: 0 * factor = 0): parameters never move after
    # initialization, so a member's final parameters are exactly what the copy gave it.
    space = _space(jt.Float(0.0, 1.0))
    configs = [{**c, "learning_rate": 0.0} for c in space.sample(jax.random.PRNGKey(0), 8)]
    seeds = list(range(8))  # identical configs: the seed makes each member its own
    scheduler = pbt(space, fraction=0.25, resample_probability=0.0,
                    metric="valid_accuracy", mode="max", key=jax.random.PRNGKey(0))
    results, params = engine.train(
        mlp_task, configs, digits_split, num_steps=80, steps_per_segment=20, batch_size=32,
        static_names=space.static_names, scheduler=scheduler, return_params=True,
        member_seeds=seeds,
    )
    _, initial = engine.train(
        mlp_task, configs, digits_split, num_steps=80, steps_per_segment=20, batch_size=32,
        static_names=space.static_names, return_params=True, member_seeds=seeds,
    )
    copies = 0
    for i, row in enumerate(results):
        if not row.hp_schedule:
            jax.tree_util.tree_map(np.testing.assert_array_equal, params[i], initial[i])
            continue
        donor = row.hp_schedule[-2]["copied_from"]
        jax.tree_util.tree_map(np.testing.assert_array_equal, params[i], params[donor])
        copies += 1
    assert copies >= 2


def test_hp_schedule_is_recorded(pbt_run):
    results, _ = pbt_run
    exploited = [row for row in results if row.hp_schedule]
    assert exploited
    for row in exploited:
        schedule = row.hp_schedule
        assert schedule[0]["step"] == 0 and "copied_from" not in schedule[0]
        assert schedule[-1]["config"] == row.config
        for entry in schedule[1:]:
            assert entry["step"] % 20 == 0 and 0 < entry["step"] < 80
            assert entry["config"]["optimizer"] == "adam" and entry["config"]["width"] == 16
            assert 1e-4 <= entry["config"]["learning_rate"] <= 1.0
    assert all(row.status == "completed" and row.curve_steps[-1] == 80 for row in results)


def test_no_recompilation(pbt_run, digits_split, mlp_task):
    results, _ = pbt_run
    assert results.metadata["num_segment_compilations"] <= 1
    again = run_pbt(mlp_task, digits_split, _space(), seed=0, **TRAIN)
    assert again.metadata["num_compilations"] == 0
    assert [row.metrics for row in again] == [row.metrics for row in results]


def _longest_lineage(results):
    return max(results, key=lambda row: (len(lineage(results, row.member_id)), row.member_id))


def test_replay_with_the_same_layout_is_bit_identical(pbt_run, digits_split, mlp_task, tmp_path):
    results, original = pbt_run
    saved = jt.Results.load(results.save(tmp_path))  # replay from the saved records alone
    target = _longest_lineage(saved)
    assert len(lineage(saved, target.member_id)) >= 2
    params, replayed = replay_pbt_member(
        mlp_task, digits_split, saved, target.member_id, return_result=True
    )
    assert replayed.metrics == target.metrics
    index = [row.member_id for row in results].index(target.member_id)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, original[index])


def test_replay_alone_matches_to_tolerance(pbt_run, digits_split, mlp_task):
    results, _ = pbt_run
    target = _longest_lineage(results)
    _, replayed = replay_pbt_member(
        mlp_task, digits_split, results, target.member_id, pad_to=1, return_result=True
    )
    for name, value in target.metrics.items():
        np.testing.assert_allclose(replayed.metrics[name], value, atol=REPLAY_ATOL, err_msg=name)
