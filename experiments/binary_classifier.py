"""Breast cancer, MLP with one hidden layer: a manual choice vs grid vs random vs Bayesian search
at equal budget.

Every search gets the same number of configurations over the same space (learning rate, L2
strength, dropout; width 32, Adam), picks its config by validation log-loss (mean over two
member seeds; log-loss is continuous where accuracy on 114 validation rows moves in steps of
0.9%), and is scored by the accuracy its pick reaches on the validation and the untouched test
rows. Random and Bayesian search are repeated with different search seeds (the grid has nothing
random to repeat). Every round of every search is padded to the same population size, so the
whole experiment runs one compiled program.

    python experiments/binary_classifier.py           # default budget (about a minute or two)
    python experiments/binary_classifier.py --smoke   # tiny budget
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

MANUAL = {"learning_rate": 1e-3, "l2": 1e-4, "dropout": 0.0}  # Adam's default step, light L2


def _strategies(num_float_points: int, round_size: int) -> dict:
    import jaxtune as jt
    from jaxtune.strategies import bayes_search

    return {
        "grid": jt.grid_search(num_float_points=num_float_points),
        "random": jt.random_search(),
        "bayesian": bayes_search(num_initial=round_size),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the experiment; returns the exit status."""
    p = _common.parser(__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--num-float-points", type=int, default=3,
                   help="grid points per axis; the budget of every search is this cubed")
    p.add_argument("--round-size", type=int, default=9,
                   help="configs per round (Bayesian search refits its model between rounds)")
    p.add_argument("--num-steps", type=int, default=400)
    p.add_argument("--repeats", type=int, default=3,
                   help="search seeds for random and Bayesian search")
    args = p.parse_args(argv)
    import jaxtune as jt

    timer = _common.Timer()
    smoke = args.smoke
    points = 2 if smoke else args.num_float_points
    budget = points ** 3
    round_size = 4 if smoke else args.round_size
    num_steps = 30 if smoke else args.num_steps
    repeats = 1 if smoke else args.repeats
    seeds = (0, 1)
    steps_per_segment = num_steps // 2 if smoke else max(num_steps // 20, 1)
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("breast_cancer"), 0.2, 0.2,
                                                     seed=args.seed))
    space = jt.Space({
        "learning_rate": jt.Float(1e-4, 1.0, log=True),
        "l2": jt.Float(1e-5, 1e-1, log=True),
        "dropout": jt.Float(0.0, 0.6),
        "width": jt.Fixed(32),
        "depth": jt.Fixed(1),
        "optimizer": jt.Fixed("adam"),
    })
    task = jt.classification_task("mlp", num_classes=2, input_shape=(30,))
    common = dict(num_steps=num_steps, batch_size=64, steps_per_segment=steps_per_segment,
                  engine_options={"pad_to": round_size * len(seeds)})

    def summarize(results: jt.Results) -> dict:
        groups = results.aggregate("valid_loss", "min")
        pick = groups[0]
        members = [r for r in results if r.member_id in pick["members"]]
        losses = [g["mean"] for g in sorted(groups, key=lambda g: min(g["members"]))]
        return {
            "config": pick["config"], "valid_loss": pick["mean"],
            "valid_accuracy": float(np.mean([r.metrics["valid_accuracy"] for r in members])),
            "test_accuracy": float(np.mean([r.metrics["test_accuracy"] for r in members])),
            "best_so_far": np.minimum.accumulate(np.nan_to_num(losses, nan=np.inf)),
            "num_configs": len(groups),
        }

    outcomes: dict[str, list[dict]] = {}
    manual_config = {**MANUAL, "width": 32, "depth": 1, "optimizer": "adam"}
    manual = jt.train(task, [manual_config] * len(seeds), split, num_steps=num_steps,
                      batch_size=64, steps_per_segment=steps_per_segment,
                      pad_to=round_size * len(seeds), member_seeds=list(seeds), seed=args.seed,
                      static_names=space.static_names)
    outcomes["manual (1 config)"] = [summarize(manual)]
    for name, strategy in _strategies(points, round_size).items():
        for repeat in range(1 if name == "grid" else repeats):
            results = jt.tune(task, split, space, strategy, num_configs=budget,
                              population_size=round_size, seeds=seeds, metric="valid_loss",
                              seed=args.seed + repeat, **common)
            outcomes.setdefault(name, []).append(summarize(results))

    rows = []
    for name, runs in outcomes.items():
        def stat(key, runs=runs):
            values = np.array([r[key] for r in runs])
            return (f"{values.mean():.4f}" if len(values) == 1
                    else f"{values.mean():.4f} ± {values.std(ddof=1):.4f}")
        first = runs[0]["config"]
        rows.append([name, runs[0]["num_configs"], len(runs), stat("valid_loss"),
                     stat("valid_accuracy"), stat("test_accuracy"),
                     f"lr {first['learning_rate']:.3g}, l2 {first['l2']:.2g}, "
                     f"dropout {first['dropout']:.2f}"])
    table = _common.markdown_table(
        ["search", "configs", "search repeats", "valid log-loss of pick",
         "valid accuracy of pick", "test accuracy of pick", "pick (first repeat)"], rows)
    sections = [
        f"Data: breast cancer, 569 rows split 60/20/20 (stratified, standardized on the "
        f"training rows). MLP 30-32-1, Adam, batch 64, {num_steps} steps, 2 member seeds per "
        f"config. Space: learning rate log-uniform in [1e-4, 1], L2 log-uniform in [1e-5, 0.1], "
        f"dropout in [0, 0.6]. Budget {budget} configs per search ({points}^3 grid), in rounds of "
        f"{round_size}. Manual choice: {MANUAL}. Values are mean ± std over search repeats.",
        table,
    ]

    import matplotlib.pyplot as plt

    figure, (ax_curve, ax_bar) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, runs in outcomes.items():
        if name.startswith("manual"):
            ax_curve.axhline(runs[0]["valid_loss"], color="k", ls=":", label=name)
            continue
        curve = np.mean([r["best_so_far"] for r in runs], axis=0)
        ax_curve.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=name)
    ax_curve.set_yscale("log")
    ax_curve.set_xlabel("configs evaluated")
    ax_curve.set_ylabel("best validation log-loss so far")
    ax_curve.legend(fontsize=8)
    names = list(outcomes)
    means = [np.mean([r["test_accuracy"] for r in outcomes[n]]) for n in names]
    errs = [np.std([r["test_accuracy"] for r in outcomes[n]]) for n in names]
    ax_bar.bar(names, means, yerr=errs, color="tab:blue")
    ax_bar.set_ylim(min(0.9, min(means) - 0.02), 1.0)
    ax_bar.set_ylabel("test accuracy of the pick")
    ax_bar.tick_params(axis="x", labelsize=8)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    _common.save_figure(figure, args.out, "binary_classifier")
    path = _common.write_report(
        args.out, "binary_classifier",
        "Breast cancer: manual vs grid vs random vs Bayesian search at equal budget",
        _common.command_line("binary_classifier.py", argv_list), sections, timer.seconds)
    print(table)
    print(f"wrote {path} and {path.with_suffix('.png')} ({timer.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    _common.setup_jax()
    sys.exit(main())
