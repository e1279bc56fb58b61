"""The host's CPU as several XLA devices: how many, and the switch that makes them.

Imports JAX only when :func:`use_cpu_cores` is called, so :mod:`jaxtune.cli` can import this
module before it knows whether a command will run.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["cpu_device_count", "use_cpu_cores"]


def cpu_device_count() -> int:
    """The CPU devices ``jaxtune sweep`` makes by default: ``JAXTUNE_CPU_DEVICES`` or the core
    count."""
    return int(os.environ.get("JAXTUNE_CPU_DEVICES", 0)) or os.cpu_count() or 1


def use_cpu_cores(num_devices: int | None = None) -> None:
    """Splits the host CPU into one XLA device per core, before JAX starts its backend.

    One XLA CPU device does not keep several cores busy on a population's small matrix
    products; one device per core, with the population sharded over them, does
    (docs/benchmarks.md). Has no effect on GPU/TPU backends. Call it before any JAX
    computation; later calls are ignored. Also importable as ``jaxtune.cli.use_cpu_cores``.

    Args:
      num_devices: CPU devices to create (default: ``JAXTUNE_CPU_DEVICES`` or the core count).
    """
    import jax  # late: importing this module must not import JAX (see the module docstring)

    count = num_devices or cpu_device_count()
    # Once the backend is up the setting is refused; keep the devices it has.
    with contextlib.suppress(RuntimeError):
        jax.config.update("jax_num_cpu_devices", int(count))
