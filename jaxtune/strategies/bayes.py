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
  ``-y^T K^-1 y / 2 - log|K| / 2 - m log(2 pi) / 2`` plus weak log-normal priors (below), by
  Adam (Optax) from a few restarts run side by side with ``vmap``, projected into box bounds
  after every step (:data:`LENGTHSCALE_BOUNDS`, :data:`SIGNAL_VAR_BOUNDS`,
  :data:`NOISE_VAR_BOUNDS`). Restarts whose objective is not finite are never chosen.
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

The first ``num_initial`` configs come from a scrambled Sobol sequence
(:mod:`jaxtune.strategies.sobol`; uniform random points above ``MAX_SOBOL_DIM`` dimensions),
as do all configs asked before any score was told.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.linalg import cho_solve, solve_triangular
from jax.scipy.special import ndtr

from jaxtune.space import Choice, Int, Space
from jaxtune.strategies.base import (
    Config,
    History,
    Strategy,
    append_history,
    check_num,
    empty_history,
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

#: Acquisition functions :func:`bayes_search` offers.
ACQUISITIONS = ("ei", "ucb")
#: Ways :func:`bayes_search` proposes several configs per round.
BATCH_SCHEMES = ("kriging_believer", "thompson")

#: Box bounds of the per-coordinate length scales (the cube has side 1).
LENGTHSCALE_BOUNDS = (0.01, 20.0)
#: Box bounds of the signal variance (outputs are standardized to unit variance).
SIGNAL_VAR_BOUNDS = (0.05, 20.0)
#: Box bounds of the noise variance, on the standardized scale.
NOISE_VAR_BOUNDS = (1e-6, 1.0)
#: Times the jitter is multiplied by ten when a Cholesky factor has NaNs.
MAX_JITTER_TRIES = 6
#: Int and Choice coordinates with at most this many values are snapped to a value's encoding.
MAX_SNAPPED_VALUES = 256
#: Smallest padded number of observations.
MIN_BUCKET = 32
#: Padded sizes up to this use one BLAS thread (faster for small matrices).
MAX_SINGLE_THREAD_ROWS = 256

# Weak log-normal priors (mean, std of the logarithm) added to the marginal likelihood: the
# length-scale prior centre grows like sqrt(dim) as typical distances in the cube do.
_LOG_LENGTHSCALE_PRIOR_STD = 1.5
_LOG_SIGNAL_VAR_PRIOR = (0.0, 1.5)
_LOG_NOISE_VAR_PRIOR = (math.log(1e-2), 2.5)
_SQRT5 = math.sqrt(5.0)
_DUPLICATE_TOL = 1e-7


class GPParams(NamedTuple):
    """GP hyperparameters, all in log space.

    Attributes:
      log_lengthscales: ``[dim]`` log length scale per unit-cube coordinate.
      log_signal_var: ``[]`` log signal variance ``s``.
      log_noise_var: ``[]`` log noise variance ``n`` (standardized scale).
    """

    log_lengthscales: Any
    log_signal_var: Any
    log_noise_var: Any


class BayesState(NamedTuple):
    """State of :func:`bayes_search`.

    Attributes:
      space: the search space.
      key: the PRNG key given to ``init``; round keys are ``fold_in(key, num_asked)``.
      num_asked: how many configs have been asked so far.
      num_initial_asked: how many configs came from the initial (Sobol) design.
      history: told configs (encoded, ``[num_told, dim]``) and their scores (``[num_told]``).
    """

    space: Space
    key: jax.Array
    num_asked: int
    num_initial_asked: int
    history: History


# --------------------------------------------------------------------------------------------
# Gaussian process (pure JAX, unbatched over one padded data set)


def matern52(x1: jax.Array, x2: jax.Array, lengthscales: jax.Array, signal_var: Any) -> jax.Array:
    """Matern 5/2 ARD kernel matrix.

    ``k(x, x') = s (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)`` with
    ``r = ||(x - x') / l||``; the same as scikit-learn's
    ``ConstantKernel(s) * Matern(l, nu=2.5)``.

    Args:
      x1: ``[n1, dim]`` points.
      x2: ``[n2, dim]`` points.
      lengthscales: ``[dim]`` positive length scales ``l``.
      signal_var: positive scalar ``s``.

    Returns:
      ``[n1, n2]`` kernel values.
    """
    diff = (x1[:, None, :] - x2[None, :, :]) / lengthscales
    r2 = jnp.sum(diff * diff, axis=-1)
    # sqrt has an infinite derivative at 0; k is flat there, so use a safe branch.
    positive = r2 > 0
    r = jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)
    return signal_var * (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * jnp.exp(-_SQRT5 * r)


def _gram(params: GPParams, x: jax.Array, mask: jax.Array) -> jax.Array:
    """``K + n I`` on the real rows; padded rows are an identity block, uncorrelated."""
    kernel = matern52(x, x, jnp.exp(params.log_lengthscales), jnp.exp(params.log_signal_var))
    kernel = kernel * mask[:, None] * mask[None, :]
    diagonal = mask * jnp.exp(params.log_noise_var) + (1.0 - mask)
    return kernel + jnp.diag(diagonal)


def _safe_cholesky(matrix: jax.Array, mask: jax.Array, jitter: Any) -> jax.Array:
    """Lower Cholesky factor of ``matrix + jitter diag(mask)``, raising jitter on failure.

    The jitter grows tenfold while the factor has non-finite entries, at most
    :data:`MAX_JITTER_TRIES` times; if it still fails, the square root of the diagonal is used
    (observations treated as independent) so that callers always get a finite factor.
    """

    def attempt(level: jax.Array) -> jax.Array:
        return jnp.linalg.cholesky(matrix + jnp.diag(jitter * 10.0**level * mask))

    def failed(factor: jax.Array) -> jax.Array:
        return ~jnp.all(jnp.isfinite(factor))

    def cond(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
        factor, level = carry
        return failed(factor) & (level < MAX_JITTER_TRIES)

    def body(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        _, level = carry
        return attempt(level + 1), level + 1

    level = jnp.zeros((), matrix.dtype)
    factor, _ = jax.lax.while_loop(cond, body, (attempt(level), level))
    fallback = jnp.diag(jnp.sqrt(jnp.abs(jnp.diag(matrix)) + jitter))
    return jnp.where(failed(factor), fallback, factor)


def _log_marginal_likelihood(
    params: GPParams, x: jax.Array, y: jax.Array, mask: jax.Array, jitter: Any
) -> jax.Array:
    """Log marginal likelihood of the masked rows (plain Cholesky: NaN when it fails)."""
    matrix = _gram(params, x, mask) + jnp.diag(jitter * mask)
    factor = jnp.linalg.cholesky(matrix)
    y = y * mask
    alpha = cho_solve((factor, True), y)
    return (
        -0.5 * jnp.dot(y, alpha)
        - jnp.sum(jnp.log(jnp.diag(factor)))
        - 0.5 * jnp.sum(mask) * math.log(2.0 * math.pi)
    )


def _prior_means(dim: int) -> GPParams:
    return GPParams(
        jnp.full((dim,), math.log(0.5) + 0.5 * math.log(max(dim, 1))),
        jnp.asarray(_LOG_SIGNAL_VAR_PRIOR[0]),
        jnp.asarray(_LOG_NOISE_VAR_PRIOR[0]),
    )


def _log_prior(params: GPParams) -> jax.Array:
    means = _prior_means(params.log_lengthscales.shape[0])
    stds = (_LOG_LENGTHSCALE_PRIOR_STD, _LOG_SIGNAL_VAR_PRIOR[1], _LOG_NOISE_VAR_PRIOR[1])
    total = 0.0
    for value, mean, std in zip(params, means, stds, strict=True):
        total = total - 0.5 * jnp.sum(((value - mean) / std) ** 2)
    return total


def _clip_params(params: GPParams) -> GPParams:
    bounds = (LENGTHSCALE_BOUNDS, SIGNAL_VAR_BOUNDS, NOISE_VAR_BOUNDS)
    return GPParams(
        *(
            jnp.clip(value, math.log(low), math.log(high))
            for value, (low, high) in zip(params, bounds, strict=True)
        )
    )


def _fit(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    key: jax.Array,
    jitter: jax.Array,
    learning_rate: jax.Array,
    num_restarts: int,
    num_steps: int,
) -> tuple[GPParams, jax.Array]:
    """MAP hyperparameters by projected Adam from ``num_restarts`` vmapped starts."""
    dim = x.shape[1]
    means = _prior_means(dim)
    noise = jax.random.normal(key, (num_restarts, dim + 2), x.dtype)
    # Restart 0 starts at the prior means, the others at perturbations of them.
    noise = noise.at[0].set(0.0)
    starts = _clip_params(
        GPParams(
            means.log_lengthscales + _LOG_LENGTHSCALE_PRIOR_STD * 0.5 * noise[:, :dim],
            means.log_signal_var + 0.5 * noise[:, dim],
            means.log_noise_var + noise[:, dim + 1],
        )
    )
    optimizer = optax.adam(learning_rate)

    def objective(params: GPParams) -> jax.Array:
        return _log_marginal_likelihood(params, x, y, mask, jitter) + _log_prior(params)

    def step(carry: tuple[GPParams, Any], _: None) -> tuple[tuple[GPParams, Any], None]:
        params, opt_state = carry
        value, grads = jax.value_and_grad(lambda p: -objective(p))(params)
        finite = jnp.isfinite(value) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grads]))
        # A failed factorization gives NaN gradients: skip that step instead of poisoning Adam.
        grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (_clip_params(optax.apply_updates(params, updates)), opt_state), None

    def run(start: GPParams) -> tuple[GPParams, jax.Array]:
        (params, _), _ = jax.lax.scan(step, (start, optimizer.init(start)), None, num_steps)
        value = objective(params)
        return params, jnp.where(jnp.isfinite(value), value, -jnp.inf)

    fitted, values = jax.vmap(run)(starts)
    best = jnp.argmax(values)
    return jax.tree.map(lambda leaf: leaf[best], fitted), values[best]


