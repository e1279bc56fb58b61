"""One chunk's training loop: a :class:`~jaxtune.engine.records.ChunkState` carried from
segment to segment, each step a function returning a new state.

``run_chunk`` repeats, while a member has steps left: save if due, run one compiled segment,
record every member's metrics, report progress, and let the scheduler stop, refill, copy or
perturb members (one more compiled program with fixed shapes). Nothing is kept in mutable
locals: what a resume needs is exactly the state value.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxtune import optim
from jaxtune.contracts import PopulationUpdate, SegmentReport, SlotView
from jaxtune.engine import population
from jaxtune.engine.layout import Layout, to_host
from jaxtune.engine.options import Hooks
from jaxtune.engine.plan import ChunkPlan, hashable, member_budget, member_keys
from jaxtune.engine.population import GroupSpec, MemberRows
from jaxtune.engine.precompile import Programs
from jaxtune.engine.records import ChunkState, MemberRecord
from jaxtune.engine.session import TrainSession, view_to_json
from jaxtune.timebudget import Deadline

__all__ = ["ChunkContext", "DeviceData", "chunk_unfinished", "deadline_passed", "finish_chunk",
           "open_chunk", "run_chunk"]


class DeviceData(NamedTuple):
    """The data on the devices, replicated: ``{"x", "y"}`` each.

    Attributes:
      train: the training rows.
      valid: the validation rows (``None`` when members validate on row tables of ``train``).
      test: the test rows (``None`` when the test set is not evaluated).
    """

    train: dict[str, jax.Array]
    valid: dict[str, jax.Array] | None
    test: dict[str, jax.Array] | None


class ChunkContext(NamedTuple):
    """What stays fixed while one chunk trains.

    Attributes:
      chunk: the chunk's plan (its group, members and population size).
      num_groups: static groups of the run (for progress reports).
      layout: the device mesh.
      seed: the sweep seed.
      filler: the member whose identity fills the padding slots' keys and values.
      rows: the members' row tables on device (padded to the population), or ``None``.
      data: the data on device.
      shared_key: the key of common minibatches (``batch_mode="shared"``).
      hooks: progress callbacks and the scheduler.
      session: the checkpoint session, or ``None``.
      start_time: when the chunk started (``time.perf_counter``).
      programs: the executables compiled ahead (:mod:`~jaxtune.engine.precompile`); the
        default prepares none, and every call runs its jit.
    """

    chunk: ChunkPlan
    num_groups: int
    layout: Layout
    seed: int
    filler: MemberRecord
    rows: MemberRows | None
    data: DeviceData
    shared_key: jax.Array
    hooks: Hooks
    session: TrainSession | None
    start_time: float
    programs: Programs = Programs()

    @property
    def spec(self) -> GroupSpec:
        """The chunk's static group."""
        return self.chunk.group.spec

    @property
    def num_real(self) -> int:
        """Members of the chunk (the slots past them are padding)."""
        return len(self.chunk.indices)


def open_chunk(ctx: ChunkContext, members: Sequence[MemberRecord],
               next_member_id: int) -> ChunkState:
    """The chunk's state before its first segment, or as its checkpoint saved it."""
    size = ctx.chunk.population_size
    slots = (*members, *([None] * (size - len(members))))
    member_key, dynamic = _slot_arrays(ctx, slots)
    alive = np.arange(size) < len(members)
    state = ctx.programs.call(population.init_jit, ctx.spec.setup, ctx.layout.population,
                              member_key, dynamic, ctx.rows, ctx.data.train,
                              ctx.layout.put(alive))
    steps = np.zeros(size, np.int64)
    fresh = ChunkState(
        population=state, dynamic=dynamic, slots=slots, finished=(), step=steps.copy(),
        alive=alive, previous_steps=steps, segment_index=0, num_diverged=0, num_guarded=0,
        next_member_id=next_member_id,
    )
    if ctx.session is None:
        return fresh
    restored = ctx.session.restore_chunk(ctx.chunk.index, fresh, ctx.layout, ctx.hooks.scheduler)
    if restored is None:
        return fresh
    report_restored(ctx.hooks, member_steps_done([*restored.slots, *restored.finished]))
    return restored


def run_chunk(ctx: ChunkContext, state: ChunkState) -> ChunkState:
    """Trains the chunk until no member has steps left, or until ``ctx.hooks.deadline`` has
    passed (looked at after every segment, once the scheduler has acted: the state returned is
    then one a checkpoint saves and a resume continues); returns its last state."""
    deadline = ctx.hooks.deadline
    while chunk_unfinished(ctx, state):
        state = _save_if_due(ctx, state)
        state, metrics, diverged = _train_segment(ctx, state)
        state, member_steps = _record_segment(ctx, state, metrics, diverged)
        _report_segment(ctx, state, metrics, member_steps)
        state = _schedule(ctx, state, metrics)
        if deadline_passed(deadline):
            break
    return state


