"""Learning-rate schedules on digits: fixed vs inverse-time vs exponential vs cosine vs
warmup-cosine, each with its own parameters tuned by random search at the same budget.

An MLP (64-64-10) trained by SGD with momentum 0.9 (where the schedule matters most), batch 64.
Each schedule gets the same number of random configs over the peak learning rate and its own
parameters (inverse time: ``lr_decay``; exponential: ``decay_rate`` with ``transition_steps``
= the run length, i.e. the final-to-initial ratio; cosine and warmup-cosine: the final fraction
``alpha``; warmup: 10% of the steps). The peak learning rates are drawn once and shared by every
schedule (common random numbers for a paired comparison); each schedule's own parameters are
drawn separately. A schedule is one static group, so its whole search is one compiled
population; picks are by validation accuracy (mean over two seeds), scored on the test rows.

    python experiments/lr_schedules.py            # default budget (a few minutes)
    python experiments/lr_schedules.py --smoke    # tiny budget
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

SCHEDULE_PARAMS = {  # schedule -> its tuned parameters besides the learning rate
    "constant": (),
    "inverse_time": ("lr_decay",),
    "exponential": ("decay_rate",),
    "cosine": ("alpha",),
    "warmup_cosine": ("alpha",),
}


def schedule_space(schedule: str, num_steps: int):
    """The search space of one schedule: peak learning rate plus its own parameters."""
    import jaxtune as jt

    entries = {
        "learning_rate": jt.Float(1e-3, 1.0, log=True),
        "schedule": jt.Fixed(schedule),
        "optimizer": jt.Fixed("momentum"),
        "width": jt.Fixed(64),
        "depth": jt.Fixed(1),
    }
    if schedule == "inverse_time":
        entries["lr_decay"] = jt.Float(1e-4, 1e-1, log=True)
    if schedule == "exponential":
        entries["decay_rate"] = jt.Float(1e-3, 1.0, log=True)
        entries["transition_steps"] = jt.Fixed(num_steps)
    if schedule in ("cosine", "warmup_cosine"):
        entries["alpha"] = jt.Float(0.0, 0.3)
    if schedule == "warmup_cosine":
        entries["warmup_steps"] = jt.Fixed(max(num_steps // 10, 1))
    return jt.Space(entries)


def schedule_configs(schedule: str, num_steps: int, num_configs: int, seed: int) -> list[dict]:
    """``num_configs`` random configs of one schedule, with the same peak rates for every schedule.

    The learning rates are one draw from ``[1e-3, 1]`` (log-uniform) with a key that depends only
    on ``seed``, so config ``i`` of every schedule has the same peak rate; the schedule's own
    parameters come from a second, independent key. (Sampling each schedule's whole space would
    not share the rates: spaces of different dimension map the same key to different points.)
    """
    import jax

    import jaxtune as jt

    rate_key, param_key = jax.random.split(jax.random.PRNGKey(seed))
    rates = jt.Space({"learning_rate": jt.Float(1e-3, 1.0, log=True)}).sample(rate_key,
                                                                              num_configs)
    configs = schedule_space(schedule, num_steps).sample(param_key, num_configs)
    return [{**config, "learning_rate": rate["learning_rate"]}
            for config, rate in zip(configs, rates, strict=True)]


def listed(configs: Sequence[dict]):
    """A strategy that proposes ``configs`` in order (the search itself happened beforehand)."""
    import jaxtune as jt

    def init(space, key):
        return 0

    def ask(state, num):
        return [dict(c) for c in configs[state:state + num]], state + min(num, len(configs) - state)

    def tell(state, asked, scores):
        return state

    return jt.Strategy(init, ask, tell)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the experiment; returns the exit status."""
    p = _common.parser(__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--num-configs", type=int, default=24, help="random configs per schedule")
    p.add_argument("--num-steps", type=int, default=600)
    p.add_argument("--schedules", default=None,
                   help="comma-separated subset of " + ",".join(SCHEDULE_PARAMS)
                        + " (default: all)")
    args = p.parse_args(argv)
    schedules = [s.strip() for s in (args.schedules or ",".join(SCHEDULE_PARAMS)).split(",")
                 if s.strip()]
    unknown = sorted(set(schedules) - set(SCHEDULE_PARAMS))
    if unknown or not schedules:
        p.error(f"--schedules: unknown {unknown}; choose from {','.join(SCHEDULE_PARAMS)}")
    import jaxtune as jt

    timer = _common.Timer()
    smoke = args.smoke
    num_configs = 3 if smoke else args.num_configs
    num_steps = 30 if smoke else args.num_steps
    steps_per_segment = num_steps // 2 if smoke else max(num_steps // 30, 1)
    seeds = (0, 1)
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), 0.2, 0.2,
                                                     seed=args.seed))
    task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))

    picks = {}
    for schedule in schedules:
        space = schedule_space(schedule, num_steps)
        configs = schedule_configs(schedule, num_steps, num_configs, args.seed)
        results = jt.tune(task, split, space, listed(configs), num_configs=num_configs,
                          num_steps=num_steps, seeds=seeds, batch_size=64,
                          steps_per_segment=steps_per_segment, seed=args.seed)
        groups = results.aggregate("valid_accuracy", "max")
        best = groups[0]
        members = [r for r in results if r.member_id in best["members"]]
        picks[schedule] = {
            "config": best["config"], "valid": best["mean"], "valid_sem": best["sem"],
            "test": float(np.mean([r.metrics["test_accuracy"] for r in members])),
            "steps": members[0].curve_steps,
            "curve": np.mean([r.curves["valid_accuracy"] for r in members], axis=0),
            "median": float(np.median([g["mean"] for g in groups])),
            "num_diverged": sum(r.status == "diverged" for r in results),
        }

    rows = []
    for schedule, pick in picks.items():
        config = pick["config"]
        params = ", ".join(f"{n} {config[n]:.3g}" for n in SCHEDULE_PARAMS[schedule]) or "-"
        rows.append([schedule, config["learning_rate"], params, pick["valid"],
                     pick["valid_sem"], pick["test"], pick["median"], pick["num_diverged"]])
    table = _common.markdown_table(
        ["schedule", "tuned peak lr", "tuned schedule parameters", "valid accuracy", "sem",
         "test accuracy", "median valid accuracy of its configs", "diverged members"], rows)
    sections = [
        f"Data: digits, 1797 rows split 60/20/20, standardized on the training rows. MLP "
        f"64-64-10, SGD with momentum 0.9, batch 64, {num_steps} steps. Each schedule: "
        f"{num_configs} random configs x {len(seeds)} seeds, peak learning rate log-uniform in "
        f"[1e-3, 1], the same {num_configs} rates for every schedule (drawn once); lr_decay "
        f"log-uniform in [1e-4, 0.1]; exponential decay_rate (final/initial ratio) log-uniform "
        f"in [1e-3, 1]; alpha uniform in [0, 0.3]; warmup "
        f"{max(num_steps // 10, 1)} steps. Picks by validation accuracy (mean over seeds).",
        table,
    ]

    import matplotlib.pyplot as plt

    figure, (ax_lr, ax_curve) = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = np.arange(num_steps)
    for schedule, pick in picks.items():
        config = dict(pick["config"])
        lr = np.asarray(jt.make_schedule(config, num_steps)(steps))
        ax_lr.plot(steps, lr, label=schedule)
        ax_curve.plot(pick["steps"], pick["curve"], label=f"{schedule} (test {pick['test']:.3f})")
    ax_lr.set_yscale("log")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate of the tuned config")
    ax_lr.legend(fontsize=8)
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel("validation accuracy (mean over seeds)")
    ax_curve.set_ylim(max(0.0, min(p["valid"] for p in picks.values()) - 0.15), 1.0)
    ax_curve.legend(fontsize=8)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    _common.save_figure(figure, args.out, "lr_schedules")
    path = _common.write_report(
        args.out, "lr_schedules", "Learning-rate schedules, each tuned at the same budget",
        _common.command_line("lr_schedules.py", argv_list), sections, timer.seconds)
    print(table)
    print(f"wrote {path} and {path.with_suffix('.png')} ({timer.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    _common.setup_jax()
    sys.exit(main())
