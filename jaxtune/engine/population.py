"""The vectorized trainer: a whole population of training runs as one compiled program.

Every array of a run carries a leading population axis ``[num_members, ...]``. Training is

    jit(segment),  segment = every member's lax.scan over steps_per_segment steps of step,
                   the members batched (vmap) or looped over per device (shard_map + lax.map),

followed, inside the same program, by a validation pass. The population axis is sharded over a
one-dimensional device mesh (axis name ``"population"``). Between segments the host reads the
metrics back, grows the learning curves and reports progress; nothing else crosses.

**Members on a device.** ``member_loop="vmap"`` batches a device's members into the step
(``[P, ...]`` products: what fills a GPU or TPU); ``"map"``, the default on CPU, loops over
them with ``shard_map`` + ``lax.map``, one member's whole segment at a time, which XLA:CPU runs
about 1.25x faster and which makes a member's arithmetic independent of the population.

**Static groups.** Configurations are split by the values of their *static* hyperparameters
(widths, optimizer family, schedule family, ``warmup_steps``, batch size...). Each group is one
program; its *dynamic* hyperparameters are traced ``float32`` arrays ``[num_members]``, so a new
learning-rate value never recompiles. The compiled programs are cached by JAX on the
``(task, static values, step counts, shapes)`` signature, so a second sweep with new values and
the same signature compiles nothing.

**Member identity.** Member keys are derived from the sweep seed and the member's own identity
(its ``seed``, its config and its ``fold``), never from its position in the batch. A member
trained alone gives the same parameters up to float rounding; replayed with the same layout
(same population size and devices, see :func:`train`'s ``pad_to``) it is bit-identical.

**Members run a Step.** A member's state is the carry of the group's
:class:`~jaxtune.step.Step` (any pytree; for a Task, its parameters and optimizer state), and one
training step is ``step(carry, batch, key, hp)``; its metrics are averaged over the segment's
steps into the ``train_<name>`` curves. A Step with ``needs_data=False`` gets no batch.

**Divergence.** A member whose loss metric or new carry is not finite is frozen at its last
finite state, marked ``diverged`` and its step recorded; because every member's arithmetic is
independent, the other members' results are unaffected. Checking and freezing every member at
every step costs about 15% of a step on XLA:CPU, so a segment is optimistic: the *fast* program
(:func:`run_segment`) runs the steps with no per-step checks and returns a flag; only when a
member went wrong in it (or, with ``member_loop="vmap"``, live members have different numbers
of steps left in the segment) does the host run the segment again from its starting state with
the *guarded* program (:func:`run_guarded_segment`). They are two programs, not two branches of
one: a run compiles the guarded one only when it first needs it, so the common case compiles one
copy of the step. Both give a healthy member the same values.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxtune import data as data_lib
from jaxtune import datatree
from jaxtune.engine.groups import (
    POPULATION_AXIS,
    GroupSpec,
    MemberRows,
    PopulationState,
    all_finite,
    over_members,
    pinned,
    tree_select,
    tree_select_members,
)

__all__ = [
    "POPULATION_AXIS", "GroupSpec", "MemberRows", "PopulationState", "evaluate_jit",
    "evaluate_population", "guarded_jit", "guarded_jit_donating", "init_jit", "init_population",
    "member_init", "params_treedef", "pinned", "run_guarded_segment", "run_segment",
    "segment_jit", "update_jit", "update_population",
]

#: Folded into a member's training key for the key a data-free Step's ``evaluate`` gets.
EVALUATE_FOLD = 0x7FFFFFFF


# --------------------------------------------------------------------------- member code


def _fit_preprocess(spec: GroupSpec, train: Mapping[str, Any], rows, count):
    """Per-member standardization statistics from the member's own training rows only, for
    the leaves of ``x`` that ``spec.standardize`` selects (:mod:`jaxtune.datatree`)."""
    if not spec.standardize:
        return {}
    if spec.member_rows:
        weight = (jnp.arange(rows.shape[0]) < count).astype(jnp.float32)
    else:
        weight = jnp.ones((datatree.num_rows(train["x"]),), jnp.float32)
        rows = None
    return datatree.fit_standardizer(train["x"], spec.standardize, weight, rows)


def _apply_preprocess(preprocess, x: Any) -> Any:
    return datatree.apply_standardizer(preprocess, x)


def member_init(spec: GroupSpec, key: jax.Array, dynamic: Mapping[str, jax.Array]):
    """One member's fresh carry from its key and dynamic values (``Step.init``)."""
    return spec.step.init(jax.random.fold_in(key, 0), spec.hp(dynamic))


