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

**Divergence.** A member whose loss or update is not finite is frozen at its last finite state,
marked ``diverged`` and its step recorded; because every member's arithmetic is independent, the
other members' results are unaffected. Checking and freezing every member at every step costs
about 15% of a step on XLA:CPU, so a segment is optimistic: it first runs a scan with no
per-step checks, and only when a member went wrong in it (or a member has less than a segment
left) does it rerun the segment from its starting state with the guarded scan, inside the same
program (``lax.cond``; see :func:`run_segment`). Both scans give a healthy member the same values.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jaxtune import data as data_lib
from jaxtune import datatree, limits, optim
from jaxtune.task import Task

__all__ = [
    "POPULATION_AXIS", "GroupSpec", "MemberRows", "PopulationState", "evaluate_jit",
    "evaluate_population", "init_jit", "init_population", "member_init", "params_treedef",
    "pinned", "run_segment", "segment_jit", "segment_jit_donating", "update_jit",
    "update_population",
]

POPULATION_AXIS = "population"


class PopulationState(NamedTuple):
    """The training state of a population; every leaf has the population axis first.

    Attributes:
      params: model parameters, leaves ``[P, ...]``.
      opt_state: Optax state, leaves ``[P, ...]``.
      train_key: ``[P, 2]`` uint32, each member's training key (step keys are folded from it).
      step: ``[P]`` int32, steps each member has taken (members refilled by a scheduler
        restart from 0).
      alive: ``[P]`` bool, False once a member diverged, was stopped, or is inert padding.
      diverged_step: ``[P]`` int32, the step at which a member diverged, -1 otherwise.
      preprocess: ``{"mean": [P, F], "scale": [P, F]}`` when members standardize their inputs
        with statistics of their own training rows (for a dict ``x``, ``mean`` and ``scale``
        are dicts shaped like it, ``None`` at the leaves left alone), else ``{}``.
    """

    params: Any
    opt_state: Any
    train_key: jax.Array
    step: jax.Array
    alive: jax.Array
    diverged_step: jax.Array
    preprocess: Any


class MemberRows(NamedTuple):
    """Which rows of the training data each member trains and is validated on (folds).

    A fold is an index table, not a copy of the data: every member reads the one training
    array through its own rows. Tables are padded to a common width; counts and weights say
    which entries are real.

    Attributes:
      train_rows: ``[P, R]`` int32 row indices into ``split.x_train``.
      train_counts: ``[P]`` int32, how many of ``train_rows`` are real.
      valid_rows: ``[P, V]`` int32 row indices of the member's validation rows.
      valid_weight: ``[P, V]`` float32, 1 for real validation rows and 0 for padding.
    """

    train_rows: np.ndarray
    train_counts: np.ndarray
    valid_rows: np.ndarray
    valid_weight: np.ndarray


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """Everything static about one static group: the key of its compiled program.

    Attributes:
      task: the :class:`~jaxtune.task.Task`.
      static_hp: sorted ``(name, value)`` pairs of the static hyperparameters.
      dynamic_names: names of the traced hyperparameters, sorted.
      num_steps: the group's largest step budget, for the host. It is not part of the key:
        a member's own budget is a runtime value (``run_segment``'s ``budget``), so members
        with different budgets, and runs with different ``num_steps``, share the program.
      batch_size: minibatch rows per step, or ``None`` for full-batch gradient descent.
      steps_per_segment: steps per compiled segment (the learning-curve resolution).
      batch_mode: ``"independent"`` (each member samples its own minibatch) or ``"shared"``
        (one minibatch per step for every member: common random numbers).
      member_rows: members read the data through their own row tables (folds).
      standardize: members standardize inputs with statistics of their own training rows:
        ``True`` (one array ``x``) or the names of the leaves of a dict ``x``
        (:func:`jaxtune.datatree.select_leaves`).
      member_loop: ``"vmap"`` (members batched into one program) or ``"map"`` (each device
        loops over its own members); see :func:`train`.
      horizon: the step horizon of a schedule that reads it (``cosine``, ``warmup_cosine``:
        their groups have one budget, this one, part of the key), else ``None``.
    """

    task: Task
    static_hp: tuple[tuple[str, Any], ...]
    dynamic_names: tuple[str, ...]
    num_steps: int = dataclasses.field(compare=False)
    batch_size: int | None
    steps_per_segment: int
    batch_mode: str = "independent"
    member_rows: bool = False
    standardize: bool | tuple[str, ...] = False
    member_loop: str = "vmap"
    horizon: int | None = None

    def hp(self, dynamic: Mapping[str, jax.Array]) -> dict[str, Any]:
        """One member's hyperparameters: static Python values and traced dynamic scalars."""
        return {**dict(self.static_hp), **dynamic}

    @property
    def setup(self) -> GroupSpec:
        """The key of the set-up and evaluation programs: the group without what only
        training reads (batch size, batch mode, steps per segment; a config's ``batch_size``
        is not in the task's ``hp`` there), so groups that differ in those alone share one
        set-up program."""
        return dataclasses.replace(
            self, static_hp=tuple(item for item in self.static_hp if item[0] != "batch_size"),
            batch_size=None, batch_mode="independent", steps_per_segment=1)

    @property
    def optimizer_steps(self) -> int:
        """The ``num_steps`` the optimizer is built with in traced code: the horizon, or for a
        schedule that does not read it the largest int32 (``plan`` checked every member's own
        budget against ``warmup_steps``; nothing else reads it)."""
        return limits.INT32_MAX if self.horizon is None else self.horizon

    @property
    def label(self) -> str:
        """A readable name for the group, e.g. ``"optimizer=adamw,width=64"``."""
        if not self.static_hp:
            return "default"
        return ",".join(f"{k}={v}" for k, v in self.static_hp)


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
    """One member's fresh ``(params, opt_state)`` from its key and dynamic values."""
    hp = spec.hp(dynamic)
    params = spec.task.init(jax.random.fold_in(key, 0), hp)
    opt_state = optim.make_optimizer(hp, spec.optimizer_steps).init(params)
    return params, opt_state


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


