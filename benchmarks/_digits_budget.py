"""Best validation accuracy against compute (member-steps): random, Bayesian, Hyperband, PBT.

Workload: digits (standardized, 60/20/20 split), MLP 64-32-10 with Adam, minibatches of 64,
and five dynamic hyperparameters (``--space wide5``, the default): learning rate log-uniform
[1e-5, 1], L2 strength log-uniform [1e-6, 1], dropout uniform [0, 0.8], Adam's b1 uniform
[0.5, 0.999] and b2 uniform [0.9, 0.9999] (wide ranges, as a first search would use: many
configurations are poor, which is what early stopping exploits). ``--space narrow2`` is the
earlier workload: learning rate and L2 only (same ranges; b1, b2 at Adam's defaults, no
dropout).
Every method gets the same budget of ``num_configs * num_steps`` member-steps (one member
taking one optimizer step):

* random search: ``num_configs`` configurations trained ``num_steps`` steps (one population);
* Bayesian optimization (``jaxtune.strategies.bayes_search``, when it exists): the same number
  of configurations in rounds of a quarter of them;
* Hyperband (asynchronous brackets in one population, first rung ``min_steps`` = 9, eta = 3,
  so 4 brackets at 243 steps), refills drawn by random search, capped at the same
  member-steps, with a population of ``num_configs // 8`` slots (at least 4) and, to show the
  trade-off, of ``num_configs`` slots like random search ("hyperband-wide");
* PBT: ``num_configs`` members for ``num_steps`` steps, exploit/explore every 3 segments.

Hyperband and PBT rank members by validation loss (a smoother signal than the accuracy of 359
validation rows); every method is judged by validation accuracy.

A curve is the best validation accuracy of a *fully trained* model (``num_steps`` steps) against
the member-steps spent when it finished. Random and Bayesian configurations are counted one
after another in evaluation order (as if trained one at a time: the most favourable reading for
them), Hyperband's completions at the segment they happen in its population; PBT's members all
finish at the end of the budget (one point). A population of ``P`` slots spends about ``P``
member-steps per step, so its first completed member costs at least ``P * num_steps``
member-steps: Hyperband with fewer slots finishes its first models sooner in member-steps, at
the price of wall time. Curves are medians over seeds (seed ``s`` draws the first
configurations and the member keys of every method alike; ``--first-seed`` moves the seeds, so
that settings can be explored on other seeds than the reported ones).

Two diagnostics explain the headline fraction. "Re-runs": random search's best configuration is
trained again with ``RERUNS`` other member seeds; the mean of those runs is what the
configuration is worth, and the share of them that reach random search's best is how often a
single run of that very configuration would. "Fully trained at half budget": how many models
each method has trained to ``num_steps`` after half the member-steps (random search:
``num_configs / 2``).

    python benchmarks/_digits_budget.py            # 5 seeds, 32 configs x 243 steps, wide5
    python benchmarks/_digits_budget.py --space narrow2 --figure ''  # the 2-D workload
    python benchmarks/_digits_budget.py --quick    # 2 seeds, 16 configs x 243 steps
    python benchmarks/_digits_budget.py --seeds 20 --first-seed 10 --no-bayes --figure ''

The last line printed is the returned dict as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxtune as jt
from jaxtune import engine
from jaxtune.strategies import pbt, random_search
from jaxtune.strategies.halving import hyperband

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "strategies_budget.png"
WIDTH = 32
BATCH = 64
RERUNS = 8


SPACES = ("wide5", "narrow2")


def _space(name: str = "wide5") -> jt.Space:
    """The searched space: ``wide5`` (5 dynamic hyperparameters) or ``narrow2`` (2)."""
    if name not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {name!r}")
    dims: dict[str, Any] = {
        "learning_rate": jt.Float(1e-5, 1.0, log=True),
        "l2": jt.Float(1e-6, 1.0, log=True),
    }
    if name == "wide5":
        dims.update({
            "dropout": jt.Float(0.0, 0.8),
            "b1": jt.Float(0.5, 0.999),
            "b2": jt.Float(0.9, 0.9999),
        })
    return jt.Space({
        **dims,
        "optimizer": jt.Fixed("adam"),
        "width": jt.Fixed(WIDTH),
        "depth": jt.Fixed(1),
    })


def _sequential_curve(results: jt.Results, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-so-far accuracy when the configs are counted one after another."""
    values = [
        row.metrics.get("valid_accuracy", np.nan) if row.status == "completed" else np.nan
        for row in results
    ]
    best = np.fmax.accumulate(np.nan_to_num(np.asarray(values, float), nan=0.0))
    return num_steps * np.arange(1, len(best) + 1), best


