"""Acquisition functions and batch proposals of :func:`jaxtune.strategies.bayes.bayes_search`.

Scores are losses (lower is better). :func:`expected_improvement` (maximized as
:func:`log_expected_improvement`) and :func:`upper_confidence_bound` score candidate points
under a :class:`~jaxtune.strategies.gp.Posterior`; :func:`maximize_acquisition` finds the best
snapped, not-yet-observed point; the two batch schemes of :data:`PROPOSERS` (the kriging
believer and Thompson sampling) propose ``num_rounds`` points in one jitted device program.
Each takes a :class:`ProposalInputs` (device values, traced) and a :class:`ProposalSettings`
(loop counts and the acquisition's name, static: one compile per distinct value).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import log_ndtr, ndtr

from jaxtune.strategies.gp import (
    GPParams,
    Posterior,
    condition,
    cross_kernel,
    matern52,
    predict,
    safe_cholesky,
)

__all__ = [
    "ACQUISITIONS",
    "BATCH_SCHEMES",
    "PROPOSERS",
    "PROPOSE_CONSTRAINED",
    "AcquisitionSearch",
    "ConstraintInputs",
    "ProposalInputs",
    "ProposalSettings",
    "expected_improvement",
    "augmented_chebyshev",
    "is_duplicate",
    "log_expected_improvement",
    "log_probability_of_feasibility",
    "maximize_acquisition",
    "maximize_value",
    "propose_constrained",
    "propose_believer",
    "propose_thompson",
    "snap",
    "starting_points",
    "upper_confidence_bound",
]

#: Acquisition functions :func:`~jaxtune.strategies.bayes.bayes_search` offers.
ACQUISITIONS = ("ei", "ucb")
#: Ways :func:`~jaxtune.strategies.bayes.bayes_search` proposes several configs per round.
BATCH_SCHEMES = ("kriging_believer", "thompson")

_DUPLICATE_TOL = 1e-7


class AcquisitionSearch(NamedTuple):
    """Device values of the acquisition search, the same in every round.

    Attributes:
      beta: ``[]`` exploration weight of UCB.
      learning_rate: ``[]`` Adam step size in the unit cube.
      centers: ``[dim, width]`` sorted encodings of each snapped coordinate's values.
      snapped: ``[dim]`` bool, which coordinates are snapped.
    """

    beta: jax.Array
    learning_rate: jax.Array
    centers: jax.Array
    snapped: jax.Array


class ProposalInputs(NamedTuple):
    """The traced inputs of a proposal (a pytree: changing a value never recompiles).

    Attributes:
      params: fitted GP hyperparameters.
      x: ``[N, dim]`` padded observations, with room for the batch after ``num_observed``.
      y: ``[N]`` padded standardized scores.
      mask: ``[N]`` 1 for real rows.
      num_observed: ``[]`` number of real rows.
      num_rounds: ``[]`` number of points to propose (``<= batch_bucket``).
      key: PRNG key of the proposal.
      jitter: ``[]`` first jitter of Cholesky factorizations.
      search: the acquisition search's values.
    """

    params: GPParams
    x: jax.Array
    y: jax.Array
    mask: jax.Array
    num_observed: jax.Array
    num_rounds: jax.Array
    key: jax.Array
    jitter: jax.Array
    search: AcquisitionSearch


class ProposalSettings(NamedTuple):
    """The static settings of a proposal (hashable: one compile per distinct value).

    Attributes:
      acquisition: ``"ei"`` or ``"ucb"``.
      batch_bucket: padded batch size (a power of two).
      num_restarts: starts scored per point (Thompson: candidates, at least ``2 batch_bucket``).
      num_ascent: best starts improved by Adam.
      num_steps: Adam steps per improved start.
    """

    acquisition: str
    batch_bucket: int
    num_restarts: int
    num_ascent: int
    num_steps: int


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


def snap(x: jax.Array, centers: jax.Array, snapped: jax.Array) -> jax.Array:
    """Moves snapped coordinates of ``x [m, dim]`` to the nearest value's encoding."""
    nearest = jnp.argmin(jnp.abs(x[:, :, None] - centers[None]), axis=-1)
    values = jnp.take_along_axis(centers[None], nearest[:, :, None], axis=-1)[..., 0]
    return jnp.where(snapped, values, x)


