"""Bayesian optimization: a Gaussian process on the unit cube, EI / UCB, batches of proposals.

Every searchable parameter is one coordinate of the unit cube (:mod:`jaxtune.space`); the
surrogate is a Gaussian process (GP) on that encoding, written in JAX and run in float64
(``jax.enable_x64`` around the device work only, so the caller's precision is unchanged):

* **Kernel**: Matern 5/2 with one length scale per coordinate (ARD),
  ``k(x, x') = s (1 + sqrt(5) r + 5/3 r^2) exp(-sqrt(5) r)``, ``r = ||(x - x') / l||``,
  plus observation noise ``n`` on the diagonal (Rasmussen & Williams 2006, eq. 4.17).
* **Outputs** are standardized: non-finite scores (diverged runs, already ``+inf``) are
  replaced by the worst finite score, then all are shifted and scaled by the mean and standard
  deviation of the finite scores (scale 1 when they are all equal; all zero when none is
  finite). The GP has zero prior mean on that scale.
* **Hyperparameters** ``(log l, log s, log n)`` maximize the log marginal likelihood
  ``-y^T K^-1 y / 2 - log|K| / 2 - m log(2 pi) / 2`` plus weak log-normal priors (below) inside
  box bounds (:data:`LENGTHSCALE_BOUNDS`, :data:`SIGNAL_VAR_BOUNDS`, :data:`NOISE_VAR_BOUNDS`),
  by L-BFGS (Optax, zoom line search) in unconstrained coordinates mapped into the box by a
  sigmoid, from ``fit_restarts`` starts run one after the other: the prior means, the previous
  ask's fit (kept in :attr:`BayesState.gp_params`, so a good optimum found once is kept), and
  draws from the priors. Each run stops when an iteration gains less than 1e-7 nats; runs
  whose objective is not finite are never chosen. On the data sets of
  ``benchmarks/bo_proposals.py`` the fit reaches scipy's L-BFGS-B optimum from 8 starts.
* **Numerics**: the Cholesky factor of ``K + jitter I`` is retried with ten times the jitter
  (up to :data:`MAX_JITTER_TRIES` times) while it has NaNs, and falls back to the diagonal if
  it still fails, so duplicated points or constant scores never crash a proposal.
* **Shapes**: observations are padded to power-of-two buckets (at least 32 rows) with a mask
  (padded rows are uncorrelated, unit-variance, zero targets, and add exactly nothing to the
  likelihood or the posterior), and the batch size to a power of two, so ``jit`` compiles once
  per bucket instead of every round. At most ``max_observations`` told configs (default 128)
  are used (the best half and the most recent others), bounding the cubic cost of a fit.

**Acquisitions** (scores are losses, so lower is better): expected improvement below the best
standardized observation, ``EI = (b - mu) Phi(z) + sigma phi(z)``, ``z = (b - mu) / sigma``
(Jones et al. 1998), maximized as its logarithm for useful gradients far from the data (Ament
et al. 2023); or the confidence bound ``UCB = -mu + sqrt(beta) sigma`` (Srinivas et al. 2010,
on the negated loss). Each is maximized by ``num_restarts`` starts (half uniform in the cube,
half around the best observations) scored together, the best ``num_ascent`` of them improved
by projected Adam steps inside the cube, all in one ``jit``; Int and Choice coordinates are then
snapped to the encoding of their nearest value, and a candidate equal to an observed (or
already proposed) config is discarded.

**Batches** of ``q`` configs per ``ask``: the *kriging believer* (Ginsbourger et al. 2010)
adds each chosen point with the posterior mean as a fantasy observation and conditions the GP
again (hyperparameters kept) before choosing the next, all inside one device loop; *Thompson
sampling* draws ``q`` joint posterior samples over a shared candidate set and takes the
minimizer of each (no repeats).

**Several objectives and constraints**: told :class:`~jaxtune.contracts.Outcomes` (what
:func:`jaxtune.tune` tells for ``metric=[...]`` or ``constraints=``), each ``ask`` draws one
weight vector per point of the batch (uniform on the simplex) and scalarizes the objectives,
each scaled to ``[0, 1]`` over the told values, by ParEGO's augmented Chebyshev function
``max_i w_i f_i + 0.05 sum_i w_i f_i`` (Knowles 2006); a GP is fitted to each scalarization
and to each constraint's violations, and one device program proposes the batch: point ``i``
maximizes ``log EI`` of its scalarization below the best feasible value plus
``log P(feasible)`` (constrained EI, Gardner et al. 2014), then joins every GP at its
posterior mean (kriging believer) before the next.

The first ``num_initial`` configs come from a scrambled Sobol sequence
(:mod:`jaxtune.strategies.sobol`; uniform random points above ``MAX_SOBOL_DIM`` dimensions),
as do all configs asked before any score was told.

**Cost** on a CPU (``benchmarks/bo_proposals.py``, Hartmann-6, 100 or 300 told observations,
a shared 2-core machine): 0.4-1.4 s per proposed point at batch 1, 0.1-0.4 s at batch 8, most of
it the fit (8 L-BFGS runs of 20-60 iterations; the one from the previous fit stops after one or
two), 7 to 44 times less than Optuna's ``GPSampler`` beside it. The first model ask in a padding
bucket also compiles the fit and the proposal, 15-40 s there, under 2 s from JAX's persistent
compilation cache in a later process. The cost grows with the cube of ``max_observations``.

Layout: the GP model in :mod:`jaxtune.strategies.gp`, the acquisitions and batch proposals in
:mod:`jaxtune.strategies.acquisitions`, the strategy here (their public names are re-exported).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune import compile_cache, pareto
from jaxtune.contracts import Outcomes
from jaxtune.space import Choice, Int, Space
from jaxtune.strategies.acquisitions import (
    ACQUISITIONS,
    BATCH_SCHEMES,
    PROPOSE_CONSTRAINED,
    PROPOSERS,
    AcquisitionSearch,
    ConstraintInputs,
    ProposalInputs,
    ProposalSettings,
    augmented_chebyshev,
    expected_improvement,
    log_expected_improvement,
    upper_confidence_bound,
)
from jaxtune.strategies.base import (
    Config,
    History,
    Strategy,
    append_history,
    check_num,
    empty_history,
)

# The GP's constants keep their old import path (``bayes.LENGTHSCALE_BOUNDS``).
from jaxtune.strategies.gp import LENGTHSCALE_BOUNDS as LENGTHSCALE_BOUNDS
from jaxtune.strategies.gp import MAX_JITTER_TRIES as MAX_JITTER_TRIES
from jaxtune.strategies.gp import MAX_SINGLE_THREAD_ROWS as MAX_SINGLE_THREAD_ROWS
from jaxtune.strategies.gp import MIN_BUCKET as MIN_BUCKET
from jaxtune.strategies.gp import NOISE_VAR_BOUNDS as NOISE_VAR_BOUNDS
from jaxtune.strategies.gp import SIGNAL_VAR_BOUNDS as SIGNAL_VAR_BOUNDS
from jaxtune.strategies.gp import (
    GPParams,
    bucket,
    fit_gp,
    fit_hyperparameters,
    gp_log_marginal_likelihood,
    gp_posterior,
    gp_precision,
    matern52,
    pad,
    prior_means,
    standardize_scores,
)
from jaxtune.strategies.sobol import MAX_SOBOL_DIM, scramble_seeds, sobol_points

__all__ = [
    "ACQUISITIONS",
    "BATCH_SCHEMES",
    "BayesState",
    "GPParams",
    "bayes_search",
    "expected_improvement",
    "fit_gp",
    "gp_log_marginal_likelihood",
    "gp_posterior",
    "log_expected_improvement",
    "matern52",
    "standardize_scores",
    "upper_confidence_bound",
]

#: Int and Choice coordinates with at most this many values are snapped to a value's encoding.
MAX_SNAPPED_VALUES = 256


class BayesState(NamedTuple):
    """State of :func:`bayes_search`.

    Attributes:
      space: the search space.
      key: the PRNG key given to ``init``; round keys are ``fold_in(key, num_asked)``.
      num_asked: how many configs have been asked so far.
      num_initial_asked: how many configs came from the initial (Sobol) design.
      history: told configs (encoded, ``[num_told, dim]``) and their scores (``[num_told]``;
        told :class:`~jaxtune.contracts.Outcomes`: :func:`jaxtune.pareto.summary_losses`).
      outcomes: every told :class:`~jaxtune.contracts.Outcomes`, concatenated (``None`` while
        only plain scores were told); when set, proposals are for the front and constraints.
      gp_params: the GP hyperparameters of the last model ask (numpy leaves), where the next
        fit starts one of its runs; ``None`` before the first.
    """

    space: Space
    key: jax.Array
    num_asked: int
    num_initial_asked: int
    history: History
    outcomes: Outcomes | None = None
    gp_params: GPParams | None = None


def _observations_kept(scores: np.ndarray, max_observations: int) -> np.ndarray:
    """Indices (ascending) of at most ``max_observations`` rows: the best half by score, then
    the most recent of the others."""
    num = len(scores)
    if num <= max_observations:
        return np.arange(num)
    best = np.argsort(scores, kind="stable")[: max_observations // 2]
    others = np.setdiff1d(np.arange(num), best)
    recent = others[len(others) - (max_observations - len(best)) :]
    return np.sort(np.concatenate([best, recent]))


def _snap_tables(space: Space) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate, the sorted encodings of its values (Int/Choice with few values)."""
    names = space.searchable_names
    columns = []
    for name in names:
        param = space[name]
        # A coordinate's encoding is its own parameter's (Space.encode, column by column), so
        # it needs no valid config around it (with conditions there may be none).
        if isinstance(param, Choice) and len(param.values) <= MAX_SNAPPED_VALUES:
            columns.append(np.sort(np.clip(param.to_unit(list(param.values)), 0.0, 1.0)))
        elif isinstance(param, Int) and param.high - param.low < MAX_SNAPPED_VALUES:
            values = np.arange(param.low, param.high + 1)
            columns.append(np.sort(np.clip(param.to_unit(values), 0.0, 1.0)))
        else:
            columns.append(np.zeros(0))
    width = bucket(max(len(c) for c in columns), 8)  # few distinct shapes, few compiles
    centers = np.full((len(names), width), 1e9)  # padding is never nearest
    for column, values in enumerate(columns):
        centers[column, : len(values)] = values
    snapped = np.array([len(c) > 0 for c in columns], bool)
    return centers, snapped


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"bayes_search: {name} = {value!r} must be an int >= {minimum}.")
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"bayes_search: {name} = {value!r} must be a finite number > 0.")
    return float(value)


