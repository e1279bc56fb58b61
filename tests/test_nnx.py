"""jaxtune.nnx: a Flax NNX module trained by the engine, against a hand-written NNX loop
(nnx.Optimizer, nnx.value_and_grad, the same keys and batches); dropout with a traced rate;
BatchNorm statistics per member; bad arguments refused before tracing."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxtune as jt
from jaxtune import engine
from jaxtune import nnx as jt_nnx

NUM_STEPS = 6


class Net(nnx.Module):
    """Linear (no bias: BatchNorm removes it) -> BatchNorm -> relu -> Dropout -> Linear."""

    def __init__(self, hp, rngs):
        self.hidden = nnx.Linear(4, 8, use_bias=False, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.8, rngs=rngs)
        self.drop = jt_nnx.Dropout(hp["dropout"], rngs=rngs)
        self.out = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(self.drop(nnx.relu(self.norm(self.hidden(x)))))


def _split() -> jt.Split:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(56, 4)).astype(np.float32)
    y = (np.argmax(x[:, :3] + 0.3 * rng.normal(size=(56, 3)), axis=1)).astype(np.int32)
    return jt.Split(x[:40], y[:40], x[40:], y[40:], x[40:], y[40:], "classification", 3, "toy")


def _optimizer(hp):
    return optax.chain(optax.clip_by_global_norm(hp["clip"]), optax.adam(hp["learning_rate"]))


@jax.jit
def _reference(hp, member_key, x, y, x_valid, y_valid):
    """A hand-written NNX loop: the engine's init key, full batches, nnx.Optimizer and
    nnx.value_and_grad (jitted once for every member: the values are traced here too)."""
    model = Net(hp, nnx.Rngs(jax.random.fold_in(member_key, 0)))
    model.train()
    optimizer = nnx.Optimizer(model, _optimizer(hp), wrt=nnx.Param)

    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    def train_step(_, state):
        model, optimizer = nnx.merge(graphdef, state)
        _, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer))

    graphdef, state = nnx.split((model, optimizer))
    model, optimizer = nnx.merge(graphdef, jax.lax.fori_loop(0, NUM_STEPS, train_step, state))
    model.eval()
    accuracy = jnp.mean(jnp.argmax(model(x_valid), -1) == y_valid)
    _, params, state = nnx.split(model, nnx.Param, ...)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(state), accuracy


def test_members_equal_hand_written_nnx_loops_and_keep_their_batch_statistics():
    split = _split()
    task = jt_nnx.nnx_task(Net, optimizer=_optimizer, num_classes=3, input_shape=(4,))
    configs = [{"learning_rate": 0.05, "dropout": 0.1, "clip": 1.0},
               {"learning_rate": 0.01, "dropout": 0.4, "clip": 0.5},
               {"learning_rate": 0.02, "dropout": 0.0, "clip": 1.0}]
    results, carries = jt.train(task, configs, split, num_steps=NUM_STEPS, batch_size=None,
                                steps_per_segment=NUM_STEPS, return_params=True)
    # One program for the three learning rates, clipping norms and dropout rates (traced).
    assert results.metadata["num_segment_compilations"] == 1
    keys = engine.member_keys(0, [0] * len(configs), configs, [None] * len(configs))
    stats = []
    for row, (params, state), config, key in zip(results, carries, configs, keys, strict=True):
        hp = {name: jnp.float32(value) for name, value in config.items()}
        ref_params, ref_state, ref_accuracy = _reference(
            hp, jnp.asarray(key), split.x_train, split.y_train, split.x_valid, split.y_valid)
        # float32 Adam from the same start on the same batches and dropout masks; the two
        # programs differ only in XLA's fusion and reduction order.
        chex.assert_trees_all_close(params, ref_params, atol=2e-5, rtol=2e-5)
        chex.assert_trees_all_close(state["norm"], ref_state["norm"], atol=2e-5, rtol=2e-5)
        # Only variables are carried (a dropout rate always comes from the current hp); the
        # dropout stream advanced once per step, as NNX's own.
        assert set(state["drop"]) == {"rngs"}
        assert int(state["drop"]["rngs"]["count"]) == NUM_STEPS
        assert int(ref_state["drop"]["rngs"]["count"]) == NUM_STEPS
        # Evaluated in eval mode with the member's running statistics, not batch ones.
        assert row.metrics["valid_accuracy"] == pytest.approx(float(ref_accuracy), abs=1e-6)
        stats.append(np.asarray(state["norm"]["mean"]))
    assert not np.allclose(stats[0], stats[1]) and not np.allclose(stats[1], stats[2])
    # load_module rebuilds the trained module from what return_params gave.
    module = jt_nnx.load_module(Net, configs[0], *carries[0])
    logits = module(jnp.asarray(split.x_valid))
    assert float(jnp.mean(jnp.argmax(logits, -1) == split.y_valid)) == pytest.approx(
        results[0].metrics["valid_accuracy"], abs=1e-6)


class Regressor(nnx.Module):
    def __init__(self, hp, rngs):
        self.norm = nnx.BatchNorm(4, momentum=0.5, rngs=rngs)
        self.out = nnx.Linear(4, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(self.norm(x))


def _user_loss(module, batch):
    err = module(batch["x"])[:, 0] - batch["y"]
    return jnp.mean(jnp.abs(err)), {"max_abs_error": jnp.max(jnp.abs(err))}


@jax.jit
def _regression_values(batch):
    """The task's functions and the same computations written directly on the module."""
    init, loss, evaluate = jt_nnx.nnx_functions(Regressor, kind="regression")
    params, state = init(jax.random.key(0), {})
    value, (aux, new_state) = loss(params, state, batch, None, {})
    weighted = {**batch, "weight": jnp.asarray([1.0] * 5 + [0.0] * 5)}
    metrics = evaluate(params, new_state, weighted, {})
    _, user_loss, _ = jt_nnx.nnx_functions(Regressor, kind=None, loss=_user_loss,
                                           evaluate=lambda m, d: {})
    user_value, (user_aux, _) = user_loss(params, state, batch, None, {})

    module = Regressor({}, nnx.Rngs(jax.random.key(0)))
    user_expected = _user_loss(Regressor({}, nnx.Rngs(jax.random.key(0))), batch)
    expected = jnp.mean((module(batch["x"])[:, 0] - batch["y"]) ** 2)  # updates running stats
    module.eval()
    expected_eval = jnp.mean((module(batch["x"][:5])[:, 0] - batch["y"][:5]) ** 2)
    return ((value, aux, state, new_state, metrics["mse"], user_value, user_aux),
            (expected, expected_eval, user_expected))


