"""The runner: :func:`run` executes a plan chunk by chunk, :func:`train` is its keyword form.

``run(task, configs, split, options)`` plans on the host (:mod:`jaxtune.engine.plan`: checks,
static groups, layout, chunk sizes), opens the checkpoint session if asked
(:mod:`jaxtune.engine.session`), trains every chunk (:mod:`jaxtune.engine.chunk`) and gathers
one :class:`~jaxtune.results.MemberResult` per member, in the order of ``configs``.

**Members.** Every member's identity is its config, its seed (``member_seeds``) and its fold
(``folds``); ``member_ids`` are the ids written into the results. With ``member_rows``
(cross-validation folds, aligned with ``configs``), members train on their ``train_rows`` of
``split.x_train`` and are validated on their ``valid_rows`` of it (weighted means over real
rows); ``split.x_valid`` is then never read. A scheduler (halving, Hyperband, PBT) acts between
segments: members it stops are recorded as ``"stopped"``; members it starts get new ids after
the largest of ``member_ids``.

**Overlap.** While a chunk trains, the programs of the next static groups compile in background
threads (:mod:`jaxtune.engine.precompile`), so a sweep of several groups pays little more than
one compile in wall time where the host has cores to spare (on by default with accelerators or
at least 4 CPU cores). Results and compile counts are the same as without it;
``JAXTUNE_OVERLAP=0``/``1`` turns it off/on and ``JAXTUNE_OVERLAP_THREADS`` sets the threads
(default 2).

**Checkpoints.** ``checkpoint`` is a directory (or a
:class:`jaxtune.checkpoint.Checkpointer`) to checkpoint into at segment boundaries
(docs/checkpointing.md; needs ``orbax-checkpoint``). ``resume`` continues the sweep
checkpointed there (from its last saved segment; a directory without a checkpoint yet starts
afresh). The results equal those of an uninterrupted run except ``wall_time_s``, the compile
counts and ``num_guarded_segments``.

**Results.** :class:`~jaxtune.results.Results` with one row per member, in the order of
``configs``. ``metadata["num_compilations"]`` counts the XLA compilations the call triggered and
``metadata["num_segment_compilations"]`` those of the training segment (one per static group on
a first call, zero when the same signatures ran before), in whichever thread they ran;
``metadata["num_guarded_segments"]`` counts the segments that ran the guarded scan (a member
diverged in them, or one had less than a segment left: see :mod:`jaxtune.engine.population`).

**Deadline.** ``hooks.deadline`` (a :class:`~jaxtune.timebudget.Deadline`) stops the run once
it has passed: the running segment ends (and its scheduler decision is applied), the chunk is
saved to the checkpoint, and no other chunk starts. Its members still training come back with
status ``"stopped"`` and ``extra["stopped_by"] == "time_budget"``; ``metadata["stopped_by"]``
is ``"time_budget"`` and ``metadata["members_not_started"]`` counts the members of the chunks
never started (they have no row). ``resume`` then continues to the rows of an uninterrupted run.

**Errors**, all raised before any compilation. ``ValueError``, ``TypeError``: bad configs, data,
step counts or optimizer names, hyperparameter values outside their valid ranges
(``optim.VALUE_RANGES`` for the names the group's optimizer and schedule read,
``task.value_ranges``), a name the engine or the task reads as static (``batch_size``,
``num_steps``, ``task.static_hparams``) declared dynamic, or a task that does not fit the data
(declared ``input_shape``/``num_classes``/``kind``, or shapes that fail the abstract trace), a
``task`` that is not a Task, a seed that is not a non-negative int, and a hyperparameter name
that nothing in the sweep reads: not the optimizer or schedule of any static group
(``optim.OPTIMIZER_HPARAMS``), not the engine (``batch_size``, ``num_steps``), not the task (the
names its init/loss/evaluate look up in ``hp`` while traced abstractly for some group, and
``task.extra_hparams``), nor ``sweep_reads``, with a "did you mean". An exception of the task's
own code met while tracing it (a ``NameError``, a wrong key) is raised as itself, with a note
naming the task function that raised it. ``JAXTUNE_OVERLAP`` or ``JAXTUNE_OVERLAP_THREADS`` set
to a value they do not take is a ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxtune import compile_cache, timebudget
from jaxtune import data as data_lib
from jaxtune.contracts import Scheduler, SegmentReport
from jaxtune.engine import plan as plan_lib
from jaxtune.engine import population, precompile
from jaxtune.engine import session as session_lib
from jaxtune.engine.chunk import (
    ChunkContext,
    DeviceData,
    chunk_unfinished,
    deadline_passed,
    finish_chunk,
    open_chunk,
    report_restored,
    run_chunk,
)
from jaxtune.engine.options import EngineOptions, Hooks
from jaxtune.engine.population import MemberRows
from jaxtune.engine.records import MemberRecord
from jaxtune.results import MemberResult, Results
from jaxtune.step import Step
from jaxtune.task import Task

__all__ = ["SEGMENT_PROGRAM", "RunOutput", "run", "train"]

#: The name JAX reports for the compiled training segment.
SEGMENT_PROGRAM = f"jit({population.run_segment.__name__})"


class RunOutput(NamedTuple):
    """What :func:`run` returns.

    Attributes:
      results: one row per member.
      params: with ``keep_params=True``, each member's final parameters in the order of
        ``results`` (host arrays); else ``None``.
    """

    results: Results
    params: list[Any] | None = None



def run(
    task: Task | Step,
    configs: Sequence[Mapping[str, Any]],
    split: data_lib.Split | None,
    options: EngineOptions,
    *,
    seed: int = 0,
    member_seeds: Sequence[int] | None = None,
    folds: Sequence[int | None] | None = None,
    member_ids: Sequence[int] | None = None,
    member_rows: MemberRows | None = None,
    hooks: Hooks | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    keep_params: bool = False,
) -> RunOutput:
    """Trains every config as one member of a population: the one entry every driver calls.

    Args:
      task: the :class:`~jaxtune.task.Task` or :class:`~jaxtune.step.Step` each member runs
        (a Task runs as :func:`~jaxtune.step.from_task`).
      configs: one dict per member, mapping hyperparameter names to values.
      split: the data; members train on ``split.train``, are validated on ``split.valid``
        after every segment (or on their ``member_rows``) and on ``split.test`` at the end if
        ``options.evaluate_test``. ``None`` for a Step with ``needs_data=False``.
      options: how to train (:class:`~jaxtune.engine.options.EngineOptions`).
      seed: the sweep seed.
      member_seeds: one seed per member (default 0 for all); part of its identity.
      folds: one fold index (or ``None``) per member; part of its identity.
      member_ids: ids written into the results (default ``0..len(configs)-1``).
      member_rows: per-member training/validation rows (cross-validation).
      hooks: progress callbacks and the scheduler (default: none).
      checkpoint: a checkpoint directory (or a driver's scope in one), or ``None``.
      resume: continue from ``checkpoint``.
      keep_params: also return every member's final parameters (a Step's carry, or what its
        ``params`` takes from it; for a Task its parameters).

    Returns:
      A :class:`RunOutput` (the module docstring describes the results' metadata).

    Raises:
      ValueError, TypeError: see the module docstring; all before any compilation.
    """
    compile_cache.ensure_compilation_cache()
    members = plan_lib.Members(seed, member_seeds, folds, member_ids, member_rows)
    plan = plan_lib.plan(task, configs, split, options, members)
    threads = precompile.overlap_threads(plan.layout.mesh.devices.flat[0].platform)
    return _run_plan(plan, split, Hooks() if hooks is None else hooks, checkpoint, resume,
                     keep_params, threads)


def _run_plan(plan: plan_lib.Plan, split: data_lib.Split | None, hooks: Hooks, checkpoint: Any,
              resume: bool, keep_params: bool, threads: int) -> RunOutput:
    """Trains a planned run: every chunk, then the rows in member order; ``threads`` compile
    later chunks' programs ahead (0: none)."""
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<the directory the sweep saved into>.")
    session = _open_session(plan, split, checkpoint, resume, keep_params, hooks)
    data = _place_data(plan, split)
    with compile_cache.CompileCounter() as counter:
        trained = _run_chunks(plan, data, hooks, session, keep_params, counter, threads)
    rows, params = trained.rows, trained.params
    if session is not None and session.num_restored_chunks:
        # Chunks finished before the resume: their rows (and parameters) from the checkpoint.
        specs = [chunk.group.spec for chunk in plan.chunks()]
        restored_rows, restored_params = session.restored_rows_and_params(
            lambda chunk: population.params_treedef(specs[chunk])
        )
        rows = restored_rows + rows
        params = (restored_params or [None] * len(restored_rows)) + params
    rows, params = _in_member_order(plan.member_ids, rows, params)
    counts = _counts(counter, trained.num_guarded)
    if session is not None:  # a resumed call counts what ran before the resume too
        session.counts = counts
        counts = session.total_counts()
    metadata = _metadata(plan, counts)
    if trained.not_started is not None:
        metadata.update(stopped_by=timebudget.STOPPED_BY,
                        members_not_started=trained.not_started)
    results = Results(rows, metadata)
    return RunOutput(results, params if keep_params else None)


def _open_session(plan: plan_lib.Plan, split: data_lib.Split | None, checkpoint: Any, resume: bool,
                  keep_params: bool, hooks: Hooks) -> session_lib.TrainSession | None:
    """The checkpoint session of the run (``None`` without ``checkpoint``)."""
    if checkpoint is None:
        return None
    arguments = session_lib.checkpoint_arguments(plan, split, keep_params,
                                                 hooks.scheduler is not None)
    session = session_lib.open_train_session(checkpoint, resume, arguments,
                                             next_id=max(plan.member_ids) + 1)
    if session.num_restored_chunks:
        report_restored(hooks, session.restored_member_steps())
    return session


def _place_data(plan: plan_lib.Plan, split: data_lib.Split | None) -> DeviceData:
    """The data, replicated on every device. With row tables, ``split.x_valid`` is not read."""
    layout = plan.layout
    if split is None:  # a data-free Step
        return DeviceData({}, None, None)
    train_data = layout.replicate({"x": split.x_train, "y": split.y_train})
    valid_data = None
    if plan.member_rows is None:
        valid_data = layout.replicate({"x": split.x_valid, "y": split.y_valid})
    test_data = None
    if plan.options.evaluate_test:
        test_data = layout.replicate({"x": split.x_test, "y": split.y_test})
    return DeviceData(train_data, valid_data, test_data)


class _ChunksRun(NamedTuple):
    """What :func:`_run_chunks` trained: rows, parameters, guarded segments, and (when the
    deadline stopped it) the members it never started; ``None`` when it ran to the end."""

    rows: list[MemberResult]
    params: list[Any]
    num_guarded: int
    not_started: int | None = None


def _run_chunks(plan: plan_lib.Plan, data: DeviceData, hooks: Hooks,
                session: session_lib.TrainSession | None, keep_params: bool,
                counter: compile_cache.CompileCounter, threads: int) -> _ChunksRun:
    """Trains every chunk not finished before a resume, until ``hooks.deadline`` passes.

    While a chunk trains, the programs of the chunks after it compile in ``threads``
    background threads (:mod:`jaxtune.engine.precompile`); the counter counts them too. A
    passed deadline is looked at after every segment and before every chunk but the first
    (so each call trains at least one segment): the progress is saved and no chunk starts."""
    next_id = max(plan.member_ids) + 1 if session is None else session.next_id
    done = 0 if session is None else session.num_done_chunks
    chunks = [chunk for chunk in plan.chunks() if chunk.index >= done]  # others: checkpoint
    out = _ChunksRun([], [], 0)
    with precompile.Programs(threads) as programs:
        precompile.prepare(programs, plan, chunks, data, _shared_key(plan))
        for position, chunk in enumerate(chunks):
            if position and deadline_passed(hooks.deadline):
                if session is not None:
                    session.save_progress()
                return out._replace(not_started=sum(len(c.indices) for c in chunks[position:]))
            members = [MemberRecord(plan.member_ids[i], dict(plan.configs[i]),
                                    plan.member_seeds[i], plan.folds[i]) for i in chunk.indices]
            ctx = _chunk_context(plan, chunk, members[0], data, hooks, session, programs)
            state = run_chunk(ctx, open_chunk(ctx, members, next_id))
            unfinished = chunk_unfinished(ctx, state)
            if unfinished and session is not None:  # saved before finish_chunk adds to it
                session.counts = _counts(counter, out.num_guarded + state.num_guarded)
                session.save_chunk(chunk.index, state)
            finished = finish_chunk(ctx, state, keep_params)
            next_id = state.next_member_id
            out = out._replace(num_guarded=out.num_guarded + state.num_guarded)
            chunk_rows = [_stopped_by_deadline(member.result(chunk.group.spec.label), member)
                          if unfinished else member.result(chunk.group.spec.label)
                          for member in finished]
            out.rows.extend(chunk_rows)
            out.params.extend(member.params for member in finished)
            if unfinished:
                return out._replace(not_started=sum(len(c.indices) for c in chunks[position + 1:]))
            if session is not None:
                session.counts = _counts(counter, out.num_guarded)
                session.chunk_done(
                    chunk.index, chunk_rows,
                    [m.params for m in finished] if keep_params else None, next_id,
                    final=chunk.index == plan.num_chunks - 1,
                )
    return out


def _stopped_by_deadline(row: MemberResult, member: MemberRecord) -> MemberResult:
    """A row of a chunk the deadline stopped: a member still training is ``"stopped"``, with
    ``extra["stopped_by"]`` saying why (its metrics are those of its last segment)."""
    if member.status != "running":
        return row
    return dataclasses.replace(row, status="stopped",
                               extra={**row.extra, "stopped_by": timebudget.STOPPED_BY})


def _chunk_context(plan: plan_lib.Plan, chunk: plan_lib.ChunkPlan, filler: MemberRecord,
                   data: DeviceData, hooks: Hooks,
                   session: session_lib.TrainSession | None,
                   programs: precompile.Programs) -> ChunkContext:
    """What one chunk's loop needs that does not change while it runs."""
    start_time = time.perf_counter()
    rows = None
    if plan.member_rows is not None:
        rows = plan.layout.put(MemberRows(*(
            _pad(np.asarray(a)[chunk.indices], chunk.population_size) for a in plan.member_rows
        )))
    return ChunkContext(chunk, len(plan.groups), plan.layout, plan.seed, filler, rows, data,
                        _shared_key(plan), hooks, session, start_time, programs)


def _shared_key(plan: plan_lib.Plan) -> jax.Array:
    """The key of the minibatches every member shares (``batch_mode="shared"``)."""
    return jax.random.fold_in(jax.random.PRNGKey(plan.seed), 0x5EED)


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` padded to ``size`` rows with copies of its first row."""
    if array.shape[0] == size:
        return array
    reps = np.repeat(array[:1], size - array.shape[0], axis=0)
    return np.concatenate([array, reps], axis=0)


def _in_member_order(member_ids: Sequence[int], rows: list[MemberResult],
                     params: list[Any]) -> tuple[list[MemberResult], list[Any]]:
    """Rows and parameters in the order of ``member_ids``; members a scheduler started follow,
    by id."""
    order = {member_id: i for i, member_id in enumerate(member_ids)}
    ranked = sorted(
        range(len(rows)),
        key=lambda i: (order.get(rows[i].member_id, len(member_ids)), rows[i].member_id),
    )
    return [rows[i] for i in ranked], [params[i] for i in ranked]


def _counts(counter: compile_cache.CompileCounter, num_guarded: int) -> dict[str, int]:
    """The counts of a run's metadata: compilations and guarded segments."""
    return {
        "num_compilations": counter.count,
        "num_segment_compilations": counter.by_function.get(SEGMENT_PROGRAM, 0),
        "num_guarded_segments": num_guarded,
    }


def _metadata(plan: plan_lib.Plan, counts: Mapping[str, int]) -> dict[str, Any]:
    options = plan.options
    return {
        **counts,
        "num_static_groups": len(plan.groups),
        "num_devices": plan.layout.num_devices,
        "num_processes": jax.process_count(),
        "num_chunks": plan.num_chunks,
        "members_per_device": options.members_per_device,
        "member_loop": options.member_loop,
        "member_memory_bytes": {g.spec.label: g.member_bytes for g in plan.groups},
        "memory_budget_bytes": plan.budget_bytes,
        "seed": plan.seed,
        "task": plan.task.name,
        "metric_modes": dict(plan.task.metric_modes),
    }


def train(
    task: Task | Step,
    configs: Sequence[Mapping[str, Any]],
    split: data_lib.Split | None,
    *,
    num_steps: int,
    batch_size: int | None = 128,
    steps_per_segment: int = 50,
    seed: int = 0,
    member_seeds: Sequence[int] | None = None,
    folds: Sequence[int | None] | None = None,
    member_ids: Sequence[int] | None = None,
    static_names: Sequence[str] | None = None,
    devices: Sequence[jax.Device] | None = None,
    pad_to: int | None = None,
    max_members_per_chunk: int | None = None,
    members_per_device: int | None = None,
    memory_budget_bytes: int | None = None,
    evaluate_test: bool = True,
    on_segment: Callable[[SegmentReport], None] | None = None,
    return_params: bool = False,
    member_rows: MemberRows | None = None,
    standardize: bool = False,
    batch_mode: str = "independent",
    member_loop: str | None = None,
    scheduler: Scheduler | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    allow_unused_hparams: bool = False,
    sweep_reads: Iterable[str] = (),
) -> Results | tuple[Results, list[Any]]:
    """Trains every configuration as one member of a vectorized population (:func:`run`).

    Args:
      task, configs, split, seed, member_seeds, folds, member_ids, member_rows, checkpoint,
        resume: as for :func:`run`.
      num_steps, batch_size, steps_per_segment, static_names, devices, pad_to,
        max_members_per_chunk, members_per_device, memory_budget_bytes, evaluate_test,
        standardize, batch_mode, member_loop, allow_unused_hparams, sweep_reads: the
        :class:`~jaxtune.engine.options.EngineOptions` of the same names.
      on_segment: called on the host after every segment with a :class:`SegmentReport`; its
        ``restored(member_steps)`` method, if any (:class:`~jaxtune.ProgressBar` has one), is
        told the member-steps a resume restored, which no report covers.
      return_params: also return every member's final parameters.
      scheduler: a :class:`Scheduler` acting between segments (halving, Hyperband, PBT).

    Returns:
      :class:`~jaxtune.results.Results`, one row per member in the order of ``configs``; with
      ``return_params``, a tuple ``(results, params)`` where ``params[i]`` is member i's final
      parameter pytree (numpy arrays).

    Raises:
      ValueError, TypeError: see :func:`run`; all before any compilation.

    Example:
      >>> from jaxtune import data, task as task_lib
      >>> split = data.standardize(data.train_valid_test_split(data.load_dataset("digits")))
      >>> task = task_lib.classification_task("mlp", num_classes=10, input_shape=(64,))
      >>> configs = [{"learning_rate": lr, "optimizer": "adam", "width": 64}
      ...            for lr in (1e-3, 3e-3)]
      >>> results = train(task, configs, split, num_steps=100)  # doctest: +SKIP
    """
    hooks = Hooks.of(on_segment, scheduler=scheduler)
    options = EngineOptions(
        num_steps=num_steps, batch_size=batch_size, steps_per_segment=steps_per_segment,
        static_names=static_names, devices=devices, pad_to=pad_to,
        max_members_per_chunk=max_members_per_chunk, members_per_device=members_per_device,
        memory_budget_bytes=memory_budget_bytes, evaluate_test=evaluate_test,
        standardize=standardize, batch_mode=batch_mode, member_loop=member_loop,
        allow_unused_hparams=allow_unused_hparams, sweep_reads=sweep_reads,
    )
    out = run(task, configs, split, options, seed=seed, member_seeds=member_seeds, folds=folds,
              member_ids=member_ids, member_rows=member_rows, hooks=hooks,
              checkpoint=checkpoint, resume=resume, keep_params=return_params)
    return (out.results, out.params) if return_params else out.results