# --------------------------------------------------------------------------------------------
# The strategy: validated settings, then pure init / ask / tell over BayesState


class _Settings(NamedTuple):
    """The arguments of :func:`bayes_search` (see there), checked by :func:`_checked`."""

    acquisition: str
    num_initial: int
    beta: float
    batch_scheme: str
    num_restarts: int
    num_ascent: int
    acquisition_steps: int
    acquisition_learning_rate: float
    fit_restarts: int
    fit_steps: int
    jitter: float
    max_observations: int


def _checked(settings: _Settings) -> _Settings:
    """The settings with ints and floats made plain; raises ``ValueError`` naming a bad one."""
    if settings.acquisition not in ACQUISITIONS:
        raise ValueError(
            f"bayes_search: acquisition = {settings.acquisition!r} must be one of "
            f"{ACQUISITIONS}."
        )
    if settings.batch_scheme not in BATCH_SCHEMES:
        raise ValueError(
            f"bayes_search: batch_scheme = {settings.batch_scheme!r} must be one of "
            f"{BATCH_SCHEMES}."
        )
    num_initial = _check_int("num_initial", settings.num_initial, 1)
    num_restarts = _check_int("num_restarts", settings.num_restarts, 2)
    num_ascent = _check_int("num_ascent", settings.num_ascent, 1)
    if num_ascent > num_restarts:
        raise ValueError(
            f"bayes_search: num_ascent = {num_ascent} must be <= num_restarts = {num_restarts}."
        )
    return settings._replace(
        num_initial=num_initial,
        num_restarts=num_restarts,
        num_ascent=num_ascent,
        acquisition_steps=_check_int("acquisition_steps", settings.acquisition_steps, 0),
        fit_restarts=_check_int("fit_restarts", settings.fit_restarts, 1),
        fit_steps=_check_int("fit_steps", settings.fit_steps, 0),
        beta=_check_positive("beta", settings.beta),
        acquisition_learning_rate=_check_positive(
            "acquisition_learning_rate", settings.acquisition_learning_rate
        ),
        jitter=_check_positive("jitter", settings.jitter),
        max_observations=_check_int("max_observations", settings.max_observations, 2),
    )


