"""Tests of successive halving (ASHA) and Hyperband schedulers.

Decision logic is tested against a small host-side simulation of the engine's slot loop (exact,
instant); the engine tests train digits with a width-16 MLP, every run with the same shapes so
that the compiled programs are shared.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import engine
from jaxtune.scheduled import run_halving
from jaxtune.strategies import grid_search
from jaxtune.strategies.halving import (
    hyperband,
    hyperband_brackets,
    rung_steps,
    successive_halving,
)

LR_SPACE = jt.Space({"learning_rate": jt.Float(1e-4, 1.0, log=True)})


# --------------------------------------------------------------------------- simulation


def _simulate(scheduler, configs, *, num_steps, steps_per_segment, loss_fn, diverges=None):
    """The engine's slot loop on the host: steps advance, decisions replace members."""
    slots = [
        {"id": i, "config": dict(c), "step": 0, "alive": True, "status": "running"}
        for i, c in enumerate(configs)
    ]
    members = list(slots)
    state, segment = None, 0
    while any(m["alive"] and m["step"] < num_steps for m in slots):
        segment += 1
        for m in slots:
            if m["alive"] and m["step"] < num_steps:
                if diverges is not None and diverges(m["config"], m["step"]):
                    m["alive"], m["status"] = False, "diverged"
                    continue
                m["step"] = min(m["step"] + steps_per_segment, num_steps)
                if m["step"] >= num_steps:
                    m["status"] = "completed"
        steps = np.array([m["step"] for m in slots])
        view = engine.SlotView(
            segment=segment,
            step=steps,
            alive=np.array([m["alive"] for m in slots]),
            finished=steps >= num_steps,
            metrics={"valid_loss": np.array([loss_fn(m["config"], m["step"]) for m in slots])},
            configs=[m["config"] for m in slots],
            member_ids=[m["id"] for m in slots],
            num_steps=num_steps,
            steps_per_segment=steps_per_segment,
        )
        if state is None:
            state = scheduler.init(view)
        decision, state = scheduler.update(state, view)
        if decision is None:
            continue
        for slot in decision.stop:
            slots[slot]["alive"] = False
            if slots[slot]["status"] == "running":
                slots[slot]["status"] = "stopped"
        for slot, config in decision.refill.items():
            if slots[slot]["status"] == "running":
                slots[slot]["status"] = "stopped"
            new = {"id": len(members), "config": dict(config), "step": 0, "alive": True,
                   "status": "running"}
            slots[slot] = new
            members.append(new)
    for m in slots:
        m["final_slot"] = True  # still in a slot at the end (params and test metrics kept)
    return members, state


def _lr_loss(config, step):
    """A learning curve whose every point is monotone in the learning rate (higher: better)."""
    return float(np.exp(-config["learning_rate"] * step))


def _configs(num, key=0):
    return LR_SPACE.sample(jax.random.PRNGKey(key), num)


# --------------------------------------------------------------------------- rungs


def test_rungs_are_geometric_and_aligned_to_segments():
    assert rung_steps(10, 3, 90, steps_per_segment=10) == (10, 30, 90)
    assert rung_steps(1, 3, 81) == (1, 3, 9, 27, 81)
    # Rounded up to segment boundaries; merged when they collide.
    assert rung_steps(5, 2, 100, steps_per_segment=20) == (20, 40, 80, 100)
    assert rung_steps(100, 3, 90) == (90,)
    with pytest.raises(ValueError, match="eta"):
        rung_steps(10, 1, 90)


def test_hyperband_brackets_match_li_et_al_table():
    # Li et al. (2017), Table 1: R = 81, eta = 3 -> n = 81, 34, 15, 8, 5 at r = 1, 3, 9, 27, 81.
    assert hyperband_brackets(1, 3, 81) == [(1, 81), (3, 34), (9, 15), (27, 8), (81, 5)]
    assert hyperband_brackets(1, 3, 81, num_brackets=2) == [(1, 81), (3, 34)]
    with pytest.raises(ValueError, match="min_steps"):
        hyperband_brackets(90, 3, 90)


# --------------------------------------------------------------------------- decisions


def test_first_wave_promotes_the_top_third():
    configs = _configs(9)
    scheduler = successive_halving(LR_SPACE, min_steps=10, eta=3, key=jax.random.PRNGKey(1))
    members, _ = _simulate(
        scheduler, configs, num_steps=90, steps_per_segment=10, loss_fn=_lr_loss
    )
    lrs = np.array([c["learning_rate"] for c in configs])
    promoted = {m["id"] for m in members[:9] if m["step"] > 10}
    assert promoted == set(np.argsort(-lrs)[:3].tolist())
    first_wave_final = {m["id"] for m in members[:9] if m["step"] == 90}
    assert first_wave_final == {int(np.argmax(lrs))}


