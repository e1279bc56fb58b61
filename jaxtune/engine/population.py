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

marked ``diverged`` and its step recorded; because every member's arithmetic is independent, the
other members' results are unaffected. Checking and freezing every member at every step costs
about 15% of a step on XLA:CPU, so a segment is optimistic: it first runs a scan with no
per-step checks, and only when a member went wrong in it (or a member has less than a segment
left) does it rerun the segment from its starting state with the guarded scan, inside the same
program (``lax.cond``; see :func:`run_segment`). Both scans give a healthy member the same values.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxtune import data as data_lib
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
    "evaluate_population", "init_jit", "init_population", "member_init", "params_treedef",
    "pinned", "run_segment", "segment_jit", "segment_jit_donating", "update_jit",
    "update_population",
]

#: Folded into a member's training key for the key a data-free Step's ``evaluate`` gets.
EVALUATE_FOLD = 0x7FFFFFFF


# --------------------------------------------------------------------------- member code


def _fit_preprocess(spec: GroupSpec, train: Mapping[str, jax.Array], rows, count):
    """Per-member standardization statistics from the member's own training rows only."""
    if not spec.standardize:
        return {}
    x = train["x"].reshape(train["x"].shape[0], -1)
    if spec.member_rows:
        weight = (jnp.arange(rows.shape[0]) < count).astype(jnp.float32)[:, None]
        x = x[rows]
    else:
        weight = jnp.ones((x.shape[0], 1), jnp.float32)
    total = jnp.sum(weight)
    mean = jnp.sum(x * weight, axis=0) / total
    var = jnp.sum(((x - mean) ** 2) * weight, axis=0) / total
    std = jnp.sqrt(var)
    scale = jnp.where(std > 1e-8, 1.0 / jnp.where(std > 1e-8, std, 1.0), 1.0)
    return {"mean": mean, "scale": scale}


def _apply_preprocess(preprocess, x: jax.Array) -> jax.Array:
    if not preprocess:
        return x
    flat = x.reshape(x.shape[0], -1)
    return ((flat - preprocess["mean"]) * preprocess["scale"]).reshape(x.shape)


def member_init(spec: GroupSpec, key: jax.Array, dynamic: Mapping[str, jax.Array]):
    """One member's fresh carry from its key and dynamic values (``Step.init``)."""
    return spec.step.init(jax.random.fold_in(key, 0), spec.hp(dynamic))


def _sample_batch(spec: GroupSpec, key, train, rows, count):
    """One minibatch for one member: indices drawn inside the compiled step."""
    if spec.batch_size is None:
        if not spec.member_rows:
            return train
        weight = (jnp.arange(rows.shape[0]) < count).astype(jnp.float32)
        return {"x": train["x"][rows], "y": train["y"][rows], "weight": weight}
    if spec.member_rows:
        idx = data_lib.sample_rows(key, rows, count, spec.batch_size)
    else:
        idx = data_lib.sample_batch_indices(key, train["y"].shape[0], spec.batch_size)
    return {"x": train["x"][idx], "y": train["y"][idx]}


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
    train, shared_key, segment_index = shared
    # Common random numbers: one minibatch per step for every member.
    key = jax.random.fold_in(shared_key, segment_index * spec.steps_per_segment + i)
    idx = data_lib.sample_batch_indices(key, train["y"].shape[0], spec.batch_size)
    return {"x": train["x"][idx], "y": train["y"][idx]}


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


def _fast_member(spec: GroupSpec, member: Any, shared: Any) -> Any:
    """One member's unchecked scan over a segment, and whether it stayed finite."""
    carry, train_key, step, preprocess, dyn, r, c = member

    def body(state, i):
        carry, finite = state
        metrics, carry = _member_update(
            spec, carry, train_key, step + i, preprocess, dyn, r, c,
            shared[0], _shared_batch_at(spec, shared, i),
        )
        return (carry, finite & jnp.isfinite(metrics[spec.step.loss_metric])), metrics

    (carry, finite), metrics = jax.lax.scan(
        body, (carry, jnp.bool_(True)), jnp.arange(spec.steps_per_segment, dtype=jnp.int32),
    )
    return carry, finite & all_finite(carry), metrics