def _init(space: Space, key: jax.Array) -> BayesState:
    if not isinstance(space, Space):
        raise TypeError(f"init(space, key): space must be a Space, got {type(space).__name__}.")
    return BayesState(space, key, 0, 0, empty_history(space))


def _initial_points(state: BayesState, num: int) -> np.ndarray:
    """``[num, dim]`` points of the scrambled Sobol design (uniform above MAX_SOBOL_DIM)."""
    dim = state.space.dim
    key = jax.random.fold_in(state.key, 0)
    if dim <= MAX_SOBOL_DIM:
        return sobol_points(state.num_initial_asked, num, dim, scramble_seeds(key, dim))
    key = jax.random.fold_in(key, state.num_initial_asked)
    return np.asarray(jax.random.uniform(key, (num, dim)), np.float64)


def _model_points(settings: _Settings, state: BayesState,
                  num: int) -> tuple[np.ndarray, GPParams]:
    """``[num, dim]`` points proposed by the GP fitted to the told history, and its fitted
    hyperparameters (numpy)."""
    history = state.history
    key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.num_asked)
    fit_key, propose_key = jax.random.split(key)
    keep = _observations_kept(history.scores, settings.max_observations)
    y = standardize_scores(history.scores[keep])
    proposal = ProposalSettings(
        settings.acquisition,
        bucket(num, 4),
        settings.num_restarts,
        settings.num_ascent,
        settings.acquisition_steps,
    )
    # The fit needs no room for the batch's fantasy rows, the proposal does.
    fit_rows, rows = bucket(len(y)), bucket(len(y) + proposal.batch_bucket)
    x_padded, y_padded, mask = pad(history.encoded[keep], y, rows)
    centers, snapped = _snap_tables(state.space)
    with gp_precision(rows):
        x_padded, y_padded, mask = map(jnp.asarray, (x_padded, y_padded, mask))
        jitter = jnp.asarray(settings.jitter, jnp.float64)
        params, _ = fit_hyperparameters(
            x_padded[:fit_rows],
            y_padded[:fit_rows],
            mask[:fit_rows],
            fit_key,
            jitter,
            _warm_params(state),
            num_restarts=settings.fit_restarts,
            num_steps=settings.fit_steps,
        )
        search = AcquisitionSearch(
            jnp.asarray(settings.beta, jnp.float64),
            jnp.asarray(settings.acquisition_learning_rate, jnp.float64),
            jnp.asarray(centers),
            jnp.asarray(snapped),
        )
        inputs = ProposalInputs(
            params,
            x_padded,
            y_padded,
            mask,
            jnp.asarray(len(y)),
            jnp.asarray(num),
            propose_key,
            jitter,
            search,
        )
        proposals = PROPOSERS[settings.batch_scheme](inputs, proposal)
        fitted = GPParams(*(np.asarray(leaf, np.float64) for leaf in params))
        return np.clip(np.asarray(proposals, np.float64)[:num], 0.0, 1.0), fitted


