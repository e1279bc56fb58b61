"""Overlap: the next static groups' programs compile while the first group trains.

A sweep of several static groups runs one chunk after another, and each group's first chunk
compiles its programs (set-up, segment, test evaluation) before it trains. Compiling is
host work (XLA), training is device work (or, on a CPU, the other cores), so the two can run at
once: :func:`prepare` lowers and compiles the programs of every chunk after the first with
JAX's ahead-of-time API (``jitted.lower(*abstract_args).compile()``) in a few background
threads, and the chunk loop calls :meth:`Programs.call` instead of the jit.

``Programs.call(jitted, *args)`` runs the executable prepared for exactly this call (the same
jit, the same static values, the same argument shapes, dtypes and shardings) and otherwise the
jit itself, as before. The prepared executable is the one called: whether a compile ahead of
time also serves the jit's own cache is JAX's business (it did not when the abstract arguments'
shardings differed from the call's), so nothing here relies on it. A call whose program is
still compiling waits for it, and one whose compile has not started yet takes it back and
compiles in its own thread.
The executable is the program the jit would have compiled for the call (the same lowering of
the same function), so results are bit-identical with and without the overlap, and the
compile counts are the same: a prepared program is compiled once, in its thread (JAX reports
the compile there, and :class:`~jaxtune.compile_cache.CompileCounter` counts every thread),
and never again by the jit.

Which programs are prepared: for every chunk after the first (and after those a resume
skips), its set-up and (fast) segment programs, and its test evaluation when the run
evaluates the test set. The scheduler's update program is not: it runs only when a scheduler
decides something, and preparing it would compile a program the run may never use. Nor is the
guarded segment program (``population.guarded_jit``): it runs only when a member diverges or,
with ``member_loop="vmap"``, when live members have different numbers of steps left in a
segment, and its jit compiles it then (lazily, on the run's thread). A program the
first chunk runs is never prepared (its jit compiles it, and a later group may share it: the
set-up program is keyed without the batch settings), and a program shared by later chunks is
prepared once.

The overlap acts when a run has programs to prepare (several static groups, or chunks of
different sizes), and by default where it can help: with accelerators (the host's cores are
free while they train) or on a CPU-only host with at least :data:`MIN_CPU_CORES` usable cores.
XLA compiles a program on one core, so compiling ahead needs cores nothing else uses; on the
project's 2-core CPU machine, shared with other work, it measured no gain
(docs/benchmarks.md, "Overlap"). ``JAXTUNE_OVERLAP=1`` (or ``on``) turns it on anyway,
``JAXTUNE_OVERLAP=0`` (or ``off``) off: every program then compiles when its chunk first calls
it. ``JAXTUNE_OVERLAP_THREADS`` sets the number of compiling threads (default 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune.engine import population
from jaxtune.engine.layout import Layout
from jaxtune.engine.plan import ChunkPlan, Plan

__all__ = [
    "DEFAULT_THREADS", "ENV_SWITCH", "ENV_THREADS", "MIN_CPU_CORES", "ProgramCall", "Programs",
    "chunk_calls", "overlap_threads", "prepare", "signature", "usable_cores",
]

#: The environment variable that turns the overlap on (``1``, ``on``, ``true``, ``yes``), off
#: (``0``, ``off``, ``false``, ``no``) or leaves it to the machine (unset or ``auto``).
ENV_SWITCH = "JAXTUNE_OVERLAP"
#: The environment variable naming how many threads compile ahead (a positive integer).
ENV_THREADS = "JAXTUNE_OVERLAP_THREADS"
#: Threads compiling ahead when :data:`ENV_THREADS` is not set.
DEFAULT_THREADS = 2
#: Below this many usable CPU cores, a CPU-only run leaves the overlap off by default: XLA
#: compiles on one core and trains on all of them, so on a small machine the compiling threads
#: only take cores from the training and from each other (docs/benchmarks.md, "Overlap").
MIN_CPU_CORES = 4
_ON_WORDS = ("1", "on", "true", "yes")
_OFF_WORDS = ("0", "off", "false", "no")


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def overlap_threads(platform: str, environ: Mapping[str, str] | None = None) -> int:
    """Threads compiling later chunks' programs ahead; 0 when the overlap is off.

    :data:`ENV_SWITCH` ``=0`` turns it off and ``=1`` on. Unset (or ``auto``), it is on when
    the devices are accelerators (the host's cores are free while they train) or the host has
    at least :data:`MIN_CPU_CORES` usable cores, and off on a smaller CPU-only machine. The
    threads are :data:`ENV_THREADS` (default :data:`DEFAULT_THREADS`).

    Args:
      platform: the devices' platform (``"cpu"``, ``"gpu"``, ``"tpu"``...).
      environ: the environment to read (default ``os.environ``).

    Raises:
      ValueError: either variable is set to a value it does not take.
    """
    environ = os.environ if environ is None else environ
    switch = environ.get(ENV_SWITCH, "").strip().lower()
    if switch not in ("", "auto", *_ON_WORDS, *_OFF_WORDS):
        raise ValueError(
            f"{ENV_SWITCH}={environ[ENV_SWITCH]!r}: must be 1/on, 0/off or auto (the default: "
            f"on with accelerators or at least {MIN_CPU_CORES} CPU cores)"
        )
    text = environ.get(ENV_THREADS, "").strip()
    if text and (not text.isdigit() or int(text) < 1):
        raise ValueError(
            f"{ENV_THREADS}={text!r}: must be a positive integer (threads compiling ahead); "
            f"unset it for {DEFAULT_THREADS}, or set {ENV_SWITCH}=0 to turn the overlap off"
        )
    if switch in _OFF_WORDS:
        return 0
    if switch not in _ON_WORDS and platform == "cpu" and usable_cores() < MIN_CPU_CORES:
        return 0
    return int(text) if text else DEFAULT_THREADS


# --------------------------------------------------------------------------- call signatures


def _placement(sharding: Any, shape: tuple[int, ...]) -> Hashable:
    """Where an array of ``shape`` lives under ``sharding``: which device holds which part,
    and in which memory. Equivalent shardings (on one device, the population axis and
    replicated) give the same placement, as they give the jit the same program."""
    parts = sorted(
        (device.id, tuple((i.start, i.stop, i.step) for i in index))
        for device, index in sharding.devices_indices_map(shape).items()
    )
    return tuple(parts), sharding.memory_kind


def _leaf_signature(leaf: Any) -> Hashable:
    """What of one argument leaf decides the compiled program: an array's type and placement
    (an uncommitted array's device is not part of it), any other leaf's value (static)."""
    if isinstance(leaf, jax.ShapeDtypeStruct):
        placement = None if leaf.sharding is None else _placement(leaf.sharding, leaf.shape)
        return ("array", leaf.shape, np.dtype(leaf.dtype), leaf.weak_type, placement)
    if isinstance(leaf, jax.Array):
        placement = _placement(leaf.sharding, leaf.shape) if leaf.committed else None
        return ("array", leaf.shape, np.dtype(leaf.dtype), jax.typeof(leaf).weak_type,
                placement)
    return ("value", leaf)


def signature(jitted: Callable[..., Any], args: Sequence[Any]) -> Hashable:
    """The key of the program ``jitted(*args)`` runs: the jit itself, the arguments' tree
    structure, and each leaf's :func:`_leaf_signature`. Abstract arguments
    (``jax.ShapeDtypeStruct``) and the concrete ones a chunk passes give the same key exactly
    when they give the same program."""
    leaves, treedef = jax.tree_util.tree_flatten(tuple(args))
    return (id(jitted), treedef, tuple(_leaf_signature(leaf) for leaf in leaves))


def _is_static(arg: Any) -> bool:
    """An argument the engine's jits take as static: one leaf that is not an array (a
    ``GroupSpec``, a sharding, an evaluation prefix). ``None`` is an empty tree, not static."""
    leaves = jax.tree_util.tree_leaves(arg)
    return (len(leaves) == 1 and leaves[0] is arg
            and not isinstance(arg, (jax.Array, jax.ShapeDtypeStruct, np.ndarray)))


class ProgramCall(NamedTuple):
    """One call a chunk will make: ``jitted(*args)`` with abstract or concrete arguments."""

    jitted: Any
    args: tuple[Any, ...]


class _Prepared(NamedTuple):
    """A compiled executable and how to call it: the positions of its traced arguments."""

    compiled: Any
    traced: tuple[int, ...]


def _trace_context() -> tuple[dict[str, Any], Any]:
    """What of this thread's JAX settings a trace reads: the configuration (with the thread's
    own context managers, such as ``jax.enable_x64``) and the ambient mesh."""
    return jax.config.values, jax.sharding.get_abstract_mesh()


def _compile(call: ProgramCall, context: tuple[dict[str, Any], Any]) -> _Prepared | None:
    """Lowers and compiles ``call`` ahead of time; ``None`` when this thread would not trace it
    as the caller's thread (``context``) does, or the executable would not take the chunk's
    arguments as the jit does (then the jit runs the call)."""
    if _trace_context() != context:
        return None  # a context manager of the caller's thread: its jit traces differently
    traced = tuple(i for i, arg in enumerate(call.args) if not _is_static(arg))
    compiled = call.jitted.lower(*call.args).compile()
    expected = jax.tree_util.tree_structure((tuple(call.args[i] for i in traced), {}))
    if compiled.in_tree != expected:
        return None
    return _Prepared(compiled, traced)


# --------------------------------------------------------------------------- the programs


class Programs:
    """The executables compiled ahead for a run, by :func:`signature`.

    ``call`` is what the chunk loop calls instead of a jit. Without ``threads`` (the overlap
    off) nothing is prepared and every call is the jit's. Use as a context manager (or call
    :meth:`close`) so that no compile outlives the run. Its methods are called from one
    thread (the run's); only the compiles run in others.

    Attributes:
      num_prepared: programs submitted for compiling ahead.
      num_used: calls run by a prepared executable.
    """

    def __init__(self, threads: int = 0) -> None:
        self._pool = (ThreadPoolExecutor(threads, thread_name_prefix="jaxtune-compile")
                      if threads > 0 else None)
        self._futures: dict[Hashable, Future[_Prepared | None]] = {}
        self.num_prepared = 0
        self.num_used = 0

    @property
    def active(self) -> bool:
        """Whether programs are compiled ahead (threads were given)."""
        return self._pool is not None

    def prepare(self, calls: Iterable[ProgramCall], skip: Iterable[ProgramCall] = ()) -> None:
        """Starts compiling each of ``calls`` not prepared already and not in ``skip`` (the
        calls of the chunk about to run, whose jit compiles them), in this thread's trace
        context, which the compiling threads check they share."""
        if self._pool is None:
            return
        context = _trace_context()
        skipped = {signature(call.jitted, call.args) for call in skip}
        for call in calls:
            if not hasattr(call.jitted, "lower"):
                continue  # not a jit (a test's stand-in): the call runs it as it is
            key = signature(call.jitted, call.args)
            if key not in self._futures and key not in skipped:
                self._futures[key] = self._pool.submit(_compile, call, context)
                self.num_prepared += 1

    def call(self, jitted: Callable[..., Any], *args: Any) -> Any:
        """``jitted(*args)``, by the executable prepared for exactly this call if there is one.

        A program still compiling is waited for; one not started yet is taken back and the
        jit compiles it here. A prepared compile that failed leaves the call to the jit, which
        raises the error where a run without the overlap would.
        """
        if not self._futures:
            return jitted(*args)
        key = signature(jitted, args)
        future = self._futures.get(key)
        if future is None:
            return jitted(*args)
        if future.cancel():
            del self._futures[key]
            return jitted(*args)
        try:
            prepared = future.result()
        except Exception:  # the jit below compiles again and raises it where it would
            prepared = None
        if prepared is None:
            del self._futures[key]
            return jitted(*args)
        self.num_used += 1
        return prepared.compiled(*(args[i] for i in prepared.traced))

    def close(self) -> None:
        """Stops what has not started and waits for the compiles that have (an XLA compile
        cannot be interrupted); the executables are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()

    def __enter__(self) -> Programs:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- a chunk's calls


def _population_struct(layout: Layout, size: int, shape: tuple[int, ...],
                       dtype: Any) -> jax.ShapeDtypeStruct:
    """An abstract ``[size, *shape]`` array sharded on the population axis (``layout.put``)."""
    return jax.ShapeDtypeStruct((size, *shape), np.dtype(dtype), sharding=layout.population)


def chunk_calls(plan: Plan, chunk: ChunkPlan, data: tuple[Any, Any, Any],
                shared_key: jax.Array) -> list[ProgramCall]:
    """The calls of the programs every run of ``chunk`` makes, with abstract arguments: the
    set-up, the segment, and (with a test set) the test evaluation.

    Args:
      plan: the run's plan.
      chunk: the chunk.
      data: the ``(train, valid, test)`` data on device (``valid``/``test`` may be ``None``).
      shared_key: the key of common minibatches, as the chunk passes it.

    Returns:
      The calls, in the order the chunk makes them.
    """
    layout, spec, size = plan.layout, chunk.group.spec, chunk.population_size
    train, valid, test = data
    dynamic = {n: _population_struct(layout, size, (), np.float32) for n in spec.dynamic_names}
    rows = None
    if plan.member_rows is not None:
        rows = population.MemberRows(*(
            _population_struct(layout, size, np.shape(a)[1:], np.asarray(a).dtype)
            for a in plan.member_rows
        ))
    keys = _population_struct(layout, size, (2,), np.uint32)
    alive = _population_struct(layout, size, (), np.bool_)
    budgets = _population_struct(layout, size, (), np.int32)
    init = ProgramCall(population.init_jit,
                       (spec.setup, layout.population, keys, dynamic, rows, train, alive))
    # Every leaf of the state has the population axis, and the set-up program pins it there.
    state = jax.tree_util.tree_map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, weak_type=s.weak_type,
                                       sharding=layout.population),
        jax.eval_shape(init.jitted, *init.args),
    )
    calls = [init, ProgramCall(population.segment_jit, (
        spec, layout.population, state, dynamic, rows, shared_key, jnp.int32(0), train, valid,
        budgets,
    ))]
    if test is not None:
        calls.append(ProgramCall(population.evaluate_jit, (
            spec.setup, layout.population, state, dynamic, None, train, test, "test",
        )))
    return calls


def prepare(programs: Programs, plan: Plan, chunks: Sequence[ChunkPlan],
            data: tuple[Any, Any, Any], shared_key: jax.Array) -> None:
    """Starts compiling the programs of the chunks after ``chunks[0]`` (which is about to run
    and compiles its own, through the jit).

    Chunks of one group and one population size run the same programs: each such pair is
    traced once, and not at all when it is the first chunk's. Groups may share programs too
    (the set-up and evaluation programs are keyed without the batch settings): a program of
    the first chunk is never prepared, and a program shared by later chunks once. Nothing is
    traced when the overlap is off or no later chunk has programs of its own.
    """
    if not programs.active or len(chunks) < 2:
        return
    distinct: dict[tuple[int, int], ChunkPlan] = {}
    for chunk in chunks:
        distinct.setdefault((chunk.group_index, chunk.population_size), chunk)
    first, *later = distinct.values()
    if not later:
        return
    programs.prepare([call for chunk in later
                      for call in chunk_calls(plan, chunk, data, shared_key)],
                     skip=chunk_calls(plan, first, data, shared_key))