def _sample_batch(spec: GroupSpec, key, train, rows, count):
    """One minibatch for one member: indices drawn inside the compiled step, every leaf of
    ``x`` and ``y`` indexed with the same rows."""
    if spec.batch_size is None:
        if not spec.member_rows:
            return train
        weight = (jnp.arange(rows.shape[0]) < count).astype(jnp.float32)
        return {**datatree.take_rows(train, rows), "weight": weight}
    if spec.member_rows:
        idx = data_lib.sample_rows(key, rows, count, spec.batch_size)
    else:
        idx = data_lib.sample_batch_indices(key, datatree.num_rows(train["y"], "y"),
                                            spec.batch_size)
    return datatree.take_rows(train, idx)


def _member_update(spec, carry, train_key, step, preprocess, dynamic, rows, count, train,
                   shared_batch):
    """One member's training step, unguarded: ``(metrics, new_carry)``, metrics float32."""
    hp = spec.hp(dynamic)
    step_key = jax.random.fold_in(train_key, step)
    batch_key, member_key = jax.random.split(step_key)
    batch = None
    if spec.step.needs_data:
        if shared_batch is None:
            batch = _sample_batch(spec, batch_key, train, rows, count)
        else:
            batch = shared_batch
        batch = {**batch, "x": _apply_preprocess(preprocess, batch["x"])}
    new_carry, metrics = spec.step.step(carry, batch, member_key, hp)
    return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}, new_carry


def _member_step(spec, carry, train_key, step, budget, alive, diverged_step, preprocess,
                 dynamic, rows, count, train, shared_batch):
    """One member's guarded step: it freezes a member that is stopped, done or not finite."""
    metrics, new_carry = _member_update(
        spec, carry, train_key, step, preprocess, dynamic, rows, count, train, shared_batch,
    )
    finite = jnp.isfinite(metrics[spec.step.loss_metric]) & all_finite(new_carry)
    in_range = step < budget
    take = alive & finite & in_range
    carry = tree_select(take, new_carry, carry)
    newly_diverged = alive & in_range & ~finite
    diverged_step = jnp.where(newly_diverged, step, diverged_step)
    alive = alive & ~newly_diverged
    step = step + take.astype(step.dtype)
    return carry, step, alive, diverged_step, metrics, take


def _shared_batch_at(spec: GroupSpec, shared: Any, i: jax.Array) -> Any:
    """Step ``i``'s common minibatch (``batch_mode="shared"``), or ``None`` (members sample
    their own)."""
    if spec.batch_mode != "shared":
        return None
    train, shared_key, segment_index = shared[:3]
    # Common random numbers: one minibatch per step for every member.
    key = jax.random.fold_in(shared_key, segment_index * spec.steps_per_segment + i)
    idx = data_lib.sample_batch_indices(key, datatree.num_rows(train["y"], "y"), spec.batch_size)
    return datatree.take_rows(train, idx)


def _mean_metrics(metrics: Mapping[str, jax.Array], steps_taken: jax.Array) -> dict:
    """Each metric's mean over the steps a member took (NaN when it took none)."""
    return {name: jnp.where(steps_taken > 0,
                            jnp.sum(values, axis=-1) / jnp.maximum(steps_taken, 1.0), jnp.nan)
            for name, values in metrics.items()}


