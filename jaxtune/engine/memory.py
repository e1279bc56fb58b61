"""How much memory a member needs, and so how many members train at once (host side).

Nothing here compiles: a member's memory is estimated from abstract shapes (the traced jaxpr of
its step and evaluation), the device's budget from what the devices report, and chunk sizes
follow from both. Every process computes the same sizes (the budget is agreed across
processes), so all of them run the same programs.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.extend.core import Literal

from jaxtune import data as data_lib
from jaxtune import datatree, limits
from jaxtune.engine.layout import Layout
from jaxtune.engine.population import GroupSpec, member_init

__all__ = [
    "chunk_cap", "chunk_population_size", "chunk_size", "device_memory_bytes",
    "host_memory_bytes", "member_memory_bytes", "peak_live_bytes", "replicated_data_bytes",
]


def device_memory_bytes(devices: Sequence[jax.Device]) -> int:
    """Memory one device of ``devices`` may use: the smallest, agreed by every process.

    Only this process's devices can be asked (``memory_stats`` of another process's device
    fails); with several processes the minimum is all-gathered, so that every process picks
    the same chunk sizes and so runs the same programs (different choices would deadlock).
    CPU devices share the host's memory: each gets the physical memory divided by the number
    of this process's devices in ``devices``.
    """
    local = [d for d in devices if d.process_index == jax.process_index()]
    device_limits = []
    for device in local:
        stats = device.memory_stats() if hasattr(device, "memory_stats") else None
        if stats and "bytes_limit" in stats:
            device_limits.append(int(stats["bytes_limit"]))
        else:
            device_limits.append(host_memory_bytes() // len(local))
    budget = min(device_limits)
    if jax.process_count() > 1:
        # int32 MiB: exact enough, and safe without jax_enable_x64.
        budget_mib = np.int32(min(budget >> 20, 2**31 - 1))
        budget = int(np.min(multihost_utils.process_allgather(budget_mib))) << 20
    return budget


def host_memory_bytes() -> int:
    """The host's physical memory (8 GiB when the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def member_memory_bytes(
    spec: GroupSpec,
    example_dynamic: Mapping[str, float],
    input_shape: Sequence[int] | None = None,
    eval_bytes: int = 0,
    *,
    eval_rows: int = 0,
    train_rows: int | None = None,
    input_dtype: Any = np.float32,
    label_dtype: Any = np.int32,
    data: Any = None,
) -> int:
    """Estimates one member's device memory from abstract shapes (tracing only, no compilation).

    ``3 * state + max(step_peak, eval_peak) + eval_bytes``, where ``state`` is the member's
    carry (a Task's: parameters plus optimizer state; the segment's starting state, kept for a
    guarded rerun, and the loop's current and new copies live at once: the fast and the guarded
    segment programs are separate, and a segment runs one at a time), ``step_peak`` the
    largest total size of the values alive at once in one member's training step on one
    minibatch, ``eval_peak`` the same for ``task.evaluate`` on ``eval_rows`` rows, and
    ``eval_bytes`` the member's own copy of the validation data. Both peaks come from walking
    the traced jaxpr in order and freeing each value after its last use: what the program needs
    before XLA fuses anything (fusion only removes intermediates). Every leaf of the data counts:
    a minibatch of a dict ``x`` (features, mask, lengths) is all its leaves' rows. On XLA:CPU
    this lands above the compiled segment's own ``memory_analysis()``: within 1.5x of it for the
    built-in MLP and CNN with ``member_loop="vmap"``, 2-4x with ``"map"``, where a device holds
    one member's activations at a time (tests/test_devices.py). The result is cached per
    signature: a sweep calling ``train`` once per round traces the task once.

    Args:
      spec: the static group.
      example_dynamic: the group's dynamic hyperparameter names (values are not used).
      input_shape: one example's shape, without the batch axis, of an array ``x`` (with
        ``input_dtype`` and ``label_dtype``); or give ``data``.
      eval_bytes: bytes of the validation data each member holds.
      eval_rows: validation rows each member evaluates after every segment.
      train_rows: rows of a full batch (used when ``spec.batch_size`` is None; default 1024).
      input_dtype: dtype of an array ``x``.
      label_dtype: dtype of an array ``y`` of shape ``[rows]``.
      data: instead of the three above, the training data ``{"x": x, "y": y}`` (one array or a
        dict of arrays each, :mod:`jaxtune.datatree`; anything with ``shape`` and ``dtype``):
        each leaf's shape after the rows and its dtype are used, its row count is not.

    Returns:
      Bytes per member.

    Raises:
      ValueError: neither or both of ``input_shape`` and ``data``.
    """
    if (input_shape is None) == (data is None):
        raise ValueError("give one of input_shape (an array x) and data ({'x': x, 'y': y})")
    if data is None:
        data = {"x": jax.ShapeDtypeStruct((1, *(int(d) for d in input_shape)), input_dtype),
                "y": jax.ShapeDtypeStruct((1,), label_dtype)}
    return _member_memory_bytes(
        spec, tuple(sorted(example_dynamic)), datatree.signature(dict(data)), int(eval_bytes),
        int(eval_rows), None if train_rows is None else int(train_rows),
    )


