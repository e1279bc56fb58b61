"""The host's values while a chunk trains: each member's record and the chunk's state.

A chunk is one population (a static group's members, at most as many as fit in memory). The
runner carries a :class:`ChunkState` from segment to segment; every step returns a new one (as
Optax states are), and a checkpoint saves and restores exactly that value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxtune.engine.population import PopulationState
from jaxtune.results import MemberResult

__all__ = ["ChunkState", "MemberRecord"]


@dataclasses.dataclass
class MemberRecord:
    """Host bookkeeping of one member while its chunk runs.

    Attributes:
      member_id: the member's id in the results.
      config: its current config (a scheduler's exploit/explore replaces it).
      seed: its seed (part of its identity).
      fold: its fold, or ``None`` (part of its identity).
      status: ``"running"``, ``"completed"``, ``"diverged"`` or ``"stopped"``.
      diverged_step: the step at which it diverged, else ``None``.
      curve_steps: the step after every segment it ran.
      curves: each metric's value after every segment.
      metrics: the latest metrics.
      hp_schedule: its configs over time, when a scheduler changed them.
      params: its final parameters (host arrays), when they are kept.
      wall_time_s: its share of the chunk's wall time.
    """

    member_id: int
    config: dict[str, Any]
    seed: int
    fold: int | None
    status: str = "running"
    diverged_step: int | None = None
    curve_steps: list[int] = dataclasses.field(default_factory=list)
    curves: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    hp_schedule: list[dict[str, Any]] | None = None
    params: Any = None
    wall_time_s: float = 0.0

    def record(self, step: int, metrics: Mapping[str, np.ndarray], slot: int) -> None:
        """Appends the member's metrics (row ``slot`` of ``metrics``) after a segment."""
        self.curve_steps.append(int(step))
        for name, values in metrics.items():
            self.curves.setdefault(name, []).append(float(values[slot]))
        self.metrics = {name: float(values[slot]) for name, values in metrics.items()}

    def result(self, group: str) -> MemberResult:
        """The member's row of the results (a member still running counts as completed)."""
        status = "completed" if self.status == "running" else self.status
        return MemberResult(
            member_id=self.member_id, config=dict(self.config), seed=self.seed, fold=self.fold,
            static_group=group, status=status, diverged_step=self.diverged_step,
            metrics=dict(self.metrics), curve_steps=list(self.curve_steps),
            curves={k: list(v) for k, v in self.curves.items()}, wall_time_s=self.wall_time_s,
            hp_schedule=self.hp_schedule,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data, without its parameters (a checkpoint's member record)."""
        return {
            "member_id": self.member_id, "config": self.config, "seed": self.seed,
            "fold": self.fold, "status": self.status, "diverged_step": self.diverged_step,
            "curve_steps": self.curve_steps, "curves": self.curves, "metrics": self.metrics,
            "hp_schedule": self.hp_schedule, "wall_time_s": self.wall_time_s,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> MemberRecord:
        """Inverse of :meth:`to_json`."""
        return cls(
            member_id=int(record["member_id"]), config=dict(record["config"]),
            seed=int(record["seed"]), fold=None if record["fold"] is None else int(record["fold"]),
            status=str(record["status"]), diverged_step=record["diverged_step"],
            curve_steps=[int(s) for s in record["curve_steps"]],
            curves={k: [float(v) for v in values] for k, values in record["curves"].items()},
            metrics={k: float(v) for k, v in record["metrics"].items()},
            hp_schedule=record["hp_schedule"], wall_time_s=float(record["wall_time_s"]),
        )


class ChunkState(NamedTuple):
    """Where a chunk stands between two segments (a new value after every step).

    Attributes:
      population: the device state, leaves ``[P, ...]``.
      dynamic: the members' dynamic hyperparameters on device, each ``[P]`` float32.
      slots: each slot's member record (``None`` for inert padding).
      finished: members that left their slot (refilled by a scheduler), in order.
      step: ``[P]`` int64 host copy of the members' step counters.
      alive: ``[P]`` bool host copy of which members still train.
      previous_steps: ``step`` at the last report (the work a report counts).
      segment_index: segments run.
      num_diverged: members that diverged.
      num_guarded: segments that ran the guarded scan.
      next_member_id: the id the next member a scheduler starts gets.
      scheduler_state: the scheduler's state (``None`` before its first view).
      views: the scheduler's views so far as JSON (a resume replays them), when checkpointing.
      saved_segment: ``segment_index`` at the last save (or restore).
    """

    population: PopulationState
    dynamic: dict[str, Any]
    slots: tuple[MemberRecord | None, ...]
    finished: tuple[MemberRecord, ...]
    step: np.ndarray
    alive: np.ndarray
    previous_steps: np.ndarray
    segment_index: int
    num_diverged: int
    num_guarded: int
    next_member_id: int
    scheduler_state: Any = None
    views: tuple[dict[str, Any], ...] = ()
    saved_segment: int = 0