def test_asha_keeps_the_best_configs_of_a_monotone_task():
    configs = _configs(9)
    scheduler = successive_halving(
        LR_SPACE, min_steps=10, eta=3, max_member_steps=3000, key=jax.random.PRNGKey(2)
    )
    members, state = _simulate(
        scheduler, configs, num_steps=90, steps_per_segment=10, loss_fn=_lr_loss
    )
    lrs = np.array([m["config"]["learning_rate"] for m in members])
    completed = [m for m in members if m["status"] == "completed"]
    assert completed
    # Completing means beating 2/3 of the members recorded at every rung: the upper half.
    for member in completed:
        assert np.mean(lrs <= member["config"]["learning_rate"]) >= 0.5
    assert max(lrs) in [m["config"]["learning_rate"] for m in completed]
    assert state.member_steps == sum(m["step"] for m in members) <= 3000


def test_budget_is_never_exceeded_and_members_stop_at_rungs():
    rng = np.random.default_rng(0)
    noise = {}

    def loss(config, step):
        key = (config["learning_rate"], step)
        noise.setdefault(key, rng.normal())
        return noise[key]

    for budget in (400, 1234, 5000):
        scheduler = successive_halving(
            LR_SPACE, min_steps=10, eta=3, max_member_steps=budget, key=jax.random.PRNGKey(3)
        )
        members, state = _simulate(
            scheduler, _configs(9), num_steps=90, steps_per_segment=10, loss_fn=loss
        )
        total = sum(m["step"] for m in members)
        assert total == state.member_steps <= budget
        assert {m["step"] for m in members} <= {10, 30, 90}
        assert len(members) > 9  # slots were refilled


def test_diverged_members_are_replaced():
    scheduler = successive_halving(LR_SPACE, min_steps=10, eta=3, key=jax.random.PRNGKey(4),
                                   max_member_steps=2000)
    members, state = _simulate(
        scheduler, _configs(9), num_steps=90, steps_per_segment=10, loss_fn=_lr_loss,
        diverges=lambda config, step: config["learning_rate"] > 0.1 and step >= 10,
    )
    diverged = [m for m in members if m["status"] == "diverged"]
    assert diverged and all(m["config"]["learning_rate"] > 0.1 for m in diverged)
    assert all(m["config"]["learning_rate"] <= 0.1 for m in members if m["status"] == "completed")
    assert state.member_steps == sum(m["step"] for m in members) <= 2000


def test_exhausted_strategy_stops_slots():
    space = jt.Space({"learning_rate": jt.Float(0.01, 1.0, log=True)})
    configs = space.grid(9)[:9]
    scheduler = successive_halving(
        space, grid_search(3), min_steps=10, eta=3, key=jax.random.PRNGKey(0)
    )
    members, _ = _simulate(scheduler, configs, num_steps=90, steps_per_segment=10,
                           loss_fn=_lr_loss)
    assert len(members) == 9 + 3  # the grid of 3 is all the strategy had
    assert not any(m["status"] == "running" for m in members)


def test_hyperband_brackets_share_the_budget():
    budget = 20 * 405
    scheduler = hyperband(LR_SPACE, min_steps=1, eta=3, max_member_steps=budget,
                          key=jax.random.PRNGKey(5))
    members, state = _simulate(
        scheduler, _configs(27), num_steps=81, steps_per_segment=1, loss_fn=_lr_loss
    )
    assert state.rungs == ((1, 3, 9, 27, 81), (3, 9, 27, 81), (9, 27, 81), (27, 81), (81,))
    # New members join the least loaded bracket: every bracket spends most of an equal share,
    # and cheap aggressive brackets start more members.
    assert np.all(state.spent <= state.budget)
    assert np.all(state.spent >= 0.75 * state.budget)
    assert list(state.num_started) == sorted(state.num_started, reverse=True)
    assert state.num_started[0] > 5 * state.num_started[-1]
    assert state.member_steps == sum(m["step"] for m in members) <= budget
    assert {m["step"] for m in members} <= {1, 3, 9, 27, 81}
    # The best completed member keeps its slot; other completed slots were refilled.
    completed = [m for m in members if m["status"] == "completed"]
    best = min(completed, key=lambda m: _lr_loss(m["config"], 81))
    assert best.get("final_slot")
    assert sum(1 for m in completed if not m.get("final_slot")) > 0


def test_bad_settings_raise_before_training():
    with pytest.raises(ValueError, match="eta"):
        successive_halving(LR_SPACE, min_steps=10, eta=1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="max_member_steps"):
        successive_halving(LR_SPACE, min_steps=10, max_member_steps=0, key=jax.random.PRNGKey(0))
    scheduler = successive_halving(LR_SPACE, min_steps=10, max_member_steps=50,
                                   key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="max_member_steps"):
        _simulate(scheduler, _configs(9), num_steps=90, steps_per_segment=10, loss_fn=_lr_loss)
    scheduler = successive_halving(LR_SPACE, min_steps=10, metric="valid_accuracy",
                                   key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="valid_accuracy"):
        _simulate(scheduler, _configs(2), num_steps=90, steps_per_segment=10, loss_fn=_lr_loss)