def deadline_passed(deadline: Deadline | None) -> bool:
    """Whether ``deadline`` has passed (``False`` without one). With several processes,
    process 0's clock decides for all (one broadcast), so every process stops after the same
    segment and none waits alone in a collective."""
    if deadline is None:
        return False
    expired = deadline.expired()
    if jax.process_count() > 1:
        expired = bool(multihost_utils.broadcast_one_to_all(np.asarray(expired)))
    return expired


def chunk_unfinished(ctx: ChunkContext, state: ChunkState) -> bool:
    """Whether a member of the chunk is alive with steps left (only a deadline ends
    :func:`run_chunk` with one)."""
    return bool(np.any(state.alive & (state.step < _budgets(ctx, state.slots))))


def finish_chunk(ctx: ChunkContext, state: ChunkState, keep_params: bool) -> list[MemberRecord]:
    """Every member the chunk ran, in start order, with test metrics, parameters (if kept) and
    wall time."""
    num_real = ctx.num_real
    finished = [*state.finished, *state.slots[:num_real]]
    if ctx.data.test is not None and ctx.spec.step.evaluate is not None:
        test_metrics = to_host(ctx.programs.call(
            population.evaluate_jit, ctx.spec.setup, ctx.layout.population, state.population,
            state.dynamic, None, ctx.data.train, ctx.data.test, "test"))
        for slot, member in enumerate(state.slots[:num_real]):
            member.metrics.update({k: float(v[slot]) for k, v in test_metrics.items()})
    if keep_params:
        carry = to_host(state.population.carry)
        for slot, member in enumerate(state.slots[:num_real]):
            member.params = ctx.spec.step.exported(
                jax.tree_util.tree_map(lambda x, s=slot: x[s], carry))
    wall_time_s = (time.perf_counter() - ctx.start_time) / max(len(finished), 1)
    for member in finished:
        member.wall_time_s = wall_time_s
    return finished


def member_steps_done(members: Sequence[MemberRecord | None]) -> int:
    """Steps the members have taken (the last point of each one's curve)."""
    return sum(m.curve_steps[-1] for m in members if m is not None and m.curve_steps)


def report_restored(hooks: Hooks, member_steps: int) -> None:
    """Tells ``hooks.on_restore`` (a progress bar's) the work a resume skips: it counts as
    done, not in the rate, and no segment report covers it."""
    if hooks.on_restore is not None and member_steps > 0:
        hooks.on_restore(member_steps)


# ------------------------------------------------------------------------ one segment's steps


def _save_if_due(ctx: ChunkContext, state: ChunkState) -> ChunkState:
    session = ctx.session
    if session is None or state.segment_index <= state.saved_segment or not session.store.due():
        return state
    session.save_chunk(ctx.chunk.index, state)
    return state._replace(saved_segment=state.segment_index)


def _train_segment(ctx: ChunkContext,
                   state: ChunkState) -> tuple[ChunkState, dict[str, np.ndarray], np.ndarray]:
    """One segment: the fast program, and the guarded one from the same starting state when
    the fast one says so (``redo``); returns the new state, the host metrics and diverged
    steps."""
    # Looked up at each call (not bound at import): tests swap in counting programs.
    args = (ctx.spec, ctx.layout.population, state.population, state.dynamic, ctx.rows,
            ctx.shared_key, jnp.int32(state.segment_index), ctx.data.train, ctx.data.valid,
            ctx.layout.put(_budgets(ctx, state.slots).astype(np.int32)))
    new_population, metrics, redo = ctx.programs.call(population.segment_jit, *args)
    fetched = (metrics, new_population.step, new_population.alive, new_population.diverged_step)
    *host, redo = to_host((*fetched, redo))
    if redo:  # the fast result is thrown away before the guarded program allocates its own
        del new_population, metrics, fetched
        guarded = (population.guarded_jit_donating if ctx.layout.donate
                   else population.guarded_jit)
        new_population, metrics = ctx.programs.call(guarded, *args)
        host = to_host((metrics, new_population.step, new_population.alive,
                        new_population.diverged_step))
    if ctx.session is not None:
        ctx.session.store.segment_done()
    host_metrics, step, alive, diverged = host
    return state._replace(
        population=new_population, step=np.asarray(step, np.int64), alive=alive,
        segment_index=state.segment_index + 1, num_guarded=state.num_guarded + int(redo),
    ), host_metrics, diverged


