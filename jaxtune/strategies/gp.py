"""The Gaussian process of :func:`jaxtune.strategies.bayes.bayes_search`: kernel, fit, posterior.

Pure JAX over one padded data set (``x [N, dim]`` in the unit cube, standardized ``y [N]``, a
``mask [N]`` of real rows), run in float64 inside :func:`gp_precision`. The model, its priors,
bounds and numerics are described in :mod:`jaxtune.strategies.bayes`:

* :func:`matern52`, the Matern 5/2 ARD kernel, and :func:`safe_cholesky`, a factor that never
  fails;
* :func:`log_posterior`, the fit's objective, and :data:`fit_hyperparameters`, the jitted MAP
  fit of :class:`GPParams` by L-BFGS in unconstrained coordinates;
* :func:`condition` -> :class:`Posterior`, then :func:`predict` (mean and variance) and
  :func:`cross_kernel` (the kernel between queries and observations);
* host wrappers :func:`fit_gp`, :func:`gp_posterior`, :func:`gp_log_marginal_likelihood` and
  :func:`standardize_scores`, with the padding rules :func:`bucket` and :func:`pad`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.linalg import cho_solve, solve_triangular

__all__ = [
    "LENGTHSCALE_BOUNDS",
    "MAX_JITTER_TRIES",
    "MAX_SINGLE_THREAD_ROWS",
    "MIN_BUCKET",
    "NOISE_VAR_BOUNDS",
    "SIGNAL_VAR_BOUNDS",
    "GPParams",
    "Posterior",
    "bucket",
    "condition",
    "cross_kernel",
    "fit_gp",
    "fit_hyperparameters",
    "gp_log_marginal_likelihood",
    "gp_posterior",
    "gp_precision",
    "log_posterior",
    "matern52",
    "pad",
    "predict",
    "prior_means",
    "safe_cholesky",
    "standardize_scores",
]

#: Box bounds of the per-coordinate length scales (the cube has side 1).
LENGTHSCALE_BOUNDS = (0.01, 20.0)
#: Box bounds of the signal variance (outputs are standardized to unit variance).
SIGNAL_VAR_BOUNDS = (0.05, 20.0)
#: Box bounds of the noise variance, on the standardized scale.
NOISE_VAR_BOUNDS = (1e-6, 1.0)
#: Times the jitter is multiplied by ten when a Cholesky factor has NaNs.
MAX_JITTER_TRIES = 6
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


def safe_cholesky(matrix: jax.Array, mask: jax.Array, jitter: Any) -> jax.Array:
    """Lower Cholesky factor of ``matrix + jitter diag(mask)``, raising jitter on failure.

    The jitter grows tenfold while the factor has non-finite entries, at most
    :data:`MAX_JITTER_TRIES` times; if it still fails, the square root of the diagonal is used
    (observations treated as independent) so that callers always get a finite factor.

    Args:
      matrix: ``[N, N]`` symmetric positive (semi-)definite matrix.
      mask: ``[N]`` 1 where the jitter is added, 0 elsewhere.
      jitter: first jitter.

    Returns:
      ``[N, N]`` finite lower-triangular factor.
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


def prior_means(dim: int) -> GPParams:
    """The centres of the hyperparameters' log-normal priors for a ``dim``-D cube (the
    length scales' grows like ``sqrt(dim)``, as typical distances in the cube do)."""
    return GPParams(
        jnp.full((dim,), math.log(0.5) + 0.5 * math.log(max(dim, 1))),
        jnp.asarray(_LOG_SIGNAL_VAR_PRIOR[0]),
        jnp.asarray(_LOG_NOISE_VAR_PRIOR[0]),
    )


def log_posterior(
    params: GPParams, x: jax.Array, y: jax.Array, mask: jax.Array, jitter: Any
) -> jax.Array:
    """The fit's objective: the log marginal likelihood of the masked rows plus the log
    priors (up to a constant; NaN when the Cholesky factorization fails). Pure JAX,
    differentiable.

    Args:
      params: hyperparameters (log scale).
      x: ``[N, dim]`` padded inputs.
      y: ``[N]`` padded standardized targets.
      mask: ``[N]`` 1 for real rows.
      jitter: diagonal added to ``K``.

    Returns:
      ``[]`` the objective.
    """
    return _log_marginal_likelihood(params, x, y, mask, jitter) + _log_prior(params)


def _log_prior(params: GPParams) -> jax.Array:
    means = prior_means(params.log_lengthscales.shape[0])
    stds = (_LOG_LENGTHSCALE_PRIOR_STD, _LOG_SIGNAL_VAR_PRIOR[1], _LOG_NOISE_VAR_PRIOR[1])
    total = 0.0
    for value, mean, std in zip(params, means, stds, strict=True):
        total = total - 0.5 * jnp.sum(((value - mean) / std) ** 2)
    return total


def _log_bounds(dim: int) -> tuple[jax.Array, jax.Array]:
    """``(low, high) [dim + 2]``: the log box bounds of the flat hyperparameter vector."""
    bounds = [LENGTHSCALE_BOUNDS] * dim + [SIGNAL_VAR_BOUNDS, NOISE_VAR_BOUNDS]
    low, high = (jnp.asarray([math.log(b[i]) for b in bounds]) for i in (0, 1))
    return low, high


