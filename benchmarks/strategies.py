"""Search strategies compared: test functions (simple regret) and digits (accuracy vs compute).

Part 1, standard test functions through the same ask/tell loop the tune loop runs
(``configs, state = ask(state, batch)``; ``state = tell(state, configs, losses)``), with every
coordinate a :class:`jaxtune.Float` parameter (the same box, continuous, for every tool):

* Branin (2-D, ``[-5, 10] x [0, 15]``, minimum 0.397887), Hartmann-6 (``[0, 1]^6``, minimum
  -3.32237), Rosenbrock-4 (``[-5, 10]^4``, minimum 0), Levy-10 (``[-10, 10]^10``, minimum 0) and
  Ackley-5 (``[-32.768, 32.768]^5``, minimum 0), as defined in the Virtual Library of Simulation
  Experiments (Surjanovic & Bingham);
* the tools (``--tools``): ``random``, ``sobol`` (scrambled), ``bayes`` (``bayes_search``: GP,
  expected improvement, kriging-believer batches), ``tpe`` (Optuna's TPE through
  :func:`jaxtune.integrations.optuna.optuna_strategy`), and the peers of issue 15 (the
  ``bench`` extra): ``skopt`` (scikit-optimize's ``Optimizer``, a GP with its defaults; batches
  by ``ask(n_points=8)``, its constant liar) and ``optuna_gp`` (Optuna's ``GPSampler``; a batch is
  8 trials asked, then told) -- adapters in ``benchmarks/_peers.py``; a tool whose package is
  missing is left out;
* batches of 1 and 8 configs per ``ask``; 100 evaluations; simple regret
  ``min(f(x_1..x_n)) - f*`` after 50 and 100 evaluations, median and quartiles over seeds.

With ``--cache FILE`` every run (tool, function, batch, seed) is stored in a JSON file as it
finishes and read back on the next call, which computes only what is missing, seed by seed (so
a stopped run leaves every cell at fewer seeds). A cached run of jaxtune's tools is keyed by a
hash of ``jaxtune/strategies/*.py`` and ``jaxtune/space*.py``, a peer's by its package version:
after a change to Bayesian optimization, ``--tools bayes`` recomputes jaxtune's rows only and
``--tools bayes skopt optuna_gp --cached-only`` compares them with the cached peers.

Part 2, digits with an MLP: best validation accuracy against member-steps for random search,
Bayesian optimization, Hyperband and PBT at an equal budget (``benchmarks/_digits_budget.py``,
its default five-hyperparameter workload ``wide5``; its figure is ``docs/strategies_budget.png``;
it also reports why Hyperband does or does not reach random search's best early: re-runs of
random search's best configuration with other member seeds and the models Hyperband has fully
trained at half the budget).

    python benchmarks/strategies.py          # 20 seeds, 5 functions, batches 1 and 8, 100 evals;
                                             # digits: 5 seeds
    python benchmarks/strategies.py --quick  # 3 seeds, Branin and Hartmann-6, batch 8, 50 evals;
                                             # digits: 2 seeds, a smaller budget
    python benchmarks/strategies.py --skip-digits --seeds 8 --tools bayes skopt optuna_gp \
        --cache benchmarks/.strategies_cache.json --markdown   # BO against the peers

The last line is ``bo_vs_random_regret_branin=... bo_vs_random_regret_hartmann6=...
bo_vs_best_peer_<f>_b<batch>_n<n>=... bo_beats_peers=<k>/<cells>
hyperband_budget_to_random_best=... pbt_best_acc=... random_best_acc=...``:
``bo_vs_random_regret_<f>`` is random search's median simple regret after 50 evaluations
(batch 8) over Bayesian optimization's (higher is better); ``bo_vs_best_peer_<f>_b<batch>_n<n>``
the lower of scikit-optimize's and Optuna GPSampler's median regrets over Bayesian
optimization's (at least 1: BO is as good as the best peer, issue 15's bar), and
``bo_beats_peers`` the number of those cells at least 1; ``hyperband_budget_to_random_best``
the fraction of random search's member-steps Hyperband needs to reach random search's final best
validation accuracy (median over seeds), the accuracies medians of the final best.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

import jaxtune as jt
from jaxtune.strategies import Strategy, random_search

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _digits_budget  # a sibling script
import _peers  # a sibling module

DOCS = Path(__file__).resolve().parents[1] / "docs"
REGRET_FIGURE = DOCS / "strategies_regret.png"
NUM_EVALS = 100
CHECKPOINTS = (50, 100)


# --------------------------------------------------------------------------------------------
# Test functions: x is [n, dim], returns [n]


def branin(x: np.ndarray) -> np.ndarray:
    x1, x2 = x[:, 0], x[:, 1]
    b, c, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


_HARTMANN_A = np.array([
    [10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14],
])
_HARTMANN_P = 1e-4 * np.array([
    [1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381],
])
_HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(x: np.ndarray) -> np.ndarray:
    inner = np.sum(_HARTMANN_A[None] * (x[:, None, :] - _HARTMANN_P[None]) ** 2, axis=-1)
    return -np.sum(_HARTMANN_ALPHA * np.exp(-inner), axis=-1)


def rosenbrock(x: np.ndarray) -> np.ndarray:
    return np.sum(100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2, axis=-1)


def levy(x: np.ndarray) -> np.ndarray:
    w = 1 + (x - 1) / 4
    head = np.sin(np.pi * w[:, 0]) ** 2
    middle = np.sum((w[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:, :-1] + 1) ** 2), axis=-1)
    tail = (w[:, -1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[:, -1]) ** 2)
    return head + middle + tail


class TestFunction(NamedTuple):
    """A test function: ``f([n, dim]) -> [n]``, its box and its known minimum."""

    f: Callable[[np.ndarray], np.ndarray]
    bounds: tuple[tuple[float, float], ...]
    minimum: float

    @property
    def dim(self) -> int:
        return len(self.bounds)

    def space(self) -> jt.Space:
        return jt.Space({f"x{i}": jt.Float(lo, hi) for i, (lo, hi) in enumerate(self.bounds)})

    def __call__(self, configs: list[dict[str, Any]]) -> np.ndarray:
        x = np.array([[c[f"x{i}"] for i in range(self.dim)] for c in configs], np.float64)
        return self.f(x.reshape(len(configs), self.dim))


FUNCTIONS = {
    "branin": TestFunction(branin, ((-5.0, 10.0), (0.0, 15.0)), 0.397887357729738),
    "hartmann6": TestFunction(hartmann6, ((0.0, 1.0),) * 6, -3.32236801141551),
    "rosenbrock4": TestFunction(rosenbrock, ((-5.0, 10.0),) * 4, 0.0),
    "levy10": TestFunction(levy, ((-10.0, 10.0),) * 10, 0.0),
    "ackley5": TestFunction(_peers.ackley, ((-32.768, 32.768),) * 5, 0.0),
}
TOOLS = ("random", "sobol", "bayes", "tpe", *_peers.PEERS)


def _strategies(tools: tuple[str, ...] | None = None) -> dict[str, Callable[[], Strategy]]:
    """The ask/tell strategies compared: name -> factory (absent ones are left out).

    Args:
      tools: the names to keep (:data:`TOOLS`); ``None``: all that are installed.
    """
    from jaxtune.strategies.sobol import sobol_search

    chosen: dict[str, Callable[[], Strategy]] = {
        "random": random_search, "sobol": sobol_search,
    }
    try:
        from jaxtune.strategies.bayes import bayes_search
    except ImportError:
        print("bayes_search is not available: Bayesian optimization is left out", flush=True)
    else:
        chosen["bayes"] = bayes_search
    try:
        import optuna

        from jaxtune.integrations.optuna import optuna_strategy
    except ImportError:
        print("optuna is not installed: TPE is left out", flush=True)
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        chosen["tpe"] = lambda: optuna_strategy(
            lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        )
    if tools is None or set(tools) & set(_peers.PEERS):
        chosen.update(_peers.peer_factories())
    return {name: chosen[name] for name in (tools or TOOLS) if name in chosen}


def best_so_far(strategy: Strategy, function: TestFunction, key: jax.Array, num_evals: int,
                batch: int) -> np.ndarray:
    """``[num_evals]`` best value after each evaluation, running the ask/tell loop."""
    state = strategy.init(function.space(), key)
    values: list[float] = []
    while len(values) < num_evals:
        configs, state = strategy.ask(state, min(batch, num_evals - len(values)))
        if not configs:
            raise RuntimeError("the strategy proposed nothing before the budget was spent")
        losses = function(configs)
        state = strategy.tell(state, configs, losses)
        values.extend(float(v) for v in losses)
    return np.minimum.accumulate(np.asarray(values))


def _fill(strategies: dict[str, Callable[[], Strategy]], functions: list[str],
          batches: tuple[int, ...], seeds: int, num_evals: int, cache: _peers.RegretCache,
          verbose: bool) -> dict[str, float]:
    """Run every (strategy, function, batch, seed) the cache lacks; returns seconds per strategy.

    Seeds are the outer loop, so a run stopped early leaves every cell at fewer seeds rather
    than a few cells at all of them.
    """
    timings = dict.fromkeys(strategies, 0.0)
    for seed in range(seeds):
        for batch in batches:
            for name in functions:
                for label, factory in strategies.items():
                    key = cache.key(label, name, batch, seed, num_evals)
                    if cache.get(key) is not None:
                        continue
                    start = time.perf_counter()
                    best = best_so_far(factory(), FUNCTIONS[name], jax.random.PRNGKey(seed),
                                       num_evals, batch)
                    spent = time.perf_counter() - start
                    cache.put(key, best, spent)
                    timings[label] += spent
                    if verbose:
                        print(f"  seed {seed} {name:<12} {label:<9} batch {batch}: regret "
                              f"@{num_evals} {best[-1] - FUNCTIONS[name].minimum:.3g} "
                              f"({spent:.1f} s)", flush=True)
    return timings


def _runs(label: str, name: str, batch: int, seeds: int, num_evals: int,
          cache: _peers.RegretCache) -> list[np.ndarray]:
    """The cached regret curves of seeds ``0 .. seeds - 1`` (those that are there)."""
    entries = [cache.get(cache.key(label, name, batch, seed, num_evals)) for seed in range(seeds)]
    minimum = FUNCTIONS[name].minimum
    return [np.maximum(np.asarray(e["best"]) - minimum, 0.0) for e in entries if e is not None]


def run_test_functions(functions: list[str], seeds: int, batches: tuple[int, ...],
                       num_evals: int = NUM_EVALS, verbose: bool = True,
                       partial: Path | None = None, tools: tuple[str, ...] | None = None,
                       cache: _peers.RegretCache | None = None,
                       compute: bool = True) -> dict[str, Any]:
    """Simple regret of every strategy on every function; returns the summary.

    Args:
      functions: names in :data:`FUNCTIONS`.
      seeds: seeds ``0 .. seeds - 1`` (the ``init`` key of every strategy).
      batches: configs per ``ask``.
      num_evals: evaluations per run.
      verbose: one line per run computed.
      partial: if given, the summary is written there (JSON).
      tools: the strategies to run (:data:`TOOLS`); ``None``: all installed.
      cache: where runs are looked up first and stored once computed (``None``: in memory).
      compute: run what the cache lacks (``False``: summarize the cached runs only).

    Returns:
      ``{"regret": {function: {strategy: {batch: [seeds, num_evals] regret}}}, "summary":
      {function: {strategy: {batch: {n: [q25, median, q75]}}}}, "seeds": {function:
      {strategy: {batch: count}}}, "wall_time_s": {strategy: seconds computed now}}``.
    """
    strategies = _strategies(tools)
    cache = cache or _peers.RegretCache(None)
    timings = dict.fromkeys(strategies, 0.0)
    if compute:
        timings = _fill(strategies, functions, batches, seeds, num_evals, cache, verbose)
    regret: dict[str, dict[str, dict[int, np.ndarray]]] = {}
    for batch in batches:
        for name in functions:
            for label in strategies:
                runs = _runs(label, name, batch, seeds, num_evals, cache)
                if runs:
                    regret.setdefault(name, {}).setdefault(label, {})[batch] = np.stack(runs)
    if partial is not None:
        partial.write_text(json.dumps({"summary": _summarize(regret), "curves": _curves(regret),
                                       "seeds": seeds, "wall_time_s": timings}, indent=1))
    return {"regret": regret, "summary": _summarize(regret), "seeds": _counts(regret),
            "wall_time_s": {k: round(v, 1) for k, v in timings.items()}}


def _counts(regret) -> dict[str, Any]:
    """Seeds behind every cell: ``{f: {strategy: {batch: count}}}``."""
    return {name: {label: {batch: int(r.shape[0]) for batch, r in by_batch.items()}
                   for label, by_batch in by_label.items()}
            for name, by_label in regret.items()}


def _curves(regret) -> dict[str, Any]:
    """Quartiles of the regret after every evaluation: ``{f: {strategy: {batch: [3][n]}}}``."""
    return {
        name: {
            label: {batch: np.quantile(r, (0.25, 0.5, 0.75), axis=0).tolist()
                    for batch, r in by_batch.items()}
            for label, by_batch in by_label.items()
        }
        for name, by_label in regret.items()
    }


def _summarize(regret) -> dict[str, Any]:
    """Quartiles of the regret after each checkpoint: ``{f: {strategy: {batch: {n: [q]}}}}``."""
    return {
        name: {
            label: {
                batch: {n: [float(q) for q in np.quantile(r[:, n - 1], (0.25, 0.5, 0.75))]
                        for n in CHECKPOINTS if n <= r.shape[1]}
                for batch, r in by_batch.items()
            }
            for label, by_batch in by_label.items()
        }
        for name, by_label in regret.items()
    }


def _plot_regret(curves, path: Path, seeds: int) -> None:
    """One panel per function (columns) and batch size (rows): median and quartiles.

    Args:
      curves: ``{function: {strategy: {batch: [q25, median, q75]}}}``, each a list over
        evaluations (:func:`_curves`; batch keys may be strings when read back from JSON).
      path: the figure file.
      seeds: seeds behind the quartiles (for the title).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)
    batches = sorted({int(b) for by_label in curves.values() for c in by_label.values()
                      for b in c}, reverse=True)
    fig, axes = plt.subplots(len(batches), len(names), figsize=(3.1 * len(names),
                             2.9 * len(batches)), dpi=110, squeeze=False)
    colors = {"random": "C0", "sobol": "C2", "bayes": "C1", "tpe": "C4", "skopt": "C3",
              "optuna_gp": "C5"}
    for row, batch in enumerate(batches):
        for ax, name in zip(axes[row], names, strict=True):
            drawn = False
            for label, by_batch in curves[name].items():
                quartiles = by_batch.get(batch, by_batch.get(str(batch)))
                if quartiles is None:
                    continue
                drawn = True
                low, mid, high = np.maximum(np.asarray(quartiles, float), 1e-12)
                steps = np.arange(1, len(mid) + 1)
                ax.plot(steps, mid, color=colors.get(label), label=label)
                ax.fill_between(steps, low, high, color=colors.get(label), alpha=0.15,
                                linewidth=0)
            if not drawn:  # not measured (a partial run)
                ax.axis("off")
                continue
            ax.set_yscale("log")
            ax.set_title(f"{name}, batch {batch}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(batches) - 1:
                ax.set_xlabel("evaluations")
        axes[row][0].set_ylabel("simple regret")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"simple regret: median and quartiles over {seeds} seeds", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _ratio(summary, function: str, batch: int = 8, n: int = 50) -> float | None:
    """Random's median regret after n evaluations over BO's (None without both)."""
    by_label = summary.get(function, {})
    if ("bayes" not in by_label or "random" not in by_label or batch not in by_label["random"]
            or batch not in by_label["bayes"]):
        return None
    bo = by_label["bayes"][batch][n][1]
    rnd = by_label["random"][batch][n][1]
    return float(rnd / bo) if bo > 0 else float("inf")


def _peer_ratios(summary) -> dict[str, float]:
    """``bo_vs_best_peer_<f>_b<batch>_n<n>``: the best peer's median regret over BO's.

    At least 1 means Bayesian optimization's median is as low as the lower of scikit-optimize's
    and Optuna GPSampler's (issue 15's bar). Cells without BO or without any peer are left out;
    both medians 0 count as 1, BO's alone 0 as infinity.
    """
    ratios: dict[str, float] = {}
    for name, by_label in summary.items():
        for batch, at in by_label.get("bayes", {}).items():
            peers = [by_label[p][batch] for p in _peers.PEERS if batch in by_label.get(p, {})]
            for n, quartiles in at.items():
                if not peers:
                    continue
                best_peer = min(p[n][1] for p in peers)
                bo = quartiles[1]
                ratio = best_peer / bo if bo > 0 else (1.0 if best_peer == 0 else float("inf"))
                ratios[f"bo_vs_best_peer_{name}_b{batch}_n{n}"] = float(ratio)
    return ratios


def _markdown(summary, counts, batches: tuple[int, ...]) -> str:
    """One Markdown table per batch size: median [quartiles] per function, budget and tool.

    A column header carries the seeds behind it when every cell of it has as many; otherwise
    each cell says its own count (``(n=5)``). With BO and a peer, a last column gives the best
    peer's median over BO's (:func:`_peer_ratios`).
    """
    lines, ratios = [], _peer_ratios(summary)
    for batch in batches:
        labels = [t for t in TOOLS if any(batch in summary[f].get(t, {}) for f in summary)]
        if not labels:
            continue
        seeds = {t: {counts[f][t][batch] for f in summary if batch in counts[f].get(t, {})}
                 for t in labels}
        header = [t if len(seeds[t]) > 1 else f"{t} ({next(iter(seeds[t]))} seeds)"
                  for t in labels]
        if "bayes" in labels and set(labels) & set(_peers.PEERS):
            header.append("best peer / BO")
        lines += [f"Batches of {batch}:", "", "| function | after | " + " | ".join(header)
                  + " |", "| --- | --- |" + " --- |" * len(header)]
        for name, by_label in summary.items():
            for n in CHECKPOINTS:
                cells = []
                for t in labels:
                    q = by_label.get(t, {}).get(batch, {}).get(n)
                    count = f" (n={counts[name][t][batch]})" if q and len(seeds[t]) > 1 else ""
                    cells.append(f"{q[1]:.2g} [{q[0]:.2g}, {q[2]:.2g}]{count}" if q else "-")
                if len(header) > len(labels):
                    ratio = ratios.get(f"bo_vs_best_peer_{name}_b{batch}_n{n}")
                    cells.append("-" if ratio is None else f"{ratio:.2g}")
                lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "nan"
    return f"{value:.4g}"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 seeds, Branin and Hartmann-6, batch 8; 2 digits seeds (minutes)")
    parser.add_argument("--seeds", type=int, default=None, help="test-function seeds")
    parser.add_argument("--digits-seeds", type=int, default=None)
    parser.add_argument("--functions", nargs="+", choices=tuple(FUNCTIONS), default=None,
                        help="test functions (default: all; quick: branin hartmann6)")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="configs per ask (default: 8 1; quick: 8)")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=None,
                        help="strategies of part 1 (default: all installed)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="JSON file of part 1's runs: read first, each new run added (e.g. "
                        "benchmarks/.strategies_cache.json, git-ignored)")
    parser.add_argument("--cached-only", action="store_true",
                        help="part 1 summarizes the runs in --cache and computes nothing")
    parser.add_argument("--markdown", action="store_true",
                        help="print part 1's tables in Markdown (as in docs/strategies.md)")
    parser.add_argument("--skip-digits", action="store_true", help="part 1 only")
    parser.add_argument("--skip-functions", action="store_true", help="part 2 only")
    parser.add_argument("--figures", action="store_true",
                        help="write docs/strategies_*.png (default: full runs of all tools "
                        "and functions)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write the summary here")
    parser.add_argument("--plot-from", type=Path, default=None,
                        help="only draw docs/strategies_regret.png from a --json file (which "
                        "a long run writes as it goes) and exit")
    return parser.parse_args()


