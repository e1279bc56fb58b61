"""A PPO agent (PureJaxRL style, written for jaxtune) and a CartPole-v1 environment in JAX.

- :mod:`ppo.cartpole`: CartPole-v1 as pure functions (gymnax's dynamics and auto-reset, checked
  against gymnax in ``experiments/ppo_cartpole.py --check-env`` and ``tests/test_ppo.py``),
  and an adapter that wraps gymnax's own environment in the same interface.
- :mod:`ppo.agent`: ``make_agent(env, config) -> (init, segment)``, the whole training function
  jaxtune sweeps (``jaxtune.training_function(init, segment)``).
"""