def _flatten(params: GPParams) -> jax.Array:
    return jnp.concatenate(
        [params.log_lengthscales, params.log_signal_var[None], params.log_noise_var[None]]
    )


def _unflatten(theta: jax.Array) -> GPParams:
    return GPParams(theta[:-2], theta[-2], theta[-1])


def _to_box(z: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """The unconstrained vector ``z`` mapped into the box: ``low + (high - low) sigmoid(z)``."""
    return low + (high - low) * jax.nn.sigmoid(z)


def _from_box(theta: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """The inverse of :func:`_to_box`, with ``theta`` first moved inside the box by 1e-6 of
    its width (a bound itself lies at infinity)."""
    fraction = jnp.clip((theta - low) / (high - low), 1e-6, 1.0 - 1e-6)
    return jnp.log(fraction) - jnp.log1p(-fraction)


#: L-BFGS stops a restart when an iteration improves the objective by less than this (nats).
FIT_TOLERANCE = 1e-7


def _fit_runs(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    key: jax.Array,
    jitter: jax.Array,
    warm: GPParams,
    num_restarts: int,
    num_steps: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Every restart of :func:`_fit`: ``(theta [R, dim + 2], objective [R], iterations [R])``,
    ``-inf`` objectives for runs that never had a finite one."""
    dim = x.shape[1]
    low, high = _log_bounds(dim)
    means = _flatten(prior_means(dim))
    stds = jnp.asarray([_LOG_LENGTHSCALE_PRIOR_STD] * dim + [_LOG_SIGNAL_VAR_PRIOR[1],
                                                             _LOG_NOISE_VAR_PRIOR[1]])
    noise = jax.random.normal(key, (num_restarts, dim + 2), x.dtype)
    starts = (means + stds * noise).at[0].set(means)  # draws from the priors
    if num_restarts > 1:  # a warm start at the prior means is left to a draw
        warm = _flatten(warm)
        starts = starts.at[1].set(jnp.where(jnp.all(warm == means), starts[1], warm))

    def loss(z: jax.Array) -> jax.Array:
        return -log_posterior(_unflatten(_to_box(z, low, high)), x, y, mask, jitter)

    solver = optax.lbfgs()

    def cond(carry: tuple[Any, ...]) -> jax.Array:
        *_, step, going = carry
        return going & (step < num_steps)

    def body(carry: tuple[Any, ...]) -> tuple[Any, ...]:
        z, state, value, grad, step, _ = carry
        updates, new_state = solver.update(grad, state, z, value=value, grad=grad, value_fn=loss)
        new_value = optax.tree.get(new_state, "value")
        new_grad = optax.tree.get(new_state, "grad")
        finite = jnp.isfinite(new_value) & jnp.all(jnp.isfinite(new_grad))
        # A failed line search or factorization ends the run at its last good point.
        improved = finite & (new_value < value)
        going = improved & (value - new_value > FIT_TOLERANCE)
        new = (optax.apply_updates(z, updates), new_state, new_value, new_grad)
        kept = jax.tree.map(lambda n, o: jnp.where(improved, n, o), new, (z, state, value, grad))
        return (*kept, step + 1, going)

    def run(start: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        z = _from_box(start, low, high)
        value, grad = jax.value_and_grad(loss)(z)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
        carry = (z, solver.init(z), value, grad, jnp.asarray(0), finite)
        z, _, value, _, steps, _ = jax.lax.while_loop(cond, body, carry)
        return _to_box(z, low, high), jnp.where(jnp.isfinite(value), -value, -jnp.inf), steps

    # One run after the other: each stops at its own convergence (vmap would run all of them
    # as long as the slowest, and a CPU gains nothing from batching these small factorizations).
    return jax.lax.map(run, starts)


def _fit(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    key: jax.Array,
    jitter: jax.Array,
    warm: GPParams,
    num_restarts: int,
    num_steps: int,
) -> tuple[GPParams, jax.Array]:
    """MAP hyperparameters by L-BFGS (Optax, zoom line search) from ``num_restarts`` starts,
    in the unconstrained coordinates of :func:`_to_box`.

    Restart 0 starts at the prior means, restart 1 at ``warm`` (the previous fit; a draw when
    it is the prior means), the others at draws from the priors. Each runs at most
    ``num_steps`` iterations and stops when one improves the objective by less than
    :data:`FIT_TOLERANCE` or would make it (or its gradient) non-finite. Returns
    ``(params, objective)`` of the best restart.
    """
    fitted, values, _ = _fit_runs(x, y, mask, key, jitter, warm, num_restarts, num_steps)
    best = jnp.argmax(values)
    return _unflatten(fitted[best]), values[best]


#: ``fit_hyperparameters(x, y, mask, key, jitter, warm, *, num_restarts, num_steps)``: the
#: jitted MAP fit, ``(params, objective)``; one compile per (bucket, dim, restarts, steps).
fit_hyperparameters = jax.jit(_fit, static_argnames=("num_restarts", "num_steps"))
_lml_jit = jax.jit(_log_marginal_likelihood)


class Posterior(NamedTuple):
    """The GP conditioned on one padded data set (hyperparameters fixed)."""

    params: GPParams
    x: jax.Array  # [N, dim]
    mask: jax.Array  # [N]
    factor: jax.Array  # [N, N] lower Cholesky factor L of K + n I (+ jitter)
    factor_inv: jax.Array  # [N, N] L^-1, so that variances are one matrix product
    alpha: jax.Array  # [N] (K + n I)^-1 y


def condition(
    params: GPParams, x: jax.Array, y: jax.Array, mask: jax.Array, jitter: Any
) -> Posterior:
    """Conditions the GP on the masked rows of ``x [N, dim]``, ``y [N]``.

    Args:
      params: hyperparameters (log scale).
      x: ``[N, dim]`` padded inputs.
      y: ``[N]`` padded standardized targets.
      mask: ``[N]`` 1 for real rows.
      jitter: first jitter of the (safe) Cholesky factorization.

    Returns:
      The :class:`Posterior`.
    """
    factor = safe_cholesky(_gram(params, x, mask), mask, jitter)
    factor_inv = solve_triangular(factor, jnp.eye(x.shape[0], dtype=x.dtype), lower=True)
    alpha = cho_solve((factor, True), y * mask)
    return Posterior(params, x, mask, factor, factor_inv, alpha)


def cross_kernel(posterior: Posterior, x_query: jax.Array) -> jax.Array:
    """``[m, N]`` kernel between ``x_query [m, dim]`` and the real observed rows (0 on padding)."""
    params = posterior.params
    kernel = matern52(
        x_query, posterior.x, jnp.exp(params.log_lengthscales), jnp.exp(params.log_signal_var)
    )
    return kernel * posterior.mask[None, :]


def predict(posterior: Posterior, x_query: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and variance ``([m], [m])`` of the latent function at ``x_query [m, dim]``.

    The variance is floored at 1e-12.
    """
    cross = cross_kernel(posterior, x_query)
    mean = cross @ posterior.alpha
    v = cross @ posterior.factor_inv.T  # [m, N] rows L^-1 k*
    var = jnp.exp(posterior.params.log_signal_var) - jnp.sum(v * v, axis=1)
    return mean, jnp.maximum(var, 1e-12)


def _posterior_at(
    params: GPParams, x: jax.Array, y: jax.Array, mask: jax.Array, x_query: jax.Array, jitter: Any
) -> tuple[jax.Array, jax.Array]:
    return predict(condition(params, x, y, mask, jitter), x_query)


_posterior_jit = jax.jit(_posterior_at)

# --------------------------------------------------------------------------------------------
# Host side: precision, padding, and the public wrappers


@contextlib.contextmanager
def gp_precision(rows: int = 0) -> Iterator[None]:
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


def bucket(size: int, minimum: int = MIN_BUCKET) -> int:
    """The smallest power of two ``>= size`` and ``>= minimum`` (padded sizes: few compiles)."""
    return max(minimum, 1 << max(size - 1, 0).bit_length())


def pad(x: np.ndarray, y: np.ndarray, rows: int) -> tuple[np.ndarray, ...]:
    """``(x [rows, dim], y [rows], mask [rows])`` float64: the data, then zero rows, masked out."""
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
    with gp_precision(bucket(len(y))):
        padded = pad(x, y, bucket(len(y)))
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
    with gp_precision(bucket(len(y))):
        padded = pad(x, y, bucket(len(y)))
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
    num_restarts: int = 8,
    num_steps: int = 100,
    jitter: float = 1e-8,
    warm_start: GPParams | None = None,
) -> tuple[GPParams, float]:
    """Hyperparameters maximizing the log marginal likelihood plus weak log-normal priors.

    Args:
      x: ``[num, dim]`` inputs in the unit cube.
      y: ``[num]`` standardized targets.
      key: PRNG key for the perturbed restarts.
      num_restarts: L-BFGS runs, one after the other: the first from the prior means, the
        second from ``warm_start`` (a draw from the priors when it is ``None``), the others
        from draws from the priors.
      num_steps: the most L-BFGS iterations per run (each stops earlier once converged).
      jitter: diagonal added to ``K`` in the likelihood.
      warm_start: hyperparameters to start the second run from (an earlier fit's).

    Returns:
      ``(params, objective)``: numpy hyperparameters of the best run and its log marginal
      likelihood plus log prior (up to a constant).
    """
    x, y = _check_data(x, y)
    rows = bucket(len(y))
    with gp_precision(rows):
        warm = _as_params(prior_means(x.shape[1]) if warm_start is None else warm_start)
        params, value = fit_hyperparameters(
            *map(jnp.asarray, pad(x, y, rows)),
            key,
            jnp.asarray(jitter, jnp.float64),
            warm,
            num_restarts=num_restarts,
            num_steps=num_steps,
        )
        return GPParams(*(np.asarray(leaf) for leaf in params)), float(value)
