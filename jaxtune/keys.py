"""Keys from identities: a config's stable 64-bit hash, and a PRNG key with it folded in.

A leaf module (JSON encoding and JAX only), so that both the engine's member keys and the
schedulers' strategy keys (:mod:`jaxtune.strategies.halving`) derive from one rule without the
schedulers importing the engine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax

from jaxtune import jsonio

__all__ = ["config_hash", "fold_in_config"]


def config_hash(config: Mapping[str, Any]) -> int:
    """The SHA-256 of a config's sorted JSON text, first 8 bytes little-endian.

    Same value in every process and Python session; 64 bits keep two configs of a sweep of
    ``n`` apart with odds of about ``1 - n**2 / 2**65``.

    Args:
      config: a configuration (values :func:`jaxtune.jsonio.plain` can write).

    Returns:
      An int in ``[0, 2**64)``.
    """
    digest = hashlib.sha256(json.dumps(jsonio.plain(config), sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def fold_in_config(key: jax.Array, config: Mapping[str, Any]) -> jax.Array:
    """``key`` folded with ``config_hash(config) >> 32``, then with its low 32 bits."""
    high_low = divmod(config_hash(config), 1 << 32)
    return jax.random.fold_in(jax.random.fold_in(key, high_low[0]), high_low[1])
