"""The vectorized trainer: a whole population of training runs as one compiled program.

Every array of a run carries a leading population axis ``[num_members, ...]``; one compiled
segment trains every member for ``steps_per_segment`` steps and validates it, and between
segments the host records the metrics, reports progress and lets a scheduler act
(:mod:`jaxtune.engine.population` says how).

The package, top to bottom (each module imports only those below it):

* :mod:`~jaxtune.engine.runner`: :func:`run` (the one entry every driver calls) and
  :func:`train` (its keyword form);
* :mod:`~jaxtune.engine.chunk`: one chunk's loop over a :class:`ChunkState`;
* :mod:`~jaxtune.engine.session`: the engine's side of checkpoint and resume;
* :mod:`~jaxtune.engine.records`: :class:`MemberRecord` and :class:`ChunkState`;
* :mod:`~jaxtune.engine.plan`: host-side checks, static groups, member keys, chunking;
* :mod:`~jaxtune.engine.memory`: the memory estimate and chunk sizes;
* :mod:`~jaxtune.engine.layout`: the device mesh and host <-> device transfers;
* :mod:`~jaxtune.engine.population`: the pure, jittable population programs;
* :mod:`~jaxtune.engine.options`: :class:`EngineOptions` and :class:`Hooks`.

See :mod:`jaxtune.engine.population` for members on a device, static groups, member identity
and divergence.
"""

from jaxtune.contracts import PopulationUpdate, Scheduler, SegmentReport, SlotView
from jaxtune.engine.layout import Layout
from jaxtune.engine.memory import member_memory_bytes
from jaxtune.engine.options import EngineOptions, Hooks
from jaxtune.engine.plan import (
    DYNAMIC_NAMES,
    ENGINE_STATIC_NAMES,
    GroupPlan,
    Plan,
    check_integer_value,
    config_hash,
    fold_in_config,
    infer_static_names,
    member_keys,
)
from jaxtune.engine.population import POPULATION_AXIS, GroupSpec, MemberRows, PopulationState
from jaxtune.engine.records import ChunkState, MemberRecord
from jaxtune.engine.runner import RunOutput, run, train

__all__ = [
    "DYNAMIC_NAMES", "ENGINE_STATIC_NAMES", "POPULATION_AXIS", "ChunkState", "EngineOptions",
    "GroupPlan", "GroupSpec", "Hooks", "Layout", "MemberRecord", "MemberRows", "Plan",
    "PopulationState", "PopulationUpdate", "RunOutput", "Scheduler", "SegmentReport", "SlotView",
    "check_integer_value", "config_hash", "fold_in_config", "infer_static_names",
    "member_keys", "member_memory_bytes", "run", "train",
]
