"""Flax linen models whose dropout rate is a traced hyperparameter.

`flax.linen.Dropout` tests `rate == 0.0` in Python, which fails (or recompiles) when the rate is a
traced value swept over the population. `dropout` here is written with `jnp.where` only, so one
compiled program serves every rate. All modules share the call signature
`model.apply(variables, x, dropout_rate=rate, deterministic=False, rngs={"dropout": key})`.

Models expect a leading batch axis: `x` is `[B, ...]`; the engine adds the population axis with
`jax.vmap`, so a model never sees it. Layer widths, depth and image shape are module fields
(static: they change shapes); `dropout_rate` is a call argument (dynamic: a traced float32 scalar).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CNN", "MLP", "Linear", "dropout"]


def dropout(key: chex.PRNGKey, x: jax.Array, rate: jax.typing.ArrayLike) -> jax.Array:
    """Inverted dropout with a rate that may be a traced value.

    Each element is kept with probability `1 - rate` and scaled by `1 / (1 - rate)`, so the
    expectation of the output equals `x`. The rate is resolved to 1/65536 (two 16-bit uniforms
    per 32-bit random word, half the random-bit work of `jax.random.bernoulli`), and the scale
    is `1 / (1 - round(rate * 65536) / 65536)`. `rate = 0` returns `x` exactly; `rate >= 1`
    returns zeros (no division by zero, no NaN). No Python
    branch is taken on `rate`, so it can be a tracer inside `jit` and `vmap`.

    Args:
        key: a JAX PRNG key.
        x: the activations, any shape and floating dtype.
        rate: the probability of zeroing an element, a Python float or a traced scalar.

    Returns:
        An array of the same shape and dtype as `x`.

    Example:
        >>> y = dropout(jax.random.key(0), jnp.ones((4,)), jnp.float32(0.5))
    """
    # Hyperparameters stay float32 whatever the activation dtype (a bf16 rate is too coarse).
    rate = jnp.clip(jnp.asarray(rate, jnp.float32), 0.0, 1.0)
    # Random bits dominate a small model's step (threefry on CPU), so each 32-bit word gives two
    # 16-bit uniforms: the rate is resolved to 1/65536, and the scale uses the resolved keep
    # probability, so the expectation of the output is still exactly x.
    threshold = jnp.round(rate * 65536.0).astype(jnp.uint32)
    size = max(int(np.prod(jnp.shape(x))), 1)
    words = jax.random.bits(key, ((size + 1) // 2,), jnp.uint32)
    halves = jnp.concatenate([words & 0xFFFF, words >> 16])[:size]
    keep = (halves >= threshold).reshape(jnp.shape(x))
    keep_prob = 1.0 - threshold.astype(jnp.float32) / 65536.0
    # The guarded denominator avoids 1/0 = inf, whose product with 0 would be NaN in gradients.
    scale = jnp.where(keep_prob > 0.0, 1.0 / jnp.where(keep_prob > 0.0, keep_prob, 1.0), 0.0)
    return jnp.where(keep, x * scale, jnp.zeros_like(x)).astype(x.dtype)


def _flatten(x: jax.Array) -> jax.Array:
    return jnp.reshape(x, (x.shape[0], -1))


class MLP(nn.Module):
    """A multilayer perceptron: `[Dense -> activation -> dropout] * len(hidden_sizes) -> Dense`.

    Attributes:
        hidden_sizes: the widths of the hidden layers (static: they change shapes).
        num_outputs: the width of the output layer (classes, or 1 for regression).
        activation: the hidden activation.

    Example:
        >>> model = MLP(hidden_sizes=(32, 32), num_outputs=10)
        >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 64)))
        >>> logits = model.apply(variables, x, dropout_rate=rate, deterministic=False,
        ...                      rngs={"dropout": key})
    """

    hidden_sizes: Sequence[int]
    num_outputs: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        dropout_rate: jax.typing.ArrayLike = 0.0,
        deterministic: bool = True,
    ) -> jax.Array:
        """Maps `x` of shape `[B, ...]` (flattened) to outputs `[B, num_outputs]`.

        Args:
            x: inputs `[B, ...]`.
            dropout_rate: dropout rate after each hidden activation (may be traced).
            deterministic: if True, dropout is skipped and no `'dropout'` RNG is needed.

        Returns:
            `[B, num_outputs]` outputs.
        """
        x = _flatten(x)
        for width in self.hidden_sizes:
            x = self.activation(nn.Dense(width)(x))
            if not deterministic:
                x = dropout(self.make_rng("dropout"), x, dropout_rate)
        return nn.Dense(self.num_outputs)(x)


class CNN(nn.Module):
    """A small convolutional network for little images (e.g. 8x8 digits).

    `[Conv 3x3 -> relu -> avg_pool 2x2] * len(features) -> Dense(dense_size) -> relu -> dropout
    -> Dense(num_outputs)`.

    Attributes:
        features: output channels of each convolution (static).
        num_outputs: the number of outputs (classes).
        image_shape: `(H, W)`, used to reshape flat inputs `[B, H * W * C]`.
        dense_size: width of the hidden dense layer.
    """

    features: Sequence[int] = (16, 32)
    num_outputs: int = 10
    image_shape: tuple[int, int] = (8, 8)
    dense_size: int = 64

    def _to_nhwc(self, x: jax.Array) -> jax.Array:
        height, width = self.image_shape
        if x.ndim == 2:
            if x.shape[1] % (height * width) != 0:
                raise ValueError(
                    f"CNN: flat inputs of shape {x.shape} cannot be reshaped to image_shape "
                    f"{tuple(self.image_shape)}; set image_shape to the images' (H, W)."
                )
            return x.reshape((x.shape[0], height, width, -1))
        if x.ndim == 3:
            return x[..., None]
        if x.ndim == 4:
            return x
        raise ValueError(
            f"CNN: expected inputs [B, H*W], [B, H, W] or [B, H, W, C], got shape {x.shape}."
        )

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        dropout_rate: jax.typing.ArrayLike = 0.0,
        deterministic: bool = True,
    ) -> jax.Array:
        """Maps images to outputs `[B, num_outputs]`.

        Args:
            x: `[B, H * W]` (or `[B, H * W * C]`), `[B, H, W]` or `[B, H, W, C]` inputs.
            dropout_rate: dropout rate after the hidden dense layer (may be traced).
            deterministic: if True, dropout is skipped and no `'dropout'` RNG is needed.

        Returns:
            `[B, num_outputs]` outputs.
        """
        x = self._to_nhwc(x)
        for channels in self.features:
            x = nn.relu(nn.Conv(channels, kernel_size=(3, 3), padding="SAME")(x))
            x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2), padding="SAME")
        x = nn.relu(nn.Dense(self.dense_size)(_flatten(x)))
        if not deterministic:
            x = dropout(self.make_rng("dropout"), x, dropout_rate)
        return nn.Dense(self.num_outputs)(x)


class Linear(nn.Module):
    """A linear model `x @ W + b` (linear or logistic regression, with the matching loss).

    Attributes:
        num_outputs: 1 for regression or binary classification, the number of classes for
            multinomial logistic regression.
    """

    num_outputs: int

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        dropout_rate: jax.typing.ArrayLike = 0.0,
        deterministic: bool = True,
    ) -> jax.Array:
        """Maps `x` of shape `[B, ...]` (flattened) to `[B, num_outputs]`.

        Args:
            x: inputs `[B, ...]`.
            dropout_rate: ignored (accepted so every model has the same signature).
            deterministic: ignored.

        Returns:
            `[B, num_outputs]` outputs.
        """
        del dropout_rate, deterministic
        return nn.Dense(self.num_outputs)(_flatten(x))
