"""The engine's side of resuming: what a chunk saves, and how a run continues from it.

:mod:`jaxtune.checkpoint` stores documents and arrays; this module decides what the engine
puts there (finished members' rows and parameters, the running chunk's :class:`ChunkState`)
and turns a stored step back into a :class:`ChunkState`. The scheduler's state is not stored:
it is a pure function of the views it was given, which are, so a resume replays it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxtune import datatree, jsonio
from jaxtune.checkpoint import (
    Checkpointer,
    Store,
    TrainScope,
    fingerprint,
    pack_curves,
    split_digest,
    to_json,
    unpack_curves,
)
from jaxtune.contracts import Scheduler, SlotView
from jaxtune.engine.layout import Layout, put_like, to_host
from jaxtune.engine.plan import Plan
from jaxtune.engine.records import ChunkState, MemberRecord
from jaxtune.results import MemberResult

__all__ = [
    "TrainSession", "checkpoint_arguments", "open_train_session", "replay_scheduler",
    "view_from_json", "view_to_json",
]


class TrainSession:
    """Checkpointing of one :func:`jaxtune.train` call (on its own, or one round of ``tune``).

    Holds what finished chunks produced (restored or new) and saves the running chunk's
    progress; the runner calls :meth:`restore_chunk`, :meth:`save_chunk` and
    :meth:`chunk_done`.
    """

    def __init__(self, store: Store, arguments: Mapping[str, Any],
                 outer: Mapping[str, Any] | None, scope: Any, next_id: int,
                 restore: bool, outer_arrays: Mapping[str, np.ndarray] | None = None) -> None:
        self.store = store
        self.fingerprint = fingerprint(arguments)
        self.outer = dict(outer or {})
        self.outer_arrays = dict(outer_arrays or {})
        self.scope = scope
        self.done_rows: list[dict[str, Any]] = []
        self.done_params: list[tuple[int, list[bool]]] = []  # (chunk, has-params per row)
        self.done_arrays: dict[str, np.ndarray] = {}
        self.num_done_chunks = self.num_restored_chunks = self._num_restored_rows = 0
        self.next_id = next_id
        self._chunk: dict[str, Any] | None = None
        self._chunk_arrays: dict[str, np.ndarray] = {}
        self._packed_rows: tuple[int, list[dict[str, Any]], dict[str, np.ndarray]] | None = None
        #: Counts of the engine's metadata (compilations...) before the resume, and this run's
        #: (set by the engine): a resumed call's metadata covers the whole call.
        self.restored_counts: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        if not restore:
            return
        latest = store.latest()
        if latest is None:
            return
        document, arrays = latest
        section = document.get("train")
        if not isinstance(section, dict) or section.get("scope") != to_json(scope):
            return  # nothing saved for this call yet (e.g. tune saved only finished rounds)
        if section.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"checkpoint {str(store.checkpointer.directory)!r} holds a train() call with "
                "other arguments than this one (configs, seeds, data, steps or chunking differ);"
                " resume with the original arguments, or use a new checkpoint directory"
            )
        self.done_rows = unpack_curves(section["rows"], arrays, "rows")
        self.done_params = [(int(c), list(has)) for c, has in section["params"]]
        self.done_arrays = {k: v for k, v in arrays.items() if k.startswith("params.")}
        self.num_done_chunks = self.num_restored_chunks = int(section["num_done_chunks"])
        self._num_restored_rows = len(self.done_rows)
        self.restored_counts = {k: int(v) for k, v in dict(section.get("counts", {})).items()}
        self.next_id = int(section["next_id"])
        self._chunk = section.get("chunk")
        self._chunk_arrays = {k: v for k, v in arrays.items() if k.startswith("chunk.")}
        if section.get("chunk") is None and self._chunk_arrays:
            raise ValueError("checkpoint is damaged: arrays of a chunk without its record")

    # ---- the running chunk ----

    def restore_chunk(self, chunk_index: int, fresh: ChunkState, layout: Layout,
                      scheduler: Scheduler | None) -> ChunkState | None:
        """Chunk ``chunk_index`` as saved, or ``None`` when it has no saved progress.

        ``fresh`` is the chunk's state before its first segment: the saved population is
        checked against it and placed as it is (so the compiled programs run on).
        """
        chunk = self._chunk
        if chunk is None or int(chunk["index"]) != chunk_index:
            return None
        template = jax.tree_util.tree_leaves(fresh.population)
        leaves = [put_like(value, like)
                  for value, like in zip(self._saved_leaves(template), template, strict=True)]
        population = jax.tree_util.tree_unflatten(
            jax.tree_util.tree_structure(fresh.population), leaves)
        dynamic = {name: self._chunk_arrays[f"chunk.dynamic.{name}"] for name in fresh.dynamic}
        members = unpack_curves(chunk["members"], self._chunk_arrays, "chunk.members")
        slots = [None if i < 0 else MemberRecord.from_json(members[i]) for i in chunk["slots"]]
        step, alive = to_host((population.step, population.alive))
        step = np.asarray(step, np.int64)
        views = tuple(chunk["views"])
        scheduler_state = None
        if scheduler is not None and views:
            scheduler_state = replay_scheduler(scheduler, views, step.dtype, alive.dtype)
        return fresh._replace(
            population=population, dynamic=layout.put(dynamic), slots=tuple(slots),
            finished=tuple(MemberRecord.from_json(m) for m in members[len(chunk["slots"]):]),
            step=step, alive=alive, previous_steps=step.copy(),
            segment_index=int(chunk["segment_index"]), num_diverged=int(chunk["num_diverged"]),
            scheduler_state=scheduler_state, views=views,
            saved_segment=int(chunk["segment_index"]),
        )

    def _saved_leaves(self, template_leaves: Sequence[Any]) -> list[np.ndarray]:
        """The saved population's leaves, checked against a fresh population's."""
        leaves = []
        for i, template in enumerate(template_leaves):
            value = self._chunk_arrays.get(f"chunk.state.{i:05d}")
            if value is None or value.shape != tuple(template.shape) or (
                value.dtype != np.dtype(template.dtype)
            ):
                raise ValueError(
                    f"checkpoint {str(self.store.checkpointer.directory)!r}: the saved "
                    f"population (leaf {i}) does not match this sweep's model; it was written "
                    "by another version of the task or jaxtune"
                )
            leaves.append(value)
        if f"chunk.state.{len(template_leaves):05d}" in self._chunk_arrays:
            raise ValueError(
                f"checkpoint {str(self.store.checkpointer.directory)!r}: the saved population "
                "has more arrays than this sweep's model"
            )
        return leaves

    def save_chunk(self, chunk_index: int, state: ChunkState) -> None:
        """Saves the running chunk's progress (with everything finished before it)."""
        self.next_id = state.next_member_id
        # Slots first (padding slots as -1), then the members that left them.
        records = [m.to_json() for m in state.slots if m is not None]
        records += [m.to_json() for m in state.finished]
        members, arrays = pack_curves(records, "chunk.members")
        positions, count = [], 0
        for member in state.slots:
            positions.append(-1 if member is None else count)
            count += member is not None
        chunk = {
            "index": chunk_index, "segment_index": state.segment_index,
            "num_diverged": state.num_diverged, "slots": positions, "members": members,
            "views": list(state.views),
        }
        state_leaves = to_host(jax.tree_util.tree_leaves(state.population))
        arrays.update({f"chunk.state.{i:05d}": np.asarray(v) for i, v in enumerate(state_leaves)})
        arrays.update({f"chunk.dynamic.{k}": np.asarray(v)
                       for k, v in to_host(state.dynamic).items()})
        self._save(chunk, arrays)

    def chunk_done(self, chunk_index: int, rows: Sequence[MemberResult],
                   params: Sequence[Any] | None, next_id: int, final: bool) -> None:
        """Records a finished chunk's rows and parameters; saves if due (always if ``final``)."""
        self.done_rows.extend(row.to_dict() for row in rows)
        self.num_done_chunks = chunk_index + 1
        self.next_id = next_id
        if params is not None:
            has = [p is not None for p in params]
            present = [p for p in params if p is not None]
            self.done_params.append((chunk_index, has))
            if present:
                for i, leaves in enumerate(zip(*(jax.tree_util.tree_leaves(p) for p in present),
                                               strict=True)):
                    self.done_arrays[f"params.{chunk_index}.{i:05d}"] = np.stack(leaves)
        if final or self.store.due():
            self._save(None, {})

    def save_progress(self) -> None:
        """Saves the finished chunks now, whether or not a save is due (a deadline passed
        between two chunks: a resume starts at the next one)."""
        self._save(None, {})

    def total_counts(self) -> dict[str, int]:
        """The restored counts plus this run's (see :attr:`counts`)."""
        names = set(self.restored_counts) | set(self.counts)
        return {k: self.restored_counts.get(k, 0) + self.counts.get(k, 0) for k in sorted(names)}

    def restored_member_steps(self) -> int:
        """Steps taken by the members of the chunks finished before the resume."""
        rows = self.done_rows[: self._num_restored_rows]
        return sum(row["curve_steps"][-1] for row in rows if row.get("curve_steps"))

    def restored_rows_and_params(
        self, treedef_of: Callable[[int], Any]
    ) -> tuple[list[Any], list[Any]]:
        """Rows (``MemberResult``) of the chunks finished before the resume, and their
        parameters (``[]`` when they were not returned).

        ``treedef_of(chunk)`` is the parameter tree structure of that chunk's group.
        """
        rows = [MemberResult.from_dict(r) for r in self.done_rows[: self._num_restored_rows]]
        params: list[Any] = []
        for chunk, has in self.done_params:
            if chunk >= self.num_restored_chunks:
                break
            leaves = []
            while f"params.{chunk}.{len(leaves):05d}" in self.done_arrays:
                leaves.append(self.done_arrays[f"params.{chunk}.{len(leaves):05d}"])
            treedef = treedef_of(chunk) if any(has) else None
            position = 0
            for present in has:
                if present:
                    member = [leaf[position] for leaf in leaves]
                    params.append(jax.tree_util.tree_unflatten(treedef, member))
                    position += 1
                else:
                    params.append(None)
        if params and len(params) != len(rows):
            raise ValueError("checkpoint is damaged: finished rows and parameters disagree")
        return rows, params

    def _save(self, chunk: dict[str, Any] | None, chunk_arrays: Mapping[str, np.ndarray]) -> None:
        if self._packed_rows is None or self._packed_rows[0] != len(self.done_rows):
            self._packed_rows = (len(self.done_rows), *pack_curves(self.done_rows, "rows"))
        _, rows, row_arrays = self._packed_rows
        section = {
            "scope": self.scope, "fingerprint": self.fingerprint, "rows": rows,
            "params": self.done_params, "num_done_chunks": self.num_done_chunks,
            "next_id": self.next_id, "chunk": chunk, "counts": self.total_counts(),
        }
        self.store.save({**self.outer, "train": section},
                        {**self.outer_arrays, **self.done_arrays, **row_arrays, **chunk_arrays})


