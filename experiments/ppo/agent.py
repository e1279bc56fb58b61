"""PPO (clipped objective, GAE, minibatch epochs) as one training function jaxtune sweeps.

Written in the PureJaxRL style (one pure function, nested ``lax.scan``s, vectorised
environments), with one difference that matters for tuning: every value that may change is a
*traced argument* (``hp``), never a constant of the program, so a sweep over learning rates,
clip ranges or discounts compiles once. Only what sets a shape or a loop count is static: the
:class:`Config`.

``make_agent(env, config)`` returns ``(init, segment)``:

- ``init(key, hp) -> AgentState``: network, optimizer state, ``num_envs`` environments;
- ``segment(state, key, hp) -> (state, metrics)``: ``config.updates_per_segment`` PPO
  updates, each ``config.num_steps`` steps of every environment followed by
  ``config.update_epochs`` epochs of ``config.num_minibatches`` minibatch steps.

Metrics of a segment: ``episode_return`` (mean return of the episodes that ended in the
segment; when none ended, the previous value, so the curve stays finite), ``episodes`` (how
many ended), ``env_steps`` (environment steps since ``init``, all environments) and ``loss``
(mean PPO loss over the segment's minibatch steps).

Dynamic hyperparameters (``hp``, traced ``float32``): ``learning_rate`` (annealed linearly to
0 over ``config.total_updates`` when ``config.anneal_lr``), ``clip_eps``, ``ent_coef``,
``vf_coef``, ``gae_lambda``, ``gamma``, ``max_grad_norm``. Names missing from ``hp`` take
:data:`DEFAULTS` (PureJaxRL's CartPole values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from .cartpole import Env

DEFAULTS: Mapping[str, float] = {
    "learning_rate": 2.5e-4, "clip_eps": 0.2, "ent_coef": 0.01, "vf_coef": 0.5,
    "gae_lambda": 0.95, "gamma": 0.99, "max_grad_norm": 0.5,
}


class Config(NamedTuple):
    """The static settings (each value is its own compiled program).

    Attributes:
      num_envs: environments stepped together (``vmap``).
      num_steps: steps of each environment per update (the rollout length).
      num_minibatches: minibatches per epoch (must divide ``num_envs * num_steps``).
      update_epochs: passes over each rollout.
      updates_per_segment: PPO updates in one ``segment`` call.
      total_updates: the horizon of the learning-rate annealing.
      hidden: width of the actor's and the critic's two hidden layers.
      anneal_lr: anneal the learning rate linearly to 0 over ``total_updates``.
    """

    num_envs: int = 4
    num_steps: int = 128
    num_minibatches: int = 4
    update_epochs: int = 4
    updates_per_segment: int = 16
    total_updates: int = 976
    hidden: int = 64
    anneal_lr: bool = True

    @property
    def env_steps_per_segment(self) -> int:
        return self.num_envs * self.num_steps * self.updates_per_segment


class ActorCritic(nn.Module):
    """Separate two-layer tanh towers for the policy's logits and the state value."""

    num_actions: int
    hidden: int = 64

    def setup(self) -> None:
        def dense(size: int, scale: float) -> nn.Dense:
            return nn.Dense(size, kernel_init=nn.initializers.orthogonal(scale),
                            bias_init=nn.initializers.zeros)

        self.actor = [dense(self.hidden, np.sqrt(2)), dense(self.hidden, np.sqrt(2)),
                      dense(self.num_actions, 0.01)]
        self.critic = [dense(self.hidden, np.sqrt(2)), dense(self.hidden, np.sqrt(2)),
                       dense(1, 1.0)]

    @staticmethod
    def _tower(layers: list[nn.Dense], x: jax.Array) -> jax.Array:
        x = nn.tanh(layers[0](x))
        return layers[2](nn.tanh(layers[1](x)))

    def value(self, obs: jax.Array) -> jax.Array:
        """The critic alone: ``V(obs)``."""
        return self._tower(self.critic, obs)[..., 0]

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._tower(self.actor, obs), self.value(obs)


class AgentState(NamedTuple):
    """One member's carry: the learner, its environments and episode bookkeeping."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array                 # [num_envs, obs_size]
    episode_return: jax.Array      # [num_envs] return so far of each running episode
    last_return: jax.Array         # mean return of the last episodes that ended
    updates: jax.Array             # PPO updates done (int32)


class Rollout(NamedTuple):
    """``num_steps`` steps of every environment (leaves ``[num_steps, num_envs, ...]``)."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    next_value: jax.Array          # value of the state each step led to (before a reset)


