"""Model selection on digits: logistic regression vs MLP vs CNN, estimated by nested
cross-validation.

Each family has a few configs. For each family, nested cross-validation (5 outer folds, 3 inner
folds) picks a config inside every outer training set by inner cross-validation, refits it on
the whole outer training set and scores it on the outer held-out rows, which took no part in
the choice: the mean outer score estimates how well "tune this family, then train it" does on
new data. The inner mean of the pick is reported next to it. It is biased two ways: upwards,
because it is the maximum over configs of noisy estimates (selection), and downwards, because
inner models train on only (k-1)/k of the outer training rows (less data); the column
"inner - outer" shows which wins.

Choosing the family is one more selection: the last line applies it inside each outer fold
(the family whose pick has the best inner mean) and scores the result on the same outer rows,
an unbiased estimate of the whole procedure "pick family and config by CV". The inner
cross-validations of all outer folds of a family are one engine call (one compiled population
per static group); the member keys depend only on config, seed and fold, so the family-level
runs are exactly the members of one combined nested cross-validation.

    python experiments/model_selection.py            # default budget (a few minutes)
    python experiments/model_selection.py --smoke    # tiny budget
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

FAMILIES = ("logistic", "mlp", "cnn")


def family_configs(family: str, smoke: bool) -> list[dict]:
    """The candidate configs of one model family (simplest first)."""
    lrs = (3e-3, 3e-2) if family == "logistic" else (1e-3, 1e-2)
    if smoke:
        lrs = lrs[1:]
    if family == "logistic":
        return [{"model": "logistic", "optimizer": "adam", "learning_rate": lr, "l2": l2}
                for lr in lrs for l2 in ((1e-3,) if smoke else (1e-4, 1e-2))]
    extra = {"width": 64, "depth": 1} if family == "mlp" else {"channels": 8, "width": 32}
    return [{"model": family, "optimizer": "adam", "learning_rate": lr, "dropout": d, **extra}
            for lr in lrs for d in ((0.1,) if smoke else (0.0, 0.3))]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the experiment; returns the exit status."""
    p = _common.parser(__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--num-steps", type=int, default=300)
    p.add_argument("--outer-folds", type=int, default=5)
    p.add_argument("--inner-folds", type=int, default=3)
    p.add_argument("--families", default=None,
                   help="comma-separated subset of logistic,mlp,cnn (default: all)")
    args = p.parse_args(argv)
    families = [f.strip() for f in (args.families or ",".join(FAMILIES)).split(",")
                if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        p.error(f"--families: unknown {unknown}; choose from {','.join(FAMILIES)}")
    import jaxtune as jt
    from jaxtune import cv

    timer = _common.Timer()
    smoke = args.smoke
    num_steps = 20 if smoke else args.num_steps
    outer_folds = 2 if smoke else args.outer_folds
    inner_folds = 2 if smoke else args.inner_folds
    ds = jt.load_dataset("digits")
    factory = cv.model_switch({"logistic": "linear", "mlp": "mlp", "cnn": "cnn"},
                              num_outputs=10, input_shape=(64,))
    task = jt.classification_task(factory, num_classes=10, input_shape=(64,))

    nested = {}
    for family in families:
        nested[family] = cv.nested_cross_validate(
            task, ds, family_configs(family, smoke), num_steps=num_steps, batch_size=64,
            num_outer_folds=outer_folds, num_inner_folds=inner_folds, seed=args.seed,
            steps_per_segment=num_steps)

    # The whole procedure: in each outer fold, the family whose pick has the best inner mean
    # (a family whose every config diverged there has a NaN mean and is never chosen).
    def inner_mean(family: str, o: int) -> float:
        mean = nested[family].selections[o]["mean"]
        return -np.inf if np.isnan(mean) else mean

    chosen, procedure_scores = [], []
    for o in range(outer_folds):
        family = max(families, key=lambda f, o=o: inner_mean(f, o))
        chosen.append(family)
        procedure_scores.append(nested[family].selections[o]["outer_score"])
    procedure_scores = np.array(procedure_scores)

    def plus_minus(mean: float, sem: float) -> str:
        return f"{mean:.4f} ± {sem:.4f}"

    rows = []
    for family, result in nested.items():
        inner_means = [s["mean"] for s in result.selections]
        picks = [result.selections[o]["config"] or {} for o in range(outer_folds)]
        described = sorted({", ".join(f"{k} {v:g}" for k, v in c.items()
                                      if isinstance(v, float)) for c in picks})
        rows.append([family, len(family_configs(family, smoke)),
                     plus_minus(result.mean, result.sem), float(np.mean(inner_means)),
                     float(np.mean(inner_means)) - result.mean, "; ".join(described)])
    sem = (float(np.std(procedure_scores, ddof=1) / np.sqrt(outer_folds))
           if outer_folds > 1 else float("nan"))
    optimistic = float(np.mean([nested[f].selections[o]["mean"]
                                for o, f in enumerate(chosen)]))
    rows.append(["pick family and config by inner CV",
                 sum(len(family_configs(f, smoke)) for f in families),
                 plus_minus(float(procedure_scores.mean()), sem), optimistic,
                 optimistic - float(procedure_scores.mean()),
                 "families chosen per outer fold: " + ", ".join(chosen)])
    table = _common.markdown_table(
        ["candidate", "configs", "nested CV accuracy (outer mean ± sem)",
         "inner CV accuracy of the picks", "inner - outer", "configs picked"], rows)
    per_fold = _common.markdown_table(
        ["outer fold", *(f"{f} outer score" for f in families), "chosen family"],
        [[o, *(nested[f].selections[o]["outer_score"] for f in families), chosen[o]]
         for o in range(outer_folds)])
    counts = {f: len(nested[f].inner) + len(nested[f].outer) for f in families}
    sections = [
        f"Data: digits, all 1797 rows; {outer_folds} stratified outer folds, {inner_folds} "
        f"inner folds, per-fold standardization; Adam, batch 64, {num_steps} steps per member. "
        f"Logistic regression: learning rate x L2; MLP 64-64-10 and CNN (conv 8 / conv 16 / "
        f"dense 32): learning rate x dropout. Members trained per family (inner + refits): "
        + ", ".join(f"{f} {n}" for f, n in counts.items()) + ".",
        table, "Outer scores per fold:", per_fold,
    ]

    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7.5, 5.2))
    for i, family in enumerate(families):
        result = nested[family]
        outer = [s["outer_score"] for s in result.selections]
        inner = [s["mean"] for s in result.selections]
        ax.scatter(np.full(len(outer), i) + np.linspace(-0.1, 0.1, len(outer)), outer,
                   color="tab:blue", s=18, label="outer score (unbiased)" if i == 0 else None)
        ax.errorbar(i + 0.25, result.mean, yerr=result.sem, fmt="o", color="tab:blue",
                    capsize=4, label="nested CV mean ± sem" if i == 0 else None)
        ax.scatter([i + 0.35], [np.mean(inner)], marker="^", color="tab:orange",
                   label="inner CV mean of the picks" if i == 0 else None)
    last = len(families)
    ax.scatter(np.full(outer_folds, last) + np.linspace(-0.1, 0.1, outer_folds),
               procedure_scores, color="tab:green", s=18)
    ax.errorbar(last + 0.25, procedure_scores.mean(), yerr=sem, fmt="o", color="tab:green",
                capsize=4, label="pick family by inner CV")
    ax.set_xticks(range(last + 1), [*families, "pick family"])
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    _common.save_figure(figure, args.out, "model_selection")
    path = _common.write_report(
        args.out, "model_selection", "Logistic vs MLP vs CNN on digits by nested cross-validation",
        _common.command_line("model_selection.py", argv_list), sections, timer.seconds)
    print(table)
    print(per_fold)
    print(f"wrote {path} and {path.with_suffix('.png')} ({timer.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    _common.setup_jax()
    sys.exit(main())