_fit_jit = jax.jit(_fit, static_argnames=("num_restarts", "num_steps"))
_lml_jit = jax.jit(_log_marginal_likelihood)


class _Posterior(NamedTuple):
    params: GPParams
    x: jax.Array  # [N, dim]
    mask: jax.Array  # [N]
    factor: jax.Array  # [N, N] lower Cholesky factor L of K + n I (+ jitter)
    factor_inv: jax.Array  # [N, N] L^-1, so that variances are one matrix product
    alpha: jax.Array  # [N] (K + n I)^-1 y


def _condition(
    params: GPParams, x: jax.Array, y: jax.Array, mask: jax.Array, jitter: Any
) -> _Posterior:
    factor = _safe_cholesky(_gram(params, x, mask), mask, jitter)
    factor_inv = solve_triangular(factor, jnp.eye(x.shape[0], dtype=x.dtype), lower=True)
    alpha = cho_solve((factor, True), y * mask)
    return _Posterior(params, x, mask, factor, factor_inv, alpha)


def _cross(posterior: _Posterior, x_query: jax.Array) -> jax.Array:
    params = posterior.params
    kernel = matern52(
        x_query, posterior.x, jnp.exp(params.log_lengthscales), jnp.exp(params.log_signal_var)
    )
    return kernel * posterior.mask[None, :]