def view_to_json(view: SlotView) -> dict[str, Any]:
    """A scheduler's ``SlotView`` as JSON data (metrics kept as exact float32 values)."""
    return {
        "segment": view.segment, "step": np.asarray(view.step).tolist(),
        "alive": np.asarray(view.alive).tolist(), "finished": np.asarray(view.finished).tolist(),
        "metrics": {k: np.asarray(v, np.float32).tolist() for k, v in view.metrics.items()},
        "configs": [dict(c) for c in view.configs], "member_ids": list(view.member_ids),
        "num_steps": view.num_steps, "steps_per_segment": view.steps_per_segment,
    }


def view_from_json(record: Mapping[str, Any], step_dtype: Any, alive_dtype: Any) -> SlotView:
    """Inverse of :func:`view_to_json`, with the host dtypes of ``step`` and ``alive``."""
    return SlotView(
        segment=int(record["segment"]), step=np.asarray(record["step"], step_dtype),
        alive=np.asarray(record["alive"], alive_dtype),
        finished=np.asarray(record["finished"], bool),
        metrics={k: np.asarray(v, np.float32) for k, v in record["metrics"].items()},
        configs=[dict(c) for c in record["configs"]], member_ids=list(record["member_ids"]),
        num_steps=int(record["num_steps"]), steps_per_segment=int(record["steps_per_segment"]),
    )


