"""CartPole-v1 as pure JAX functions, with the interface the PPO agent uses.

An :class:`Env` is a pair of pure functions over an explicit state, for one environment
(the agent ``vmap``s them over its environments)::

    reset(key) -> (obs, state)
    step(key, state, action) -> Transition(obs, state, reward, terminated, truncated, final_obs)

``step`` resets an environment whose episode ended (``terminated`` or ``truncated``): ``obs``
and ``state`` are then the new episode's, and ``final_obs`` is the observation the episode
ended on (for bootstrapping the value of a truncated episode).

:func:`cartpole` is gymnax's ``CartPole-v1`` written out (the same Euler integration,
thresholds, 500-step limit, uniform ``[-0.05, 0.05]`` reset and key split), so the tests need
no gymnax; :func:`from_gymnax` wraps gymnax's environment itself (``pip install
jaxtune[rl]``), which the experiment trains on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Transition(NamedTuple):
    """What one environment step returns (leaves unbatched)."""

    obs: jax.Array
    state: Any
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array


class Env(NamedTuple):
    """An environment: ``reset(key)``, ``step(key, state, action)`` and its sizes."""

    reset: Callable[[jax.Array], tuple[jax.Array, Any]]
    step: Callable[[jax.Array, Any, jax.Array], Transition]
    obs_size: int
    num_actions: int
    name: str


class CartPoleState(NamedTuple):
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


# gymnax's CartPole-v1 EnvParams (those of OpenAI Gym's CartPole-v1).
GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_CART + MASS_POLE
LENGTH = 0.5  # half the pole's length
POLE_MASS_LENGTH = MASS_POLE * LENGTH
FORCE = 10.0
TAU = 0.02  # seconds per step
THETA_LIMIT = 12 * 2 * jnp.pi / 360
X_LIMIT = 2.4
MAX_STEPS = 500


def _observe(state: CartPoleState) -> jax.Array:
    return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot])


def _reset(key: jax.Array) -> tuple[jax.Array, CartPoleState]:
    x, x_dot, theta, theta_dot = jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)
    state = CartPoleState(x, x_dot, theta, theta_dot, jnp.zeros((), jnp.int32))
    return _observe(state), state


def _physics(state: CartPoleState, action: jax.Array) -> CartPoleState:
    force = FORCE * action - FORCE * (1 - action)
    cos, sin = jnp.cos(state.theta), jnp.sin(state.theta)
    temp = (force + POLE_MASS_LENGTH * state.theta_dot**2 * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / TOTAL_MASS))
    x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
    return CartPoleState(
        x=state.x + TAU * state.x_dot,
        x_dot=state.x_dot + TAU * x_acc,
        theta=state.theta + TAU * state.theta_dot,
        theta_dot=state.theta_dot + TAU * theta_acc,
        time=state.time + 1,
    )


def _step(key: jax.Array, state: CartPoleState, action: jax.Array) -> Transition:
    _, reset_key = jax.random.split(key)  # gymnax splits (step key, reset key) the same way
    after = _physics(state, action)
    terminated = (jnp.abs(after.x) > X_LIMIT) | (jnp.abs(after.theta) > THETA_LIMIT)
    truncated = after.time >= MAX_STEPS
    done = terminated | truncated
    reset_obs, reset_state = _reset(reset_key)
    state = jax.tree_util.tree_map(lambda r, a: jnp.where(done, r, a), reset_state, after)
    final_obs = _observe(after)
    return Transition(jnp.where(done, reset_obs, final_obs), state, jnp.ones((), jnp.float32),
                      terminated, truncated, final_obs)


def cartpole() -> Env:
    """CartPole-v1 (gymnax's dynamics, written here): 4 observations, 2 actions."""
    return Env(_reset, _step, obs_size=4, num_actions=2, name="CartPole-v1 (project)")


def from_gymnax(name: str = "CartPole-v1") -> Env:
    """gymnax's own environment ``name`` in the :class:`Env` interface (needs gymnax)."""
    import gymnax  # the rl extra: only the experiment's gymnax runs need it

    env, params = gymnax.make(name)

    def reset(key):
        return env.reset(key, params)

    def step(key, state, action):
        obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
        return Transition(obs, state, jnp.asarray(reward, jnp.float32), terminated, truncated,
                          info["final_observation"])

    return Env(reset, step, obs_size=int(env.observation_space(params).shape[0]),
               num_actions=int(env.action_space(params).n), name=f"{name} (gymnax)")
