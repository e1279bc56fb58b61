"""Tests for jaxtune.models: shapes, dropout statistics, traced dropout rates compile once."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxtune import models


def _init(model, x):
    # Jitted: op-by-op Flax initialization is several times slower on CPU.
    return jax.jit(model.init)(jax.random.key(0), x)


def _apply(model, variables, x, rate=None, key=None):
    """Jitted forward pass; deterministic when `rate` is None."""
    if rate is None:
        return jax.jit(model.apply)(variables, x)

    def forward(variables, x, rate, key):
        return model.apply(
            variables, x, dropout_rate=rate, deterministic=False, rngs={"dropout": key}
        )

    return jax.jit(forward)(variables, x, rate, key)


@pytest.mark.parametrize(
    ("model", "x_shape", "out_shape"),
    [
        (models.MLP(hidden_sizes=(8, 4), num_outputs=3), (5, 6), (5, 3)),
        (models.MLP(hidden_sizes=(), num_outputs=2), (5, 2, 3), (5, 2)),
        (models.CNN(features=(4, 8), num_outputs=10, dense_size=16), (5, 64), (5, 10)),
        (models.CNN(features=(4,), num_outputs=3, dense_size=8), (5, 8, 8), (5, 3)),
        (models.CNN(features=(4,), num_outputs=3, image_shape=(6, 5)), (2, 6, 5, 2), (2, 3)),
        (models.CNN(features=(4,), num_outputs=3, image_shape=(4, 4)), (2, 32), (2, 3)),
        (models.Linear(num_outputs=1), (5, 7), (5, 1)),
    ],
)
def test_output_shapes(model, x_shape, out_shape):
    # Shapes only: eval_shape traces without compiling, which keeps this test fast.
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)

    def forward(variables, x, rate, key):
        return model.apply(
            variables, x, dropout_rate=rate, deterministic=False, rngs={"dropout": key}
        )

    chex.assert_shape(jax.eval_shape(model.apply, variables, x), out_shape)
    out = jax.eval_shape(forward, variables, x, jnp.float32(0.5), jax.random.key(1))
    chex.assert_shape(out, out_shape)


def test_cnn_rejects_bad_shapes():
    model = models.CNN(features=(4,), image_shape=(8, 8))
    with pytest.raises(ValueError, match="image_shape"):
        _init(model, jnp.ones((2, 63)))
    with pytest.raises(ValueError, match="CNN"):
        _init(model, jnp.ones((2, 8, 8, 1, 1)))


def test_dropout_rate_zero_is_identity():
    x = jax.random.normal(jax.random.key(0), (64, 32))
    np.testing.assert_array_equal(models.dropout(jax.random.key(1), x, 0.0), x)
    np.testing.assert_array_equal(
        jax.jit(models.dropout)(jax.random.key(1), x, jnp.float32(0.0)), x
    )


def test_dropout_rate_one_gives_zeros_without_nan():
    x = jnp.ones((16,))
    out = jax.jit(models.dropout)(jax.random.key(0), x, jnp.float32(1.0))
    np.testing.assert_array_equal(out, jnp.zeros(16))
    grad = jax.grad(lambda x: models.dropout(jax.random.key(0), x, 1.0).sum())(x)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_statistics(rate):
    x = jnp.ones((200_000,))
    out = models.dropout(jax.random.key(2), x, rate)
    zeroed = float(jnp.mean(out == 0.0))
    # Binomial standard error is <= 0.0012 here; 0.01 is over eight of them.
    assert abs(zeroed - rate) < 0.01
    # The rate is resolved to 1/65536; the scale uses the resolved keep probability.
    resolved_keep = 1.0 - round(rate * 65536) / 65536
    np.testing.assert_allclose(out[out != 0.0], 1.0 / resolved_keep, rtol=1e-6)
    assert abs(float(jnp.mean(out)) - 1.0) < 0.02  # inverted dropout keeps the expectation


def test_dropout_keeps_dtype():
    x = jnp.ones((8,), jnp.bfloat16)
    assert models.dropout(jax.random.key(0), x, jnp.float32(0.5)).dtype == jnp.bfloat16


@pytest.mark.parametrize(
    "model",
    [
        models.MLP(hidden_sizes=(64,), num_outputs=2),
        models.CNN(features=(4,), num_outputs=2, image_shape=(4, 4), dense_size=64),
    ],
    ids=["mlp", "cnn"],
)
def test_traced_rates_under_jit_vmap_compile_once(model):
    x = jax.random.normal(jax.random.key(0), (16, 16))
    variables = _init(model, x)
    chex.clear_trace_counter()

    @jax.jit
    @jax.vmap
    @chex.assert_max_traces(n=1)
    def forward(rate, key):
        return model.apply(
            variables, x, dropout_rate=rate, deterministic=False, rngs={"dropout": key}
        )

    keys = jax.random.split(jax.random.key(1), 4)
    rates = jnp.array([0.0, 0.2, 0.5, 0.9], jnp.float32)
    out = forward(rates, keys)
    chex.assert_shape(out, (4, 16, 2))
    # Rate 0 under dropout equals the deterministic forward pass.
    chex.assert_trees_all_close(out[0], _apply(model, variables, x), rtol=1e-6, atol=1e-6)
    assert not np.allclose(out[3], out[0])
    forward(jnp.array([0.3, 0.4, 0.6, 0.7], jnp.float32), keys)  # a second call: no retrace


def test_deterministic_ignores_dropout():
    model = models.MLP(hidden_sizes=(32, 32), num_outputs=3)
    x = jax.random.normal(jax.random.key(0), (8, 5))
    variables = _init(model, x)
    plain = _apply(model, variables, x)
    # No 'dropout' RNG is needed when deterministic.
    chex.assert_trees_all_close(
        model.apply(variables, x, dropout_rate=0.9, deterministic=True), plain
    )
    dropped = _apply(model, variables, x, 0.9, jax.random.key(1))
    assert not np.allclose(dropped, plain)


def test_linear_is_affine_and_ignores_dropout():
    model = models.Linear(num_outputs=2)
    x = jax.random.normal(jax.random.key(0), (8, 3))
    variables = _init(model, x)
    plain = _apply(model, variables, x)
    chex.assert_trees_all_close(_apply(model, variables, x, 0.9, jax.random.key(1)), plain)
    params = variables["params"]
    chex.assert_trees_all_close(plain, x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