def replay_scheduler(scheduler: Scheduler, views: Sequence[Mapping[str, Any]], step_dtype: Any,
                     alive_dtype: Any) -> Any:
    """The scheduler's state after the stored views: ``init`` on the first, ``update`` on
    each (the decisions are already in the restored population and are dropped)."""
    state = None
    for record in views:
        view = view_from_json(record, step_dtype, alive_dtype)
        if state is None:
            state = scheduler.init(view)
        _, state = scheduler.update(state, view)
    return state


def open_train_session(
    checkpoint: str | os.PathLike[str] | Checkpointer | TrainScope,
    resume: bool,
    arguments: Mapping[str, Any],
    next_id: int,
) -> TrainSession:
    """The session of one run: top-level (opens the directory) or a tune round's.

    Args:
      checkpoint: a directory, a :class:`~jaxtune.checkpoint.Checkpointer`, or the
        :class:`~jaxtune.checkpoint.TrainScope` a driver hands its round.
      resume: continue the checkpointed run.
      arguments: what identifies the run (:func:`checkpoint_arguments`).
      next_id: the id of the first member a scheduler would start.

    Returns:
      The :class:`TrainSession`.
    """
    if isinstance(checkpoint, TrainScope):
        return TrainSession(checkpoint.store, arguments, checkpoint.outer, checkpoint.scope,
                            next_id, restore=checkpoint.restore,
                            outer_arrays=checkpoint.outer_arrays)
    store = Store(Checkpointer.of(checkpoint), "train", arguments, resume)
    return TrainSession(store, arguments, None, None, next_id, restore=resume)