def _record_segment(ctx: ChunkContext, state: ChunkState, metrics: Mapping[str, np.ndarray],
                    diverged: np.ndarray) -> tuple[ChunkState, int]:
    """Appends every running member's metrics; returns the state and the member-steps run."""
    num_diverged = state.num_diverged
    budget = _budgets(ctx, state.slots)
    for slot, member in enumerate(state.slots):
        if member is None or member.status != "running":
            continue
        member.record(state.step[slot], metrics, slot)
        if diverged[slot] >= 0:
            member.status, member.diverged_step = "diverged", int(diverged[slot])
            num_diverged += 1
        elif state.step[slot] >= budget[slot]:
            member.status = "completed"
    member_steps = int(np.sum(state.step - state.previous_steps))
    return state._replace(num_diverged=num_diverged, previous_steps=state.step.copy()), member_steps


def _report_segment(ctx: ChunkContext, state: ChunkState, metrics: Mapping[str, np.ndarray],
                    member_steps: int) -> None:
    if ctx.hooks.on_segment is None:
        return
    num_real, spec = ctx.num_real, ctx.spec
    ctx.hooks.on_segment(
        SegmentReport(
            group=spec.label, group_index=ctx.chunk.group_index, num_groups=ctx.num_groups,
            step=int(state.step[:num_real].max()), num_steps=spec.num_steps,
            num_members=num_real, num_alive=int(state.alive[:num_real].sum()),
            num_diverged=state.num_diverged,
            metrics={k: v[:num_real] for k, v in metrics.items()},
            member_steps=member_steps,
            member_ids=tuple(m.member_id for m in state.slots[:num_real]),
            configs=tuple(dict(m.config) for m in state.slots[:num_real]),
            member_step=state.step[:num_real].copy(),
            statuses=tuple(m.status for m in state.slots[:num_real]),
        )
    )


def _schedule(ctx: ChunkContext, state: ChunkState,
              metrics: Mapping[str, np.ndarray]) -> ChunkState:
    """Shows the scheduler the segment's view and applies its decision."""
    scheduler = ctx.hooks.scheduler
    if scheduler is None:
        return state
    num_real, spec = ctx.num_real, ctx.spec
    view = SlotView(
        segment=state.segment_index,
        step=state.step[:num_real],
        alive=np.asarray(state.alive[:num_real]),
        finished=state.step[:num_real] >= _budgets(ctx, state.slots)[:num_real],
        metrics={k: v[:num_real] for k, v in metrics.items()},
        configs=[m.config for m in state.slots[:num_real]],
        member_ids=[m.member_id for m in state.slots[:num_real]],
        num_steps=spec.num_steps,
        steps_per_segment=spec.steps_per_segment,
    )
    views = state.views if ctx.session is None else (*state.views, view_to_json(view))
    scheduler_state = state.scheduler_state
    if scheduler_state is None:
        scheduler_state = scheduler.init(view)
    decision, scheduler_state = scheduler.update(scheduler_state, view)
    state = state._replace(views=views, scheduler_state=scheduler_state)
    if decision is None or not (
        decision.stop or decision.refill or decision.exploit or decision.explore
    ):
        return state
    state = _apply_decision(ctx, state, decision)
    return state._replace(previous_steps=state.step.copy())


# ------------------------------------------------------------------------ a scheduler's decision


def _apply_decision(ctx: ChunkContext, state: ChunkState,
                    decision: PopulationUpdate) -> ChunkState:
    """The state after a scheduler's decision: members' records on the host, then one
    fixed-shape program on the device."""
    spec, num_real = ctx.spec, ctx.num_real
    for slot in [*decision.stop, *decision.refill, *decision.exploit, *decision.explore]:
        if not 0 <= int(slot) < num_real:
            raise ValueError(f"scheduler named slot {slot}; valid slots are 0..{num_real - 1}.")
    for what, configs in (("refill", decision.refill), ("explore", decision.explore)):
        for slot, config in configs.items():
            _check_in_group(spec, what, slot, config, state.slots[slot].config)
    size = len(state.slots)
    stop, reinit = np.zeros(size, bool), np.zeros(size, bool)
    slots, finished = list(state.slots), list(state.finished)
    next_id = state.next_member_id
    for slot in decision.stop:
        stop[slot] = True
        if slots[slot].status == "running":
            slots[slot].status = "stopped"
    for slot, config in decision.refill.items():
        reinit[slot] = True
        old = slots[slot]
        if old.status == "running":
            old.status = "stopped"
        finished.append(old)
        slots[slot] = MemberRecord(next_id, dict(config), old.seed, old.fold)
        next_id += 1
    source = _copy_and_perturb(slots, decision, state.step)
    new_keys, new_dynamic = _slot_arrays(ctx, slots)
    new_population, dynamic = population.update_jit(
        spec, ctx.layout.population, state.population, state.dynamic, ctx.layout.put(source),
        ctx.layout.put(reinit), ctx.layout.put(stop), new_keys, new_dynamic, ctx.rows,
        ctx.data.train,
    )
    alive, step = to_host((new_population.alive, new_population.step))
    return state._replace(
        population=new_population, dynamic=dynamic, slots=tuple(slots), finished=tuple(finished),
        step=np.asarray(step, np.int64), alive=np.asarray(alive), next_member_id=next_id,
    )


