"""Tests of early stopping between segments: the median stopping rule, patience, and PB2.

The schedulers' decisions on hand-made learning curves are compared with plain-Python
references written from the published rules (Ray Tune's ``MedianStoppingRule`` and Keras'
``EarlyStopping``), in a host-side simulation of the engine's slot loop; one end-to-end run
on wine checks that the engine stops bad learning rates early.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import engine
from jaxtune.contracts import Strategy
from jaxtune.strategies.stopping import (
    median_stopping,
    median_stops,
    patience_stopping,
    patience_stops,
)

SPACE = jt.Space({"learning_rate": jt.Float(1e-4, 1.0, log=True)})
NUM_STEPS, SPS = 100, 10


def _list_strategy(configs):
    """A strategy proposing ``configs`` in order (the refills are then known)."""
    def ask(i, n):
        chosen = [dict(c) for c in configs[i:i + n]]
        return chosen, i + len(chosen)

    return Strategy(init=lambda space, key: 0, ask=ask, tell=lambda i, c, s: i)


# 16 hand-made curves: noisy, crossing, some plateauing; value = valid_loss at evaluation k.
_RNG = np.random.default_rng(0)
CURVES = {
    float(lr): (a * np.exp(-r * np.arange(1, 11)) + b + 0.05 * _RNG.standard_normal(10))
    for lr, a, r, b in zip(np.geomspace(1e-3, 0.5, 16), _RNG.uniform(0.5, 2, 16),
                           _RNG.uniform(0.05, 0.8, 16), _RNG.uniform(0.0, 0.6, 16), strict=True)
}
CONFIGS = [{"learning_rate": lr} for lr in _RNG.permutation(list(CURVES))]


def _loss(config, step):
    return float(CURVES[config["learning_rate"]][step // SPS - 1]) if step else np.nan


def _simulate(scheduler, first):
    """The engine's slot loop on the host (as tests/test_halving.py): returns every member's
    ``(config, last step, status)`` in start order."""
    slots = [{"id": i, "config": c, "step": 0, "alive": True, "status": "running"}
             for i, c in enumerate(first)]
    members, state, segment = list(slots), None, 0
    while any(m["alive"] and m["step"] < NUM_STEPS for m in slots):
        segment += 1
        for m in slots:
            if m["alive"] and m["step"] < NUM_STEPS:
                m["step"] += SPS
                m["status"] = "completed" if m["step"] >= NUM_STEPS else "running"
        steps = np.array([m["step"] for m in slots])
        view = engine.SlotView(
            segment=segment, step=steps, alive=np.array([m["alive"] for m in slots]),
            finished=steps >= NUM_STEPS,
            metrics={"valid_loss": np.array([_loss(m["config"], m["step"]) for m in slots])},
            configs=[m["config"] for m in slots], member_ids=[m["id"] for m in slots],
            num_steps=NUM_STEPS, steps_per_segment=SPS)
        state = scheduler.init(view) if state is None else state
        decision, state = scheduler.update(state, view)
        if decision is None:
            continue
        for slot in decision.stop:
            slots[slot]["alive"], slots[slot]["status"] = False, "stopped"
        for slot, config in decision.refill.items():
            if slots[slot]["status"] == "running":
                slots[slot]["status"] = "stopped"
            slots[slot] = {"id": len(members), "config": config, "step": 0, "alive": True,
                           "status": "running"}
            members.append(slots[slot])
    return [(m["config"]["learning_rate"], m["step"], m["status"]) for m in members], state


# --------------------------------------------------------------------------- references


def _ray_median_rule(results, trial, grace, min_samples):
    """Ray Tune's MedianStoppingRule.on_trial_result (metric_op -1 for a loss), verbatim in
    spirit: trials beyond time, running means over [grace, time], best result."""
    time = results[trial][-1][0]
    if time < grace:
        return False
    others = [t for t in results if t != trial and results[t][-1][0] >= time]
    if len(others) < min_samples:
        return False
    means = [np.mean([-v for s, v in results[t] if grace <= s <= time]) for t in others]
    best = max(-v for _, v in results[trial])
    return best < np.median(means)


def _keras_patience(values, patience, min_delta):
    """Keras EarlyStopping(mode='min', min_delta, patience): True once ``wait >= patience``."""
    best, wait = np.inf, 0
    for value in values:
        if value < best - min_delta:
            best, wait = value, 0
        else:
            wait += 1
    return wait >= patience


def _reference(stops, population, num_configs):
    """The slot loop with refills written out plainly: trials in CONFIGS order, lockstep
    evaluations, free slots (stopped, diverged, completed except the best completed) refilled
    in slot order while fewer than ``num_configs`` trials started."""
    results, status, slot_of = {}, {}, list(range(population))
    incumbent, started = (None, np.inf), population
    for trial in slot_of:
        results[trial], status[trial] = [], "running"
    while any(status[t] == "running" for t in slot_of if t is not None):
        running = [t for t in slot_of if t is not None and status[t] == "running"]
        for t in running:
            step = (len(results[t]) + 1) * SPS
            results[t].append((step, float(CURVES[CONFIGS[t]["learning_rate"]][step // SPS - 1])))
        decided = {t: stops(results, t) for t in running if results[t][-1][0] < NUM_STEPS}
        for t in running:
            if results[t][-1][0] >= NUM_STEPS:
                status[t] = "completed"
                if results[t][-1][1] < incumbent[1]:
                    incumbent = (t, results[t][-1][1])
            elif decided[t]:
                status[t] = "stopped"
        for slot, t in enumerate(slot_of):
            if t is None or status[t] == "running" or t == incumbent[0] or started >= num_configs:
                continue
            slot_of[slot], started = started, started + 1
            results[slot_of[slot]], status[slot_of[slot]] = [], "running"
    return [(CONFIGS[t]["learning_rate"], results[t][-1][0], status[t]) for t in sorted(results)]


# --------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("grace, min_samples", [(0, 3), (30, 2), (20, 5)])
def test_median_rule_matches_ray_on_hand_made_curves(grace, min_samples):
    scheduler = median_stopping(SPACE, _list_strategy(CONFIGS[6:]), num_configs=16,
                                grace_steps=grace, min_samples=min_samples,
                                key=jax.random.PRNGKey(0))
    members, state = _simulate(scheduler, CONFIGS[:6])
    expected = _reference(lambda r, t: _ray_median_rule(r, t, grace, min_samples), 6, 16)
    assert members == expected
    assert len(members) == 16 and state.num_started == 16
    stopped = [m for m in members if m[2] == "stopped"]
    assert stopped and all(step < NUM_STEPS for _, step, _ in stopped)
    assert state.num_stopped == len(stopped)


@pytest.mark.parametrize("patience, min_delta, grace", [(1, 0.0, 0), (2, 0.02, 0), (2, 0.05, 40)])
def test_patience_matches_keras_on_hand_made_curves(patience, min_delta, grace):
    scheduler = patience_stopping(SPACE, _list_strategy(CONFIGS[4:]), num_configs=12,
                                  patience=patience, min_delta=min_delta, grace_steps=grace,
                                  key=jax.random.PRNGKey(0))
    members, _ = _simulate(scheduler, CONFIGS[:4])

    def stops(results, t):
        record = results[t]
        return record[-1][0] >= grace and _keras_patience([v for _, v in record], patience,
                                                          min_delta)

    assert members == _reference(stops, 4, 12)
    assert any(status == "stopped" for _, _, status in members)


def test_rule_functions_on_small_cases():
    histories = {0: ((10, 1.0), (20, 0.9)), 1: ((10, 0.2), (20, 0.1)), 2: ((10, 0.3), (20, 0.2)),
                 3: ((10, 0.4),)}
    # Member 0's best 0.9 against the median of 1 and 2's running means (0.15, 0.25): stop.
    assert median_stops(histories, 0, min_samples=2)
    assert not median_stops(histories, 0, min_samples=3)  # member 3 never reached step 20
    assert not median_stops(histories, 1, min_samples=2)
    assert not median_stops(histories, 0, min_samples=2, grace_steps=30)
    assert patience_stops(((10, 1.0), (20, 1.0), (30, 1.1)), patience=2)
    assert not patience_stops(((10, 1.0), (20, 0.5), (30, 0.6)), patience=2)
    assert patience_stops(((10, 1.0), (20, 0.99), (30, 0.98)), patience=2, min_delta=0.05)


def test_no_refills_without_budget_and_diverged_count_worst():
    scheduler = median_stopping(SPACE, num_configs=None, min_samples=2, key=jax.random.PRNGKey(0))
    view = engine.SlotView(
        segment=1, step=np.array([10, 10, 10, 10]), alive=np.array([True, True, True, False]),
        finished=np.zeros(4, bool), metrics={"valid_loss": np.array([0.1, 0.2, 0.9, np.nan])},
        configs=CONFIGS[:4], member_ids=[0, 1, 2, 3], num_steps=NUM_STEPS, steps_per_segment=SPS)
    decision, state = scheduler.update(scheduler.init(view), view)
    assert decision.stop == [2] and not decision.refill  # 0.9 > median(0.1, 0.2, inf)
    assert state.histories[3] == ((10, np.inf),)


def test_bad_settings_raise_before_training():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="min_samples"):
        median_stopping(SPACE, min_samples=0, key=key)
    with pytest.raises(ValueError, match="patience"):
        patience_stopping(SPACE, patience=0, key=key)
    with pytest.raises(ValueError, match="min_delta"):
        patience_stopping(SPACE, min_delta=-1.0, key=key)
    with pytest.raises(ValueError, match="num_configs"):
        median_stopping(SPACE, num_configs=0, key=key)
    with pytest.raises(TypeError, match="Space"):
        median_stopping({"learning_rate": 0.1}, key=key)
    scheduler = median_stopping(SPACE, metric="valid_accuracy", key=key)
    view = engine.SlotView(1, np.array([10]), np.array([True]), np.array([False]),
                           {"valid_loss": np.array([1.0])}, CONFIGS[:1], [0], 100, 10)
    with pytest.raises(ValueError, match="valid_accuracy"):
        scheduler.init(view)


# --------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def wine():
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space({"learning_rate": jt.Float(1e-5, 1.0, log=True), "optimizer": jt.Fixed("sgd")})
    return task, split, space


def test_run_early_stopping_checks_its_arguments_before_compiling(wine):
    # The end-to-end run (bad learning rates stopped early) is tests/test_tracking.py's: one
    # engine run serves both files.
    task, split, space = wine
    with pytest.raises(ValueError, match="rule"):
        jt.run_early_stopping(task, split, space, rule="hyperband", population_size=6,
                              num_configs=12, num_steps=60)
    with pytest.raises(ValueError, match="num_configs"):
        jt.run_early_stopping(task, split, space, population_size=6, num_configs=3, num_steps=60)
    with pytest.raises(ValueError, match="patience"):
        jt.run_early_stopping(task, split, space, rule="patience", patience=0,
                              population_size=6, num_configs=12, num_steps=60)


# --------------------------------------------------------------------------- PB2

PB2_SPACE = jt.Space({"learning_rate": jt.Float(1e-4, 1e-1, log=True), "width": jt.Fixed(16)})
BEST_UNIT = 2.0 / 3.0  # learning_rate 1e-2


def _pb2_toy(scheduler, num_members=8, num_segments=6, seed=0):
    """A population whose accuracy grows each segment by ``1 - 4 (u - 2/3)**2`` (u: the
    learning rate's unit coordinate) plus noise; exploit copies the value, explore sets the
    rate. Returns every explore config with the segment it was made after."""
    rng = np.random.default_rng(seed)
    configs = PB2_SPACE.sample(jax.random.PRNGKey(seed), num_members)
    value, state, explored = np.zeros(num_members), None, []
    param = PB2_SPACE["learning_rate"]
    for segment in range(1, num_segments + 1):
        units = param.to_unit(np.array([c["learning_rate"] for c in configs]))
        value = value + 1.0 - 4.0 * (units - BEST_UNIT) ** 2 + 0.05 * rng.standard_normal(
            num_members)
        view = engine.SlotView(segment, np.full(num_members, 10 * segment),
                               np.ones(num_members, bool), np.zeros(num_members, bool),
                               {"valid_accuracy": value.copy()}, [dict(c) for c in configs],
                               list(range(num_members)), 100, 10)
        state = scheduler.init(view) if state is None else state
        decision, state = scheduler.update(state, view)
        if decision is None:
            continue
        for slot, donor in decision.exploit.items():
            value[slot] = value[donor]
        for slot, config in decision.explore.items():
            configs[slot] = dict(config)
            explored.append((segment, dict(config)))
    return explored, state


def test_pb2_proposals_stay_in_bounds_and_follow_a_clear_signal():
    from jaxtune.strategies.pb2 import pb2, pb2_beta

    scheduler = pb2(PB2_SPACE, metric="valid_accuracy", key=jax.random.PRNGKey(1),
                    num_candidates=64, max_observations=24, fit_restarts=1, fit_steps=40)
    explored, state = _pb2_toy(scheduler, num_segments=10)
    assert len(explored) == 2 * 10 and state.num_exploits == 20  # 25% of 8 each segment
    assert state.x.shape == (24, 2) and np.all((state.x >= 0) & (state.x <= 1))
    param = PB2_SPACE["learning_rate"]
    for _, config in explored:
        assert set(config) == {"learning_rate", "width"} and config["width"] == 16
        assert 1e-4 <= config["learning_rate"] <= 1e-1
    # With a few segments of data, the bandit's choices gather near the best rate: their
    # median distance in the unit coordinate is well under a uniform draw's (about 0.28;
    # 0.06-0.10 over three toy seeds and two keys).
    late = [param.to_unit(np.array([c["learning_rate"]]))[0] for s, c in explored if s >= 3]
    assert np.median(np.abs(np.array(late) - BEST_UNIT)) < 0.12
    assert pb2_beta(10) == pytest.approx(0.2 + np.log(4.0)) and pb2_beta(1) == 0.2
    with pytest.raises(ValueError, match="Float or Int"):
        pb2(jt.Space({"act": jt.Choice(["relu", "tanh"])}), key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="fraction"):
        pb2(PB2_SPACE, fraction=0.6, key=jax.random.PRNGKey(0))


def test_run_pbt_refuses_an_unknown_explore_before_compiling(wine):
    task, split, space = wine
    with pytest.raises(ValueError, match="explore"):
        jt.run_pbt(task, split, space, population_size=4, num_steps=20, explore="bandit")
