"""The PPO agent of experiments/ppo as a whole training function: a tiny sweep through the
engine equals the same init/segment functions called in a Python loop with the engine's keys;
learning rate 0 leaves the parameters as initialized; GAE against a direct sum; the project's
CartPole-v1 against gymnax's, step for step (when gymnax is installed: the rl extra)."""

from __future__ import annotations

import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from ppo import agent, cartpole

sys.path.pop(0)

TINY = agent.Config(num_envs=2, num_steps=8, num_minibatches=1, update_epochs=1,
                    updates_per_segment=1, total_updates=4, hidden=8)


def test_a_ppo_sweep_through_the_engine_equals_a_python_loop_and_lr_0_keeps_the_init():
    init, segment = agent.make_agent(cartpole.cartpole(), TINY)
    step = jt.training_function(init, segment, name="ppo",
                                metric_modes={"episode_return": "max"})
    configs = [{"learning_rate": 0.01, "clip_eps": 0.2}, {"learning_rate": 0.0, "clip_eps": 0.1}]
    results, carries = jt.train(step, configs, None, num_steps=2, steps_per_segment=1,
                                return_params=True)
    assert results.metadata["num_segment_compilations"] == 1
    keys = engine.member_keys(0, [0, 0], configs, [None, None])
    init_jit, segment_jit = jax.jit(init), jax.jit(segment)
    for row, carry, config, key in zip(results, carries, configs, keys, strict=True):
        key = jnp.asarray(key)
        hp = {name: jnp.float32(value) for name, value in config.items()}
        state = init_jit(jax.random.fold_in(key, 0), hp)
        start = state.params
        train_key = jax.random.fold_in(key, 1)
        returns = []
        for index in range(2):
            _, member_key = jax.random.split(jax.random.fold_in(train_key, index))
            state, metrics = segment_jit(state, member_key, hp)
            returns.append(float(metrics["episode_return"]))
        # Same functions, same keys: the engine's vmapped program and this one differ only in
        # XLA's reduction order.
        chex.assert_trees_all_close(carry.params, state.params, atol=1e-5, rtol=1e-5)
        assert int(carry.updates) == 2 * TINY.updates_per_segment
        assert row.metrics["valid_env_steps"] == 2 * TINY.env_steps_per_segment
        assert row.metrics["valid_episode_return"] == pytest.approx(returns[-1], rel=1e-5)
        if config["learning_rate"] == 0.0:
            chex.assert_trees_all_equal(carry.params, start)
        else:
            assert not np.allclose(carry.params["params"]["actor_0"]["kernel"],
                                   start["params"]["actor_0"]["kernel"])


def test_gae_equals_the_discounted_sum_of_td_errors():
    rng = np.random.default_rng(0)
    steps = 6
    reward = rng.normal(size=(steps, 1)).astype(np.float32)
    value = rng.normal(size=(steps, 1)).astype(np.float32)
    next_value = rng.normal(size=(steps, 1)).astype(np.float32)
    terminated = np.zeros((steps, 1), bool)
    terminated[2] = True  # a terminal step: no bootstrap, and the sum stops there
    truncated_at = 4  # a time limit: bootstrapped from next_value, the sum stops there
    done = terminated.copy()
    done[truncated_at] = True
    rollout = agent.Rollout(None, None, None, jnp.asarray(value), jnp.asarray(reward),
                            jnp.asarray(terminated), jnp.asarray(done), jnp.asarray(next_value))
    gamma, lam = 0.9, 0.8
    advantages, targets = agent.gae(rollout, jnp.float32(gamma), jnp.float32(lam))
    delta = reward + gamma * (1 - terminated) * next_value - value
    for t in range(steps):
        expected, weight = 0.0, 1.0
        for u in range(t, steps):
            expected += weight * delta[u, 0]
            if done[u, 0]:
                break
            weight *= gamma * lam
        assert float(advantages[t, 0]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    chex.assert_trees_all_close(targets, advantages + value, rtol=1e-6)


def test_project_cartpole_equals_gymnax_cartpole():
    pytest.importorskip("gymnax")
    ours, theirs = cartpole.cartpole(), cartpole.from_gymnax("CartPole-v1")

    def rollout(env, key):
        obs, state = env.reset(key)

        def body(carry, step_key):
            obs, state = carry
            policy_key, env_key = jax.random.split(step_key)
            # Mostly a balancing controller (episodes reach the 500-step limit), with noise.
            balance = (obs[2] + 0.5 * obs[3] > 0).astype(jnp.int32)
            action = jnp.where(jax.random.uniform(policy_key) < 0.1, 1 - balance, balance)
            out = env.step(env_key, state, action)
            return (out.obs, out.state), (out.obs, out.reward, out.terminated, out.truncated,
                                          out.final_obs)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, 1200))[1]

    a = jax.jit(lambda k: rollout(ours, k))(jax.random.key(0))
    b = jax.jit(lambda k: rollout(theirs, k))(jax.random.key(0))
    assert int(a[3].sum()) >= 1  # the time limit was reached
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