def _hp(hp: Mapping[str, Any], name: str) -> jax.Array:
    return jnp.asarray(hp[name] if name in hp else DEFAULTS[name], jnp.float32)


def gae(rollout: Rollout, gamma: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Generalized advantage estimates and value targets (Schulman et al., 2016).

    ``delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)`` and
    ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}``: a truncated episode (time
    limit) is bootstrapped from the value of the state it stopped in; a terminated one is not.

    Returns:
      ``(advantages, targets)``, both ``[num_steps, num_envs]``; ``targets = A + V``.
    """
    not_terminal = 1.0 - rollout.terminated.astype(jnp.float32)
    not_done = 1.0 - rollout.done.astype(jnp.float32)
    deltas = rollout.reward + gamma * not_terminal * rollout.next_value - rollout.value

    def back(advantage, inputs):
        delta, keep = inputs
        advantage = delta + gamma * lam * keep * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, not_done),
                                 reverse=True)
    return advantages, advantages + rollout.value


def ppo_loss(network: ActorCritic, params: Any, batch: Rollout, advantages: jax.Array,
             targets: jax.Array, hp: Mapping[str, Any]) -> tuple[jax.Array, dict[str, Any]]:
    """The clipped PPO objective with a clipped value loss and an entropy bonus (to minimize).

    ``L = -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)) + vf_coef * L_V - ent_coef * H``
    with ``rho = pi(a|s) / pi_old(a|s)``, advantages normalized over the minibatch and
    ``L_V = 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2))``.
    """
    clip_eps = _hp(hp, "clip_eps")
    logits, value = network.apply(params, batch.obs)
    log_probs = jax.nn.log_softmax(logits)
    log_prob = jnp.take_along_axis(log_probs, batch.action[..., None], axis=-1)[..., 0]
    ratio = jnp.exp(log_prob - batch.log_prob)
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    actor = -jnp.minimum(ratio * advantages,
                         jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages).mean()
    clipped_value = batch.value + jnp.clip(value - batch.value, -clip_eps, clip_eps)
    critic = 0.5 * jnp.maximum((value - targets) ** 2, (clipped_value - targets) ** 2).mean()
    entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()
    total = actor + _hp(hp, "vf_coef") * critic - _hp(hp, "ent_coef") * entropy
    return total, {"actor": actor, "critic": critic, "entropy": entropy}


def _scan(fn: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any) -> tuple[Any, Any]:
    """``lax.scan(fn, carry, xs)``; a scan of length 1 is a plain call (a smaller program:
    the tests' tiny agents compile faster, the results are the same)."""
    if jax.tree_util.tree_leaves(xs)[0].shape[0] != 1:
        return jax.lax.scan(fn, carry, xs)
    carry, out = fn(carry, jax.tree_util.tree_map(lambda x: x[0], xs))
    return carry, jax.tree_util.tree_map(lambda x: x[None], out)


def _optimizer(hp: Mapping[str, Any]) -> optax.GradientTransformation:
    """Global-norm clipping then Adam's direction (eps 1e-5); the step size is applied apart."""
    return optax.chain(optax.clip_by_global_norm(_hp(hp, "max_grad_norm")),
                       optax.scale_by_adam(eps=1e-5))


def _check(env: Env, config: Config) -> None:
    for field in ("num_envs", "num_steps", "num_minibatches", "update_epochs",
                  "updates_per_segment", "total_updates", "hidden"):
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Config.{field}={value!r} must be a positive int.")
    if (config.num_envs * config.num_steps) % config.num_minibatches:
        raise ValueError(
            f"Config.num_minibatches={config.num_minibatches} must divide num_envs * "
            f"num_steps = {config.num_envs * config.num_steps}.")
    if not isinstance(env, Env):
        raise TypeError(f"env must be a ppo.cartpole.Env, got {type(env).__name__}.")


def make_agent(env: Env, config: Config | None = None) -> tuple[Callable[..., AgentState],
                                                                Callable[..., Any]]:
    """``(init, segment)`` of a PPO agent on ``env`` (``config``: default :class:`Config`)."""
    config = Config() if config is None else config
    _check(env, config)
    network = ActorCritic(env.num_actions, config.hidden)
    steps = jax.vmap(env.step)
    batch_size = config.num_envs * config.num_steps

    def init(key: jax.Array, hp: Mapping[str, Any]) -> AgentState:
        net_key, env_key = jax.random.split(key)
        params = network.init(net_key, jnp.zeros((env.obs_size,), jnp.float32))
        obs, env_state = jax.vmap(env.reset)(jax.random.split(env_key, config.num_envs))
        return AgentState(params, _optimizer(hp).init(ravel_pytree(params)[0]), env_state, obs,
                          jnp.zeros((config.num_envs,), jnp.float32), jnp.zeros((), jnp.float32),
                          jnp.zeros((), jnp.int32))

    def act(carry, key):
        """One step of every environment under the current policy."""
        state, finished_sum, finished_count = carry
        action_key, step_key = jax.random.split(key)
        logits, value = network.apply(state.params, state.obs)
        action = jax.random.categorical(action_key, logits)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
        out = steps(jax.random.split(step_key, config.num_envs), state.env_state, action)
        next_value = network.apply(state.params, out.final_obs, method=ActorCritic.value)
        done = out.terminated | out.truncated
        episode_return = state.episode_return + out.reward
        finished_sum = finished_sum + jnp.where(done, episode_return, 0.0).sum()
        finished_count = finished_count + done.sum()
        step = Rollout(state.obs, action, log_prob, value, out.reward, out.terminated, done,
                       next_value)
        state = state._replace(env_state=out.state, obs=out.obs,
                               episode_return=jnp.where(done, 0.0, episode_return))
        return (state, finished_sum, finished_count), step

    def learn(state: AgentState, rollout: Rollout, key: jax.Array, hp):
        advantages, targets = gae(rollout, _hp(hp, "gamma"), _hp(hp, "gae_lambda"))
        flat = jax.tree_util.tree_map(lambda x: x.reshape(batch_size, *x.shape[2:]),
                                      (rollout, advantages, targets))
        frac = jnp.maximum(1.0 - state.updates.astype(jnp.float32) / config.total_updates, 0.0)
        learning_rate = _hp(hp, "learning_rate") * (frac if config.anneal_lr else 1.0)
        optimizer = _optimizer(hp)

        def minibatch(carry, batch):
            params, opt_state = carry
            (loss, _), grads = jax.value_and_grad(
                lambda p: ppo_loss(network, p, *batch, hp), has_aux=True)(params)
            # The optimizer sees one flat vector (Adam is elementwise, the clipping norm is
            # global): the same update as per leaf, in a program a few times smaller.
            flat_grads, unravel = ravel_pytree(grads)
            updates, opt_state = optimizer.update(flat_grads, opt_state)
            params = optax.apply_updates(params, unravel(-learning_rate * updates))
            return (params, opt_state), loss

        def epoch(carry, epoch_key):
            if config.num_minibatches == 1:  # one minibatch: its order changes nothing
                batches = jax.tree_util.tree_map(lambda x: x[None], flat)
            else:
                order = jax.random.permutation(epoch_key, batch_size)
                batches = jax.tree_util.tree_map(
                    lambda x: x[order].reshape(config.num_minibatches, -1, *x.shape[1:]), flat)
            return _scan(minibatch, carry, batches)

        (params, opt_state), losses = _scan(
            epoch, (state.params, state.opt_state),
            jax.random.split(key, config.update_epochs))
        return state._replace(params=params, opt_state=opt_state,
                              updates=state.updates + 1), losses.mean()

    def segment(state: AgentState, key: jax.Array, hp: Mapping[str, Any]):
        def update(carry, update_key):
            rollout_key, learn_key = jax.random.split(update_key)
            (state, finished_sum, finished_count), rollout = jax.lax.scan(
                act, carry, jax.random.split(rollout_key, config.num_steps))
            state, loss = learn(state, rollout, learn_key, hp)
            return (state, finished_sum, finished_count), loss

        zero = jnp.zeros((), jnp.float32)
        (state, finished_sum, finished_count), losses = _scan(
            update, (state, zero, zero), jax.random.split(key, config.updates_per_segment))
        mean_return = jnp.where(finished_count > 0,
                                finished_sum / jnp.maximum(finished_count, 1.0),
                                state.last_return)
        state = state._replace(last_return=mean_return)
        env_steps = (state.updates.astype(jnp.float32) * config.num_envs * config.num_steps)
        return state, {"episode_return": mean_return, "episodes": finished_count,
                       "env_steps": env_steps, "loss": losses.mean()}

    return init, segment