def _part1(args, functions: list[str], seeds: int, batches: tuple[int, ...], num_evals: int,
           figures: bool) -> dict[str, Any]:
    """Run (or read from the cache) and print part 1; returns :func:`run_test_functions`'s."""
    print(f"part 1: {', '.join(functions)}; {seeds} seeds; batches {batches}; {num_evals} "
          "evaluations", flush=True)
    part1 = run_test_functions(functions, seeds, batches, num_evals, partial=args.json,
                               tools=tuple(args.tools) if args.tools else None,
                               cache=_peers.RegretCache(args.cache),
                               compute=not args.cached_only)
    if figures:
        _plot_regret(_curves(part1["regret"]), REGRET_FIGURE, seeds=seeds)
    summary = part1["summary"]
    print("\nmedian simple regret [q25, q75] after n evaluations")
    for name, by_label in summary.items():
        for label, by_batch in by_label.items():
            for batch, at in by_batch.items():
                cells = "   ".join(
                    f"@{n}: {q[1]:.3g} [{q[0]:.3g}, {q[2]:.3g}]" for n, q in at.items()
                )
                print(f"  {name:<12} {label:<9} batch {batch} "
                      f"({part1['seeds'][name][label][batch]} seeds):  {cells}")
    if args.markdown:
        print("\n" + _markdown(summary, part1["seeds"], batches))
    ratios = {name: _ratio(summary, name) for name in functions}
    print("random / BO median regret after 50 evaluations, batch 8: "
          + "  ".join(f"{k} {_fmt(v)}" for k, v in ratios.items()))
    print(f"part 1 wall time computed now (s): {part1['wall_time_s']}", flush=True)
    part1["ratios"] = ratios
    part1["peer_ratios"] = _peer_ratios(summary)
    return part1