def _copy_and_perturb(slots: list[MemberRecord | None], decision: PopulationUpdate,
                      step: np.ndarray) -> np.ndarray:
    """Records exploit (a copy of another slot) and explore (new dynamic values) in the
    members' hp schedules; returns each slot's source slot."""
    source = np.arange(len(slots), dtype=np.int32)
    for slot, src in decision.exploit.items():
        source[slot] = src
        member, donor = slots[slot], slots[src]
        member.status = "running" if donor.status in ("running", "completed") else member.status
        member.hp_schedule = _schedule_with_start(member)
        member.hp_schedule.append(
            {"step": int(step[src]), "copied_from": donor.member_id,
             "config": dict(donor.config)}
        )
        member.config = dict(donor.config)
    for slot, config in decision.explore.items():
        member = slots[slot]
        member.hp_schedule = _schedule_with_start(member)
        member.config = dict(config)
        member.hp_schedule.append({"step": int(step[source[slot]]), "config": dict(config)})
    return source


def _schedule_with_start(member: MemberRecord) -> list[dict[str, Any]]:
    """The member's hp schedule, opened with ``{"step": 0, "config": <its first config>}``.

    The first config (with the seed and fold) is what the member's key derives from, so a
    replay of the member needs it even after exploit/explore replaced ``member.config``.
    """
    if member.hp_schedule:
        return list(member.hp_schedule)
    return [{"step": 0, "config": dict(member.config)}]


def _check_in_group(spec: GroupSpec, what: str, slot: int, config: Mapping[str, Any],
                    current: Mapping[str, Any]) -> None:
    """A scheduler's new config must keep the slot's static group: same names, same static
    values (the compiled program has them baked in; a change would be silently ignored). Where
    ``num_steps`` is a runtime budget (the slot's ``current`` config names it, the group's
    static values do not) it may change, up to the group's largest budget."""
    names = {name for name, _ in spec.static_hp} | set(spec.dynamic_names)
    if "num_steps" in current:
        names.add("num_steps")
    changed = [
        name for name, value in spec.static_hp if hashable(config.get(name, ...)) != value
    ]
    if set(config) != names or changed:
        raise ValueError(
            f"scheduler {what}[{slot}] = {dict(config)!r} leaves the static group "
            f"{spec.label!r} (names must be {sorted(names)}; static values differ for "
            f"{changed}); a scheduler may only change dynamic values."
        )
    budget = config.get("num_steps", spec.num_steps)
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or not (
            0 < budget <= spec.num_steps):
        raise ValueError(
            f"scheduler {what}[{slot}]: num_steps={budget!r} must be an int in 1.."
            f"{spec.num_steps} (the group's largest budget, which sized its program)."
        )
    optim.validate_optimizer(dict(spec.static_hp), spec.dynamic_names, int(budget))


def _budgets(ctx: ChunkContext, slots: Sequence[MemberRecord | None]) -> np.ndarray:
    """``[P]`` int64: every slot's step budget (0 for padding: it never trains)."""
    return np.asarray([0 if m is None else member_budget(ctx.spec, m.config) for m in slots],
                      np.int64)


def _slot_arrays(ctx: ChunkContext,
                 slots: Sequence[MemberRecord | None]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Every slot's key and dynamic values on device (padding slots take the filler's)."""
    filler = ctx.filler
    configs = [m.config if m is not None else filler.config for m in slots]
    seeds = [m.seed if m is not None else filler.seed for m in slots]
    folds = [m.fold if m is not None else filler.fold for m in slots]
    keys = member_keys(ctx.seed, seeds, configs, folds)
    # Hyperparameters are float32 whatever the model dtype (a bf16 learning rate loses digits).
    dynamic = {n: np.asarray([float(c[n]) for c in configs], np.float32)
               for n in ctx.spec.dynamic_names}
    return ctx.layout.put(keys), ctx.layout.put(dynamic)
