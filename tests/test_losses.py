"""Tests for jaxtune.losses: hand-computed numpy values, Optax references, vmap and jit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtune import losses

RTOL = 1e-6


def _np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_mse_hand_computed():
    predictions = np.array([1.0, 2.0, 4.0], np.float32)
    targets = np.array([1.5, 2.0, 1.0], np.float32)
    expected = (0.25 + 0.0 + 9.0) / 3
    np.testing.assert_allclose(losses.mse(predictions, targets), expected, rtol=RTOL)


def test_mse_accepts_trailing_unit_axis_without_broadcasting():
    predictions = np.array([[1.0], [2.0], [4.0]], np.float32)
    targets = np.array([1.5, 2.0, 1.0], np.float32)
    np.testing.assert_allclose(losses.mse(predictions, targets), 9.25 / 3, rtol=RTOL)


def test_mse_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mse"):
        losses.mse(jnp.zeros((3, 2)), jnp.zeros((3,)))


def test_mse_matches_optax():
    key_p, key_t = jax.random.split(jax.random.key(0))
    predictions = jax.random.normal(key_p, (16, 3))
    targets = jax.random.normal(key_t, (16, 3))
    expected = jnp.mean(optax.l2_loss(predictions, targets)) * 2
    chex.assert_trees_all_close(losses.mse(predictions, targets), expected, rtol=RTOL)


def test_softmax_cross_entropy_hand_computed_and_optax():
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], np.float32)
    labels = np.array([1, 0])
    log_probs = _np_log_softmax(logits.astype(np.float64))
    expected = -(log_probs[0, 1] + log_probs[1, 0]) / 2
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels), expected, rtol=RTOL)
    reference = jnp.mean(optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, 3)))
    chex.assert_trees_all_close(losses.softmax_cross_entropy(logits, labels), reference, rtol=RTOL)


def test_softmax_cross_entropy_unbatched():
    logits = np.array([1.0, 2.0, 0.5], np.float32)
    expected = -_np_log_softmax(logits.astype(np.float64))[2]
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, 2), expected, rtol=RTOL)


@pytest.mark.parametrize("shape", [(4,), (4, 1)])
def test_sigmoid_binary_cross_entropy_hand_computed(shape):
    logits = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    labels = np.array([1, 0, 0, 1])
    z, y = logits.astype(np.float64), labels.astype(np.float64)
    expected = np.mean(np.log1p(np.exp(z)) - y * z)
    got = losses.sigmoid_binary_cross_entropy(logits.reshape(shape), labels)
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    reference = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels.astype(np.float32)))
    chex.assert_trees_all_close(got, reference, rtol=RTOL)


def test_accuracy():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    labels = np.array([1, 1, 1, 0])
    accuracy = losses.accuracy(logits, labels)
    assert accuracy.dtype == jnp.float32
    np.testing.assert_allclose(accuracy, 0.75, rtol=RTOL)


@pytest.mark.parametrize("shape", [(4,), (4, 1)])
def test_binary_accuracy(shape):
    logits = np.array([0.5, -1.0, 2.0, -0.1], np.float32).reshape(shape)
    np.testing.assert_allclose(losses.binary_accuracy(logits, np.array([1, 0, 0, 1])), 0.5)
    np.testing.assert_allclose(
        losses.binary_accuracy(logits, np.array([1.0, 0.0, 1.0, 0.0], np.float32)), 1.0
    )


def _params():
    return {
        "dense": {
            "kernel": jnp.array([[1.0, -2.0], [3.0, -4.0]]),
            "bias": jnp.array([10.0, -20.0]),
        },
        "conv": {"kernel": jnp.full((3, 3, 1, 2), -0.5), "bias": jnp.array([5.0, 5.0])},
    }


def test_penalties_skip_biases():
    params = _params()
    np.testing.assert_allclose(losses.l1_penalty(params), 10.0 + 18 * 0.5, rtol=RTOL)
    np.testing.assert_allclose(losses.l2_penalty(params), 0.5 * (30.0 + 18 * 0.25), rtol=RTOL)


def test_penalty_gradient_is_weight_and_zero_on_biases():
    params = _params()
    grads = jax.grad(losses.l2_penalty)(params)
    chex.assert_trees_all_close(grads["dense"]["kernel"], params["dense"]["kernel"])
    chex.assert_trees_all_close(grads["dense"]["bias"], jnp.zeros(2))
    grads = jax.grad(losses.l1_penalty)(params)
    chex.assert_trees_all_close(grads["conv"]["kernel"], -jnp.ones((3, 3, 1, 2)))
    chex.assert_trees_all_close(grads["conv"]["bias"], jnp.zeros(2))


def test_penalties_without_weights_are_zero_float32():
    for penalty in (losses.l1_penalty, losses.l2_penalty):
        value = penalty({"bias": jnp.ones(3)})
        assert value.dtype == jnp.float32 and value == 0.0
        assert penalty({"w": jnp.ones((2, 2), jnp.bfloat16)}).dtype == jnp.float32


def test_losses_vmap_over_population_match_unbatched():
    key_l, key_y = jax.random.split(jax.random.key(1))
    logits = jax.random.normal(key_l, (3, 8, 4))  # [num_members, B, C]
    labels = jax.random.randint(key_y, (3, 8), 0, 4)
    batched = jax.jit(jax.vmap(losses.softmax_cross_entropy))(logits, labels)
    chex.assert_shape(batched, (3,))
    for member in range(3):
        chex.assert_trees_all_close(
            batched[member],
            losses.softmax_cross_entropy(logits[member], labels[member]),
            rtol=RTOL,
        )