def _warm_params(state: BayesState) -> GPParams:
    """Where the fit's second run starts: the last fit (the prior means before the first), in
    the same dtypes either way (a weakly typed leaf would compile the fit again)."""
    params = prior_means(state.space.dim) if state.gp_params is None else state.gp_params
    return GPParams(*(jnp.asarray(np.asarray(leaf, np.float64)) for leaf in params))


def _ask(settings: _Settings, state: BayesState, num: int) -> tuple[list[Config], BayesState]:
    num = check_num(num)
    space = state.space
    if space.dim == 0:  # only Fixed parameters: every config is the same
        return space.decode(np.zeros((num, 0))), state._replace(num_asked=state.num_asked + num)
    # A warm start tells a history before the first ask: it counts towards the design.
    num_done = max(state.num_asked, len(state.history.scores))
    num_from_design = min(num, max(0, settings.num_initial - num_done))
    if len(state.history.scores) == 0:
        num_from_design = num
    parts, gp_params = [], state.gp_params
    if num_from_design:
        parts.append(_initial_points(state, num_from_design))
    if num - num_from_design:
        # The GP programs compile once per machine (a side effect on JAX's configuration
        # only: proposals are the same with or without the cache).
        compile_cache.ensure_compilation_cache()
        if state.outcomes is None:
            points, gp_params = _model_points(settings, state, num - num_from_design)
        parts.append(points if state.outcomes is None else
                     _outcome_points(settings, state, num - num_from_design))
    u = np.concatenate(parts) if parts else np.zeros((0, space.dim))
    if space.conditional_names:
        u = _distinct_configs(space, u, state)
    new_state = state._replace(
        num_asked=state.num_asked + num,
        num_initial_asked=state.num_initial_asked + num_from_design,
        gp_params=gp_params,
    )
    return space.decode(u), new_state