def _predict(posterior: _Posterior, x_query: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and variance of the latent function at ``x_query [m, dim]``."""
    cross = _cross(posterior, x_query)
    mean = cross @ posterior.alpha
    v = cross @ posterior.factor_inv.T  # [m, N] rows L^-1 k*
    var = jnp.exp(posterior.params.log_signal_var) - jnp.sum(v * v, axis=1)
    return mean, jnp.maximum(var, 1e-12)


def _posterior_at(
    params: GPParams, x: jax.Array, y: jax.Array, mask: jax.Array, x_query: jax.Array, jitter: Any
) -> tuple[jax.Array, jax.Array]:
    return _predict(_condition(params, x, y, mask, jitter), x_query)


_posterior_jit = jax.jit(_posterior_at)


# --------------------------------------------------------------------------------------------
# Acquisitions


def expected_improvement(mean: Any, std: Any, best: Any) -> jax.Array:
    """Expected improvement below ``best`` of a Gaussian ``N(mean, std^2)`` (minimization).

    ``EI = E[max(best - f, 0)] = (best - mean) Phi(z) + std phi(z)``, ``z = (best - mean) / std``.

    Args:
      mean: posterior means (any shape).
      std: posterior standard deviations (> 0, same shape).
      best: the incumbent (lowest observed value).

    Returns:
      EI, the shape of ``mean``; non-negative.
    """
    z = (best - mean) / std
    return std * jnp.exp(_log_h(z))


def log_expected_improvement(mean: Any, std: Any, best: Any) -> jax.Array:
    """``log EI``, accurate where EI underflows (``z`` far below zero).

    Written as ``log std + log h(z)``, ``h(z) = phi(z) + z Phi(z)``: directly for
    ``z >= -12`` (float64 loses at most two of its 16 digits to cancellation there), and by the
    asymptotic series ``h(z) = phi(z) / z^2 (1 - 3 / z^2 + 15 / z^4 - 105 / z^6 + 945 / z^8)``
    below (relative error < 2e-7), so the logarithm and its gradient stay finite.
    """
    z = (best - mean) / std
    return jnp.log(std) + _log_h(z)


_SERIES_BELOW = -12.0


def _log_h(z: jax.Array) -> jax.Array:
    z = jnp.asarray(z)
    # Each branch gets an input in its own range, so the unused one has finite gradients.
    z_near = jnp.maximum(z, _SERIES_BELOW)
    near = jnp.log(
        jnp.exp(-0.5 * z_near * z_near) / math.sqrt(2.0 * math.pi) + z_near * ndtr(z_near)
    )
    z_far = jnp.minimum(z, _SERIES_BELOW)
    inv2 = 1.0 / (z_far * z_far)
    series = 1.0 + inv2 * (-3.0 + inv2 * (15.0 + inv2 * (-105.0 + 945.0 * inv2)))
    far = -0.5 * z_far * z_far - 0.5 * math.log(2.0 * math.pi) + jnp.log(inv2 * series)
    return jnp.where(z >= _SERIES_BELOW, near, far)


def upper_confidence_bound(mean: Any, std: Any, beta: Any) -> jax.Array:
    """Confidence bound of the negated loss: ``-mean + sqrt(beta) std`` (larger is better).

    Maximizing it minimizes the lower confidence bound ``mean - sqrt(beta) std`` of the loss.
    """
    return -mean + jnp.sqrt(beta) * std


# --------------------------------------------------------------------------------------------
# Proposals (one jit per (bucket, batch bucket, space shape))


def _snap(x: jax.Array, centers: jax.Array, snapped: jax.Array) -> jax.Array:
    """Moves snapped coordinates of ``x [m, dim]`` to the nearest value's encoding."""
    nearest = jnp.argmin(jnp.abs(x[:, :, None] - centers[None]), axis=-1)
    values = jnp.take_along_axis(centers[None], nearest[:, :, None], axis=-1)[..., 0]
    return jnp.where(snapped, values, x)


def _is_duplicate(candidates: jax.Array, x: jax.Array, mask: jax.Array) -> jax.Array:
    """``[m]`` True where a candidate equals one of the masked rows of ``x``."""
    close = jnp.all(jnp.abs(candidates[:, None, :] - x[None]) < _DUPLICATE_TOL, axis=-1)
    return jnp.any(close & (mask[None, :] > 0), axis=-1)


def _starts(key: jax.Array, x: jax.Array, y: jax.Array, mask: jax.Array, num: int) -> jax.Array:
    """``num`` points: half uniform in the cube, half Gaussian steps around the best rows."""
    dim = x.shape[1]
    uniform_key, local_key, scale_key = jax.random.split(key, 3)
    uniform = jax.random.uniform(uniform_key, (num, dim), x.dtype)
    num_best = min(5, x.shape[0])
    _, best = jax.lax.top_k(-jnp.where(mask > 0, y, jnp.inf), num_best)
    rows = best[jnp.arange(num) % num_best]
    scales = 10.0 ** jax.random.uniform(scale_key, (num, 1), x.dtype, -2.5, -0.5)
    local = jnp.clip(x[rows] + scales * jax.random.normal(local_key, (num, dim), x.dtype), 0, 1)
    use_local = (jnp.arange(num) % 2 == 1) & (mask[rows] > 0)
    return jnp.where(use_local[:, None], local, uniform)


def _acquisition_value(
    posterior: _Posterior, x_query: jax.Array, best: Any, beta: Any, acquisition: str
) -> jax.Array:
    mean, var = _predict(posterior, x_query)
    std = jnp.sqrt(var)
    if acquisition == "ei":
        return log_expected_improvement(mean, std, best)
    return upper_confidence_bound(mean, std, beta)


def _maximize_acquisition(
    posterior: _Posterior,
    y: jax.Array,
    key: jax.Array,
    beta: jax.Array,
    learning_rate: jax.Array,
    centers: jax.Array,
    snapped: jax.Array,
    acquisition: str,
    num_restarts: int,
    num_ascent: int,
    num_steps: int,
) -> jax.Array:
    """The best snapped, not-yet-observed point from ``num_restarts`` scored starts.

    All starts are scored; the ``num_ascent`` best take ``num_steps`` projected Adam steps
    together (``vmap``-free: the summed acquisition has independent gradients per point).
    """
    mask = posterior.mask
    best = jnp.min(jnp.where(mask > 0, y, jnp.inf))
    starts = _snap(_starts(key, posterior.x, y, mask, num_restarts), centers, snapped)
    start_values = _acquisition_value(posterior, starts, best, beta, acquisition)
    start_values = jnp.where(jnp.isfinite(start_values), start_values, -1e300)
    _, top = jax.lax.top_k(start_values, num_ascent)
    optimizer = optax.adam(learning_rate)

    def loss(points: jax.Array) -> jax.Array:
        return -jnp.sum(_acquisition_value(posterior, points, best, beta, acquisition))

    def step(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], None]:
        points, opt_state = carry
        grads = jax.grad(loss)(points)
        grads = jnp.where(jnp.isfinite(grads), grads, 0.0)
        updates, opt_state = optimizer.update(grads, opt_state, points)
        return (jnp.clip(optax.apply_updates(points, updates), 0.0, 1.0), opt_state), None

    initial = starts[top]
    (moved, _), _ = jax.lax.scan(step, (initial, optimizer.init(initial)), None, num_steps)
    moved = _snap(moved, centers, snapped)
    moved_values = _acquisition_value(posterior, moved, best, beta, acquisition)
    candidates = jnp.concatenate([starts, moved])
    values = jnp.concatenate(
        [start_values, jnp.where(jnp.isfinite(moved_values), moved_values, -1e300)]
    )
    values = jnp.where(_is_duplicate(candidates, posterior.x, mask), -jnp.inf, values)
    return candidates[jnp.argmax(values)]


