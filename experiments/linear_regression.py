"""Linear regression y = 3x + noise: gradient descent vs SGD vs Adam, fixed vs inverse-time decay
learning rate, no penalty vs L1 vs L2.

Every combination (optimizer x schedule x penalty) gets its learning rate picked from a small
grid by validation MSE (mean over seeds); the table reports the recovered slope and the test
MSE of the pick, next to the slope that exactly minimizes that combination's training objective
(ordinary, lasso and ridge least squares in closed form on the same training rows). All members
(every combination, learning rate and seed) are one ``jaxtune.train`` call: one compiled
population per (optimizer, schedule, batch size).

    python experiments/linear_regression.py            # default budget (seconds to a minute)
    python experiments/linear_regression.py --smoke    # tiny budget
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

TRUE_SLOPE = 3.0
OPTIMIZERS = {  # label -> (jaxtune optimizer, batch size: None = full batch)
    "GD (full batch)": ("sgd", None),
    "SGD (batch 16)": ("sgd", 16),
    "Adam (batch 16)": ("adam", 16),
}
SCHEDULES = {"fixed": "constant", "inverse-time": "inverse_time"}


def optimal_slope(x: np.ndarray, y: np.ndarray, penalty: str, strength: float) -> float:
    """The slope minimizing ``mean((w x + b - y)^2) + penalty`` (intercept unpenalized).

    With centred data, ``var = mean(xc^2)`` and ``cov = mean(xc yc)``: least squares gives
    ``cov / var``; the L2 penalty ``strength * 0.5 w^2`` gives ``2 cov / (2 var + strength)``;
    the L1 penalty ``strength |w|`` soft-thresholds: ``sign(c) max(|c| - strength / 2, 0) / var``
    with ``c = cov``.
    """
    xc = x - x.mean()
    yc = y - y.mean()
    var = float(np.mean(xc * xc))
    cov = float(np.mean(xc * yc))
    if penalty == "none":
        return cov / var
    if penalty == "l2":
        return 2 * cov / (2 * var + strength)
    return float(np.sign(cov) * max(abs(cov) - strength / 2, 0.0) / var)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the experiment; returns the exit status."""
    p = _common.parser(__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--num-steps", type=int, default=300)
    p.add_argument("--penalty-strength", type=float, default=0.1,
                   help="l1 and l2 strength of the penalized runs")
    p.add_argument("--lr-decay", type=float, default=0.02, help="inverse-time decay rate")
    args = p.parse_args(argv)
    import jaxtune as jt

    timer = _common.Timer()
    num_steps = 40 if args.smoke else args.num_steps
    learning_rates = (0.03, 0.3) if args.smoke else (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    seeds = (0,) if args.smoke else (0, 1, 2)
    ds = jt.make_linear(num_samples=500, slope=TRUE_SLOPE, noise=0.5, seed=args.seed)
    split = jt.train_valid_test_split(ds, 0.2, 0.2, seed=args.seed)
    penalties = {"none": (0.0, 0.0), "l1": (args.penalty_strength, 0.0),
                 "l2": (0.0, args.penalty_strength)}

    combos, configs, member_seeds, combo_of = [], [], [], []
    # --smoke: two static groups (GD fixed, Adam inverse-time) to keep compilation short.
    smoke_combos = {("GD (full batch)", "fixed"), ("Adam (batch 16)", "inverse-time")}
    for opt_label, (optimizer, batch_size) in OPTIMIZERS.items():
        for sched_label, schedule in SCHEDULES.items():
            if args.smoke and (opt_label, sched_label) not in smoke_combos:
                continue
            for penalty, (l1, l2) in penalties.items():
                combos.append((opt_label, sched_label, penalty))
                for lr in learning_rates:
                    for s in seeds:
                        config = {"optimizer": optimizer, "schedule": schedule,
                                  "batch_size": batch_size,
                                  "learning_rate": lr, "l1": l1, "l2": l2}
                        if schedule == "inverse_time":
                            config["lr_decay"] = args.lr_decay
                        configs.append(config)
                        member_seeds.append(s)
                        combo_of.append(len(combos) - 1)
    task = jt.regression_task("linear", input_shape=(1,))
    results, params = jt.train(
        task, configs, split, num_steps=num_steps,
        steps_per_segment=num_steps // (2 if args.smoke else 20),
        seed=args.seed, member_seeds=member_seeds, return_params=True,
        static_names=("optimizer", "schedule", "batch_size"),
    )
    slopes = np.array([float(np.ravel(p["Dense_0"]["kernel"])[0]) for p in params])
    valid = np.array([r.score("valid_mse") for r in results])
    test = np.array([r.metrics["test_mse"] for r in results])
    lr_of = np.array([c["learning_rate"] for c in configs])
    combo_of = np.array(combo_of)

    rows, picks = [], []
    for c, (opt_label, sched_label, penalty) in enumerate(combos):
        best_lr, best_valid = None, np.inf
        for lr in learning_rates:
            mask = (combo_of == c) & (lr_of == lr)
            mean_valid = float(np.mean(valid[mask]))
            if np.isfinite(mean_valid) and mean_valid < best_valid:
                best_lr, best_valid = lr, mean_valid
        mask = (combo_of == c) & (lr_of == best_lr)
        l1, l2 = penalties[penalty]
        reference = optimal_slope(split.x_train[:, 0].astype(np.float64),
                                  split.y_train.astype(np.float64), penalty, l1 + l2)
        picks.append(np.flatnonzero(mask)[0])
        rows.append([opt_label, sched_label, penalty, best_lr, float(np.mean(slopes[mask])),
                     float(np.std(slopes[mask])), reference, best_valid,
                     float(np.mean(test[mask]))])

    table = _common.markdown_table(
        ["optimizer", "learning rate", "penalty", "picked lr", "slope (mean over seeds)",
         "slope std", "optimal slope of the objective", "valid MSE", "test MSE"], rows)
    noise_floor = 0.5 ** 2
    sections = [
        f"Data: `make_linear(num_samples=500, slope={TRUE_SLOPE}, noise=0.5)`, split 60/20/20; "
        f"{num_steps} steps per member, learning rate picked from {list(learning_rates)} by "
        f"validation MSE (mean over seeds {list(seeds)}); penalties l1 = l2 = "
        f"{args.penalty_strength}; inverse-time decay `lr / (1 + {args.lr_decay} t)`. "
        f"The noise variance (the best possible MSE) is {noise_floor}. "
        f"{len(results)} members in {results.metadata['num_static_groups']} static groups.",
        table,
    ]

    import matplotlib.pyplot as plt

    figure, (ax_slope, ax_curve) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = [f"{o.split(' ')[0]}/{s}/{pen}" for o, s, pen in combos]
    positions = np.arange(len(rows))
    ax_slope.bar(positions, [r[4] for r in rows], yerr=[r[5] for r in rows], color="tab:blue",
                 label="recovered (mean ± std over seeds)")
    ax_slope.scatter(positions, [r[6] for r in rows], color="tab:orange", zorder=3,
                     label="exact optimum of the objective")
    ax_slope.axhline(TRUE_SLOPE, color="k", lw=0.8, ls="--", label="true slope 3")
    ax_slope.set_xticks(positions, labels, rotation=75, fontsize=7)
    ax_slope.set_ylim(min(2.0, min(r[4] for r in rows) - 0.2), 3.3)
    ax_slope.set_ylabel("slope")
    ax_slope.legend(fontsize=7, loc="lower left")
    for c, (opt_label, sched_label, penalty) in enumerate(combos):
        if penalty != "none":
            continue
        row = results[int(picks[c])]
        ax_curve.plot(row.curve_steps, row.curves["valid_mse"],
                      ls="-" if sched_label == "fixed" else "--",
                      label=f"{opt_label}, {sched_label} (lr {rows[c][3]})")
    ax_curve.axhline(noise_floor, color="k", lw=0.8, ls=":", label="noise variance")
    ax_curve.set_yscale("log")
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel("validation MSE (no penalty, seed 0)")
    ax_curve.legend(fontsize=7)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    _common.save_figure(figure, args.out, "linear_regression")
    path = _common.write_report(
        args.out, "linear_regression", "Linear regression: optimizers, schedules, penalties",
        _common.command_line("linear_regression.py", argv_list), sections, timer.seconds)
    print(table)
    print(f"wrote {path} and {path.with_suffix('.png')} ({timer.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    _common.setup_jax()
    sys.exit(main())