# --------------------------------------------------------------------------- engine

TRAIN = dict(population_size=9, num_steps=90, min_steps=10, batch_size=32, steps_per_segment=10)


@pytest.fixture(scope="module")
def digits_split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))


@pytest.fixture(scope="module")
def mlp_task():
    return jt.classification_task("mlp", num_classes=10, input_shape=(64,))


def _space(low=1e-4, high=1.0):
    return jt.Space({
        "learning_rate": jt.Float(low, high, log=True),
        "optimizer": jt.Fixed("adam"),
        "width": jt.Fixed(16),
        "depth": jt.Fixed(1),
    })


@pytest.fixture(scope="module")
def halving_run(digits_split, mlp_task):
    return run_halving(mlp_task, digits_split, _space(), max_member_steps=1500, seed=0, **TRAIN)


def test_halving_in_the_engine_stops_refills_and_completes(halving_run, digits_split, mlp_task):
    results = halving_run
    initial = list(results)[:9]
    stopped = results.filter(status="stopped")
    completed = results.filter(status="completed")
    assert len(stopped) > 0 and len(completed) > 0
    assert all(row.curve_steps[-1] < 90 for row in stopped)
    assert {row.curve_steps[-1] for row in stopped} <= {10, 30}
    # Refilled slots hold new members: new ids, new configs.
    refilled = [row for row in results if row.member_id >= 9]
    assert refilled
    first_lrs = {row.config["learning_rate"] for row in initial}
    assert all(row.config["learning_rate"] not in first_lrs for row in refilled)
    assert all(row.curve_steps[0] == 10 for row in refilled)
    best = completed.best("valid_accuracy", "max")
    assert best.curve_steps[-1] == 90 and "test_accuracy" in best.metrics
    # The budget: every member's steps, counted from the results.
    total = sum(row.curve_steps[-1] for row in results)
    assert total == results.metadata["member_steps"] <= 1500
    # Refilling never recompiled the training segment; a second run compiles nothing.
    assert results.metadata["num_segment_compilations"] <= 1
    again = run_halving(mlp_task, digits_split, _space(), max_member_steps=1500, seed=0, **TRAIN)
    assert again.metadata["num_compilations"] == 0
    assert [row.config for row in again] == [row.config for row in results]


def test_halving_keeps_the_fastest_learning_rates(digits_split, mlp_task):
    # Adam on digits with learning rates in [1e-4, 1e-2]: after 10 steps, higher trains faster.
    results = run_halving(
        mlp_task, digits_split, _space(1e-4, 1e-2), max_member_steps=1500, seed=1,
        metric="valid_loss", **TRAIN,
    )
    # One segment program for every rung and refill, whichever test compiled what before
    # (the total count depends on which programs this process already holds).
    assert results.metadata["num_segment_compilations"] <= 1
    first = list(results)[:9]
    lrs = np.array([row.config["learning_rate"] for row in first])
    promoted = {row.member_id for row in first if row.curve_steps[-1] > 10}
    assert promoted == set(np.argsort(-lrs)[:3].tolist())
    completed = results.filter(status="completed")
    all_lrs = np.array([row.config["learning_rate"] for row in results])
    assert all(np.mean(all_lrs <= row.config["learning_rate"]) >= 0.5 for row in completed)


def test_hyperband_in_the_engine(digits_split, mlp_task):
    results = run_halving(
        mlp_task, digits_split, _space(), max_member_steps=1500, seed=2, num_brackets=None,
        **TRAIN,
    )
    assert results.metadata["num_segment_compilations"] <= 1  # every bracket, one program
    rows = list(results)
    # Brackets with rungs (10, 30, 90), (30, 90) and (90,) (no early stopping).
    assert {row.curve_steps[-1] for row in results.filter(status="stopped")} <= {10, 30}
    assert len(results.filter(status="completed")) >= 2
    assert sum(row.curve_steps[-1] for row in rows) == results.metadata["member_steps"] <= 1500
    best = results.filter(status="completed").best("valid_accuracy", "max")
    assert "test_accuracy" in best.metrics  # the incumbent kept its slot


def test_scheduler_may_not_change_static_values(digits_split, mlp_task):
    def init(view):
        return None

    def update(state, view):
        config = {**view.configs[0], "width": 32}
        return engine.PopulationUpdate(refill={0: config}), state

    configs = _space().sample(jax.random.PRNGKey(0), 9)
    with pytest.raises(ValueError, match="static group"):
        engine.train(
            mlp_task, configs, digits_split, num_steps=90, batch_size=32, steps_per_segment=10,
            static_names=_space().static_names, scheduler=engine.Scheduler(init, update),
        )