@functools.lru_cache(maxsize=64)
def _member_memory_bytes(spec, example_dynamic, data_signature, eval_bytes, eval_rows,
                         train_rows) -> int:
    # Abstract inputs only: estimating must not compile (or run) anything.
    dyn = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in example_dynamic}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    carry = jax.eval_shape(lambda k, d: member_init(spec, k, d), key, dyn)
    state_bytes = sum(math.prod(x.shape) * x.dtype.itemsize
                      for x in jax.tree_util.tree_leaves(carry))

    def data(rows):
        return datatree.abstract(data_signature, rows)

    def step(c, batch, k, d):
        return spec.step.step(c, batch, k, spec.hp(d))

    rows = spec.batch_size or train_rows or 1024
    batch = data(rows) if spec.step.needs_data else None
    peak = peak_live_bytes(jax.make_jaxpr(step)(carry, batch, key, dyn))
    if spec.step.evaluate is not None and (eval_rows > 0 or not spec.step.needs_data):
        evaluate = jax.make_jaxpr(lambda c, v, d: spec.step.evaluate(c, v, spec.hp(d)))
        peak = max(peak, peak_live_bytes(
            evaluate(carry, data(eval_rows) if spec.step.needs_data else key, dyn)))
    return 3 * state_bytes + peak + eval_bytes


def peak_live_bytes(closed_jaxpr: Any) -> int:
    """The largest total size of the values alive at once while a jaxpr runs in order.

    Inputs count from the start; every value is freed after its last use. Nested calls count by
    their outputs only.
    """
    jaxpr = closed_jaxpr.jaxpr

    def size(var):
        aval = var.aval
        return math.prod(aval.shape) * aval.dtype.itemsize if hasattr(aval, "dtype") else 0

    def is_var(atom):
        return not isinstance(atom, Literal)

    last_use = {}
    for index, eqn in enumerate(jaxpr.eqns):
        for var in filter(is_var, eqn.invars):
            last_use[var] = index
    for var in filter(is_var, jaxpr.outvars):
        last_use[var] = len(jaxpr.eqns)
    live = sum(size(v) for v in jaxpr.invars)
    peak = live
    for index, eqn in enumerate(jaxpr.eqns):
        live += sum(size(v) for v in eqn.outvars)
        peak = max(peak, live)
        for var in set(filter(is_var, eqn.invars)):
            if last_use[var] == index:
                live -= size(var)
        live -= sum(size(v) for v in eqn.outvars if v not in last_use)
    return peak


