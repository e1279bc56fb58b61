"""Model state carried per member: a BatchNorm MLP's running statistics, checked against a
hand-written Flax linen training of the same config (same keys, same minibatches)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxtune as jt
from jaxtune import data as data_lib
from jaxtune import engine

NUM_STEPS, BATCH = 6, 32
#: The engine and the loop below run the same float32 operations; XLA may fuse them
#: differently (and the built-in sgd upcasts to float32 where Optax keeps the weak type).
RTOL, ATOL = 1e-5, 1e-6


class BatchNormMLP(nn.Module):
    """Dense -> BatchNorm -> relu -> Dense; BatchNorm uses running averages when
    ``deterministic`` (evaluation) and batch statistics, updating the averages, otherwise."""

    @nn.compact
    def __call__(self, x, *, deterministic):
        x = nn.Dense(16)(x)
        x = nn.BatchNorm(use_running_average=deterministic, momentum=0.8)(x)
        return nn.Dense(3)(nn.relu(x))


@pytest.fixture(scope="module")
def split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))


@pytest.fixture(scope="module")
def task():
    return jt.classification_task(lambda hp: BatchNormMLP(), num_classes=3, input_shape=(13,),
                                  model_state=True)


def hand_written(split, learning_rate, key):
    """Flax linen training of the config, written out: TrainState-free, same keys/batches."""
    model, opt = BatchNormMLP(), optax.sgd(learning_rate)
    variables = model.init({"params": jax.random.fold_in(key, 0)},
                           jnp.zeros((1, 13)), deterministic=True)
    params, stats = variables["params"], variables["batch_stats"]
    opt_state, train_key = opt.init(params), jax.random.fold_in(key, 1)
    x, y = jnp.asarray(split.x_train), jnp.asarray(split.y_train)

    def loss_fn(params, stats, xb, yb, dropout_key):
        logits, updated = model.apply({"params": params, "batch_stats": stats}, xb,
                                      deterministic=False, rngs={"dropout": dropout_key},
                                      mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, updated["batch_stats"]

    @jax.jit
    def train_step(params, stats, opt_state, t):
        batch_key, dropout_key = jax.random.split(jax.random.fold_in(train_key, t))
        idx = data_lib.sample_batch_indices(batch_key, x.shape[0], BATCH)
        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, stats, x[idx], y[idx], dropout_key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state

    for t in range(NUM_STEPS):
        params, stats, opt_state = train_step(params, stats, opt_state, t)
    logits = model.apply({"params": params, "batch_stats": stats}, jnp.asarray(split.x_valid),
                         deterministic=True)
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(split.y_valid)))
    return params, stats, accuracy


def test_members_carry_their_own_batch_statistics_and_equal_a_flax_loop(split, task):
    configs = [{"learning_rate": lr, "optimizer": "sgd"} for lr in (0.05, 0.5)]
    results, kept = jt.train(task, configs, split, num_steps=NUM_STEPS, batch_size=BATCH,
                             steps_per_segment=6, evaluate_test=False, return_params=True)
    keys = engine.member_keys(0, [0, 0], configs, [None, None])
    (params0, state0), (_, state1) = kept
    # Each member's running statistics are its own (they moved away from init, differently).
    mean0, mean1 = state0["batch_stats"]["BatchNorm_0"]["mean"], \
        state1["batch_stats"]["BatchNorm_0"]["mean"]
    assert np.abs(mean0).max() > 1e-3 and not np.allclose(mean0, mean1)
    params, stats, accuracy = hand_written(split, 0.05, keys[0])
    compare = lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)  # noqa: E731
    jax.tree_util.tree_map(compare, params0, params)
    jax.tree_util.tree_map(compare, state0["batch_stats"], stats)
    # Evaluation used the member's running averages (the hand-written eval's accuracy).
    assert results.rows[0].metrics["valid_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_a_batchnorm_model_without_model_state_is_refused_before_compiling(split):
    task = jt.classification_task(lambda hp: BatchNormMLP(), num_classes=3, input_shape=(13,))
    with pytest.raises(ValueError, match="model_state=True"):
        jt.train(task, [{"learning_rate": 0.1}], split, num_steps=2, batch_size=BATCH)