def _propose_believer(
    params: GPParams,
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    num_observed: jax.Array,
    num_rounds: jax.Array,
    key: jax.Array,
    jitter: jax.Array,
    beta: jax.Array,
    learning_rate: jax.Array,
    centers: jax.Array,
    snapped: jax.Array,
    acquisition: str,
    batch_bucket: int,
    num_restarts: int,
    num_ascent: int,
    num_steps: int,
) -> jax.Array:
    """Kriging believer: ``num_rounds`` points, each added with its posterior mean."""
    proposals = jnp.zeros((batch_bucket, x.shape[1]), x.dtype)

    def round_(i: jax.Array, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        x, y, mask, proposals = carry
        posterior = _condition(params, x, y, mask, jitter)
        point = _maximize_acquisition(
            posterior,
            y,
            jax.random.fold_in(key, i),
            beta,
            learning_rate,
            centers,
            snapped,
            acquisition,
            num_restarts,
            num_ascent,
            num_steps,
        )
        fantasy, _ = _predict(posterior, point[None])
        slot = num_observed + i
        return (
            x.at[slot].set(point),
            y.at[slot].set(fantasy[0]),
            mask.at[slot].set(1.0),
            proposals.at[i].set(point),
        )

    *_, proposals = jax.lax.fori_loop(0, num_rounds, round_, (x, y, mask, proposals))
    return proposals


def _propose_thompson(
    params: GPParams,
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    num_observed: jax.Array,
    num_rounds: jax.Array,
    key: jax.Array,
    jitter: jax.Array,
    beta: jax.Array,
    learning_rate: jax.Array,
    centers: jax.Array,
    snapped: jax.Array,
    acquisition: str,
    batch_bucket: int,
    num_restarts: int,
    num_ascent: int,
    num_steps: int,
) -> jax.Array:
    """Thompson sampling: minimizers of joint posterior samples over shared candidates.

    ``max(num_restarts, 2 * batch_bucket)`` candidates, so that large batches stay distinct.
    """
    del num_observed, beta, learning_rate, acquisition, num_ascent, num_steps
    num_candidates = max(num_restarts, 2 * batch_bucket)
    posterior = _condition(params, x, y, mask, jitter)
    start_key, sample_key = jax.random.split(key)
    candidates = _snap(_starts(start_key, x, y, mask, num_candidates), centers, snapped)
    mean, _ = _predict(posterior, candidates)
    cross = _cross(posterior, candidates)
    v = posterior.factor_inv @ cross.T
    signal_var = jnp.exp(params.log_signal_var)
    cov = matern52(candidates, candidates, jnp.exp(params.log_lengthscales), signal_var) - v.T @ v
    # Candidates near observations make the covariance nearly singular: start at a larger
    # jitter (relative to the signal variance) than for the data's own factor.
    ones = jnp.ones(num_candidates, x.dtype)
    factor = _safe_cholesky(cov, ones, jitter + 1e-6 * signal_var)
    draws = jax.random.normal(sample_key, (num_candidates, batch_bucket), x.dtype)
    samples = mean[:, None] + factor @ draws  # [candidates, batch]
    excluded = _is_duplicate(candidates, x, mask)
    proposals = jnp.zeros((batch_bucket, x.shape[1]), x.dtype)

    def round_(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        excluded, proposals = carry
        chosen = jnp.argmin(jnp.where(excluded, jnp.inf, samples[:, i]))
        # Exclude the chosen value and every snapped copy of it.
        same = jnp.all(jnp.abs(candidates - candidates[chosen]) < _DUPLICATE_TOL, axis=-1)
        return excluded | same, proposals.at[i].set(candidates[chosen])

    _, proposals = jax.lax.fori_loop(0, num_rounds, round_, (excluded, proposals))
    return proposals


_STATIC = ("acquisition", "batch_bucket", "num_restarts", "num_ascent", "num_steps")
_PROPOSERS = {
    "kriging_believer": jax.jit(_propose_believer, static_argnames=_STATIC),
    "thompson": jax.jit(_propose_thompson, static_argnames=_STATIC),
}


# --------------------------------------------------------------------------------------------
# Host helpers


@contextlib.contextmanager
def _gp_precision(rows: int = 0) -> Iterator[None]:
    """float64 for the GP (scoped: the caller's precision is unchanged), one BLAS thread.

    On CPU the float64 Cholesky and triangular solves call LAPACK; OpenBLAS's threads on
    small matrices are slower than one thread, and far slower when the cores are shared
    (40 ms instead of 0.8 ms for a 128 x 128 factor, measured on a loaded 2-core machine).
    Matrices of more than :data:`MAX_SINGLE_THREAD_ROWS` rows keep BLAS's threads. The thread
    limit needs ``threadpoolctl``, a dependency of jaxtune (not only of scikit-learn); in an
    environment without it the limit is skipped: 20-80x slower, never different.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.enable_x64(True))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # only slower, never different
            pass
        else:
            if rows <= MAX_SINGLE_THREAD_ROWS:
                stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        yield


def _bucket(size: int, minimum: int = MIN_BUCKET) -> int:
    """The smallest power of two ``>= size`` and ``>= minimum``."""
    return max(minimum, 1 << max(size - 1, 0).bit_length())


def _pad(x: np.ndarray, y: np.ndarray, rows: int) -> tuple[np.ndarray, ...]:
    num, dim = x.shape
    x_padded = np.zeros((rows, dim), np.float64)
    y_padded = np.zeros((rows,), np.float64)
    mask = np.zeros((rows,), np.float64)
    x_padded[:num], y_padded[:num], mask[:num] = x, y, 1.0
    return x_padded, y_padded, mask


def _as_params(params: GPParams) -> GPParams:
    return GPParams(*(jnp.asarray(np.asarray(leaf, np.float64)) for leaf in params))


def _check_data(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be [num, dim] and y [num]; got x {x.shape} and y {y.shape}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite; standardize_scores() replaces infinities.")
    return x, y


def standardize_scores(scores: Any) -> np.ndarray:
    """Scores on the GP's scale: infinities set to the worst finite score, then standardized.

    Args:
      scores: ``[num]`` losses; NaN and infinities count as ``+inf``.

    Returns:
      ``np.ndarray [num]`` float64: ``(s - mean) / std`` over the finite scores (``std`` 1
      when they are all equal), with non-finite scores at the worst finite one's value; all
      zeros when no score is finite.
    """
    scores = np.array(scores, np.float64)
    finite = np.isfinite(scores)
    if not finite.any():
        return np.zeros_like(scores)
    mean, std = scores[finite].mean(), scores[finite].std()
    filled = np.where(finite, scores, scores[finite].max())
    return (filled - mean) / (std if std > 0 else 1.0)


def gp_log_marginal_likelihood(params: GPParams, x: Any, y: Any, *, jitter: float = 0.0) -> float:
    """Log marginal likelihood ``log p(y | x, params)`` of the GP (Matern 5/2 ARD + noise).

    Args:
      params: hyperparameters (log scale).
      x: ``[num, dim]`` inputs.
      y: ``[num]`` targets (already standardized, zero prior mean).
      jitter: extra diagonal added before the Cholesky factorization.

    Returns:
      The log likelihood, a Python float (NaN when the factorization fails).
    """
    x, y = _check_data(x, y)
    with _gp_precision(_bucket(len(y))):
        padded = _pad(x, y, _bucket(len(y)))
        return float(_lml_jit(_as_params(params), *map(jnp.asarray, padded), jitter))


def gp_posterior(
    params: GPParams, x: Any, y: Any, x_query: Any, *, jitter: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and variance of the latent function at ``x_query``.

    ``mean = k*^T (K + n I)^-1 y``, ``var = s - k*^T (K + n I)^-1 k*`` (floored at 1e-12).

    Args:
      params: hyperparameters (log scale).
      x: ``[num, dim]`` observed inputs.
      y: ``[num]`` observed (standardized) targets.
      x_query: ``[m, dim]`` where to predict.
      jitter: initial jitter of the Cholesky factorization (raised on failure).

    Returns:
      ``(mean [m], var [m])`` float64 numpy arrays.
    """
    x, y = _check_data(x, y)
    with _gp_precision(_bucket(len(y))):
        padded = _pad(x, y, _bucket(len(y)))
        mean, var = _posterior_jit(
            _as_params(params),
            *map(jnp.asarray, padded),
            jnp.asarray(np.asarray(x_query, np.float64)),
            jitter,
        )
        return np.asarray(mean), np.asarray(var)


def fit_gp(
    x: Any,
    y: Any,
    key: jax.Array,
    *,
    num_restarts: int = 4,
    num_steps: int = 100,
    learning_rate: float = 0.1,
    jitter: float = 1e-8,
) -> tuple[GPParams, float]:
    """Hyperparameters maximizing the log marginal likelihood plus weak log-normal priors.

    Args:
      x: ``[num, dim]`` inputs in the unit cube.
      y: ``[num]`` standardized targets.
      key: PRNG key for the perturbed restarts.
      num_restarts: Adam runs, side by side (the first from the prior means).
      num_steps: Adam steps per run.
      learning_rate: Adam step size (log space).
      jitter: diagonal added to ``K`` in the likelihood.

    Returns:
      ``(params, objective)``: numpy hyperparameters of the best run and its log marginal
      likelihood plus log prior (up to a constant).
    """
    x, y = _check_data(x, y)
    with _gp_precision(_bucket(len(y))):
        padded = _pad(x, y, _bucket(len(y)))
        params, value = _fit_jit(
            *map(jnp.asarray, padded),
            key,
            jnp.asarray(jitter, jnp.float64),
            jnp.asarray(learning_rate, jnp.float64),
            num_restarts=num_restarts,
            num_steps=num_steps,
        )
        return GPParams(*(np.asarray(leaf) for leaf in params)), float(value)


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
    base = space.decode(np.full((1, space.dim), 0.5))[0]
    columns = []
    for column, name in enumerate(names):
        param = space[name]
        values: list[Any] = []
        if isinstance(param, Choice):
            values = list(param.values)
        elif isinstance(param, Int) and param.high - param.low < MAX_SNAPPED_VALUES:
            values = list(range(param.low, param.high + 1))
        if 0 < len(values) <= MAX_SNAPPED_VALUES:
            configs = [{**base, name: value} for value in values]
            columns.append(np.sort(space.encode(configs)[:, column]))
        else:
            columns.append(np.zeros(0))
    width = _bucket(max(len(c) for c in columns), 8)  # few distinct shapes, few compiles
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
# The strategy


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
    fit_restarts: int = 4,
    fit_steps: int = 100,
    fit_learning_rate: float = 0.1,
    jitter: float = 1e-8,
    max_observations: int = 128,
) -> Strategy:
    """Bayesian optimization with a GP surrogate in JAX (see the module docstring).

    Each ``ask`` fits the GP's hyperparameters to everything told so far, then proposes the
    batch on device; ``ask`` is a pure function of the state (its randomness is
    ``fold_in(key, num_asked)``), and ``tell`` appends to ``state.history``.

    Cost on a CPU (measured: 100 observations, 8 configs per ask, 2-D and 5-D spaces, default
    settings): about 0.9 s per ask, most of it the hyperparameter fit; the first ask in each
    padding bucket also compiles, 4 to 9 s. The GP's cost grows with the cube of the number of
    observations (see ``max_observations``).

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
      fit_restarts: hyperparameter fits run side by side; the best is kept.
      fit_steps: Adam steps per hyperparameter fit.
      fit_learning_rate: Adam step size in log-hyperparameter space.
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
    if acquisition not in ACQUISITIONS:
        raise ValueError(
            f"bayes_search: acquisition = {acquisition!r} must be one of {ACQUISITIONS}."
        )
    if batch_scheme not in BATCH_SCHEMES:
        raise ValueError(
            f"bayes_search: batch_scheme = {batch_scheme!r} must be one of {BATCH_SCHEMES}."
        )
    num_initial = _check_int("num_initial", num_initial, 1)
    num_restarts = _check_int("num_restarts", num_restarts, 2)
    num_ascent = _check_int("num_ascent", num_ascent, 1)
    if num_ascent > num_restarts:
        raise ValueError(
            f"bayes_search: num_ascent = {num_ascent} must be <= num_restarts = {num_restarts}."
        )
    acquisition_steps = _check_int("acquisition_steps", acquisition_steps, 0)
    fit_restarts = _check_int("fit_restarts", fit_restarts, 1)
    fit_steps = _check_int("fit_steps", fit_steps, 0)
    beta = _check_positive("beta", beta)
    acquisition_learning_rate = _check_positive(
        "acquisition_learning_rate", acquisition_learning_rate
    )
    fit_learning_rate = _check_positive("fit_learning_rate", fit_learning_rate)
    jitter = _check_positive("jitter", jitter)
    max_observations = _check_int("max_observations", max_observations, 2)
    propose = _PROPOSERS[batch_scheme]

    def init(space: Space, key: jax.Array) -> BayesState:
        if not isinstance(space, Space):
            raise TypeError(f"init(space, key): space must be a Space, got {type(space).__name__}.")
        return BayesState(space, key, 0, 0, empty_history(space))

    def initial_points(state: BayesState, num: int) -> np.ndarray:
        dim = state.space.dim
        key = jax.random.fold_in(state.key, 0)
        if dim <= MAX_SOBOL_DIM:
            return sobol_points(state.num_initial_asked, num, dim, scramble_seeds(key, dim))
        key = jax.random.fold_in(key, state.num_initial_asked)
        return np.asarray(jax.random.uniform(key, (num, dim)), np.float64)

    def model_points(state: BayesState, num: int) -> np.ndarray:
        space, history = state.space, state.history
        key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.num_asked)
        fit_key, propose_key = jax.random.split(key)
        keep = _observations_kept(history.scores, max_observations)
        y = standardize_scores(history.scores[keep])
        batch_bucket = _bucket(num, 4)
        # The fit needs no room for the batch's fantasy rows, the proposal does.
        fit_rows, rows = _bucket(len(y)), _bucket(len(y) + batch_bucket)
        x_padded, y_padded, mask = _pad(history.encoded[keep], y, rows)
        centers, snapped = _snap_tables(space)
        with _gp_precision(rows):
            x_padded, y_padded, mask = map(jnp.asarray, (x_padded, y_padded, mask))
            params, _ = _fit_jit(
                x_padded[:fit_rows],
                y_padded[:fit_rows],
                mask[:fit_rows],
                fit_key,
                jnp.asarray(jitter, jnp.float64),
                jnp.asarray(fit_learning_rate, jnp.float64),
                num_restarts=fit_restarts,
                num_steps=fit_steps,
            )
            proposals = propose(
                params,
                x_padded,
                y_padded,
                mask,
                jnp.asarray(len(y)),
                jnp.asarray(num),
                propose_key,
                jnp.asarray(jitter, jnp.float64),
                jnp.asarray(beta, jnp.float64),
                jnp.asarray(acquisition_learning_rate, jnp.float64),
                jnp.asarray(centers),
                jnp.asarray(snapped),
                acquisition=acquisition,
                batch_bucket=batch_bucket,
                num_restarts=num_restarts,
                num_ascent=num_ascent,
                num_steps=acquisition_steps,
            )
            return np.clip(np.asarray(proposals, np.float64)[:num], 0.0, 1.0)

    def ask(state: BayesState, num: int) -> tuple[list[Config], BayesState]:
        num = check_num(num)
        space = state.space
        if space.dim == 0:  # only Fixed parameters: every config is the same
            return space.decode(np.zeros((num, 0))), state._replace(num_asked=state.num_asked + num)
        num_from_design = min(num, max(0, num_initial - state.num_asked))
        if len(state.history.scores) == 0:
            num_from_design = num
        parts = []
        if num_from_design:
            parts.append(initial_points(state, num_from_design))
        if num - num_from_design:
            parts.append(model_points(state, num - num_from_design))
        u = np.concatenate(parts) if parts else np.zeros((0, space.dim))
        new_state = state._replace(
            num_asked=state.num_asked + num,
            num_initial_asked=state.num_initial_asked + num_from_design,
        )
        return space.decode(u), new_state

    def tell(state: BayesState, configs: list[Config], scores: Any) -> BayesState:
        return state._replace(history=append_history(state.history, state.space, configs, scores))

    return Strategy(init, ask, tell)
