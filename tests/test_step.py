"""The Step contract: a user's own training step (and a whole training function) run by the
engine, checked against plain Python loops of the same functions.

Every run here trains a one-feature linear regression (or a data-free quadratic) for a few
steps, so the programs are tiny; a module-level Step is reused so that they compile once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxtune as jt
from jaxtune import engine
from jaxtune.cv import cross_validate
from jaxtune.step import as_step, from_task

TRAIN = dict(num_steps=12, steps_per_segment=4, batch_size=None, evaluate_test=False)
#: The engine runs the same float32 operations as the loops below, member by member
#: (``member_loop="map"`` on CPU); XLA may fuse them differently, hence a rounding tolerance.
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def split():
    return jt.train_valid_test_split(jt.make_linear(num_samples=64, seed=0), seed=0)


def _adam(hp):
    return optax.adam(hp["learning_rate"])


def linear_init(key, hp):
    params = {"w": jnp.zeros((1,)), "b": jnp.zeros(())}
    return params, _adam(hp).init(params)


def linear_loss(params, batch):
    pred = batch["x"] @ params["w"] + params["b"]
    return jnp.mean((pred - batch["y"]) ** 2)


def linear_step(carry, batch, key, hp):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(linear_loss)(params, batch)
    # A member whose "poison" is set turns NaN after its 5th step: divergence isolation.
    loss = jnp.where((hp.get("poison", 0.0) > 0.5) & (opt_state[0].count >= 5), jnp.nan, loss)
    updates, opt_state = _adam(hp).update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), {"loss": loss}


def linear_evaluate(carry, data, hp):
    return {"mse": linear_loss(carry[0], data)}


LINEAR = jt.Step(linear_init, linear_step, linear_evaluate, name="linear-adam",
                 metric_modes={"mse": "min"}, params=lambda carry: carry[0])


def reference(split, learning_rate, num_steps=TRAIN["num_steps"]):
    """A plain Python loop of the same step on the full training batch."""
    hp = {"learning_rate": jnp.float32(learning_rate)}
    carry = linear_init(jax.random.PRNGKey(0), hp)
    batch = {"x": jnp.asarray(split.x_train), "y": jnp.asarray(split.y_train)}
    step = jax.jit(linear_step)
    losses = []
    for _ in range(num_steps):
        carry, metrics = step(carry, batch, jax.random.PRNGKey(0), hp)
        losses.append(float(metrics["loss"]))
    valid = {"x": jnp.asarray(split.x_valid), "y": jnp.asarray(split.y_valid)}
    return carry[0], losses, float(linear_evaluate(carry, valid, hp)["mse"])


#: Every data Step run here: three members (one of them poisoned), one static group.
CONFIGS = [{"learning_rate": r, "poison": p} for r, p in ((0.01, 0.0), (0.05, 1.0), (0.2, 0.0))]


@pytest.fixture(scope="module")
def sweep(split):
    return jt.train(LINEAR, CONFIGS, split, return_params=True, **TRAIN)


def test_a_step_sweep_equals_a_python_loop_per_config_and_compiles_once(split, sweep):
    results, params = sweep
    assert results.metadata["num_segment_compilations"] <= 1
    for i in (0, 2):
        row, rate = results.rows[i], CONFIGS[i]["learning_rate"]
        expected, losses, mse = reference(split, rate)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL),
            params[i], expected)
        # train_loss: each segment's mean of the step's loss metric.
        np.testing.assert_allclose(row.curves["train_loss"],
                                   np.mean(np.reshape(losses, (3, 4)), axis=1), rtol=RTOL)
        assert row.metrics["valid_mse"] == pytest.approx(mse, rel=RTOL)
        assert row.status == "completed"
    # New values, same shapes: nothing compiles again.
    again = jt.train(LINEAR, [{**c, "learning_rate": 0.03} for c in CONFIGS], split, **TRAIN)
    assert again.metadata["num_segment_compilations"] == 0


def test_a_member_that_turns_nan_is_marked_diverged_and_the_others_are_untouched(sweep):
    results, params = sweep
    assert [row.status for row in results.rows] == ["completed", "diverged", "completed"]
    assert results.rows[1].diverged_step == 5
    # Frozen at its last finite carry: the one a loop of five steps reaches.
    assert results.rows[1].curve_steps == [4, 5]
    assert np.all(np.isfinite(params[1]["w"]))


def test_a_task_runs_as_its_step():
    task = jt.regression_task("linear", input_shape=(1,))
    step = from_task(task)
    # The engine runs every Task as this Step (as_step), rebuilt per static group with its
    # schedule's horizon: the same Step, so the same compiled programs.
    assert as_step(task) == step and step.task is task and step.needs_data
    assert from_task(task, num_steps=100) != step
    assert step.metric_modes == task.metric_modes and step.kind == "regression"
    assert as_step(step) is step


def test_step_fields_are_checked():
    with pytest.raises(TypeError, match=r"Step.step must be a function"):
        jt.Step(linear_init, None)
    with pytest.raises(TypeError, match=r"Step.metric_modes"):
        jt.Step(linear_init, linear_step, metric_modes={"mse": "down"})
    with pytest.raises(TypeError, match=r"Step.needs_data"):
        jt.Step(linear_init, linear_step, needs_data="no")
    with pytest.raises(TypeError, match=r"task: expected a jaxtune Task .* or a jaxtune Step"):
        as_step(linear_step)


def test_a_step_without_its_loss_metric_is_refused_before_compiling(split):
    def step(carry, batch, key, hp):
        return linear_step(carry, batch, key, hp)[0], {"mse": jnp.float32(0.0)}

    bad = jt.Step(linear_init, step, linear_evaluate, metric_modes={"mse": "min"})
    with pytest.raises(ValueError, match="lack loss_metric='loss'"):
        jt.train(bad, [{"learning_rate": 0.1}], split, **TRAIN)
    with pytest.raises(ValueError, match="nothing reads this hyperparameter"):
        jt.train(LINEAR, [{"learning_rate": 0.1, "momentun": 0.9}], split, **TRAIN)


def test_a_step_under_halving_and_pbt(split):
    space = jt.Space({"learning_rate": jt.Float(0.01, 0.3, log=True),
                      "poison": jt.Float(0.0, 0.1)})
    options = engine.EngineOptions(num_steps=12, batch_size=None, steps_per_segment=4,
                                   evaluate_test=False)
    halving = jt.run_halving(LINEAR, split, space, population_size=3, min_steps=4, eta=2,
                             options=options)
    assert {row.status for row in halving.rows} >= {"stopped", "completed"}
    results, params = jt.run_pbt(LINEAR, split, space, population_size=3, fraction=0.34,
                                 options=options, return_params=True)
    copies = [entry for row in results.rows for entry in (row.hp_schedule or [])
              if "copied_from" in entry]
    assert copies and len(params) == len(results.rows)


def test_a_step_sweep_resumes_to_the_uninterrupted_results(split, tmp_path):
    configs = CONFIGS
    whole, whole_params = jt.train(LINEAR, configs, split, return_params=True, **TRAIN)
    crashes = [0]

    def crash(report):
        crashes[0] += 1
        if crashes[0] == 2:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        jt.train(LINEAR, configs, split, checkpoint=tmp_path, on_segment=crash,
                 return_params=True, **TRAIN)
    resumed, params = jt.train(LINEAR, configs, split, checkpoint=tmp_path, resume=True,
                               return_params=True, **TRAIN)
    for a, b in zip(resumed.rows, whole.rows, strict=True):
        assert a.curves == b.curves and a.metrics == b.metrics
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, whole_params)


# --------------------------------------------------------------------------- data-free


def quadratic_init(key, hp):
    return {"x": jax.random.normal(key, (2,)), "v": jnp.zeros((2,))}


def quadratic_segment(carry, key, hp):
    """Ten noisy heavy-ball steps on f(x) = |x - 1|^2 inside one engine step."""

    def inner(carry, k):
        grad = 2.0 * (carry["x"] - 1.0) + hp["noise"] * jax.random.normal(k, (2,))
        v = hp["momentum"] * carry["v"] - hp["learning_rate"] * grad
        return {"x": carry["x"] + v, "v": v}, jnp.sum((carry["x"] - 1.0) ** 2)

    carry, losses = jax.lax.scan(inner, carry, jax.random.split(key, 10))
    return carry, {"loss": losses[-1], "mean_loss": jnp.mean(losses)}


QUADRATIC = jt.training_function(quadratic_init, quadratic_segment,
                                 metric_modes={"loss": "min", "mean_loss": "min"},
                                 name="quadratic")
FREE = dict(num_steps=6, steps_per_segment=3)


def test_a_training_function_equals_its_python_loop(split):
    configs = [{"learning_rate": r, "momentum": 0.5, "noise": 0.1} for r in (0.05, 0.2)]
    results, carries = jt.train(QUADRATIC, configs, None, return_params=True, **FREE)
    keys = engine.member_keys(0, [0, 0], configs, [None, None])
    segment = jax.jit(quadratic_segment)
    for row, carry_out, config, key in zip(results.rows, carries, configs, keys, strict=True):
        hp = {k: jnp.float32(v) for k, v in config.items()}
        carry = quadratic_init(jax.random.fold_in(key, 0), hp)
        train_key, losses = jax.random.fold_in(key, 1), []
        for t in range(FREE["num_steps"]):
            _, step_key = jax.random.split(jax.random.fold_in(train_key, t))
            carry, metrics = segment(carry, step_key, hp)
            losses.append(float(metrics["loss"]))
        np.testing.assert_allclose(carry_out["x"], carry["x"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(row.curves["train_loss"],
                                   np.mean(np.reshape(losses, (2, 3)), axis=1), rtol=RTOL)
        # No evaluate: the validation metrics are the last step's.
        assert row.metrics["valid_loss"] == pytest.approx(losses[-1], rel=RTOL)
    assert results.metadata["metric_modes"] == {"loss": "min", "mean_loss": "min"}


def test_a_training_function_is_tuned_by_random_search_and_pbt():
    space = jt.Space({"learning_rate": jt.Float(0.01, 0.3, log=True),
                      "momentum": jt.Float(0.0, 0.9), "noise": jt.Float(0.05, 0.1)})
    tuned = jt.tune(QUADRATIC, None, space, num_configs=2, metric="valid_loss", **FREE)
    assert len(tuned.rows) == 2
    assert min(row.metrics["valid_loss"] for row in tuned.rows) < 1.0
    pbt = jt.run_pbt(QUADRATIC, None, space, population_size=2, num_steps=6,
                     steps_per_segment=3, metric="valid_loss", fraction=0.5)
    assert len(pbt.rows) == 2 and any(
        "copied_from" in entry for row in pbt.rows for entry in (row.hp_schedule or []))


def test_data_and_data_free_steps_refuse_the_wrong_split(split):
    with pytest.raises(ValueError, match=r"needs_data=False .* pass split=None"):
        jt.train(QUADRATIC, [{"learning_rate": 0.1, "momentum": 0.0, "noise": 0.0}], split,
                 **FREE)
    with pytest.raises(TypeError, match="split: expected the data"):
        jt.train(LINEAR, [{"learning_rate": 0.1}], None, **TRAIN)
    with pytest.raises(ValueError, match="standardize needs data"):
        jt.train(QUADRATIC, [{"learning_rate": 0.1, "momentum": 0.0, "noise": 0.0}], None,
                 standardize=True, **FREE)
    with pytest.raises(ValueError, match="cross-validation splits data"):
        cross_validate(QUADRATIC, None, [{"learning_rate": 0.1, "momentum": 0.0,
                                             "noise": 0.0}], num_steps=2)