def is_duplicate(candidates: jax.Array, x: jax.Array, mask: jax.Array) -> jax.Array:
    """``[m]`` True where a candidate equals one of the masked rows of ``x``."""
    close = jnp.all(jnp.abs(candidates[:, None, :] - x[None]) < _DUPLICATE_TOL, axis=-1)
    return jnp.any(close & (mask[None, :] > 0), axis=-1)


def starting_points(
    key: jax.Array, x: jax.Array, y: jax.Array, mask: jax.Array, num: int
) -> jax.Array:
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
    posterior: Posterior, x_query: jax.Array, best: Any, beta: Any, acquisition: str
) -> jax.Array:
    mean, var = predict(posterior, x_query)
    std = jnp.sqrt(var)
    if acquisition == "ei":
        return log_expected_improvement(mean, std, best)
    return upper_confidence_bound(mean, std, beta)


def maximize_acquisition(
    posterior: Posterior,
    y: jax.Array,
    key: jax.Array,
    search: AcquisitionSearch,
    settings: ProposalSettings,
) -> jax.Array:
    """The best snapped, not-yet-observed point from ``num_restarts`` scored starts.

    All starts are scored; the ``num_ascent`` best take ``num_steps`` projected Adam steps
    together (``vmap``-free: the summed acquisition has independent gradients per point).

    Args:
      posterior: the GP conditioned on the observations (and earlier fantasies).
      y: ``[N]`` the targets ``posterior`` was conditioned on (the incumbent is their minimum).
      key: PRNG key of the starts.
      search: the acquisition search's values.
      settings: the acquisition and the loop counts.

    Returns:
      ``[dim]`` the chosen point.
    """
    acquisition, beta = settings.acquisition, search.beta
    best = jnp.min(jnp.where(posterior.mask > 0, y, jnp.inf))

    def value(points: jax.Array) -> jax.Array:
        return _acquisition_value(posterior, points, best, beta, acquisition)

    return maximize_value(value, posterior.x, y, posterior.mask, key, search, settings)


