"""PPO on gymnax's CartPole-v1, a whole training function swept by jaxtune: PureJaxRL's
settings over seeds, random search, and population based training, at 5e5 environment steps.

The agent (experiments/ppo/agent.py) is PPO written here in the PureJaxRL style: 4
environments x 128 steps per update, 4 epochs of 4 minibatches, Adam (eps 1e-5) with
global-norm clipping 0.5, the learning rate annealed linearly to 0, a 64-64 tanh actor and
critic. jaxtune runs it as ``jaxtune.training_function(init, segment)``: one engine step is
``segment``, 61 PPO updates (31,232 environment steps), and 16 of them make 499,712 steps.
Every PPO hyperparameter is a traced value, so each run below is one compiled program for all
its members:

1. PureJaxRL's CartPole settings (lr 2.5e-4, clip 0.2, entropy 0.01, lambda 0.95, gamma
   0.99) over several seeds: the reference point for the published "about 500 within 5e5
   steps";
2. random search over learning rate, clip range, entropy coefficient, GAE lambda and gamma
   (``jaxtune.tune``);
3. PBT over the same space (``jaxtune.run_pbt``): every 2 segments the worst quarter copies
   the best quarter's agent and perturbs its values.

The figure plots each run's mean episode return (episodes that ended in the segment) against
environment steps.

    python experiments/ppo_cartpole.py               # the full budget (several minutes)
    python experiments/ppo_cartpole.py --smoke       # a tiny budget, the project's CartPole
    python experiments/ppo_cartpole.py --check-env   # the project's CartPole against gymnax
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

NAME = "ppo_cartpole"
PUBLISHED = "about 500 within 5e5 steps (PureJaxRL's CartPole-v1 plot)"


def search_space():
    """The values random search and PBT explore (all dynamic: one program)."""
    import jaxtune as jt

    return jt.Space({
        "learning_rate": jt.Float(1e-4, 3e-3, log=True),
        "clip_eps": jt.Float(0.1, 0.3),
        "ent_coef": jt.Float(1e-4, 0.05, log=True),
        "gae_lambda": jt.Float(0.8, 0.99),
        "gamma": jt.Float(0.95, 0.999),
    })


def make_step(env_name: str, smoke: bool):
    """The agent as a jaxtune training function, and its static settings."""
    from ppo import agent, cartpole

    import jaxtune as jt

    env = cartpole.cartpole() if env_name == "project" else cartpole.from_gymnax("CartPole-v1")
    if smoke:
        config = agent.Config(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1,
                              updates_per_segment=2, total_updates=8, hidden=16)
    else:
        config = agent.Config(updates_per_segment=61, total_updates=61 * 16)
    init, segment = agent.make_agent(env, config)
    step = jt.training_function(init, segment, name=f"ppo[{env.name}]",
                                metric_modes={"episode_return": "max"})
    return step, config


def _curve(rows) -> tuple[np.ndarray, np.ndarray]:
    """Mean episode return per segment over ``rows``, against environment steps."""
    returns = np.mean([r.curves["train_episode_return"] for r in rows], axis=0)
    steps = np.asarray(rows[0].curves["train_env_steps"])
    return steps, returns


def _first_reaching(steps: np.ndarray, returns: np.ndarray, level: float) -> float:
    hits = np.nonzero(returns >= level)[0]
    return float(steps[hits[0]]) if len(hits) else float("nan")


def run_all(step, num_segments: int, population: int, seeds: int, seed: int):
    """The three runs; returns ``{label: rows}`` and the PBT results."""
    from ppo import agent

    import jaxtune as jt

    timer = _common.Timer()

    def progress(report) -> None:
        returns = report.metrics.get("train_episode_return")
        best = float(np.nanmax(returns)) if returns is not None else float("nan")
        print(f"[{timer.seconds:6.0f} s] segment {report.step}/{report.num_steps}: best "
              f"return {best:.1f}", file=sys.stderr, flush=True)

    common = {"num_steps": num_segments, "steps_per_segment": 1, "on_segment": progress}
    defaults = [dict(agent.DEFAULTS)]
    baseline = jt.train(step, defaults * seeds, None, member_seeds=list(range(seeds)),
                        seed=seed, **common)
    space = search_space()
    random = jt.tune(step, None, space, jt.random_search(), num_configs=population,
                     seed=seed, **common)
    pbt = jt.run_pbt(step, None, space, population_size=population, interval_segments=2,
                     seed=seed, **common)
    return {"PureJaxRL settings": list(baseline), "random search": list(random),
            "PBT": list(pbt)}


def _table(runs: dict[str, list[Any]]) -> str:
    rows = []
    for label, members in runs.items():
        finals = [r.curves["train_episode_return"][-1] for r in members]
        best = max(members, key=lambda r: r.curves["train_episode_return"][-1])
        steps, best_curve = _curve([best])
        _, mean_curve = _curve(members)
        rows.append((label, len(members), float(np.mean(finals)), float(np.max(finals)),
                     _first_reaching(steps, mean_curve, 475.0),
                     _first_reaching(steps, best_curve, 475.0), int(steps[-1])))
    return _common.markdown_table(
        ("run", "members", "final return (mean)", "final return (best)",
         "steps to 475 (mean curve)", "steps to 475 (best member)", "env steps"), rows)


def _curve_table(runs: dict[str, list[Any]]) -> str:
    labels = list(runs)
    steps = _curve(runs[labels[0]])[0]
    columns = [_curve(runs[label])[1] for label in labels]
    best = [_curve([max(runs[label], key=lambda r: r.curves["train_episode_return"][-1])])[1]
            for label in labels]
    header = ("env steps", *(f"{label} (mean)" for label in labels),
              *(f"{label} (best)" for label in labels))
    return _common.markdown_table(
        header, ([int(s), *(float(c[i]) for c in columns), *(float(b[i]) for b in best)]
                 for i, s in enumerate(steps)))


def _figure(runs, out: Path) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.8), sharey=True)
    for ax, (label, members) in zip(np.atleast_1d(axes), runs.items(), strict=True):
        for row in members:
            steps, returns = _curve([row])
            ax.plot(steps, returns, color="tab:blue", alpha=0.3, lw=1)
        steps, returns = _curve(members)
        ax.plot(steps, returns, color="black", lw=2, label="mean over members")
        ax.axhline(500, color="tab:red", ls="--", lw=1, label="maximum (500)")
        ax.set_title(label)
        ax.set_xlabel("environment steps")
        ax.legend(loc="lower right", fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("mean episode return")
    _common.save_figure(figure, out, NAME)


def check_env(num_steps: int = 5000) -> str:
    """The project's CartPole against gymnax's, step for step, under a noisy controller."""
    import jax
    import jax.numpy as jnp
    from ppo import cartpole

    def rollout(env, key):
        obs, state = env.reset(key)

        def body(carry, step_key):
            obs, state = carry
            policy_key, env_key = jax.random.split(step_key)
            balance = (obs[2] + 0.5 * obs[3] > 0).astype(jnp.int32)
            action = jnp.where(jax.random.uniform(policy_key) < 0.1, 1 - balance, balance)
            out = env.step(env_key, state, action)
            return (out.obs, out.state), (out.obs, out.reward, out.terminated, out.truncated)

        return jax.lax.scan(body, (obs, state), jax.random.split(key, num_steps))[1]

    ours = jax.jit(lambda k: rollout(cartpole.cartpole(), k))(jax.random.key(0))
    theirs = jax.jit(lambda k: rollout(cartpole.from_gymnax(), k))(jax.random.key(0))
    equal = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ours, theirs,
                                                                              strict=True))
    return (f"{num_steps} steps: observations, rewards, terminations and truncations "
            f"{'identical' if equal else 'DIFFERENT'}; {int(ours[2].sum())} terminations, "
            f"{int(ours[3].sum())} truncations at the 500-step limit")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the experiment; returns the exit status."""
    p = _common.parser(__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--env", choices=("gymnax", "project"), default=None,
                   help="gymnax's CartPole-v1 (default) or the project's copy (default with "
                        "--smoke: no gymnax needed)")
    p.add_argument("--population", type=int, default=6, help="members of random search / PBT")
    p.add_argument("--seeds", type=int, default=3, help="seeds of PureJaxRL's settings")
    p.add_argument("--check-env", action="store_true",
                   help="only compare the project's CartPole with gymnax's and exit")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    _common.setup_jax()
    if args.check_env:
        print(check_env())
        return 0
    timer = _common.Timer()
    env_name = args.env or ("project" if args.smoke else "gymnax")
    step, config = make_step(env_name, args.smoke)
    num_segments = 3 if args.smoke else 16
    population = 2 if args.smoke else args.population
    runs = run_all(step, num_segments, population, 2 if args.smoke else args.seeds, args.seed)
    _figure(runs, args.out)
    env_steps = num_segments * config.env_steps_per_segment
    sections = [
        f"Environment: {step.name}; {config.num_envs} environments x {config.num_steps} steps "
        f"per update, {config.updates_per_segment} updates per segment, {num_segments} "
        f"segments = {env_steps:,} environment steps per member.",
        "## Summary", _table(runs),
        f"Published for vmapped PPO on CartPole-v1: {PUBLISHED}.",
        "## Mean episode return per segment", _curve_table(runs),
    ]
    _common.write_report(args.out, NAME, "PPO on CartPole-v1: seeds, random search, PBT",
                         _common.command_line("ppo_cartpole.py", argv), sections,
                         timer.seconds)
    print((args.out / f"{NAME}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