def _distinct_configs(space: Space, u: np.ndarray, state: BayesState) -> np.ndarray:
    """Points of a conditional space moved to their configs' encodings (inactive coordinates
    at :data:`jaxtune.space.INACTIVE_COORDINATE`), each config once and none already told: two
    points that differ only in coordinates inactive under their values are one config, which
    the acquisition, working in the whole cube, does not see. A repeat is replaced by a
    uniform draw (``fold_in(key, 2)``), tried a few times."""
    canonical = space.encode(space.decode(u))
    seen = {row.tobytes() for row in state.history.encoded}
    key = jax.random.fold_in(jax.random.fold_in(state.key, 2), state.num_asked)
    draws = np.asarray(jax.random.uniform(key, (len(u), 8, space.dim)), np.float64)
    for i in range(len(canonical)):
        for draw in draws[i]:
            if canonical[i].tobytes() not in seen:
                break
            canonical[i] = space.encode(space.decode(draw[None, :]))[0]
        seen.add(canonical[i].tobytes())
    return canonical


def _tell(state: BayesState, configs: list[Config], scores: Any) -> BayesState:
    if isinstance(scores, Outcomes):
        return _tell_outcomes(state, configs, scores)
    if state.outcomes is not None:
        raise ValueError("tell: this search was told Outcomes (several objectives or "
                         "constraints) before; keep telling Outcomes, not plain scores.")
    return state._replace(history=append_history(state.history, state.space, configs, scores))


# --------------------------------------------------------------------------------------------
# Several objectives (ParEGO scalarizations) and constraints (constrained EI)

#: The augmentation of :func:`~jaxtune.strategies.acquisitions.augmented_chebyshev`.
CHEBYSHEV_RHO = 0.05


def _tell_outcomes(state: BayesState, configs: list[Config], outcomes: Outcomes) -> BayesState:
    """Appends told :class:`Outcomes`: NaN and -inf count as ``+inf`` (failed)."""
    objectives = np.array(outcomes.objectives, np.float64).reshape(len(configs), -1)
    violations = np.array(outcomes.violations, np.float64).reshape(len(configs), -1)
    objectives[~np.isfinite(objectives)] = np.inf
    violations[np.isnan(violations)] = np.inf
    told = Outcomes(objectives, violations)
    previous = state.outcomes
    if previous is not None:
        if previous.objectives.shape[1:] != objectives.shape[1:] or \
                previous.violations.shape[1:] != violations.shape[1:]:
            raise ValueError(
                f"tell: Outcomes with {objectives.shape[1]} objectives and "
                f"{violations.shape[1]} constraints, but earlier ones had "
                f"{previous.objectives.shape[1]} and {previous.violations.shape[1]}."
            )
        told = Outcomes(np.concatenate([previous.objectives, objectives]),
                        np.concatenate([previous.violations, violations]))
    summary = pareto.summary_losses(objectives, Outcomes(objectives, violations).feasible)
    history = append_history(state.history, state.space, configs, summary)
    return state._replace(history=history, outcomes=told)