def _tree_select(pred: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(pred, n, o), new, old)


def _all_finite(tree: Any) -> jax.Array:
    """True when every element of every leaf is finite (one member's scalar)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.bool_(True)


def _member_update(spec, params, opt_state, train_key, step, preprocess, dynamic, rows, count,
                   train, shared_batch):
    """One member's gradient step, unguarded: ``(loss, updates, new_params, new_opt_state)``."""
    hp = spec.hp(dynamic)
    step_key = jax.random.fold_in(train_key, step)
    batch_key, dropout_key = jax.random.split(step_key)
    if shared_batch is None:
        batch = _sample_batch(spec, batch_key, train, rows, count)
    else:
        batch = shared_batch
    batch = {**batch, "x": _apply_preprocess(preprocess, batch["x"])}
    (loss, _), grads = jax.value_and_grad(spec.task.loss, has_aux=True)(
        params, batch, dropout_key, hp
    )
    optimizer = optim.make_optimizer(hp, spec.optimizer_steps)
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    return loss, updates, optax.apply_updates(params, updates), new_opt_state


def _member_step(spec, params, opt_state, train_key, step, budget, alive, diverged_step,
                 preprocess, dynamic, rows, count, train, shared_batch):
    """One member's guarded step: it freezes a member that is stopped, done or not finite."""
    loss, updates, new_params, new_opt_state = _member_update(
        spec, params, opt_state, train_key, step, preprocess, dynamic, rows, count, train,
        shared_batch,
    )
    finite = jnp.isfinite(loss) & _all_finite(updates)
    in_range = step < budget
    take = alive & finite & in_range
    params = _tree_select(take, new_params, params)
    opt_state = _tree_select(take, new_opt_state, opt_state)
    newly_diverged = alive & in_range & ~finite
    diverged_step = jnp.where(newly_diverged, step, diverged_step)
    alive = alive & ~newly_diverged
    step = step + take.astype(step.dtype)
    counted = take.astype(jnp.float32)
    return params, opt_state, step, alive, diverged_step, jnp.where(take, loss, 0.0), counted


def _over_members(spec: GroupSpec, sharding: NamedSharding, fn: Callable[..., Any],
                  members: Any, shared: Any) -> Any:
    """``fn(member, shared)`` for every member of ``members`` (leaves ``[P, ...]``), stacked.

    ``spec.member_loop == "vmap"`` batches the members into one program (``[P, ...]``
    operands: what fills a GPU). ``"map"`` loops over each device's own members, one after
    another (``shard_map`` of ``lax.map``): every product is one member's own, and one member's
    parameters and optimizer state stay in cache for the whole segment, which XLA:CPU runs about
    1.25x faster than the batched products (docs/benchmarks.md).
    """
    if spec.member_loop == "vmap":
        return jax.vmap(fn, in_axes=(0, None))(members, shared)

    def local(members, shared):
        return jax.lax.map(lambda member: fn(member, shared), members)

    member_spec = jax.tree_util.tree_map(lambda _: PartitionSpec(POPULATION_AXIS), members)
    shared_spec = jax.tree_util.tree_map(lambda _: PartitionSpec(), shared)
    # check_vma=False: a member's scan starts some carries from constants (a finite flag, a
    # fresh optimizer count) that the device-variance check would type apart from the members'
    # values; nothing here communicates across devices, so there is nothing for it to guard.
    return jax.shard_map(
        local, mesh=sharding.mesh, in_specs=(member_spec, shared_spec),
        out_specs=PartitionSpec(POPULATION_AXIS), check_vma=False,
    )(members, shared)