def _guarded_member(spec: GroupSpec, names: tuple[str, ...], member: Any, shared: Any) -> Any:
    """One member's guarded scan over a segment: every step checked and frozen if need be.
    Returns the new counters and carry, the metrics' means and their last taken values."""
    carry, train_key, step, budget, alive, diverged_step, preprocess, dyn, r, c = member

    def body(state, i):
        carry, step, alive, diverged_step, last = state
        carry, new_step, alive, diverged_step, metrics, take = _member_step(
            spec, carry, train_key, step, budget, alive, diverged_step,
            preprocess, dyn, r, c, shared[0], _shared_batch_at(spec, shared, i),
        )
        last = {k: jnp.where(take, v, last[k]) for k, v in metrics.items()}
        taken = {k: jnp.where(take, v, 0.0) for k, v in metrics.items()}
        return (carry, new_step, alive, diverged_step, last), (taken, take.astype(jnp.float32))

    nan_metrics = {name: jnp.float32(jnp.nan) for name in names}
    state = (carry, step, alive, diverged_step, nan_metrics)
    state, (metrics, counted) = jax.lax.scan(
        body, state, jnp.arange(spec.steps_per_segment, dtype=jnp.int32)
    )
    *counters, last = state
    return tuple(counters), _mean_metrics(metrics, jnp.sum(counted)), last


def _guarded_scan(spec: GroupSpec, sharding: Any, names: tuple[str, ...],
                  start: PopulationState, budget: jax.Array, dynamic: Any,
                  rows: MemberRows | None, shared: Any) -> Any:
    """Every member's guarded scan: ``(new_state, mean metrics, last metrics)``."""
    members = (start.carry, start.train_key, start.step, budget, start.alive,
               start.diverged_step, start.preprocess, dynamic, *_train_rows(rows))
    counters, means, last = over_members(
        spec, sharding, functools.partial(_guarded_member, spec, names), members, shared
    )
    carry, step, alive, diverged_step = counters
    new_state = start._replace(carry=carry, step=step, alive=alive, diverged_step=diverged_step)
    return new_state, means, last


def _fast_member(spec: GroupSpec, names: tuple[str, ...], member: Any, shared: Any) -> Any:
    """One member's unchecked steps of a segment, and whether they stayed finite.

    The member takes its own ``count`` steps (``member_loop="map"``: its loop is its own) or
    the population's ``shared[3]`` (``"vmap"``: one loop for the batch, whose live members all
    take that many). Each metric's value at step ``i`` goes to slot ``i`` of a ``[S]`` buffer
    of zeros, the shape of the guarded scan's taken values."""
    carry, train_key, step, count, preprocess, dyn, r, c = member
    num_steps = count if spec.member_loop == "map" else shared[3]
    zeros = {name: jnp.zeros((spec.steps_per_segment,), jnp.float32) for name in names}

    def body(i, state):
        carry, finite, values = state
        metrics, carry = _member_update(
            spec, carry, train_key, step + i, preprocess, dyn, r, c,
            shared[0], _shared_batch_at(spec, shared, i),
        )
        values = {k: values[k].at[i].set(v) for k, v in metrics.items()}
        return carry, finite & jnp.isfinite(metrics[spec.step.loss_metric]), values

    carry, finite, values = jax.lax.fori_loop(
        jnp.int32(0), num_steps, body, (carry, jnp.bool_(True), zeros))
    return carry, finite & all_finite(carry), values