def chunk_cap(layout: Layout, max_members_per_chunk: int | None,
               members_per_device: int | None, pad_to: int | None) -> int | None:
    """Checks the chunking options (host only) and returns the cap on members per chunk.

    The cap is ``max_members_per_chunk`` rounded down to a multiple of the device count, so that
    padding a chunk to the device count never takes it past the cap; with ``members_per_device``
    it is exactly ``members_per_device * num_devices``.
    """
    num_devices = layout.num_devices
    if pad_to is not None:
        limits.check_positive_int("pad_to", pad_to)
    if members_per_device is not None:
        limits.check_positive_int("members_per_device", members_per_device)
        for field, value in (("pad_to", pad_to), ("max_members_per_chunk",
                                                  max_members_per_chunk)):
            if value is not None:
                raise ValueError(
                    f"members_per_device={members_per_device} fixes every chunk at "
                    f"members_per_device x {num_devices} devices = "
                    f"{members_per_device * num_devices} slots; drop {field}={value!r} "
                    "(or drop members_per_device)."
                )
        return members_per_device * num_devices
    if max_members_per_chunk is None:
        return None
    limits.check_positive_int("max_members_per_chunk", max_members_per_chunk)
    if max_members_per_chunk < num_devices:
        raise ValueError(
            f"max_members_per_chunk={max_members_per_chunk} is below the {num_devices} devices "
            "of the mesh (a chunk holds at least one member per device); raise it to "
            f"{num_devices} or more, or pass fewer devices."
        )
    return max_members_per_chunk // num_devices * num_devices


def replicated_data_bytes(split: data_lib.Split, evaluate_test: bool, *,
                          include_valid: bool = True) -> int:
    """Bytes of the data every device holds a copy of: train, validation and (if evaluated)
    test inputs and labels.

    Args:
      split: the data.
      evaluate_test: whether the test set goes to the devices too.
      include_valid: whether the validation set does (not with member row tables: then each
        member validates on rows of ``x_train`` and ``split.x_valid`` is never read).

    Returns:
      Bytes per device (every leaf of a dict ``x`` or ``y`` counted).
    """
    arrays = [split.x_train, split.y_train]
    if include_valid:
        arrays += [split.x_valid, split.y_valid]
    if evaluate_test:
        arrays += [split.x_test, split.y_test]
    return sum(datatree.nbytes(datatree.to_numpy(a)) for a in arrays)


def chunk_size(label: str, num_members: int, per_member: int, budget: float, data_bytes: int,
                layout: Layout, cap: int | None, members_per_device: int | None) -> int:
    """Members of one static group trained at once: as many as fit in 80% of the per-device
    ``budget`` next to the replicated data, at most ``cap``; exactly ``cap`` when the layout is
    pinned by ``members_per_device``."""
    num_devices = layout.num_devices
    room = budget * 0.8 - data_bytes
    if room <= 0:
        raise ValueError(
            f"the data alone (train, validation and test sets, {data_bytes / 2**20:.1f} MiB, "
            f"one copy per device) exceeds 80% of the memory budget of {budget / 2**20:.1f} MiB "
            "per device; raise memory_budget_bytes, use a smaller dataset, or pass "
            "evaluate_test=False to leave the test set off the devices."
        )
    per_device = int(room // max(per_member, 1))
    if per_device < 1:
        raise ValueError(
            f"one member of group {label} needs about {per_member / 2**20:.1f} MiB but only "
            f"{room / 2**20:.1f} MiB per device is left (80% of the {budget / 2**20:.1f} MiB "
            f"budget less {data_bytes / 2**20:.1f} MiB of data); use a smaller model or "
            "batch_size, or raise memory_budget_bytes."
        )
    if members_per_device is not None:
        if per_device < members_per_device:
            raise ValueError(
                f"members_per_device={members_per_device} does not fit: about {per_device} "
                f"member(s) of group {label} ({per_member / 2**20:.1f} MiB each) fit per device "
                f"in the memory budget; lower members_per_device or raise memory_budget_bytes."
            )
        return members_per_device * num_devices
    size = min(num_members, per_device * num_devices)
    return size if cap is None else min(size, cap)


def chunk_population_size(num_real: int, chunk: int, pad_to: int | None, layout: Layout) -> int:
    """Slots of a chunk of ``num_real`` members: the group's chunk size (or ``pad_to``) rounded
    up to a multiple of the device count."""
    # Every chunk of a group has the same size, so all chunks share one compiled program.
    size = max(num_real, chunk)
    if pad_to is not None:
        size = max(size, pad_to)
    return -(-size // layout.num_devices) * layout.num_devices