def _fast_scan(spec: GroupSpec, sharding: Any, live: jax.Array, dynamic: Any,
               rows: MemberRows | None, shared: Any, start: PopulationState) -> Any:
    """Every member's unchecked scan: ``(new_state, mean metrics, last metrics, a live member
    went wrong)``."""
    num_segment_steps = spec.steps_per_segment
    members = (start.carry, start.train_key, start.step, start.preprocess, dynamic,
               *_train_rows(rows))
    carry, finite, metrics = over_members(
        spec, sharding, functools.partial(_fast_member, spec), members, shared
    )
    went_wrong = jnp.any(live & ~finite)
    new_state = start._replace(
        carry=carry, step=jnp.where(live, start.step + num_segment_steps, start.step),
    )
    steps_taken = jnp.where(live, jnp.float32(num_segment_steps), 0.0)
    last = {k: jnp.where(live, v[:, -1], jnp.nan) for k, v in metrics.items()}
    return new_state, _mean_metrics(metrics, steps_taken), last, went_wrong


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
    """``steps_per_segment`` steps of every member, then the validation pass.

    Returns the new state, the per-member metrics (``train_<name>``: each step metric's mean
    over the segment; ``valid_<name>``: the Step's ``evaluate``, or without one the last step's
    metrics) and whether the guarded scan ran. ``budget`` (``[P]`` int32) is every member's own
    step budget, a runtime value: a member at its budget is frozen like a finished one, so
    members with different budgets share one program.

    Two scans of the same steps are in the program, and ``lax.cond`` picks at run time:

    * the *fast* scan updates every member unconditionally (what a hand-written
      ``vmap(scan)`` does). It runs when every live member has a whole segment left. Members
      that are not live (stopped, diverged, finished, padding) get their starting state back at
      the end. A live member went wrong in it exactly when one of its loss metrics was not
      finite or its final carry is not (a non-finite update makes a parameter non-finite, and a
      non-finite parameter stays so), and then its result is thrown away.
    * the *guarded* scan checks every member at every step and freezes it at its last finite
      state. It reruns the segment from the starting state when the fast scan saw a member go
      wrong, or when a live member has less than a segment left.

    When the fast scan's result is kept, the guarded scan would have taken the same steps, so
    the two give the same members the same values. The per-step selects of the guarded scan cost
    about 15% of a step on XLA:CPU (docs/benchmarks.md), which the fast path does not pay.
    Each member's scan is its own (:func:`~jaxtune.engine.groups.over_members` loops or
    batches the members).
    """
    shared = (train, shared_key, segment_index)
    live = state.alive & (state.step < budget)
    any_live = jnp.any(live)
    fast = functools.partial(_fast_scan, spec, sharding, live, dynamic, rows, shared)
    names = _metric_names(spec, state, dynamic, rows, shared)

    def skip(start):
        # Nothing live: nothing to do. A live member short of a whole segment: guarded scan.
        nan = {k: jnp.full(live.shape, jnp.nan, jnp.float32) for k in names}
        return start, nan, nan, any_live

    def keep_fast(start, fast_state, fast_means, fast_last):
        return fast_state, fast_means, fast_last

    def keep_fast_restoring_the_others(start, fast_state, fast_means, fast_last):
        # Members that were not live trained on garbage in the fast scan: back to their start.
        carry = tree_select_members(live, fast_state.carry, start.carry)
        return fast_state._replace(carry=carry), fast_means, fast_last

    def rerun_guarded(start, fast_state, fast_means, fast_last):
        return _guarded_scan(spec, sharding, names, start, budget, dynamic, rows, shared)

    whole_segment_left = ~jnp.any(live & (state.step + spec.steps_per_segment > budget))
    fast_state, fast_means, fast_last, redo = jax.lax.cond(
        whole_segment_left & any_live, fast, skip, state)
    # The restoring select is a pass over the whole state: skipped when every member is live.
    branch = jnp.where(redo, 2, jnp.where(jnp.all(live), 0, 1))
    new_state, means, last = jax.lax.switch(
        branch, (keep_fast, keep_fast_restoring_the_others, rerun_guarded),
        state, fast_state, fast_means, fast_last,
    )
    metrics = {f"train_{name}": value for name, value in means.items()}
    if spec.step.evaluate is None:
        metrics.update({f"valid_{name}": value for name, value in last.items()})
    else:
        metrics.update(
            evaluate_population(spec, sharding, new_state, dynamic, rows, train, valid, "valid"))
    return new_state, metrics, redo


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
        member_data = {
            "x": train["x"][rows.valid_rows],
            "y": train["y"][rows.valid_rows],
            "weight": rows.valid_weight,
        }
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
segment_jit_donating = jax.jit(pinned(run_segment, pass_sharding=True), static_argnums=(0, 1),
                                donate_argnums=2)
update_jit = jax.jit(pinned(update_population, pass_sharding=True), static_argnums=(0, 1))
evaluate_jit = jax.jit(evaluate_population, static_argnums=(0, 1, 7))


def params_treedef(spec: GroupSpec) -> Any:
    """The tree structure of what ``return_params`` returns for one member of group ``spec``
    (``Step.params`` of its carry; tracing only)."""
    dyn = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in spec.dynamic_names}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    exported = jax.eval_shape(lambda k, d: spec.step.exported(member_init(spec, k, d)), key, dyn)
    return jax.tree_util.tree_structure(exported)
