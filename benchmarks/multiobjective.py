"""Multi-objective search compared: hypervolume on ZDT1 and DTLZ2 at equal evaluations.

Two standard two-objective problems in ``d`` dimensions, ``x`` in ``[0, 1]^d``, both
objectives minimized:

* ZDT1 (Zitzler, Deb & Thiele 2000): ``f1 = x1``, ``g = 1 + 9 / (d - 1) sum(x2..xd)``,
  ``f2 = g (1 - sqrt(f1 / g))``; front ``f2 = 1 - sqrt(f1)`` where ``x2..xd = 0``: its Pareto
  set lies on a face of the cube, which a model-based search whose acquisition ascent is
  clipped to the cube reaches exactly (an advantage of every box-bounded optimizer);
* DTLZ2 (Deb, Thiele, Laumanns & Zitzler 2002), two objectives: ``(1 + g) (cos, sin)(x1 pi/2)``,
  ``g = sum_{i >= 2} (x_i - 1/2)^2``; front the quarter circle of radius 1 where
  ``x2..xd = 1/2``: its Pareto set is inside the cube.

Two measures of a method's points, both exact (:func:`jaxtune.pareto.hypervolume`): the
*gap*, the front's hypervolume minus the points' with BoTorch's reference point ``(11, 11)``
(lower is better, 0 is the front itself), and the *share* of the front's hypervolume with the
tight reference ``(1.1, 1.1)`` (only points near the front count).

Methods, driven through the same ask/tell loop the tune loop runs (batches of ``--batch``
configs; a jaxtune strategy is told :class:`jaxtune.contracts.Outcomes`, as ``tune`` tells it
for ``metric=[...]``):

* jaxtune ``random_search`` and ``sobol_search`` (told the non-dominated rank, as ``tune``
  tells a strategy without outcomes);
* jaxtune ``bayes_search`` (multi-objective: one random augmented-Chebyshev scalarization per
  point of a batch, kriging believer across the batch; 10 initial Sobol points);
* Optuna's NSGA-II (``NSGAIISampler``, population 10 so that it runs several generations at
  these budgets; its default population of 50 is one generation here) and Optuna's
  multi-objective TPE (``TPESampler``), one trial at a time.

    python benchmarks/multiobjective.py            # 5 seeds, d=4, 80 evaluations, batch 4
    python benchmarks/multiobjective.py --quick    # 2 seeds, 40 evaluations

The last line is ``random_vs_bo_gap=... nsga2_vs_bo_gap=... bo_gap=... ...``: the median
gaps (and shares) at the full budget, and the ratios of median gaps (a peer's over BO's:
higher means BO is closer to the front).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import jax
import numpy as np

import jaxtune as jt
from jaxtune import pareto
from jaxtune.contracts import Outcomes
from jaxtune.strategies import Strategy, bayes_search, random_search, sobol_search

#: BoTorch's reference point for ZDT problems (``ZDT._ref_val = 11``) and a tight one.
REFERENCE = np.array([11.0, 11.0])
NEAR_REFERENCE = np.array([1.1, 1.1])


def zdt1(x: np.ndarray) -> np.ndarray:
    """``[n, d]`` points in the unit cube -> ``[n, 2]`` objectives (both minimized)."""
    f1 = x[:, 0]
    g = 1.0 + 9.0 / (x.shape[1] - 1) * x[:, 1:].sum(axis=1)
    return np.stack([f1, g * (1.0 - np.sqrt(f1 / g))], axis=1)


def dtlz2(x: np.ndarray) -> np.ndarray:
    """DTLZ2 with two objectives: ``(1 + g) (cos, sin)(x1 pi / 2)``,
    ``g = sum_{i >= 2} (x_i - 1/2)^2``; the front is the quarter circle of radius 1."""
    g = ((x[:, 1:] - 0.5) ** 2).sum(axis=1)
    angle = x[:, 0] * math.pi / 2
    return np.stack([(1 + g) * np.cos(angle), (1 + g) * np.sin(angle)], axis=1)


#: problem -> (function, area under its front inside the unit square): the front's hypervolume
#: for a reference ``r >= 1`` is ``r1 r2 - area`` (ZDT1: the integral of ``1 - sqrt(x)``,
#: 1/3; DTLZ2: the quarter disc, pi / 4).
PROBLEMS = {"zdt1": (zdt1, 1.0 / 3.0), "dtlz2": (dtlz2, math.pi / 4)}


def front_hypervolume(problem: str, reference: np.ndarray) -> float:
    return float(reference[0] * reference[1] - PROBLEMS[problem][1])


def space(dim: int) -> jt.Space:
    return jt.Space({f"x{i}": jt.Float(0.0, 1.0) for i in range(dim)})


def measures(problem: str, objectives: np.ndarray) -> tuple[float, float]:
    """``(gap, near)``: the front's hypervolume minus the points' (reference 11, lower is
    better), and the points' share of the front's hypervolume at reference 1.1."""
    gap = front_hypervolume(problem, REFERENCE) - pareto.hypervolume(objectives, REFERENCE)
    near = (pareto.hypervolume(objectives, NEAR_REFERENCE)
            / front_hypervolume(problem, NEAR_REFERENCE))
    return gap, near


def run_jaxtune(strategy: Strategy, problem: str, dim: int, seed: int, evals: int,
                batch: int) -> np.ndarray:
    """The ``[evals, 2]`` objectives in evaluation order."""
    the_space = space(dim)
    state = strategy.init(the_space, jax.random.PRNGKey(seed))
    told: list[np.ndarray] = []
    while sum(len(t) for t in told) < evals:
        num = min(batch, evals - sum(len(t) for t in told))
        configs, state = strategy.ask(state, num)
        x = np.array([[c[f"x{i}"] for i in range(dim)] for c in configs])
        objectives = PROBLEMS[problem][0](x)
        outcomes = Outcomes(objectives, np.zeros((num, 0)))
        if not strategy.accepts_outcomes:  # what tune tells such a strategy
            outcomes = pareto.summary_losses(objectives, outcomes.feasible)
        state = strategy.tell(state, configs, outcomes)
        told.append(objectives)
    return np.concatenate(told)


def run_optuna(sampler_name: str, problem: str, dim: int, seed: int,
               evals: int) -> np.ndarray:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler_name == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(population_size=10, seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    rows = []
    for _ in range(evals):
        trial = study.ask()
        x = np.array([[trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dim)]])
        objectives = PROBLEMS[problem][0](x)[0]
        study.tell(trial, objectives.tolist())
        rows.append(objectives)
    return np.array(rows)


def methods(args: argparse.Namespace,
            problem: str) -> dict[str, Callable[[int], np.ndarray]]:
    jaxtune_strategies = {
        "random": random_search,
        "sobol": sobol_search,
        "bayes": lambda: bayes_search(num_initial=10),
    }
    table: dict[str, Callable[[int], np.ndarray]] = {
        name: (lambda seed, make=make: run_jaxtune(make(), problem, args.dim, seed,
                                                   args.evals, args.batch))
        for name, make in jaxtune_strategies.items()
    }
    try:
        import optuna  # noqa: F401
    except ImportError:
        print("optuna is not installed: NSGA-II and TPE are left out", flush=True)
        return table
    table["optuna-nsga2"] = lambda seed: run_optuna("nsga2", problem, args.dim, seed,
                                                    args.evals)
    table["optuna-tpe"] = lambda seed: run_optuna("tpe", problem, args.dim, seed, args.evals)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 40 evaluations")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--evals", type=int, default=None)
    parser.add_argument("--dim", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--problems", nargs="+", choices=tuple(PROBLEMS),
                        default=list(PROBLEMS))
    args = parser.parse_args()
    args.seeds = args.seeds or (2 if args.quick else 5)
    args.evals = args.evals or (40 if args.quick else 80)
    checkpoints = sorted({args.evals // 2, args.evals})
    last = {}
    for problem in args.problems:
        last[problem] = report(args, problem, checkpoints)
    print("\n" + " ".join(f"{problem}_{name}={value}" for problem, values in last.items()
                          for name, value in values.items()))


def report(args: argparse.Namespace, problem: str, checkpoints: list[int]) -> dict[str, str]:
    """Runs every method on ``problem``; prints its table; returns its last-line values."""
    print(f"\n{problem}, d={args.dim}, {args.evals} evaluations, batch {args.batch} "
          f"(jaxtune), {args.seeds} seeds", flush=True)
    results: dict[str, np.ndarray] = {}
    for name, run in methods(args, problem).items():
        start = time.perf_counter()
        values = []  # [seed, checkpoint, (gap, near)]
        for seed in range(args.seeds):
            objectives = run(seed)
            values.append([measures(problem, objectives[:n]) for n in checkpoints])
        results[name] = np.array(values)
        print(f"  {name:<13} done in {time.perf_counter() - start:.1f} s", flush=True)
    print("median [q25, q75] after n evaluations: hypervolume gap to the front (reference "
          f"{REFERENCE.tolist()}, lower is better) | share of the front's hypervolume "
          f"(reference {NEAR_REFERENCE.tolist()}, higher is better)")
    print(f"  {'method':<13} " + "  ".join(
        f"{'gap n=' + str(n):<24}{'share n=' + str(n):<24}" for n in checkpoints))
    for name, values in results.items():
        cells = []
        for column in range(len(checkpoints)):
            for index in range(2):
                q25, q50, q75 = np.percentile(values[:, column, index], [25, 50, 75])
                cells.append(f"{q50:.3f} [{q25:.3f}, {q75:.3f}]".ljust(24))
        print(f"  {name:<13} " + "  ".join(cells))
    gap = {name: float(np.median(values[:, -1, 0])) for name, values in results.items()}
    share = {name: float(np.median(values[:, -1, 1])) for name, values in results.items()}
    nan = math.nan
    return {
        "random_vs_bo_gap": f"{gap['random'] / gap['bayes']:.2f}",
        "nsga2_vs_bo_gap": f"{gap.get('optuna-nsga2', nan) / gap['bayes']:.2f}",
        "bo_gap": f"{gap['bayes']:.4f}", "random_gap": f"{gap['random']:.4f}",
        "nsga2_gap": f"{gap.get('optuna-nsga2', nan):.4f}",
        "bo_share": f"{share['bayes']:.3f}", "random_share": f"{share['random']:.3f}",
        "nsga2_share": f"{share.get('optuna-nsga2', nan):.3f}",
    }


if __name__ == "__main__":
    main()