def _shared_batch_at(spec: GroupSpec, shared: Any, i: jax.Array) -> Any:
    """Step ``i``'s common minibatch (``batch_mode="shared"``), or ``None`` (members sample
    their own)."""
    if spec.batch_mode != "shared":
        return None
    train, shared_key, segment_index = shared
    # Common random numbers: one minibatch per step for every member.
    key = jax.random.fold_in(shared_key, segment_index * spec.steps_per_segment + i)
    idx = data_lib.sample_batch_indices(key, datatree.num_rows(train["y"], "y"), spec.batch_size)
    return datatree.take_rows(train, idx)


def _mean_loss(losses: jax.Array, steps_taken: jax.Array) -> jax.Array:
    """Mean training loss over the steps a member took (NaN when it took none)."""
    return jnp.where(
        steps_taken > 0, jnp.sum(losses, axis=-1) / jnp.maximum(steps_taken, 1.0), jnp.nan
    )


def _guarded_member(spec: GroupSpec, member: Any, shared: Any) -> Any:
    """One member's guarded scan over a segment: every step checked and frozen if need be."""
    params, opt_state, train_key, step, budget, alive, diverged_step, preprocess, dyn, r, c = member

    def body(carry, i):
        params, opt_state, step, alive, diverged_step = carry
        params, opt_state, step, alive, diverged_step, loss, counted = _member_step(
            spec, params, opt_state, train_key, step, budget, alive, diverged_step,
            preprocess, dyn, r, c, shared[0], _shared_batch_at(spec, shared, i),
        )
        return (params, opt_state, step, alive, diverged_step), (loss, counted)

    carry = (params, opt_state, step, alive, diverged_step)
    carry, (losses, counted) = jax.lax.scan(
        body, carry, jnp.arange(spec.steps_per_segment, dtype=jnp.int32)
    )
    return carry, _mean_loss(losses, jnp.sum(counted))


def _guarded_scan(spec: GroupSpec, sharding: NamedSharding, start: PopulationState,
                  budget: jax.Array, dynamic: Any, rows: MemberRows | None, shared: Any) -> Any:
    """Every member's guarded scan: ``(new_state, train_loss)``."""
    members = (start.params, start.opt_state, start.train_key, start.step, budget, start.alive,
               start.diverged_step, start.preprocess, dynamic, *_train_rows(rows))
    carry, train_loss = _over_members(
        spec, sharding, functools.partial(_guarded_member, spec), members, shared
    )
    params, opt_state, step, alive, diverged_step = carry
    new_state = start._replace(params=params, opt_state=opt_state, step=step, alive=alive,
                               diverged_step=diverged_step)
    return new_state, train_loss


def _fast_member(spec: GroupSpec, member: Any, shared: Any) -> Any:
    """One member's unchecked scan over a segment, and whether it stayed finite."""
    params, opt_state, train_key, step, preprocess, dyn, r, c = member

    def body(carry, i):
        params, opt_state, finite = carry
        loss, _, params, opt_state = _member_update(
            spec, params, opt_state, train_key, step + i, preprocess, dyn, r, c,
            shared[0], _shared_batch_at(spec, shared, i),
        )
        return (params, opt_state, finite & jnp.isfinite(loss)), loss

    (params, opt_state, finite), losses = jax.lax.scan(
        body, (params, opt_state, jnp.bool_(True)),
        jnp.arange(spec.steps_per_segment, dtype=jnp.int32),
    )
    return params, opt_state, finite & _all_finite(params), losses


def _fast_scan(spec: GroupSpec, sharding: NamedSharding, live: jax.Array, dynamic: Any,
               rows: MemberRows | None, shared: Any, start: PopulationState) -> Any:
    """Every member's unchecked scan: ``(new_state, train_loss, a live member went wrong)``."""
    num_segment_steps = spec.steps_per_segment
    members = (start.params, start.opt_state, start.train_key, start.step, start.preprocess,
               dynamic, *_train_rows(rows))
    params, opt_state, finite, losses = _over_members(
        spec, sharding, functools.partial(_fast_member, spec), members, shared
    )
    went_wrong = jnp.any(live & ~finite)
    new_state = start._replace(
        params=params, opt_state=opt_state,
        step=jnp.where(live, start.step + num_segment_steps, start.step),
    )
    steps_taken = jnp.where(live, jnp.float32(num_segment_steps), 0.0)
    return new_state, _mean_loss(losses, steps_taken), went_wrong