def _observed(scheduler: engine.Scheduler, log: list[tuple[int, float]]) -> engine.Scheduler:
    """Wraps a scheduler to log (member-steps so far, best fully trained accuracy, models fully
    trained) per segment."""

    def init(view):
        return {"inner": scheduler.init(view), "steps": np.zeros(len(view.step), np.int64),
                "ids": list(view.member_ids), "spent": 0, "best": 0.0, "done": set()}

    def update(state, view):
        steps = np.asarray(view.step, np.int64)
        previous = np.where(
            [a == b for a, b in zip(view.member_ids, state["ids"], strict=True)],
            state["steps"], 0,
        )
        spent = state["spent"] + int(np.sum(steps - previous))
        accuracy = np.asarray(view.metrics["valid_accuracy"], float)
        best, done = state["best"], set(state["done"])
        for slot, member_id in enumerate(view.member_ids):
            if view.finished[slot] and member_id not in done:
                done.add(member_id)
                best = max(best, float(np.nan_to_num(accuracy[slot])))
        log.append((spent, best, len(done)))
        decision, inner = scheduler.update(state["inner"], view)
        ids = list(view.member_ids)
        new_steps = steps.copy()
        if decision is not None:
            for slot in decision.refill:
                ids[slot] = None  # a new member: counted from step 0
                new_steps[slot] = 0
            for slot, source in decision.exploit.items():
                new_steps[slot] = steps[source]
        return decision, {"inner": inner, "steps": new_steps, "ids": ids, "spent": spent,
                          "best": best, "done": done}

    return engine.Scheduler(init, update)


