"""Pure losses, penalties and metrics for one member.

Every function here is written for a single member and returns a scalar: the mean over the batch
(and over output dimensions, for `mse`). The engine lifts them over the population axis with
`jax.vmap`. Predictions may be batched (`[B, ...]`) or unbatched; where a model emits a trailing
output axis of size 1 (`[B, 1]`) for a `[B]` target, it is reshaped to the target's shape rather
than broadcast (`[B, 1] - [B]` would silently give `[B, B]`).

Penalties act on weight matrices and kernels only (leaves with `ndim >= 2`): biases and other
vectors are not penalized. This matches scikit-learn's convention (`Ridge`, `Lasso`,
`LogisticRegression` do not penalize the intercept; `MLPClassifier`/`MLPRegressor` apply `alpha`
to `coefs_` only, not `intercepts_`), so a jaxtune `l2` sweep is comparable to a scikit-learn
`alpha` sweep, and a penalty cannot pull the model's mean output towards zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "accuracy",
    "binary_accuracy",
    "l1_penalty",
    "l2_penalty",
    "mse",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
]


def _match_shape(predictions: jax.Array, targets: jax.Array, what: str) -> jax.Array:
    """Reshapes `predictions` to `targets.shape` when they differ only by size-1 axes.

    Shapes are static under `jit`, so this check costs nothing at run time.
    """
    predictions = jnp.asarray(predictions)
    target_shape = jnp.shape(targets)
    if predictions.shape == target_shape:
        return predictions
    squeezed = tuple(d for d in predictions.shape if d != 1)
    if squeezed == tuple(d for d in target_shape if d != 1):
        return predictions.reshape(target_shape)
    raise ValueError(
        f"{what}: predictions of shape {predictions.shape} do not match targets of shape "
        f"{target_shape}; expected the same shape (a trailing axis of size 1 is allowed)."
    )


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error, `mean((predictions - targets) ** 2)`.

    Args:
        predictions: `[B]`, `[B, 1]` or `[B, D]` (or unbatched) float predictions.
        targets: targets of the same shape (`[B]` targets accept `[B, 1]` predictions).

    Returns:
        A scalar: the mean over the batch and over output dimensions.
    """
    targets = jnp.asarray(targets)
    predictions = _match_shape(predictions, targets, "mse")
    return jnp.mean(optax.squared_error(predictions, targets.astype(predictions.dtype)))


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy with integer labels, `mean(logsumexp(z) - z[label])`.

    Args:
        logits: `[B, C]` (or unbatched `[C]`) unnormalized log-probabilities.
        labels: `[B]` (or scalar) integer class indices in `[0, C)`.

    Returns:
        A scalar: the mean over the batch.
    """
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(labels))
    return jnp.mean(losses)


def sigmoid_binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy on logits, `mean(softplus(z) - y * z)`.

    Args:
        logits: `[B]` or `[B, 1]` (or scalar) logits of the positive class.
        labels: `[B]` labels in `{0, 1}` (integer or float).

    Returns:
        A scalar: the mean over the batch.
    """
    labels = jnp.asarray(labels)
    logits = _match_shape(logits, labels, "sigmoid_binary_cross_entropy")
    losses = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))
    return jnp.mean(losses)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose arg-max class equals the label.

    Args:
        logits: `[B, C]` (or unbatched `[C]`) scores.
        labels: `[B]` (or scalar) integer class indices.

    Returns:
        A float32 scalar in `[0, 1]`.
    """
    predicted = jnp.argmax(logits, axis=-1)
    return jnp.mean((predicted == jnp.asarray(labels)).astype(jnp.float32))


def binary_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples where `logits > 0` agrees with `labels == 1`.

    Args:
        logits: `[B]` or `[B, 1]` (or scalar) logits of the positive class.
        labels: `[B]` labels in `{0, 1}` (integer or float).

    Returns:
        A float32 scalar in `[0, 1]`.
    """
    labels = jnp.asarray(labels)
    logits = _match_shape(logits, labels, "binary_accuracy")
    return jnp.mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32))


def _weight_leaves(params: optax.Params) -> list[jax.Array]:
    return [leaf for leaf in jax.tree.leaves(params) if jnp.ndim(leaf) >= 2]


def l1_penalty(params: optax.Params) -> jax.Array:
    """L1 penalty `sum |w|` over weight matrices and kernels (leaves with `ndim >= 2`).

    Biases are not penalized (scikit-learn's convention; see the module docstring). The sum is
    accumulated in float32 whatever the parameter dtype.

    Args:
        params: a pytree of parameters.

    Returns:
        A float32 scalar (0 for a tree without weight matrices).
    """
    total = jnp.zeros((), jnp.float32)
    for leaf in _weight_leaves(params):
        total = total + jnp.sum(jnp.abs(leaf), dtype=jnp.float32)
    return total


def l2_penalty(params: optax.Params) -> jax.Array:
    """L2 penalty `0.5 * sum w ** 2` over weight matrices and kernels (leaves with `ndim >= 2`).

    The factor 0.5 makes the gradient `w`, so `loss + l2 * l2_penalty(params)` decays each weight
    by `l2 * w`. Biases are not penalized (scikit-learn's convention; see the module docstring).
    The sum is accumulated in float32 whatever the parameter dtype.

    Args:
        params: a pytree of parameters.

    Returns:
        A float32 scalar (0 for a tree without weight matrices).
    """
    total = jnp.zeros((), jnp.float32)
    for leaf in _weight_leaves(params):
        total = total + 0.5 * jnp.sum(jnp.square(leaf.astype(jnp.float32)))
    return total