def _normalized(objectives: np.ndarray) -> np.ndarray:
    """Each objective scaled to ``[0, 1]`` over its finite values (``+inf`` kept)."""
    finite = np.isfinite(objectives)
    low = np.where(finite, objectives, np.inf).min(axis=0)
    high = np.where(finite, objectives, -np.inf).max(axis=0)
    low = np.where(np.isfinite(low), low, 0.0)
    span = np.where(high > low, high - low, 1.0)
    return np.where(finite, (objectives - low) / span, np.inf)


def _standardized_violations(violations: np.ndarray) -> tuple[np.ndarray, float]:
    """One constraint's violations on the GP's scale, and where its 0 (the bound) lies."""
    finite = np.isfinite(violations)
    if not finite.any():
        return np.zeros_like(violations), 0.0
    mean, std = violations[finite].mean(), violations[finite].std()
    return standardize_scores(violations), float(-mean / (std if std > 0 else 1.0))


def _targets(state: BayesState, keep: np.ndarray, num: int) -> list[np.ndarray]:
    """The standardized objective (one) or one random scalarization per point (several)."""
    objectives = state.outcomes.objectives[keep]
    if objectives.shape[1] == 1:
        return [standardize_scores(objectives[:, 0])]
    key = jax.random.fold_in(jax.random.fold_in(state.key, 2), state.num_asked)
    weights = np.asarray(jax.random.exponential(key, (num, objectives.shape[1])), np.float64)
    weights /= weights.sum(axis=1, keepdims=True)
    normalized = _normalized(objectives)
    return [standardize_scores(augmented_chebyshev(normalized, w, CHEBYSHEV_RHO))
            for w in weights]


def _outcome_points(settings: _Settings, state: BayesState, num: int) -> np.ndarray:
    """``[num, dim]`` points for told :class:`Outcomes`: one objective, or one random
    scalarization per point of several, by EI (times the probability of feasibility with
    constraints), in one device program (:func:`~jaxtune.strategies.acquisitions.
    propose_constrained`)."""
    keep = _observations_kept(state.history.scores, settings.max_observations)
    x = state.history.encoded[keep]
    key = jax.random.fold_in(jax.random.fold_in(state.key, 3), state.num_asked)
    fit_key, propose_key = jax.random.split(key)
    limits = [_standardized_violations(column) for column in state.outcomes.violations[keep].T]
    ys = [*_targets(state, keep, num), *(g for g, _ in limits)]
    fitted = [
        fit_gp(x, y, jax.random.fold_in(fit_key, index), num_restarts=settings.fit_restarts,
               num_steps=settings.fit_steps, jitter=settings.jitter)[0]
        for index, y in enumerate(ys)
    ]
    num_targets = len(ys) - len(limits)
    proposal = ProposalSettings("ei", bucket(num, 4), settings.num_restarts,
                                settings.num_ascent, settings.acquisition_steps)
    rows = bucket(len(x) + proposal.batch_bucket)
    padded = np.stack([pad(x, y, rows)[1] for y in ys]) if ys else np.zeros((0, rows))
    x_padded, _, mask = pad(x, np.zeros(len(x)), rows)
    centers, snapped = _snap_tables(state.space)
    with gp_precision(rows):
        def stacked(params: list[Any]) -> GPParams:
            dim = x.shape[1]
            if not params:
                return GPParams(jnp.zeros((0, dim)), jnp.zeros((0,)), jnp.zeros((0,)))
            return jax.tree.map(lambda *leaves: jnp.stack([jnp.asarray(v) for v in leaves]),
                                *params)

        search = AcquisitionSearch(
            jnp.asarray(settings.beta, jnp.float64),
            jnp.asarray(settings.acquisition_learning_rate, jnp.float64),
            jnp.asarray(centers), jnp.asarray(snapped))
        inputs = ProposalInputs(stacked(fitted[:num_targets]), jnp.asarray(x_padded),
                                jnp.asarray(padded[:num_targets]), jnp.asarray(mask),
                                jnp.asarray(len(x)), jnp.asarray(num), propose_key,
                                jnp.asarray(settings.jitter, jnp.float64), search)
        constraints = ConstraintInputs(stacked(fitted[num_targets:]),
                                       jnp.asarray(padded[num_targets:]),
                                       jnp.asarray([t for _, t in limits], jnp.float64))
        proposals = PROPOSE_CONSTRAINED(inputs, constraints, proposal)
        return np.clip(np.asarray(proposals, np.float64)[:num], 0.0, 1.0)