def _train_rows(rows: MemberRows | None) -> tuple[Any, Any]:
    """``(train_rows, train_counts)`` of the members' row tables, or ``(None, None)``."""
    return (None, None) if rows is None else (rows.train_rows, rows.train_counts)


def run_segment(
    spec: GroupSpec,
    sharding: NamedSharding,
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

    Returns the new state, the per-member metrics and whether the guarded scan ran.
    ``budget`` (``[P]`` int32) is every member's own step budget, a runtime value: a member
    at its budget is frozen like a finished one, so members with different budgets share one
    program.

    Two scans of the same steps are in the program, and ``lax.cond`` picks at run time:

    * the *fast* scan updates every member unconditionally (what a hand-written
      ``vmap(scan)`` does). It runs when every live member has a whole segment left. Members
      that are not live (stopped, diverged, finished, padding) get their starting state back at
      the end. A live member went wrong in it exactly when one of its losses was not finite or
      its final parameters are not (a non-finite update makes a parameter non-finite, and a
      non-finite parameter stays so), and then its result is thrown away.
    * the *guarded* scan checks every member at every step and freezes it at its last finite
      state. It reruns the segment from the starting state when the fast scan saw a member go
      wrong, or when a live member has less than a segment left.

    When the fast scan's result is kept, the guarded scan would have taken the same steps, so
    the two give the same members the same values. The per-step selects of the guarded scan cost
    about 15% of a step on XLA:CPU (docs/benchmarks.md), which the fast path does not pay.
    Each member's scan is its own (:func:`_over_members` loops or batches the members).
    """
    shared = (train, shared_key, segment_index)
    live = state.alive & (state.step < budget)
    any_live = jnp.any(live)

    def skip(start):
        # Nothing live: nothing to do. A live member short of a whole segment: guarded scan.
        return start, jnp.full(live.shape, jnp.nan, jnp.float32), any_live

    def keep_fast(start, fast_state, fast_loss):
        return fast_state, fast_loss

    def keep_fast_restoring_the_others(start, fast_state, fast_loss):
        # Members that were not live trained on garbage in the fast scan: back to their start.
        return fast_state._replace(
            params=_tree_select_members(live, fast_state.params, start.params),
            opt_state=_tree_select_members(live, fast_state.opt_state, start.opt_state),
        ), fast_loss

    def rerun_guarded(start, fast_state, fast_loss):
        return _guarded_scan(spec, sharding, start, budget, dynamic, rows, shared)

    fast = functools.partial(_fast_scan, spec, sharding, live, dynamic, rows, shared)
    whole_segment_left = ~jnp.any(live & (state.step + spec.steps_per_segment > budget))
    fast_state, fast_loss, redo = jax.lax.cond(whole_segment_left & any_live, fast, skip, state)
    # The restoring select is a pass over the whole state: skipped when every member is live.
    branch = jnp.where(redo, 2, jnp.where(jnp.all(live), 0, 1))
    new_state, train_loss = jax.lax.switch(
        branch, (keep_fast, keep_fast_restoring_the_others, rerun_guarded),
        state, fast_state, fast_loss,
    )
    metrics = {"train_loss": train_loss}
    metrics.update(
        evaluate_population(spec, sharding, new_state, dynamic, rows, train, valid, "valid")
    )
    return new_state, metrics, redo


def evaluate_population(spec, sharding, state, dynamic, rows, train, data, prefix):
    """Evaluates every member on its own validation rows (folds) or on the shared ``data``."""

    def one(member, shared):
        p, d, preprocess, member_data = member
        member_data = shared if member_data is None else member_data
        member_data = {**member_data, "x": _apply_preprocess(preprocess, member_data["x"])}
        return spec.task.evaluate(p, member_data, spec.hp(d))

    num_members = state.step.shape[0]
    shared = None
    if rows is not None and prefix == "valid":
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
    values = _over_members(
        spec, sharding, one, (state.params, dynamic, state.preprocess, member_data), shared
    )
    return {f"{prefix}_{name}": jnp.asarray(v, jnp.float32) for name, v in values.items()}


def init_population(spec, member_key, dynamic, rows, train, alive, sharding=None):
    """A fresh population: every member initialized from its own key ``member_key[i]``.

    With ``sharding`` the members are initialized as they train (:func:`_over_members`): with
    ``member_loop="map"`` one after another, which XLA:CPU compiles in about half the time of the
    batched initializers (their random-number code batched over ``P`` keys dominates) and which
    gives the same bits (docs/faq.md, "Why does the first call take seconds?").
    """
    if sharding is None:
        params, opt_state = jax.vmap(member_init, in_axes=(None, 0, 0))(spec, member_key,
                                                                       dynamic)
    else:
        params, opt_state = _over_members(
            spec, sharding, lambda member, _: member_init(spec, *member), (member_key, dynamic),
            None)
    train_rows = None if rows is None else rows.train_rows
    train_counts = None if rows is None else rows.train_counts
    num_members = member_key.shape[0]
    preprocess = jax.vmap(_fit_preprocess, in_axes=(None, None, 0, 0), axis_size=num_members)(
        spec, train, train_rows, train_counts
    )
    return PopulationState(
        params=params,
        opt_state=opt_state,
        train_key=jax.vmap(lambda k: jax.random.fold_in(k, 1))(member_key),
        step=jnp.zeros((num_members,), jnp.int32),
        alive=alive,
        diverged_step=jnp.full((num_members,), -1, jnp.int32),
        preprocess=preprocess,
    )


def update_population(spec, sharding, state, dynamic, source, reinit, stop, new_keys,
                      new_dynamic, rows, train):
    """Applies a scheduler's decision with fixed shapes: one program, never recompiled.

    ``source[i]`` is the slot whose parameters, optimizer state and step slot ``i`` takes
    (exploit; ``source[i] == i`` keeps its own); ``reinit`` slots restart from fresh
    parameters with ``new_keys`` (refill); ``stop`` slots stop training. ``new_dynamic`` are
    every slot's hyperparameters after the update (explore).
    """
    take = lambda x: x[source]  # noqa: E731
    params = jax.tree_util.tree_map(take, state.params)
    opt_state = jax.tree_util.tree_map(take, state.opt_state)
    fresh = init_population(spec, new_keys, new_dynamic, rows, train, ~stop, sharding)
    params = _tree_select_members(reinit, fresh.params, params)
    opt_state = _tree_select_members(reinit, fresh.opt_state, opt_state)
    updated = PopulationState(
        params=params,
        opt_state=opt_state,
        train_key=jnp.where(reinit[:, None], fresh.train_key, state.train_key),
        step=jnp.where(reinit, 0, state.step[source]),
        alive=jnp.where(reinit, True, state.alive[source]) & ~stop,
        diverged_step=jnp.where(reinit, -1, state.diverged_step[source]),
        preprocess=_tree_select_members(reinit, fresh.preprocess, state.preprocess),
    )
    return updated, new_dynamic


def _tree_select_members(mask: jax.Array, new: Any, old: Any) -> Any:
    def select(n, o):
        return jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(select, new, old)


def pinned(fn: Callable[..., Any], *, pass_sharding: bool = False) -> Callable[..., Any]:
    """``fn(spec, *args)`` -> ``pinned(spec, sharding, *args)`` whose outputs are sharded on the
    population axis. Without it, leaves built from constants (zeros of a fresh optimizer state,
    step counters) come out replicated, and the next call compiles again for that layout.
    Scalar outputs (a segment's ``guarded`` flag) stay replicated."""

    def pinned(spec, sharding, *args):
        def pin(x):
            return jax.lax.with_sharding_constraint(x, sharding) if jnp.ndim(x) else x

        out = fn(spec, sharding, *args) if pass_sharding else fn(spec, *args)
        return jax.tree_util.tree_map(pin, out)

    pinned.__name__ = fn.__name__
    return pinned


def _init_over_members(spec, sharding, member_key, dynamic, rows, train, alive):
    return init_population(spec, member_key, dynamic, rows, train, alive, sharding)


init_jit = jax.jit(pinned(_init_over_members, pass_sharding=True), static_argnums=(0, 1))
segment_jit = jax.jit(pinned(run_segment, pass_sharding=True), static_argnums=(0, 1))
segment_jit_donating = jax.jit(pinned(run_segment, pass_sharding=True), static_argnums=(0, 1),
                                donate_argnums=2)
update_jit = jax.jit(pinned(update_population, pass_sharding=True), static_argnums=(0, 1))
evaluate_jit = jax.jit(evaluate_population, static_argnums=(0, 1, 7))



def params_treedef(spec: GroupSpec) -> Any:
    """The tree structure of one member's parameters in group ``spec`` (tracing only)."""
    dyn = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in spec.dynamic_names}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    params, _ = jax.eval_shape(lambda k, d: member_init(spec, k, d), key, dyn)
    return jax.tree_util.tree_structure(params)