def test_regression_and_a_custom_loss_with_aux_and_model_state():
    """The task's functions themselves: squared error for kind='regression', the BatchNorm
    state a loss call returns and evaluation with it (weighted rows), a user
    loss(module, batch) with its aux."""
    rng = np.random.default_rng(1)
    batch = {"x": jnp.asarray(rng.normal(size=(10, 4)), jnp.float32),
             "y": jnp.asarray(rng.normal(size=(10,)), jnp.float32)}
    ours, theirs = _regression_values(batch)
    value, aux, state, new_state, mse, user_value, user_aux = ours
    expected, expected_eval, (user_expected, user_expected_aux) = theirs
    assert float(value) == pytest.approx(float(expected), rel=1e-6) and aux == {}
    # momentum 0.5: the running mean moved half way from 0 to the batch mean.
    chex.assert_trees_all_close(state["norm"]["mean"], jnp.zeros(4))
    chex.assert_trees_all_close(new_state["norm"]["mean"], 0.5 * batch["x"].mean(0), rtol=1e-5)
    assert float(mse) == pytest.approx(float(expected_eval), rel=1e-5)
    assert float(user_value) == pytest.approx(float(user_expected), rel=1e-6)
    chex.assert_trees_all_close(user_aux, user_expected_aux, rtol=1e-6)


def test_dropout_takes_a_traced_rate_and_draws_nnx_dropout_masks():
    x = jnp.arange(1.0, 201.0).reshape(20, 10)

    @jax.jit
    def drop(rate):
        return jt_nnx.Dropout(rate, rngs=nnx.Rngs(3))(x)

    for rate in (0.0, 0.25, 0.9):
        chex.assert_trees_all_close(drop(rate), nnx.Dropout(rate, rngs=nnx.Rngs(3))(x),
                                    rtol=1e-6)
    assert drop._cache_size() == 1  # three rates, one program
    assert jnp.all(drop(1.0) == 0.0)
    layer = jt_nnx.Dropout(0.5, rngs=nnx.Rngs(3))
    layer.eval()
    assert jnp.array_equal(layer(x), x)


def test_bad_arguments_are_refused_before_tracing():
    with pytest.raises(TypeError, match="factory must be a function"):
        jt_nnx.nnx_task("Net")
    with pytest.raises(TypeError, match="loss must be a function"):
        jt_nnx.nnx_task(Net, kind=None, loss=1, evaluate=lambda m, d: {}, metric_modes={"a": "max"})
    with pytest.raises(TypeError, match="not a module already built"):
        jt_nnx.nnx_task(Net({"dropout": 0.1}, nnx.Rngs(0)))
    with pytest.raises(ValueError, match="kind='ranking'"):
        jt_nnx.nnx_task(Net, kind="ranking")
    with pytest.raises(ValueError, match="kind=None needs both loss"):
        jt_nnx.nnx_task(Net, kind=None, loss=lambda m, b: (0.0, {}))
    with pytest.raises(ValueError, match="needs metric_modes"):
        jt_nnx.nnx_task(Net, evaluate=lambda m, d: {"acc": 0.0})
    def flax_dropout(hp, rngs):
        return nnx.Sequential(nnx.Linear(4, 3, rngs=rngs), nnx.Dropout(hp["dropout"], rngs=rngs))

    init, _, _ = jt_nnx.nnx_functions(flax_dropout)
    with pytest.raises(TypeError, match=r"layers\.1 is an nnx\.Dropout with a traced rate"):
        jax.eval_shape(init, jax.random.key(0), {"dropout": 0.5})
    with pytest.raises(TypeError, match=r"not an nnx\.Module"):
        init, _, _ = jt_nnx.nnx_functions(lambda hp, rngs: object())
        init(jax.random.key(0), {})