def _on_grid(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A step function (best so far after spending x) sampled on ``grid`` (NaN before x[0])."""
    index = np.searchsorted(x, grid, side="right") - 1
    return np.where(index >= 0, y[np.clip(index, 0, None)], np.nan)


def _budget_to_reach(x: np.ndarray, y: np.ndarray, target: float) -> float:
    reached = np.flatnonzero(y >= target)
    return float(x[reached[0]]) if len(reached) else float("inf")


def _rerun(task, split, config, seed: int, common: dict[str, Any]) -> list[float]:
    """Validation accuracies of ``config`` trained ``RERUNS`` times with other member seeds."""
    values = []
    for rerun in range(RERUNS):
        results = engine.train(task, [config], split, seed=10_000 + 100 * seed + rerun, **common)
        row = next(iter(results))
        values.append(float(np.nan_to_num(row.metrics.get("valid_accuracy", 0.0))))
    return values


def run_digits_budget(seeds: int = 5, quick: bool = False, figure: Path | None = FIGURE,
                      verbose: bool = True, num_configs: int | None = None,
                      num_steps: int = 243, first_seed: int = 0,
                      bayes: bool = True, space: str = "wide5") -> dict[str, Any]:
    """Runs the comparison; writes the figure; returns the headline figures.

    Args:
      seeds: number of seeds.
      quick: 16 configurations instead of 32 (unless ``num_configs`` is given).
      figure: where to write the figure (``None``: no figure).
      verbose: print one line per method and seed.
      num_configs: configurations of random search (the budget is ``num_configs *
        num_steps`` member-steps for every method).
      num_steps: steps of a fully trained member.
      first_seed: the seeds are ``first_seed, ..., first_seed + seeds - 1``.
      bayes: include Bayesian optimization (when ``bayes_search`` exists).
      space: the searched space, ``"wide5"`` (learning rate, L2, dropout, b1, b2) or
        ``"narrow2"`` (learning rate, L2), the same for every method.

    Returns:
      ``{"hyperband_budget_to_random_best": median over seeds of the fraction of random
      search's member-steps Hyperband needs to reach random search's final best validation
      accuracy (inf when it never does), "hyperband_wide_budget_to_random_best": the same with
      ``num_configs`` slots, "pbt_best_acc", "random_best_acc", "hyperband_best_acc",
      "hyperband_wide_best_acc", "bayes_best_acc" (None when bayes_search is absent): medians
      of the final best validation accuracies, plus the settings, per-seed values and wall
      times, and the diagnostics ``random_best_rerun_acc`` (median over seeds of the mean
      accuracy of random search's best configuration re-trained with ``RERUNS`` other member
      seeds), ``random_best_rerun_reach`` (median share of those re-runs that reach random
      search's best), ``hyperband_completed_at_half`` (median number of models Hyperband has
      fully trained after half the budget; random search has ``num_configs // 2``)}``.
    """
    num_configs = num_configs or (16 if quick else 32)
    min_steps = 9
    hb_slots = max(4, num_configs // 8)
    budget = num_steps * num_configs
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))
    task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
    space_name = space
    space = _space(space_name)
    try:
        from jaxtune.strategies.bayes import bayes_search
        if not bayes:
            bayes_search = None
    except ImportError:
        bayes_search = None
        if verbose:
            print("  bayes_search is not available: Bayesian optimization is left out")
    common = dict(num_steps=num_steps, batch_size=BATCH, steps_per_segment=min_steps,
                  static_names=space.static_names, evaluate_test=False)
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    timings: dict[str, float] = {}
    reruns: list[list[float]] = []
    completed_at_half: dict[str, list[int]] = {}

    def record(method, seed, x, y, start):
        curves.setdefault(method, []).append((np.asarray(x, float), np.asarray(y, float)))
        timings[method] = timings.get(method, 0.0) + time.perf_counter() - start
        if verbose:
            print(f"  {method:<10} seed {seed}: best {y[-1]:.4f} after {int(x[-1])} member-steps"
                  f" ({time.perf_counter() - start:.1f} s)", flush=True)

    for seed in range(first_seed, first_seed + seeds):
        base = jax.random.PRNGKey(seed)
        first, _ = random_search().ask(random_search().init(space, base), num_configs)

        start = time.perf_counter()
        results = engine.train(task, first, split, seed=seed, **common)
        record("random", seed, *_sequential_curve(results, num_steps), start)
        accuracies = [np.nan_to_num(r.metrics.get("valid_accuracy", 0.0)) for r in results]
        reruns.append(_rerun(task, split, first[int(np.argmax(accuracies))], seed, common))
        if verbose:
            print(f"  {'':<10} re-runs of random's best config: mean {np.mean(reruns[-1]):.4f},"
                  f" {np.mean(np.asarray(reruns[-1]) >= max(accuracies) - 1e-9):.2f} reach"
                  f" {max(accuracies):.4f}", flush=True)

        if bayes_search is not None:
            start = time.perf_counter()
            results = jt.tune(
                task, split, space, bayes_search(), num_configs=num_configs,
                population_size=max(num_configs // 4, 1), num_steps=num_steps,
                batch_size=BATCH, steps_per_segment=min_steps, seed=seed,
                engine_options={"evaluate_test": False},
            )
            record("bayes", seed, *_sequential_curve(results, num_steps), start)

        wide = () if quick else (("hyperband-wide", num_configs),)
        for method, slots in (("hyperband", hb_slots), *wide):
            start = time.perf_counter()
            log: list[tuple[int, float]] = []
            scheduler = hyperband(space, random_search(), min_steps=min_steps, eta=3,
                                  max_member_steps=budget, metric="valid_loss", mode="min",
                                  key=jax.random.fold_in(base, 1))
            engine.train(task, first[:slots], split, seed=seed,
                         scheduler=_observed(scheduler, log), **common)
            x, y, count = np.asarray(log).T
            half = np.flatnonzero(x <= budget / 2)
            completed_at_half.setdefault(method, []).append(
                int(count[half[-1]]) if len(half) else 0)
            record(method, seed, x, y, start)

        start = time.perf_counter()
        log = []
        scheduler = pbt(space, interval_segments=3, metric="valid_loss", mode="min",
                        key=jax.random.fold_in(base, 2))
        engine.train(task, first, split, seed=seed, scheduler=_observed(scheduler, log),
                     **common)
        record("pbt", seed, *np.asarray(log)[:, :2].T, start)

    finals = {m: [float(y[-1]) for _, y in c] for m, c in curves.items()}
    rerun_acc = [float(np.mean(r)) for r in reruns]
    rerun_reach = [float(np.mean(np.asarray(r) >= best - 1e-9))
                   for r, best in zip(reruns, finals["random"], strict=True)]

    def fractions_of(method):
        return [
            _budget_to_reach(hx, hy, ry[-1]) / budget
            for (hx, hy), (_, ry) in zip(curves.get(method, []), curves["random"], strict=False)
        ]

    fractions, wide_fractions = fractions_of("hyperband"), fractions_of("hyperband-wide")
    bayes_fractions = fractions_of("bayes")
    grid = np.linspace(0, budget, 400)
    if figure is not None:
        _plot(curves, grid, figure, num_steps, num_configs, seeds, space_name)

    def median(values):
        return float(np.median(values)) if values else None

    return {
        "hyperband_budget_to_random_best": median(fractions),
        "pbt_best_acc": median(finals["pbt"]),
        "random_best_acc": median(finals["random"]),
        "hyperband_best_acc": median(finals["hyperband"]),
        "hyperband_wide_budget_to_random_best": median(wide_fractions),
        "hyperband_wide_best_acc": median(finals.get("hyperband-wide", [])),
        "bayes_best_acc": median(finals.get("bayes", [])),
        "bayes_budget_to_random_best": median(bayes_fractions),
        "random_best_rerun_acc": median(rerun_acc),
        "random_best_rerun_reach": median(rerun_reach),
        "hyperband_completed_at_half": median(completed_at_half.get("hyperband", [])),
        "per_seed": {"hyperband_budget_to_random_best": fractions,
                     "hyperband_wide_budget_to_random_best": wide_fractions,
                     "bayes_budget_to_random_best": bayes_fractions,
                     "random_best_rerun_acc": rerun_acc, "random_best_rerun_reach": rerun_reach,
                     "completed_at_half": completed_at_half, **finals},
        "settings": {"space": space_name, "seeds": seeds, "first_seed": first_seed,
                     "reruns": RERUNS,
                     "num_steps": num_steps, "num_configs": num_configs,
                     "min_steps": min_steps, "eta": 3, "budget_member_steps": budget,
                     "hyperband_slots": hb_slots,
                     "hyperband_wide_slots": num_configs if wide else None,
                     "quick": quick},
        "wall_time_s": {m: round(t, 1) for m, t in timings.items()},
    }


def _plot(curves, grid, path: Path, num_steps: int, num_configs: int, seeds: int,
          space_name: str = "wide5") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    styles = {"random": "C0", "bayes": "C1", "hyperband": "C2", "hyperband-wide": "C4",
              "pbt": "C3"}
    for method, runs in curves.items():
        if method == "pbt":  # every member finishes at the end: one point
            value = np.median([y[-1] for _, y in runs])
            ax.plot([grid[-1]], [value], "o", color=styles[method], label=method)
            continue
        sampled = np.stack([_on_grid(x, y, grid) for x, y in runs])
        sampled = np.where(np.isnan(sampled) | (sampled <= 0), -np.inf, sampled)
        median = np.median(sampled, axis=0)
        median = np.where(np.isfinite(median), median, np.nan)
        ax.step(grid, median, where="post", label=method, color=styles.get(method))
    ax.set_xlabel("member-steps spent")
    ax.set_ylabel("best validation accuracy (fully trained)")
    ax.set_ylim(0.9, 1.0)
    ax.set_title(f"digits MLP ({space_name}): {num_configs} x {num_steps} steps budget,"
                 f" median of {seeds} seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 16 configurations")
    parser.add_argument("--seeds", type=int, default=None, help="default 5 (quick: 2)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first_seed.. (explore settings on seeds other than 0-4)")
    parser.add_argument("--no-bayes", action="store_true", help="leave Bayesian optimization out")
    parser.add_argument("--figure", type=str, default=str(FIGURE), help="'' for no figure")
    parser.add_argument("--space", choices=SPACES, default="wide5",
                        help="wide5: lr, l2, dropout, b1, b2 (default); narrow2: lr, l2")
    args = parser.parse_args()
    start = time.perf_counter()
    seeds = args.seeds or (2 if args.quick else 5)
    figure = Path(args.figure) if args.figure else None
    summary = run_digits_budget(seeds=seeds, quick=args.quick, figure=figure,
                                first_seed=args.first_seed, bayes=not args.no_bayes,
                                space=args.space)
    print(f"total {time.perf_counter() - start:.1f} s; figure {figure}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