def checkpoint_arguments(plan: Plan, split: Any, keep_params: bool,
                         has_scheduler: bool) -> dict[str, Any]:
    """What identifies a run for its checkpoint: resuming needs the same values.

    The names are those of :func:`jaxtune.engine.train`'s arguments (checkpoints of earlier
    versions carry them).
    """
    options = plan.options
    return {
        "task": plan.task.name, "configs": [jsonio.plain(c) for c in plan.configs],
        "data": split_digest(split), "static_names": sorted(plan.static_names),
        "member_seeds": plan.member_seeds, "folds": plan.folds, "member_ids": plan.member_ids,
        "num_steps": options.num_steps, "batch_size": options.batch_size,
        "steps_per_segment": options.steps_per_segment, "seed": plan.seed,
        "pad_to": options.pad_to, "chunk_sizes": [g.chunk_size for g in plan.groups],
        "num_devices": plan.layout.num_devices, "evaluate_test": options.evaluate_test,
        "return_params": keep_params,
        "member_rows": None if plan.member_rows is None else list(plan.member_rows),
        # The leaves a selection names (a predicate is no JSON); True/False for one array x.
        "standardize": datatree.select_leaves(split.x_train, options.standardize),
        "batch_mode": options.batch_mode,
        "member_loop": options.member_loop, "scheduler": has_scheduler,
    }