def main() -> None:
    args = _parse()
    start = time.perf_counter()
    if args.plot_from is not None:
        saved = json.loads(args.plot_from.read_text())
        _plot_regret(saved["curves"], REGRET_FIGURE, seeds=saved["seeds"])
        print(f"wrote {REGRET_FIGURE}")
        return

    if args.quick:
        functions, seeds, batches, num_evals, digits_seeds = ["branin", "hartmann6"], 3, (8,), 50, 2
    else:
        functions, seeds, batches, num_evals, digits_seeds = list(FUNCTIONS), 20, (8, 1), 100, 5
    seeds = args.seeds or seeds
    functions = args.functions or functions
    batches = tuple(args.batches or batches)
    digits_seeds = args.digits_seeds or digits_seeds
    # a subset (--tools, --functions, --cached-only) must not overwrite the docs' figures
    figures = args.figures or not (args.quick or args.tools or args.functions or args.cached_only)

    part1: dict[str, Any] = {"summary": {}, "ratios": {}, "peer_ratios": {}, "wall_time_s": {}}
    if not args.skip_functions:
        part1 = _part1(args, functions, seeds, batches, num_evals, figures)
    ratios, peer_ratios = part1["ratios"], part1["peer_ratios"]

    digits: dict[str, Any] = {}
    if not args.skip_digits:
        print(f"\npart 2: digits MLP, {digits_seeds} seeds", flush=True)
        digits = _digits_budget.run_digits_budget(
            seeds=digits_seeds, quick=args.quick, space="wide5",
            figure=_digits_budget.FIGURE if figures else None,
        )
        print(json.dumps({k: v for k, v in digits.items() if k != "per_seed"}))

    if args.json is not None:
        curves = _curves(part1["regret"]) if not args.skip_functions else {}
        args.json.write_text(json.dumps({"summary": part1["summary"], "curves": curves,
                                         "seeds": seeds, "ratios": ratios,
                                         "peer_ratios": peer_ratios,
                                         "wall_time_s": part1["wall_time_s"],
                                         "digits": digits}, indent=1, default=float))
    print(f"total {time.perf_counter() - start:.1f} s")
    beats = sum(v >= 1.0 for v in peer_ratios.values())
    print(f"bo_vs_random_regret_branin={_fmt(ratios.get('branin'))} "
          f"bo_vs_random_regret_hartmann6={_fmt(ratios.get('hartmann6'))} "
          + "".join(f"{k}={_fmt(v)} " for k, v in peer_ratios.items())
          + f"bo_beats_peers={beats}/{len(peer_ratios)} "
          f"hyperband_budget_to_random_best={_fmt(digits.get('hyperband_budget_to_random_best'))} "
          f"pbt_best_acc={_fmt(digits.get('pbt_best_acc'))} "
          f"random_best_acc={_fmt(digits.get('random_best_acc'))}")


if __name__ == "__main__":
    main()