def _fast_counts(spec: GroupSpec, state: PopulationState,
                 budget: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(live, counts, num_steps, must_guard)``: the members that train, the steps each takes
    in this segment (a whole segment, or what is left of its budget; 0 when not live), the
    steps of a ``vmap`` loop, and whether the fast program cannot take them (``vmap`` with
    live members of different counts: then it runs no step and the guarded program does)."""
    live = state.alive & (state.step < budget)
    counts = jnp.where(live, jnp.minimum(budget - state.step, spec.steps_per_segment), 0)
    num_steps = jnp.max(counts)
    if spec.member_loop == "map":
        return live, counts, num_steps, jnp.bool_(False)
    must_guard = jnp.any(live & (counts != num_steps))
    return live, counts, jnp.where(must_guard, 0, num_steps), must_guard


def _fast_scan(spec: GroupSpec, sharding: Any, names: tuple[str, ...], start: PopulationState,
               budget: jax.Array, dynamic: Any, rows: MemberRows | None, shared: Any) -> Any:
    """Every member's unchecked steps: ``(new_state, mean metrics, last metrics, redo)``, where
    ``redo`` says the guarded program must run the segment instead (a live member went wrong,
    or :func:`_fast_counts` could not take the steps)."""
    live, counts, num_steps, must_guard = _fast_counts(spec, start, budget)
    members = (start.carry, start.train_key, start.step, counts, start.preprocess, dynamic,
               *_train_rows(rows))
    carry, finite, values = over_members(
        spec, sharding, functools.partial(_fast_member, spec, names), members,
        (*shared, num_steps),
    )
    if spec.member_loop == "vmap":
        # Members that were not live trained on garbage in the batch: back to their start.
        # The select is a pass over the whole state: skipped when every member is live.
        carry = jax.lax.cond(jnp.all(live), lambda: carry,
                             lambda: tree_select_members(live, carry, start.carry))
    new_state = start._replace(carry=carry, step=start.step + counts)
    last_index = jnp.maximum(counts - 1, 0)[:, None]
    last = {k: jnp.where(counts > 0, jnp.take_along_axis(v, last_index, axis=1)[:, 0], jnp.nan)
            for k, v in values.items()}
    redo = must_guard | jnp.any(live & ~finite)
    return new_state, _mean_metrics(values, counts.astype(jnp.float32)), last, redo


def _metric_names(spec: GroupSpec, state: PopulationState, dynamic: Any,
                  rows: MemberRows | None, shared: Any) -> tuple[str, ...]:
    """The names of the metrics one step returns (one abstract trace of member 0's step)."""
    first = functools.partial(jax.tree_util.tree_map, lambda x: x[0])
    train_rows, train_counts = first(_train_rows(rows))

    def one_step():
        return _member_update(spec, first(state.carry), state.train_key[0], state.step[0],
                              first(state.preprocess), first(dynamic), train_rows,
                              train_counts, shared[0], _shared_batch_at(spec, shared, 0))[0]

    return tuple(sorted(jax.eval_shape(one_step)))


def _train_rows(rows: MemberRows | None) -> tuple[Any, Any]:
    """``(train_rows, train_counts)`` of the members' row tables, or ``(None, None)``."""
    return (None, None) if rows is None else (rows.train_rows, rows.train_counts)


def _segment_metrics(spec: GroupSpec, sharding: Any, new_state: PopulationState,
                     dynamic: Any, rows: MemberRows | None, train: Any, valid: Any,
                     means: Mapping[str, jax.Array], last: Mapping[str, jax.Array]) -> dict:
    """A segment's per-member metrics: ``train_<name>`` means and the validation pass
    (the Step's ``evaluate``, or without one the last step's metrics)."""
    metrics = {f"train_{name}": value for name, value in means.items()}
    if spec.step.evaluate is None:
        metrics.update({f"valid_{name}": value for name, value in last.items()})
    else:
        metrics.update(
            evaluate_population(spec, sharding, new_state, dynamic, rows, train, valid, "valid"))
    return metrics


def run_segment(
    spec: GroupSpec,
    sharding: Any,
    state: PopulationState,
    dynamic: Mapping[str, jax.Array],
    rows: MemberRows | None,
    shared_key: jax.Array,
    segment_index: jax.Array,
    train: Mapping[str, jax.Array],
    valid: Mapping[str, jax.Array] | None,
    budget: jax.Array,
) -> tuple[PopulationState, dict[str, jax.Array], jax.Array]:
    """The fast program: up to ``steps_per_segment`` unchecked steps of every member, then the
    validation pass.

    Returns the new state, the per-member metrics (``train_<name>``: each step metric's mean
    over the steps taken; ``valid_<name>``: the Step's ``evaluate``, or without one the last
    step's metrics) and ``redo``: whether this result must be thrown away and the segment run
    by :func:`run_guarded_segment` from the same ``state`` (the host decides, after reading
    the flag: the guarded program is compiled only when a run first needs it). ``budget``
    (``[P]`` int32) is every member's own step budget, a runtime value: a member at its
    budget is frozen like a finished one, so members with different budgets share one program.

    Every live member (alive and short of its budget) takes a whole segment, or what is left
    of its budget when that is less: a runtime step count, so the last, shorter segment of a
    budget runs here too. With ``member_loop="map"`` each member loops over its own count
    (members that are not live take none); with ``"vmap"`` the batch loops once, so live
    members of different counts cannot share it and ``redo`` is set without running a step.
    Nothing checks the steps: a live member went wrong exactly when one of its loss metrics
    was not finite or its final carry is not (a non-finite update makes a parameter
    non-finite, and a non-finite parameter stays so), and then ``redo`` is set.

    When the result is kept, the guarded program would have taken the same steps with the
    same arithmetic, so the two give the same members the same values
    (tests/test_engine_segment.py). The per-step checks and selects of the guarded scan cost
    about 15% of a step on XLA:CPU (docs/benchmarks.md), which this program does not pay, and
    it compiles one copy of the step, not two.
    """
    shared = (train, shared_key, segment_index)
    names = _metric_names(spec, state, dynamic, rows, shared)
    new_state, means, last, redo = _fast_scan(
        spec, sharding, names, state, budget, dynamic, rows, shared)
    metrics = _segment_metrics(spec, sharding, new_state, dynamic, rows, train, valid,
                               means, last)
    return new_state, metrics, redo


def run_guarded_segment(
    spec: GroupSpec,
    sharding: Any,
    state: PopulationState,
    dynamic: Mapping[str, jax.Array],
    rows: MemberRows | None,
    shared_key: jax.Array,
    segment_index: jax.Array,
    train: Mapping[str, jax.Array],
    valid: Mapping[str, jax.Array] | None,
    budget: jax.Array,
) -> tuple[PopulationState, dict[str, jax.Array]]:
    """The guarded program: the segment of :func:`run_segment` (same arguments, same
    metrics), with every member checked at every step and frozen at its last finite state,
    at its budget, or when it is not alive. The host runs it from the segment's starting
    state when :func:`run_segment` returned ``redo``. A member that goes wrong is marked
    diverged at the step it went wrong (``diverged_step``)."""
    shared = (train, shared_key, segment_index)
    names = _metric_names(spec, state, dynamic, rows, shared)
    new_state, means, last = _guarded_scan(spec, sharding, names, state, budget, dynamic, rows,
                                           shared)
    metrics = _segment_metrics(spec, sharding, new_state, dynamic, rows, train, valid,
                               means, last)
    return new_state, metrics


def _evaluate_keys(state: PopulationState) -> jax.Array:
    """Every member's key for a data-free Step's ``evaluate``: its own, new at every step."""
    return jax.vmap(lambda k, s: jax.random.fold_in(jax.random.fold_in(k, EVALUATE_FOLD), s))(
        state.train_key, state.step)


def evaluate_population(spec, sharding, state, dynamic, rows, train, data, prefix):
    """Evaluates every member on its own validation rows (folds) or on the shared ``data``;
    a data-free Step's ``evaluate`` gets each member's evaluation key instead."""

    def one(member, shared):
        carry, d, preprocess, member_data = member
        if not spec.step.needs_data:
            return spec.step.evaluate(carry, member_data, spec.hp(d))
        member_data = shared if member_data is None else member_data
        member_data = {**member_data, "x": _apply_preprocess(preprocess, member_data["x"])}
        return spec.step.evaluate(carry, member_data, spec.hp(d))

    num_members = state.step.shape[0]
    shared = None
    if not spec.step.needs_data:
        member_data = _evaluate_keys(state)
    elif rows is not None and prefix == "valid":
        member_data = {**datatree.take_rows(dict(train), rows.valid_rows),
                       "weight": rows.valid_weight}
    elif spec.member_loop == "vmap":
        # Shared data under vmap turns the first layer into one wide product x @ [W_1 ... W_P]
        # whose blocking (and so rounding) depends on P. A member axis on the data keeps every
        # member's product its own: results are then independent of the population's size.
        member_data = jax.tree_util.tree_map(
            lambda v: jnp.broadcast_to(v, (num_members, *v.shape)), dict(data)
        )
    else:  # one member at a time: every product is the member's own already
        member_data, shared = None, dict(data)
    values = over_members(
        spec, sharding, one, (state.carry, dynamic, state.preprocess, member_data), shared
    )
    return {f"{prefix}_{name}": jnp.asarray(v, jnp.float32) for name, v in values.items()}


def init_population(spec, member_key, dynamic, rows, train, alive, sharding=None):
    """A fresh population: every member initialized from its own key ``member_key[i]``.

    With ``sharding`` the members are initialized as they train (:func:`over_members`): with
    ``member_loop="map"`` one after another, which XLA:CPU compiles in about half the time of the
    batched initializers (their random-number code batched over ``P`` keys dominates) and which
    gives the same bits (docs/faq.md, "Why does the first call take seconds?").
    """
    if sharding is None:
        carry = jax.vmap(member_init, in_axes=(None, 0, 0))(spec, member_key, dynamic)
    else:
        carry = over_members(
            spec, sharding, lambda member, _: member_init(spec, *member), (member_key, dynamic),
            None)
    train_rows = None if rows is None else rows.train_rows
    train_counts = None if rows is None else rows.train_counts
    num_members = member_key.shape[0]
    preprocess = jax.vmap(_fit_preprocess, in_axes=(None, None, 0, 0), axis_size=num_members)(
        spec, train, train_rows, train_counts
    )
    return PopulationState(
        carry=carry,
        train_key=jax.vmap(lambda k: jax.random.fold_in(k, 1))(member_key),
        step=jnp.zeros((num_members,), jnp.int32),
        alive=alive,
        diverged_step=jnp.full((num_members,), -1, jnp.int32),
        preprocess=preprocess,
    )


def update_population(spec, sharding, state, dynamic, source, reinit, stop, new_keys,
                      new_dynamic, rows, train):
    """Applies a scheduler's decision with fixed shapes: one program, never recompiled.

    ``source[i]`` is the slot whose carry (parameters, optimizer state...) and step slot ``i``
    takes (exploit; ``source[i] == i`` keeps its own); ``reinit`` slots restart from a fresh
    carry with ``new_keys`` (refill); ``stop`` slots stop training. ``new_dynamic`` are every
    slot's hyperparameters after the update (explore).
    """
    carry = jax.tree_util.tree_map(lambda x: x[source], state.carry)
    fresh = init_population(spec, new_keys, new_dynamic, rows, train, ~stop, sharding)
    updated = PopulationState(
        carry=tree_select_members(reinit, fresh.carry, carry),
        train_key=jnp.where(reinit[:, None], fresh.train_key, state.train_key),
        step=jnp.where(reinit, 0, state.step[source]),
        alive=jnp.where(reinit, True, state.alive[source]) & ~stop,
        diverged_step=jnp.where(reinit, -1, state.diverged_step[source]),
        preprocess=tree_select_members(reinit, fresh.preprocess, state.preprocess),
    )
    return updated, new_dynamic


def _init_over_members(spec, sharding, member_key, dynamic, rows, train, alive):
    return init_population(spec, member_key, dynamic, rows, train, alive, sharding)


init_jit = jax.jit(pinned(_init_over_members, pass_sharding=True), static_argnums=(0, 1))
segment_jit = jax.jit(pinned(run_segment, pass_sharding=True), static_argnums=(0, 1))
guarded_jit = jax.jit(pinned(run_guarded_segment, pass_sharding=True), static_argnums=(0, 1))
guarded_jit_donating = jax.jit(pinned(run_guarded_segment, pass_sharding=True),
                               static_argnums=(0, 1), donate_argnums=2)
update_jit = jax.jit(pinned(update_population, pass_sharding=True), static_argnums=(0, 1))
evaluate_jit = jax.jit(evaluate_population, static_argnums=(0, 1, 7))


def params_treedef(spec: GroupSpec) -> Any:
    """The tree structure of what ``return_params`` returns for one member of group ``spec``
    (``Step.params`` of its carry; tracing only)."""
    dyn = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in spec.dynamic_names}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    exported = jax.eval_shape(lambda k, d: spec.step.exported(member_init(spec, k, d)), key, dyn)
    return jax.tree_util.tree_structure(exported)