def bayes_search(
    *,
    acquisition: str = "ei",
    num_initial: int = 8,
    beta: float = 4.0,
    batch_scheme: str = "kriging_believer",
    num_restarts: int = 512,
    num_ascent: int = 32,
    acquisition_steps: int = 50,
    acquisition_learning_rate: float = 0.02,
    fit_restarts: int = 8,
    fit_steps: int = 100,
    jitter: float = 1e-8,
    max_observations: int = 128,
) -> Strategy:
    """Bayesian optimization with a GP surrogate in JAX (see the module docstring).

    Each ``ask`` fits the GP's hyperparameters to everything told so far, then proposes the
    batch on device; ``ask`` is a pure function of the state (its randomness is
    ``fold_in(key, num_asked)``), and ``tell`` appends to ``state.history``.

    Cost: see the module docstring.

    Args:
      acquisition: ``"ei"`` (expected improvement) or ``"ucb"`` (confidence bound).
      num_initial: configs taken from the scrambled Sobol design before the GP is used.
      beta: exploration weight of UCB, ``-mu + sqrt(beta) sigma`` (unused by EI).
      batch_scheme: ``"kriging_believer"`` or ``"thompson"`` (see the module docstring). The
        believer optimizes the acquisition once per config, conditioning on all earlier ones:
        best for batches up to a few dozen. Thompson sampling draws the whole batch at once
        from ``max(num_restarts, 2 q)`` candidates: use it for batches of hundreds.
      num_restarts: acquisition starts scored per proposal, half uniform in the cube and half
        near the best observations (Thompson: the candidate points).
      num_ascent: the best starts improved by gradient ascent (at most ``num_restarts``).
      acquisition_steps: projected Adam steps per start.
      acquisition_learning_rate: Adam step size in the unit cube.
      fit_restarts: L-BFGS runs of each hyperparameter fit (from the prior means, from the
        previous ask's fit when there are at least 2, and from draws from the priors); the best
        is kept.
      fit_steps: the most L-BFGS iterations of each hyperparameter fit (each stops earlier
        once converged).
      jitter: first diagonal jitter of Cholesky factorizations (raised tenfold on failure).
      max_observations: the most told configs the GP conditions on (its cost grows with the
        cube of this number): beyond it, the best half by score and the most recent of the
        others are kept. Configs left out may be proposed again.

    Returns:
      A :class:`~jaxtune.strategies.Strategy`.

    Raises:
      ValueError: an argument of the wrong kind or range (the message names it).

    Example:
      >>> import jax
      >>> from jaxtune.space import Float, Space
      >>> strategy = bayes_search(num_initial=4)
      >>> state = strategy.init(Space({"x": Float(0.0, 1.0)}), jax.random.PRNGKey(0))
      >>> configs, state = strategy.ask(state, 4)
      >>> state = strategy.tell(state, configs, [(c["x"] - 0.3) ** 2 for c in configs])
      >>> configs, state = strategy.ask(state, 2)
      >>> len(configs), state.num_asked
      (2, 6)
    """
    settings = _Settings(
        acquisition, num_initial, beta, batch_scheme, num_restarts, num_ascent,
        acquisition_steps, acquisition_learning_rate, fit_restarts, fit_steps, jitter,
        max_observations
    )  # fmt: skip
    return Strategy(_init, functools.partial(_ask, _checked(settings)), _tell,
                    accepts_outcomes=True)
