"""The device side of a population: its one-dimensional mesh and host <-> device transfers.

Every population array is sharded over the mesh's ``"population"`` axis (members first);
the data is replicated. Every process computes the same host values (they derive
deterministically from the sweep), so each fills its own shards: the same code runs on one
process and on many (``jax.distributed``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxtune.engine.population import POPULATION_AXIS

__all__ = ["Layout", "put_like", "to_host"]


@dataclasses.dataclass
class Layout:
    """The population's mesh and shardings.

    Attributes:
      mesh: a one-dimensional mesh over the devices, axis ``"population"``.
      population: sharding of arrays with the population axis first.
      replicated: sharding of arrays every device holds whole (the data).
      donate: whether segments donate the population's buffers (not on CPU).
    """

    mesh: Mesh
    population: NamedSharding
    replicated: NamedSharding
    donate: bool

    @classmethod
    def build(cls, devices: Sequence[jax.Device] | None) -> Layout:
        """The layout over ``devices`` (default: ``jax.devices()``)."""
        devices = list(devices) if devices is not None else jax.devices()
        mesh = Mesh(np.asarray(devices), (POPULATION_AXIS,))
        return cls(
            mesh=mesh,
            population=NamedSharding(mesh, PartitionSpec(POPULATION_AXIS)),
            replicated=NamedSharding(mesh, PartitionSpec()),
            donate=devices[0].platform != "cpu",
        )

    @property
    def num_devices(self) -> int:
        """Devices of the mesh."""
        return self.mesh.devices.size

    def put(self, tree: Any, sharding: NamedSharding | None = None) -> Any:
        """Host numpy -> global arrays. Every process holds the same host values (they are
        derived deterministically from the sweep), so each fills its addressable shards; this
        works the same on one process and on many (``jax.distributed``)."""
        sharding = sharding or self.population

        def one(value):
            value = np.asarray(value)
            return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

        return jax.tree_util.tree_map(one, tree)

    def replicate(self, tree: Any) -> Any:
        """Host numpy -> arrays replicated on every device of the mesh."""
        return self.put(tree, self.replicated)


def put_like(value: np.ndarray, template: jax.Array) -> jax.Array:
    """A host array (a restored checkpoint's, dtype checked against ``template``) placed with
    ``template``'s sharding, so the next segment runs the program already compiled."""
    return jax.make_array_from_callback(value.shape, template.sharding, lambda index: value[index])


def to_host(tree: Any) -> Any:
    """Global arrays -> host numpy on every process (an all-gather when several processes)."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree_util.tree_map(one, tree)