def propose_believer(inputs: ProposalInputs, settings: ProposalSettings) -> jax.Array:
    """Kriging believer: ``num_rounds`` points, each added with its posterior mean.

    Args:
      inputs: the observations, fitted hyperparameters and search values.
      settings: the acquisition and the loop counts.

    Returns:
      ``[batch_bucket, dim]`` proposals; rows from ``num_rounds`` on are zero.
    """
    params, key, jitter = inputs.params, inputs.key, inputs.jitter
    proposals = jnp.zeros((settings.batch_bucket, inputs.x.shape[1]), inputs.x.dtype)

    def round_(i: jax.Array, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        x, y, mask, proposals = carry
        posterior = condition(params, x, y, mask, jitter)
        point = maximize_acquisition(
            posterior, y, jax.random.fold_in(key, i), inputs.search, settings
        )
        fantasy, _ = predict(posterior, point[None])
        slot = inputs.num_observed + i
        return (
            x.at[slot].set(point),
            y.at[slot].set(fantasy[0]),
            mask.at[slot].set(1.0),
            proposals.at[i].set(point),
        )

    carry = (inputs.x, inputs.y, inputs.mask, proposals)
    *_, proposals = jax.lax.fori_loop(0, inputs.num_rounds, round_, carry)
    return proposals


def propose_thompson(inputs: ProposalInputs, settings: ProposalSettings) -> jax.Array:
    """Thompson sampling: minimizers of joint posterior samples over shared candidates.

    ``max(num_restarts, 2 * batch_bucket)`` candidates, so that large batches stay distinct.
    The acquisition, its search's ``beta`` and ``learning_rate``, ``num_ascent`` and
    ``num_steps`` play no part.

    Args:
      inputs: the observations, fitted hyperparameters and snapping tables.
      settings: ``batch_bucket`` and ``num_restarts``.

    Returns:
      ``[batch_bucket, dim]`` proposals; rows from ``num_rounds`` on are zero.
    """
    params, x, y, mask, jitter = inputs.params, inputs.x, inputs.y, inputs.mask, inputs.jitter
    batch_bucket = settings.batch_bucket
    num_candidates = max(settings.num_restarts, 2 * batch_bucket)
    posterior = condition(params, x, y, mask, jitter)
    start_key, sample_key = jax.random.split(inputs.key)
    candidates = snap(
        starting_points(start_key, x, y, mask, num_candidates),
        inputs.search.centers,
        inputs.search.snapped,
    )
    mean, _ = predict(posterior, candidates)
    cross = cross_kernel(posterior, candidates)
    v = posterior.factor_inv @ cross.T
    signal_var = jnp.exp(params.log_signal_var)
    cov = matern52(candidates, candidates, jnp.exp(params.log_lengthscales), signal_var) - v.T @ v
    # Candidates near observations make the covariance nearly singular: start at a larger
    # jitter (relative to the signal variance) than for the data's own factor.
    ones = jnp.ones(num_candidates, x.dtype)
    factor = safe_cholesky(cov, ones, jitter + 1e-6 * signal_var)
    draws = jax.random.normal(sample_key, (num_candidates, batch_bucket), x.dtype)
    samples = mean[:, None] + factor @ draws  # [candidates, batch]
    excluded = is_duplicate(candidates, x, mask)
    proposals = jnp.zeros((batch_bucket, x.shape[1]), x.dtype)

    def round_(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        excluded, proposals = carry
        chosen = jnp.argmin(jnp.where(excluded, jnp.inf, samples[:, i]))
        # Exclude the chosen value and every snapped copy of it.
        same = jnp.all(jnp.abs(candidates - candidates[chosen]) < _DUPLICATE_TOL, axis=-1)
        return excluded | same, proposals.at[i].set(candidates[chosen])

    _, proposals = jax.lax.fori_loop(0, inputs.num_rounds, round_, (excluded, proposals))
    return proposals


#: Batch scheme -> jitted ``propose(inputs, settings) -> [batch_bucket, dim]``; one compile per
#: (padded shapes, settings).
PROPOSERS = {
    "kriging_believer": jax.jit(propose_believer, static_argnames=("settings",)),
    "thompson": jax.jit(propose_thompson, static_argnames=("settings",)),
}


# --------------------------------------------------------------------------------------------
# Several objectives and constraints: random scalarizations, constrained EI


def augmented_chebyshev(objectives: Any, weights: Any, rho: float = 0.05) -> Any:
    """ParEGO's scalarization (Knowles 2006) of losses normalized to ``[0, 1]``:
    ``max_i w_i f_i + rho sum_i w_i f_i`` (lower is better; minimizers of it for all
    weights cover the whole Pareto front, concave parts included).

    Args:
      objectives: ``[n, k]`` normalized losses (numpy or JAX; ``+inf`` stays ``+inf``).
      weights: ``[k]`` non-negative weights summing to 1.
      rho: the augmentation, which breaks ties between weakly dominated points.

    Returns:
      ``[n]`` scalarized losses.
    """
    weighted = objectives * weights
    return weighted.max(axis=-1) + rho * weighted.sum(axis=-1)


class ConstraintInputs(NamedTuple):
    """Traced inputs of the constraints' GPs, one per constraint (leading axis ``c``, which
    may be 0).

    Attributes:
      params: :class:`~jaxtune.strategies.gp.GPParams` with leaves stacked ``[c, ...]``.
      y: ``[c, N]`` standardized violations, padded as :attr:`ProposalInputs.y`.
      threshold: ``[c]`` the standardized violation 0 (feasible below it).
    """

    params: GPParams
    y: jax.Array
    threshold: jax.Array


def log_probability_of_feasibility(
    posteriors: Posterior, x_query: jax.Array, threshold: jax.Array
) -> jax.Array:
    """``sum_c log P(g_c(x) <= threshold_c)`` under independent GPs (``posteriors`` stacked
    along a leading constraint axis): ``[m]``."""
    mean, var = jax.vmap(predict, in_axes=(0, None))(posteriors, x_query)
    z = (threshold[:, None] - mean) / jnp.sqrt(var)
    return jnp.sum(log_ndtr(z), axis=0)


def maximize_value(
    value: Any, x: jax.Array, y: jax.Array, mask: jax.Array, key: jax.Array,
    search: AcquisitionSearch, settings: ProposalSettings,
) -> jax.Array:
    """:func:`maximize_acquisition` for any ``value(points [m, dim]) -> [m]`` (larger is
    better): scored starts, the best improved by projected Adam, snapped, not a duplicate of
    a masked row of ``x``.

    Returns:
      ``[dim]`` the chosen point.
    """
    starts = snap(starting_points(key, x, y, mask, settings.num_restarts),
                  search.centers, search.snapped)
    start_values = value(starts)
    start_values = jnp.where(jnp.isfinite(start_values), start_values, -1e300)
    _, top = jax.lax.top_k(start_values, settings.num_ascent)
    optimizer = optax.adam(search.learning_rate)

    def step(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], None]:
        points, opt_state = carry
        grads = jax.grad(lambda p: -jnp.sum(value(p)))(points)
        grads = jnp.where(jnp.isfinite(grads), grads, 0.0)
        updates, opt_state = optimizer.update(grads, opt_state, points)
        return (jnp.clip(optax.apply_updates(points, updates), 0.0, 1.0), opt_state), None

    initial = starts[top]
    (moved, _), _ = jax.lax.scan(
        step, (initial, optimizer.init(initial)), None, settings.num_steps
    )
    moved = snap(moved, search.centers, search.snapped)
    moved_values = value(moved)
    candidates = jnp.concatenate([starts, moved])
    values = jnp.concatenate(
        [start_values, jnp.where(jnp.isfinite(moved_values), moved_values, -1e300)]
    )
    values = jnp.where(is_duplicate(candidates, x, mask), -jnp.inf, values)
    return candidates[jnp.argmax(values)]


def propose_constrained(
    inputs: ProposalInputs, constraints: ConstraintInputs, settings: ProposalSettings
) -> jax.Array:
    """EI for one or several targets, times the probability of feasibility, batch by the
    kriging believer (Gardner et al. 2014; Gelbart et al. 2014; Knowles 2006).

    ``inputs.params`` and ``inputs.y`` hold ``q`` targets stacked on a leading axis (``q``
    random scalarizations of several objectives, or ``q = 1``): round ``i`` maximizes
    ``log EI`` of target ``min(i, q - 1)`` below its best *feasible* observation, plus
    ``log P(feasible)`` under the constraints' GPs (while no observation is feasible, the
    probability alone; without constraints, EI alone). The chosen point is then added to every
    GP (all targets and constraints) at its posterior mean before the next round.

    Args:
      inputs: the observations, the targets' stacked hyperparameters and ``[q, N]`` targets,
        and the search values.
      constraints: the constraints' GPs (``c = 0`` rows: no constraints).
      settings: loop counts (the acquisition is always EI).

    Returns:
      ``[batch_bucket, dim]`` proposals; rows from ``num_rounds`` on are zero.
    """
    key, jitter = inputs.key, inputs.jitter
    proposals = jnp.zeros((settings.batch_bucket, inputs.x.shape[1]), inputs.x.dtype)
    condition_all = jax.vmap(condition, in_axes=(0, None, 0, None, None))
    predict_all = jax.vmap(predict, in_axes=(0, None))
    num_targets, constrained = inputs.y.shape[0], constraints.y.shape[0] > 0

    def round_(i: jax.Array, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        x, y, g, mask, proposals = carry
        posteriors = condition_all(inputs.params, x, y, mask, jitter)
        target = jnp.minimum(i, num_targets - 1)
        posterior = jax.tree.map(lambda leaf: leaf[target], posteriors)
        feasible = mask > 0
        if constrained:
            limits = condition_all(constraints.params, x, g, mask, jitter)
            feasible &= jnp.all(g <= constraints.threshold[:, None], axis=0)
        best = jnp.min(jnp.where(feasible, y[target], jnp.inf))

        def value(points: jax.Array) -> jax.Array:
            mean, var = predict(posterior, points)
            log_ei = log_expected_improvement(mean, jnp.sqrt(var), best)
            if not constrained:
                return log_ei
            log_pof = log_probability_of_feasibility(limits, points, constraints.threshold)
            return jnp.where(jnp.isfinite(best), log_ei + log_pof, log_pof)

        point = maximize_value(value, x, y[target], mask, jax.random.fold_in(key, i),
                               inputs.search, settings)
        slot = inputs.num_observed + i
        fantasies, _ = predict_all(posteriors, point[None])
        if constrained:
            believed, _ = predict_all(limits, point[None])
            g = g.at[:, slot].set(believed[:, 0])
        return (
            x.at[slot].set(point),
            y.at[:, slot].set(fantasies[:, 0]),
            g,
            mask.at[slot].set(1.0),
            proposals.at[i].set(point),
        )

    carry = (inputs.x, inputs.y, constraints.y, inputs.mask, proposals)
    *_, proposals = jax.lax.fori_loop(0, inputs.num_rounds, round_, carry)
    return proposals


#: :func:`propose_constrained`, jitted (one compile per padded shapes and settings).
PROPOSE_CONSTRAINED = jax.jit(propose_constrained, static_argnames=("settings",))
