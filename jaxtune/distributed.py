"""Several processes, one sweep: joining a ``jax.distributed`` cluster.

jaxtune's engine is written for JAX's multi-controller model: every process runs the same
program on the same configs, the population axis is sharded over the *global* device mesh
(every device of every process), host arrays become global arrays through
``jax.make_array_from_callback`` and results come back to every process through an all-gather.
So a sweep over several hosts needs only two things from the user's script:

1. join the cluster before any JAX computation: :func:`initialize_from_env_or_args`;
2. let one process write files: :func:`is_writer`.

Example (each host runs the same script)::

    from jaxtune import distributed
    distributed.initialize_from_env_or_args()  # flags, JAXTUNE_* variables or SLURM/TPU
    results = jaxtune.train(task, configs, split, num_steps=500)  # every process: all rows
    if distributed.is_writer():
        results.save("runs/sweep")

On CPU, cross-process collectives use gloo (TCP); GPUs use NCCL and TPUs their interconnect,
chosen by JAX.

``jaxtune sweep`` does both steps itself: it joins with ``--coordinator-address``,
``--num-processes`` and ``--process-id`` (else the variables below, else JAX's detection) and
only process 0 prints and writes. docs/distributed.md has SLURM and TPU pod examples.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import jax

#: Environment variables read when the corresponding argument is not given.
ENV_COORDINATOR = "JAXTUNE_COORDINATOR"
ENV_NUM_PROCESSES = "JAXTUNE_NUM_PROCESSES"
ENV_PROCESS_ID = "JAXTUNE_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "JAXTUNE_LOCAL_DEVICE_IDS"
ENV_HEARTBEAT_TIMEOUT_S = "JAXTUNE_HEARTBEAT_TIMEOUT_S"
DEFAULT_HEARTBEAT_TIMEOUT_S = 100


def initialize_from_env_or_args(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
    *,
    initialization_timeout_s: int = 300,
    heartbeat_timeout_s: int | None = None,
    shutdown_timeout_s: int = 300,
) -> bool:
    """Joins a multi-process JAX cluster if one is described; otherwise does nothing.

    Each argument left as ``None`` is read from the environment: ``JAXTUNE_COORDINATOR``
    (``host:port`` of process 0), ``JAXTUNE_NUM_PROCESSES``, ``JAXTUNE_PROCESS_ID`` and
    ``JAXTUNE_LOCAL_DEVICE_IDS`` (comma-separated). When none of them is given at all, JAX's own
    cluster detection decides (SLURM, Open MPI, Cloud TPU pods, Kubernetes...): on such a cluster
    ``jax.distributed.initialize()`` is called without arguments and fills everything in; on a
    plain machine nothing happens and the sweep runs in this one process. Partial settings are
    passed on as given, and JAX auto-detects the rest.

    Call it once per process, before any JAX computation (the backend reads the cluster when it
    starts). A second call, once initialized, does nothing. On CPU, the cross-process
    collectives implementation is set to gloo unless one was chosen already.

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordination service, reachable from
        every process.
      num_processes: total number of processes.
      process_id: this process's index, ``0 <= process_id < num_processes``.
      local_device_ids: the local accelerators this process drives (default: all visible).
      initialization_timeout_s: seconds to wait for every process to join before failing.
      heartbeat_timeout_s: seconds without a heartbeat after which a peer counts as dead and
        the others fail (instead of waiting in a collective forever). Default:
        ``JAXTUNE_HEARTBEAT_TIMEOUT_S``, else 100. The survivors then abort with JAX's
        message "...another task died..." naming the unhealthy task.
      shutdown_timeout_s: seconds to wait for the others at the exit barrier.

    Returns:
      True when this process is part of a multi-process cluster (now or already), False when it
      runs alone.

    Raises:
      ValueError: a malformed environment variable or argument.
      RuntimeError: JAX computations already ran in this process (JAX's own error).
    """
    if jax.distributed.is_initialized():
        return True
    cluster = _settings(coordinator_address, num_processes, process_id, local_device_ids,
                        heartbeat_timeout_s)
    if not cluster.described() and not _cluster_detected():
        return False
    cluster.check()
    if jax.config.jax_cpu_collectives_implementation is None:
        # Without it, computations spanning CPU devices of several processes are refused.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=cluster.coordinator_address,
        num_processes=cluster.num_processes,
        process_id=cluster.process_id,
        local_device_ids=cluster.local_device_ids,
        initialization_timeout=int(initialization_timeout_s),
        heartbeat_timeout_seconds=int(cluster.heartbeat_timeout_s),
        shutdown_timeout_seconds=int(shutdown_timeout_s),
    )
    return True


class _Cluster(NamedTuple):
    """The cluster settings of :func:`initialize_from_env_or_args`: arguments, else the
    ``JAXTUNE_*`` variables (``None``: left to JAX's detection)."""

    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    local_device_ids: int | Sequence[int] | None
    heartbeat_timeout_s: int

    def described(self) -> bool:
        """Whether any of the cluster's settings is given."""
        return any(value is not None for value in (
            self.coordinator_address, self.num_processes, self.process_id,
            self.local_device_ids))

    def check(self) -> None:
        """Refuses a process count below 1 or a process index outside it."""
        num_processes, process_id = self.num_processes, self.process_id
        if num_processes is not None and num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
        if (process_id is not None and num_processes is not None
                and not 0 <= process_id < num_processes):
            raise ValueError(
                f"process_id={process_id} must be in 0..{num_processes - 1} for "
                f"num_processes={num_processes}."
            )


def _settings(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    local_device_ids: int | Sequence[int] | None,
    heartbeat_timeout_s: int | None,
) -> _Cluster:
    """Each argument left as ``None`` read from its ``JAXTUNE_*`` variable."""
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None:
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(ENV_PROCESS_ID)
    if heartbeat_timeout_s is None:
        heartbeat_timeout_s = _env_int(ENV_HEARTBEAT_TIMEOUT_S)
        if heartbeat_timeout_s is None:
            heartbeat_timeout_s = DEFAULT_HEARTBEAT_TIMEOUT_S
    if heartbeat_timeout_s < 1:
        raise ValueError(
            f"heartbeat_timeout_s must be a positive number of seconds, got "
            f"{heartbeat_timeout_s} (argument or {ENV_HEARTBEAT_TIMEOUT_S})."
        )
    if local_device_ids is None and os.environ.get(ENV_LOCAL_DEVICE_IDS):
        local_device_ids = _parse_ids(os.environ[ENV_LOCAL_DEVICE_IDS])
    return _Cluster(coordinator_address, num_processes, process_id, local_device_ids,
                    heartbeat_timeout_s)


def is_writer() -> bool:
    """True in the one process that should write files (process 0; True when alone).

    Every process holds the full :class:`~jaxtune.results.Results` after ``train``; writing
    from all of them to a shared directory would race.
    """
    return jax.process_index() == 0


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} must be an integer.") from None


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"{ENV_LOCAL_DEVICE_IDS}={text!r} must be comma-separated integers, e.g. '0,1'."
        ) from None


def _cluster_detected() -> bool:
    """Whether ``jax.distributed.initialize()`` would find a cluster on its own.

    Asks JAX's registry of cluster environments (the same checks ``initialize`` runs), so
    jaxtune detects exactly what JAX detects. ``JAX_COORDINATOR_ADDRESS`` also counts.
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    try:  # Private module: if a JAX release moves it, only auto-detection is lost.
        from jax._src.clusters import ClusterEnv
    except ImportError:
        return False
    return any(
        not getattr(env, "opt_in_only_method", False) and env.is_env_present()
        for env in getattr(ClusterEnv, "_cluster_types", ())
    )
