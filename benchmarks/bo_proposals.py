"""Bayesian optimization's proposal time and GP fit, against Optuna's GPSampler and scipy.

Three parts, side by side in one run (the machine may be loaded: compare the ratios):

1. **Fit quality**: on fixed data sets (a narrow 6-D bump, 40 points; a smooth 2-D function,
   24 points; Hartmann-6, 100 points), :func:`jaxtune.strategies.gp.fit_gp` (the defaults of
   ``bayes_search``) against scipy's ``minimize(method="L-BFGS-B", bounds=...)`` on the same
   objective (:func:`jaxtune.strategies.gp.log_posterior`) from 8 starts (the prior means and
   uniform draws in the box). ``fit_gap_nats`` is the largest shortfall of ours (negative:
   ours is higher).
2. **Warm proposal time**: Hartmann-6 with 100 and 300 told observations (uniform random
   points); ``bayes_search()`` with its defaults and ``optuna.samplers.GPSampler(seed=0)`` are
   each told the same history, then ask ``q`` points (q = 1 and 8), are told their values, and
   ask again, ``--rounds`` times after one untimed round (which compiles). Seconds per proposed
   point, median over rounds; ``proposal_ratio_<n>`` is Optuna's over ours at batch 1 (above
   1: ours is faster), ``proposal_ratio_<n>_q8`` at batch 8.
3. **First proposal**: a fresh process tells 8 Sobol points and times its first model ask,
   with an empty persistent compilation cache (``first_proposal_cold_s``), then again in a
   second fresh process with that cache filled (``first_proposal_cached_s``).

    /work/benchenv/bin/python benchmarks/bo_proposals.py          # all three parts
    /work/benchenv/bin/python benchmarks/bo_proposals.py --rounds 2 --skip-first

Needs Optuna and PyTorch (GPSampler) besides jaxtune's own dependencies. The last line is
``proposal_ratio_100=... proposal_ratio_300=... proposal_ratio_100_q8=...
proposal_ratio_300_q8=... fit_gap_nats=... first_proposal_cold_s=...
first_proposal_cached_s=...``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

import jaxtune
from jaxtune.space import Float, Space
from jaxtune.strategies import bayes_search, gp

ROOT = Path(jaxtune.__file__).resolve().parents[1]  # the jaxtune imported here
DIM = 6
_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
               [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
SPACE = Space({f"x{i}": Float(0.0, 1.0) for i in range(DIM)})


def hartmann6(u: np.ndarray) -> float:
    """Hartmann-6 on ``[0, 1]^6`` (minimum -3.32237)."""
    return float(-np.sum(_ALPHA * np.exp(-np.sum(_A * (np.asarray(u)[None] - _P) ** 2, 1))))


def as_vector(config: dict) -> np.ndarray:
    return np.array([config[f"x{i}"] for i in range(DIM)])


# --------------------------------------------------------------------------------------------
# 1. Fit quality


def fit_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    bump_x = rng.uniform(size=(40, 6))
    bump_y = -np.exp(-np.sum((bump_x - 0.5) ** 2, 1) / (2 * 0.15**2))
    smooth_x = rng.uniform(size=(24, 2))
    smooth_y = np.sin(6.0 * smooth_x[:, 0]) + smooth_x[:, 1] ** 2
    hart_x = rng.uniform(size=(100, 6))
    hart_y = np.array([hartmann6(u) for u in hart_x])
    return {name: (x, gp.standardize_scores(y)) for name, (x, y) in
            {"bump_6d_40": (bump_x, bump_y), "smooth_2d_24": (smooth_x, smooth_y),
             "hartmann6_100": (hart_x, hart_y)}.items()}


def scipy_maximum(x: np.ndarray, y: np.ndarray, num_starts: int = 8) -> float:
    dim, rows = x.shape[1], gp.bucket(len(y))
    bounds = [gp.LENGTHSCALE_BOUNDS] * dim + [gp.SIGNAL_VAR_BOUNDS, gp.NOISE_VAR_BOUNDS]
    bounds = [(math.log(low), math.log(high)) for low, high in bounds]
    with gp.gp_precision(rows):
        padded = tuple(map(jnp.asarray, gp.pad(x, y, rows)))

        def negative(theta: jax.Array) -> jax.Array:
            params = gp.GPParams(theta[:dim], theta[dim], theta[dim + 1])
            return -gp.log_posterior(params, *padded, 1e-8)

        value_and_grad = jax.jit(jax.value_and_grad(negative))
        means = gp.prior_means(dim)
        starts = [np.concatenate([np.ravel(leaf) for leaf in means])]
        rng = np.random.default_rng(1)
        starts += [rng.uniform(*np.transpose(bounds)) for _ in range(num_starts - 1)]
        best = -np.inf
        for start in starts:
            result = scipy.optimize.minimize(
                lambda t: tuple(np.asarray(v, np.float64) for v in value_and_grad(t)),
                np.clip(start, *np.transpose(bounds)), jac=True, method="L-BFGS-B",
                bounds=bounds)
            if np.isfinite(result.fun):
                best = max(best, -float(result.fun))
    return best


def fit_quality() -> float:
    print("part 1: GP fit, fit_gp (bayes_search defaults) vs scipy L-BFGS-B (8 starts)")
    print(f"{'data':>15} {'scipy':>10} {'fit_gp':>10} {'gap':>8} {'fit_gp s':>9}")
    gaps = []
    for name, (x, y) in fit_cases().items():
        reference = scipy_maximum(x, y)
        gp.fit_gp(x, y, jax.random.PRNGKey(1))  # compiles
        start = time.perf_counter()
        _, ours = gp.fit_gp(x, y, jax.random.PRNGKey(0))
        seconds = time.perf_counter() - start
        gaps.append(reference - ours)
        print(f"{name:>15} {reference:10.3f} {ours:10.3f} {reference - ours:8.3f} {seconds:9.3f}",
              flush=True)
    return max(gaps)


# --------------------------------------------------------------------------------------------
# 2. Warm proposal time


def history(num: int) -> tuple[np.ndarray, list[float]]:
    x = np.random.default_rng(num).uniform(size=(num, DIM))
    return x, [hartmann6(u) for u in x]


def time_jaxtune(num: int, batch: int, rounds: int) -> float:
    strategy = bayes_search()
    x, scores = history(num)
    state = strategy.init(SPACE, jax.random.PRNGKey(0))
    state = strategy.tell(state, SPACE.decode(x), scores)
    state = state._replace(num_asked=num)
    per_point = []
    for round_ in range(rounds + 1):
        start = time.perf_counter()
        configs, state = strategy.ask(state, batch)
        seconds = time.perf_counter() - start
        state = strategy.tell(state, configs, [hartmann6(as_vector(c)) for c in configs])
        if round_:  # the first round compiles
            per_point.append(seconds / batch)
    return float(np.median(per_point))


def time_optuna(num: int, batch: int, rounds: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    distributions = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0)
                     for i in range(DIM)}
    x, scores = history(num)
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=0))
    study.add_trials([
        optuna.trial.create_trial(params=dict(zip(distributions, map(float, u), strict=True)),
                                  distributions=distributions, value=value)
        for u, value in zip(x, scores, strict=True)
    ])
    per_point = []
    for round_ in range(rounds + 1):
        start = time.perf_counter()
        trials = [study.ask(distributions) for _ in range(batch)]
        seconds = time.perf_counter() - start
        for trial in trials:
            study.tell(trial, hartmann6(as_vector(trial.params)))
        if round_:
            per_point.append(seconds / batch)
    return float(np.median(per_point))


def proposal_times(rounds: int) -> dict[str, float]:
    print(f"part 2: seconds per proposed point, Hartmann-6, median of {rounds} rounds")
    print(f"{'observations':>12} {'batch':>5} {'jaxtune':>8} {'optuna GP':>9} {'ratio':>6}")
    ratios = {}
    for num in (100, 300):
        for batch in (1, 8):
            ours = time_jaxtune(num, batch, rounds)
            theirs = time_optuna(num, batch, rounds)
            suffix = "" if batch == 1 else f"_q{batch}"
            ratios[f"proposal_ratio_{num}{suffix}"] = theirs / ours
            print(f"{num:>12} {batch:>5} {ours:8.3f} {theirs:9.3f} {theirs / ours:6.2f}",
                  flush=True)
    return ratios


# --------------------------------------------------------------------------------------------
# 3. First proposal in a fresh process

_FIRST = """
import json, sys, time
import jax
import jaxtune
from jaxtune.space import Float, Space
from jaxtune.strategies import bayes_search
space = Space({f"x{i}": Float(0.0, 1.0) for i in range(6)})
strategy = bayes_search()
state = strategy.init(space, jax.random.PRNGKey(0))
configs, state = strategy.ask(state, 8)
state = strategy.tell(state, configs, [sum((v - 0.3) ** 2 for v in c.values()) for c in configs])
start = time.perf_counter()
strategy.ask(state, 1)
print(json.dumps(time.perf_counter() - start))
"""


def first_proposal() -> tuple[float, float]:
    print("part 3: first model proposal in a fresh process (6-D, 8 told points, batch 1)")
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "JAXTUNE_CACHE_DIR": folder, "PYTHONPATH": str(ROOT)}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        times = []
        for label in ("empty cache", "filled cache"):
            out = subprocess.run([sys.executable, "-c", _FIRST], env=env, check=True,
                                 capture_output=True, text=True).stdout
            times.append(json.loads(out.strip().splitlines()[-1]))
            print(f"{label:>13}: {times[-1]:.2f} s", flush=True)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed asks per setting")
    parser.add_argument("--skip-first", action="store_true", help="skip part 3")
    args = parser.parse_args()
    gap = fit_quality()
    ratios = proposal_times(args.rounds)
    cold = cached = float("nan")
    if not args.skip_first:
        cold, cached = first_proposal()
    fields = {**ratios, "fit_gap_nats": gap, "first_proposal_cold_s": cold,
              "first_proposal_cached_s": cached}
    print(" ".join(f"{name}={value:.3g}" for name, value in fields.items()))


if __name__ == "__main__":
    main()
