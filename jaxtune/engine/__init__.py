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
program (``lax.cond``; see :func:`_segment`). Both scans give a healthy member the same values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxtune import checks, compile_cache, jsonio, limits, optim
from jaxtune import data as data_lib
from jaxtune.contracts import PopulationUpdate as PopulationUpdate  # re-exported
from jaxtune.contracts import Scheduler, SegmentReport, SlotView
from jaxtune.engine.options import EngineOptions, Hooks
from jaxtune.results import MemberResult, Results
from jaxtune.task import Task, check_task_data

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
        with statistics of their own training rows, else ``{}``.
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
      num_steps: training steps per member.
      batch_size: minibatch rows per step, or ``None`` for full-batch gradient descent.
      steps_per_segment: steps per compiled segment (the learning-curve resolution).
      batch_mode: ``"independent"`` (each member samples its own minibatch) or ``"shared"``
        (one minibatch per step for every member: common random numbers).
      member_rows: members read the data through their own row tables (folds).
      standardize: members standardize inputs with statistics of their own training rows.
      member_loop: ``"vmap"`` (members batched into one program) or ``"map"`` (each device
        loops over its own members); see :func:`train`.
    """

    task: Task
    static_hp: tuple[tuple[str, Any], ...]
    dynamic_names: tuple[str, ...]
    num_steps: int
    batch_size: int | None
    steps_per_segment: int
    batch_mode: str = "independent"
    member_rows: bool = False
    standardize: bool = False
    member_loop: str = "vmap"

    def hp(self, dynamic: Mapping[str, jax.Array]) -> dict[str, Any]:
        """One member's hyperparameters: static Python values and traced dynamic scalars."""
        return {**dict(self.static_hp), **dynamic}

    @property
    def label(self) -> str:
        """A readable name for the group, e.g. ``"optimizer=adamw,width=64"``."""
        if not self.static_hp:
            return "default"
        return ",".join(f"{k}={v}" for k, v in self.static_hp)


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


def _member_init(spec: GroupSpec, key: jax.Array, dynamic: Mapping[str, jax.Array]):
    hp = spec.hp(dynamic)
    params = spec.task.init(jax.random.fold_in(key, 0), hp)
    opt_state = optim.make_optimizer(hp, spec.num_steps).init(params)
    return params, opt_state


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
    optimizer = optim.make_optimizer(hp, spec.num_steps)
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    return loss, updates, optax.apply_updates(params, updates), new_opt_state


def _member_step(spec, params, opt_state, train_key, step, alive, diverged_step, preprocess,
                 dynamic, rows, count, train, shared_batch):
    """One member's guarded step: it freezes a member that is stopped, done or not finite."""
    loss, updates, new_params, new_opt_state = _member_update(
        spec, params, opt_state, train_key, step, preprocess, dynamic, rows, count, train,
        shared_batch,
    )
    finite = jnp.isfinite(loss) & _all_finite(updates)
    in_range = step < spec.num_steps
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


def _segment(
    spec: GroupSpec,
    sharding: NamedSharding,
    state: PopulationState,
    dynamic: Mapping[str, jax.Array],
    rows: MemberRows | None,
    shared_key: jax.Array,
    segment_index: jax.Array,
    train: Mapping[str, jax.Array],
    valid: Mapping[str, jax.Array],
) -> tuple[PopulationState, dict[str, jax.Array], jax.Array]:
    """``steps_per_segment`` steps of every member, then the validation pass.

    Returns the new state, the per-member metrics and whether the guarded scan ran.

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
    train_rows = None if rows is None else rows.train_rows
    train_counts = None if rows is None else rows.train_counts
    num_segment_steps = spec.steps_per_segment
    shared = (train, shared_key, segment_index)

    def shared_batch_at(shared, i):
        if spec.batch_mode != "shared":
            return None
        train, shared_key, segment_index = shared
        # Common random numbers: one minibatch per step for every member.
        key = jax.random.fold_in(shared_key, segment_index * num_segment_steps + i)
        idx = data_lib.sample_batch_indices(key, train["y"].shape[0], spec.batch_size)
        return {"x": train["x"][idx], "y": train["y"][idx]}

    def mean_loss(losses, steps_taken):
        return jnp.where(
            steps_taken > 0, jnp.sum(losses, axis=-1) / jnp.maximum(steps_taken, 1.0), jnp.nan
        )

    def guarded_member(member, shared):
        params, opt_state, train_key, step, alive, diverged_step, preprocess, dyn, r, c = member

        def body(carry, i):
            params, opt_state, step, alive, diverged_step = carry
            params, opt_state, step, alive, diverged_step, loss, counted = _member_step(
                spec, params, opt_state, train_key, step, alive, diverged_step, preprocess,
                dyn, r, c, shared[0], shared_batch_at(shared, i),
            )
            return (params, opt_state, step, alive, diverged_step), (loss, counted)

        carry = (params, opt_state, step, alive, diverged_step)
        carry, (losses, counted) = jax.lax.scan(
            body, carry, jnp.arange(num_segment_steps, dtype=jnp.int32)
        )
        return carry, mean_loss(losses, jnp.sum(counted))

    def guarded(start):
        members = (start.params, start.opt_state, start.train_key, start.step, start.alive,
                   start.diverged_step, start.preprocess, dynamic, train_rows, train_counts)
        carry, train_loss = _over_members(spec, sharding, guarded_member, members, shared)
        params, opt_state, step, alive, diverged_step = carry
        new_state = start._replace(params=params, opt_state=opt_state, step=step, alive=alive,
                                   diverged_step=diverged_step)
        return new_state, train_loss

    live = state.alive & (state.step < spec.num_steps)

    def fast_member(member, shared):
        params, opt_state, train_key, step, preprocess, dyn, r, c = member

        def body(carry, i):
            params, opt_state, finite = carry
            loss, _, params, opt_state = _member_update(
                spec, params, opt_state, train_key, step + i, preprocess, dyn, r, c,
                shared[0], shared_batch_at(shared, i),
            )
            return (params, opt_state, finite & jnp.isfinite(loss)), loss

        (params, opt_state, finite), losses = jax.lax.scan(
            body, (params, opt_state, jnp.bool_(True)),
            jnp.arange(num_segment_steps, dtype=jnp.int32),
        )
        return params, opt_state, finite & _all_finite(params), losses

    def fast(start):
        members = (start.params, start.opt_state, start.train_key, start.step, start.preprocess,
                   dynamic, train_rows, train_counts)
        params, opt_state, finite, losses = _over_members(
            spec, sharding, fast_member, members, shared
        )
        went_wrong = jnp.any(live & ~finite)
        new_state = start._replace(
            params=params, opt_state=opt_state,
            step=jnp.where(live, start.step + num_segment_steps, start.step),
        )
        steps_taken = jnp.where(live, jnp.float32(num_segment_steps), 0.0)
        return new_state, mean_loss(losses, steps_taken), went_wrong

    any_live = jnp.any(live)
    all_live = jnp.all(live)

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
        return guarded(start)

    whole_segment_left = ~jnp.any(live & (state.step + num_segment_steps > spec.num_steps))
    fast_state, fast_loss, redo = jax.lax.cond(whole_segment_left & any_live, fast, skip, state)
    # The restoring select is a pass over the whole state: skipped when every member is live.
    branch = jnp.where(redo, 2, jnp.where(all_live, 0, 1))
    new_state, train_loss = jax.lax.switch(
        branch, (keep_fast, keep_fast_restoring_the_others, rerun_guarded),
        state, fast_state, fast_loss,
    )
    metrics = {"train_loss": train_loss}
    metrics.update(
        _evaluate_population(spec, sharding, new_state, dynamic, rows, train, valid, "valid")
    )
    return new_state, metrics, redo


def _evaluate_population(spec, sharding, state, dynamic, rows, train, data, prefix):
    """Evaluates every member on its own validation rows (folds) or on the shared ``data``."""

    def one(member, shared):
        p, d, preprocess, member_data = member
        member_data = shared if member_data is None else member_data
        member_data = {**member_data, "x": _apply_preprocess(preprocess, member_data["x"])}
        return spec.task.evaluate(p, member_data, spec.hp(d))

    num_members = state.step.shape[0]
    shared = None
    if rows is not None and prefix == "valid":
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
    values = _over_members(
        spec, sharding, one, (state.params, dynamic, state.preprocess, member_data), shared
    )
    return {f"{prefix}_{name}": jnp.asarray(v, jnp.float32) for name, v in values.items()}


def _init_population(spec, member_key, dynamic, rows, train, alive):
    params, opt_state = jax.vmap(_member_init, in_axes=(None, 0, 0))(spec, member_key, dynamic)
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


def _update_population(spec, state, dynamic, source, reinit, stop, new_keys, new_dynamic,
                       rows, train):
    """Applies a scheduler's decision with fixed shapes: one program, never recompiled.

    ``source[i]`` is the slot whose parameters, optimizer state and step slot ``i`` takes
    (exploit; ``source[i] == i`` keeps its own); ``reinit`` slots restart from fresh
    parameters with ``new_keys`` (refill); ``stop`` slots stop training. ``new_dynamic`` are
    every slot's hyperparameters after the update (explore).
    """
    take = lambda x: x[source]  # noqa: E731
    params = jax.tree_util.tree_map(take, state.params)
    opt_state = jax.tree_util.tree_map(take, state.opt_state)
    fresh = _init_population(spec, new_keys, new_dynamic, rows, train, ~stop)
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


def _pinned(fn: Callable[..., Any], *, pass_sharding: bool = False) -> Callable[..., Any]:
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


_init_jit = jax.jit(_pinned(_init_population), static_argnums=(0, 1))
_segment_jit = jax.jit(_pinned(_segment, pass_sharding=True), static_argnums=(0, 1))
_segment_jit_donating = jax.jit(_pinned(_segment, pass_sharding=True), static_argnums=(0, 1),
                                donate_argnums=2)
_update_jit = jax.jit(_pinned(_update_population), static_argnums=(0, 1))
_evaluate_jit = jax.jit(_evaluate_population, static_argnums=(0, 1, 7))


# --------------------------------------------------------------------------- host side


@dataclasses.dataclass
class _Member:
    """Host bookkeeping of one member while its chunk runs."""

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
        self.curve_steps.append(int(step))
        for name, values in metrics.items():
            self.curves.setdefault(name, []).append(float(values[slot]))
        self.metrics = {name: float(values[slot]) for name, values in metrics.items()}

    def result(self, group: str) -> MemberResult:
        status = "completed" if self.status == "running" else self.status
        return MemberResult(
            member_id=self.member_id, config=dict(self.config), seed=self.seed, fold=self.fold,
            static_group=group, status=status, diverged_step=self.diverged_step,
            metrics=dict(self.metrics), curve_steps=list(self.curve_steps),
            curves={k: list(v) for k, v in self.curves.items()}, wall_time_s=self.wall_time_s,
            hp_schedule=self.hp_schedule,
        )




def config_hash(config: Mapping[str, Any]) -> int:
    """A stable 64-bit hash of a config, used to derive the member's key.

    64 bits make two different configs of a sweep share a key with odds of about
    ``n**2 / 2**65`` (a 31-bit hash gave pairs among 100,000 configs).

    Args:
      config: a configuration (plain JSON-serializable values).

    Returns:
      An int in ``[0, 2**64)``, the same in every process and Python session.
    """
    text = json.dumps(jsonio.plain(config), sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def fold_in_config(key: jax.Array, config: Mapping[str, Any]) -> jax.Array:
    """``key`` with a config's 64-bit :func:`config_hash` folded in (high, then low 32 bits)."""
    value = config_hash(config)
    return jax.random.fold_in(jax.random.fold_in(key, value >> 32), value & 0xFFFFFFFF)


def member_keys(
    sweep_seed: int, seeds: Sequence[int], configs: Sequence[Mapping[str, Any]],
    folds: Sequence[int | None],
) -> np.ndarray:
    """Derives each member's key from the sweep seed and its identity.

    ``key = fold_in(fold_in(fold_in(fold_in(PRNGKey(sweep_seed), seed), hash_hi), hash_lo),
    fold + 1)`` with ``hash_hi``/``hash_lo`` the two 32-bit halves of the 64-bit
    :func:`config_hash` (fold 0 for "no fold"), so a member's key does not depend on its
    position or neighbours. (Checkpoint format 1 folded in a 31-bit hash instead.)

    Returns:
      ``np.ndarray [num_members, 2]`` uint32 raw keys.
    """
    base = jax.random.PRNGKey(sweep_seed)
    seeds_a = jnp.asarray(np.asarray(seeds, np.int64) & 0x7FFFFFFF, jnp.int32)
    hashes = np.asarray([config_hash(c) for c in configs], np.uint64).reshape(-1)
    high = jnp.asarray((hashes >> np.uint64(32)).astype(np.uint32))
    low = jnp.asarray((hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    folds_a = jnp.asarray([0 if f is None else int(f) + 1 for f in folds], jnp.int32)

    def derive(s, h, lo, f):
        key = jax.random.fold_in(jax.random.fold_in(base, s), h)
        return jax.random.fold_in(jax.random.fold_in(key, lo), f)

    return np.asarray(jax.vmap(derive)(seeds_a, high, low, folds_a))


#: Names that are always values in arithmetic, whatever the Python type a config gives them.
DYNAMIC_NAMES = frozenset(
    {"learning_rate", "lr_decay", "decay_rate", "dropout", "l1", "l2", *optim.HPARAM_DEFAULTS}
)


def infer_static_names(configs: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Static names when no Space is given.

    Optimizer and schedule structure (``optimizer``, ``warmup_steps``...) is static; the
    values the optimizers, schedules and ready-made tasks read (``learning_rate``, ``dropout``,
    ``l2``...) are dynamic; any other name is static unless every config gives it a float.
    """
    static = set(optim.STATIC_HPARAMS)
    for config in configs:
        for name, value in config.items():
            if name in DYNAMIC_NAMES:
                continue
            if not isinstance(value, float | np.floating) or isinstance(value, bool):
                static.add(name)
    return frozenset(static)


#: Names the engine itself reads as plain Python values (a minibatch shape, a loop count). A
#: task adds its own (``Task.static_hparams``: the ready-made models' layer sizes); the
#: optimizer's structural names are checked by :func:`jaxtune.optim.validate_optimizer`.
ENGINE_STATIC_NAMES: frozenset[str] = checks.ENGINE_HPARAMS


def _check_names_read(task, specs, configs, split, sweep_reads, allow_unused) -> None:
    """Refuses (or warns about) names that nothing in the sweep reads (before compiling).

    Read are: what the optimizer and schedule of some static group read, what the task looks
    up in ``hp`` while traced abstractly for some group, the engine's names, and
    ``sweep_reads`` (the rest of the sweep, given by a driver).
    """
    optimizers, task_read = set(sweep_reads), set()
    for spec, _ in specs:
        static_hp = dict(spec.static_hp)
        optimizers.update(checks.optimizer_reads([static_hp]) | {"optimizer", "schedule"})
        task_read |= checks.task_reads(
            task, spec.static_hp, spec.dynamic_names, split.x_train, split.y_train,
            spec.batch_size or len(split.y_train), len(split.y_valid), spec.label)
    readers = {"the optimizers and schedules of this sweep": optimizers,
               "the engine": checks.ENGINE_HPARAMS, f"task {task.name!r}": task_read}
    first = {}
    for i, config in enumerate(configs):
        for name in config:
            first.setdefault(name, i)
    where = f"configs[{min(first.values(), default=0)}]"
    unread = set(first) - optimizers - checks.ENGINE_HPARAMS - task_read
    if unread:
        where = f"configs[{min(first[n] for n in unread)}]"
    checks.check_names_read(first, readers, where=where, suggestions=checks.known_names(task),
                            allow_unused=allow_unused)


def check_integer_value(where: str, value: Any) -> None:
    """Refuses a value built as an integer (a layer size, a count) that is not one: ``8.5``
    would be recorded as given but built as ``int(8.5) == 8``. A list or tuple (``hidden_sizes``)
    must hold integers.

    Raises:
      ValueError: naming ``where``, the value and the fix.
    """
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            raise ValueError(
                f"{where} = {value!r} is built as an integer (a layer size or a count), but "
                f"{item!r} ({type(item).__name__}) is not one: it would be recorded as given "
                "and built truncated; give an int (e.g. Int(...) or Choice([8, 16]))."
            )


def _validate_configs(
    configs: Sequence[Mapping[str, Any]], static_names: frozenset[str], task: Task
) -> None:
    if len(configs) == 0:
        raise ValueError("configs is empty: pass at least one configuration to train.")
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise TypeError(f"configs[{i}] must be a mapping of hyperparameter names to values, "
                            f"got {type(config).__name__}.")
        for name, value in config.items():
            full_batch = name == "batch_size" and value is None
            if (name in ENGINE_STATIC_NAMES or name in task.integer_hparams) and not full_batch:
                check_integer_value(f"configs[{i}][{name!r}]", value)
            if name in static_names:
                continue
            if name in ENGINE_STATIC_NAMES or name in task.static_hparams:
                raise ValueError(
                    f"configs[{i}][{name!r}] is declared dynamic, but {name!r} sets a shape, a "
                    "loop count or the code path, so its value cannot be traced: declare it "
                    f"static in the Space (e.g. Choice([...]) or Int(..., static=True)) or "
                    "list it in static_names."
                )
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise TypeError(
                    f"configs[{i}][{name!r}] = {value!r} is dynamic and must be a number; "
                    "mark it static in the Space (Choice/Fixed) if it selects code or a shape."
                )
            if not math.isfinite(float(value)):
                raise ValueError(f"configs[{i}][{name!r}] = {value!r} is not finite.")


def _split_groups(
    configs: Sequence[Mapping[str, Any]], static_names: frozenset[str]
) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        key = tuple(sorted((k, _hashable(v)) for k, v in config.items() if k in static_names))
        groups.setdefault(key, []).append(i)
    return groups


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _device_memory_bytes(devices: Sequence[jax.Device]) -> int:
    """Memory one device of ``devices`` may use: the smallest, agreed by every process.

    Only this process's devices can be asked (``memory_stats`` of another process's device
    fails); with several processes the minimum is all-gathered, so that every process picks
    the same chunk sizes and so runs the same programs (different choices would deadlock).
    CPU devices share the host's memory: each gets the physical memory divided by the number
    of this process's devices in ``devices``.
    """
    local = [d for d in devices if d.process_index == jax.process_index()]
    limits = []
    for device in local:
        stats = device.memory_stats() if hasattr(device, "memory_stats") else None
        if stats and "bytes_limit" in stats:
            limits.append(int(stats["bytes_limit"]))
        else:
            limits.append(_host_memory_bytes() // len(local))
    budget = min(limits)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        # int32 MiB: exact enough, and safe without jax_enable_x64.
        budget_mib = np.int32(min(budget >> 20, 2**31 - 1))
        budget = int(np.min(multihost_utils.process_allgather(budget_mib))) << 20
    return budget


def _host_memory_bytes() -> int:
    try:
        import os

        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def member_memory_bytes(
    spec: GroupSpec,
    example_dynamic: Mapping[str, float],
    input_shape: Sequence[int],
    eval_bytes: int = 0,
    *,
    eval_rows: int = 0,
    train_rows: int | None = None,
    input_dtype: Any = np.float32,
    label_dtype: Any = np.int32,
) -> int:
    """Estimates one member's device memory from abstract shapes (tracing only, no compilation).

    ``4 * state + max(step_peak, eval_peak) + eval_bytes``, where ``state`` is the parameters
    plus optimizer state (the segment's starting state, kept for a guarded rerun, and the
    current, new and selected copies live at once), ``step_peak`` the
    largest total size of the values alive at once in one member's gradient step on one
    minibatch, ``eval_peak`` the same for ``task.evaluate`` on ``eval_rows`` rows, and
    ``eval_bytes`` the member's own copy of the validation data. Both peaks come from walking
    the traced jaxpr in order and freeing each value after its last use: what the program needs
    before XLA fuses anything (fusion only removes intermediates). On XLA:CPU this lands above
    the compiled segment's own ``memory_analysis()``: within 1.5x of it for the built-in MLP
    and CNN with ``member_loop="vmap"``, 2-4x with ``"map"``, where a device holds one member's
    activations at a time (tests/test_devices.py). The result is cached per signature: a sweep
    calling ``train`` once per round traces the task once.

    Args:
      spec: the static group.
      example_dynamic: the group's dynamic hyperparameter names (values are not used).
      input_shape: one example's shape, without the batch axis.
      eval_bytes: bytes of the validation data each member holds.
      eval_rows: validation rows each member evaluates after every segment.
      train_rows: rows of a full batch (used when ``spec.batch_size`` is None; default 1024).
      input_dtype: dtype of ``x``.
      label_dtype: dtype of ``y``.

    Returns:
      Bytes per member.
    """
    return _member_memory_bytes(
        spec, tuple(sorted(example_dynamic)), tuple(int(d) for d in input_shape), int(eval_bytes),
        int(eval_rows), None if train_rows is None else int(train_rows), np.dtype(input_dtype),
        np.dtype(label_dtype),
    )


@functools.lru_cache(maxsize=64)
def _member_memory_bytes(spec, example_dynamic, input_shape, eval_bytes, eval_rows, train_rows,
                         input_dtype, label_dtype) -> int:
    # Abstract inputs only: estimating must not compile (or run) anything.
    dyn = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in example_dynamic}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    params, opt_state = jax.eval_shape(lambda k, d: _member_init(spec, k, d), key, dyn)
    state_bytes = sum(
        math.prod(x.shape) * x.dtype.itemsize
        for x in jax.tree_util.tree_leaves((params, opt_state))
    )

    def data(rows):
        return {"x": jax.ShapeDtypeStruct((rows, *input_shape), input_dtype),
                "y": jax.ShapeDtypeStruct((rows,), label_dtype)}

    def step(p, batch, k, d):
        return jax.value_and_grad(spec.task.loss, has_aux=True)(p, batch, k, spec.hp(d))

    rows = spec.batch_size or train_rows or 1024
    peak = _peak_live_bytes(jax.make_jaxpr(step)(params, data(rows), key, dyn))
    if eval_rows > 0:
        evaluate = jax.make_jaxpr(lambda p, v, d: spec.task.evaluate(p, v, spec.hp(d)))
        peak = max(peak, _peak_live_bytes(evaluate(params, data(eval_rows), dyn)))
    return 4 * state_bytes + peak + eval_bytes


def _peak_live_bytes(closed_jaxpr: Any) -> int:
    """The largest total size of the values alive at once while a jaxpr runs in order.

    Inputs count from the start; every value is freed after its last use. Nested calls count by
    their outputs only.
    """
    from jax.extend.core import Literal

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


def _stack_dynamic(
    configs: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> dict[str, np.ndarray]:
    # Hyperparameters are float32 whatever the model dtype (a bf16 learning rate loses digits).
    return {n: np.asarray([float(c[n]) for c in configs], np.float32) for n in names}


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    if array.shape[0] == size:
        return array
    reps = np.repeat(array[:1], size - array.shape[0], axis=0)
    return np.concatenate([array, reps], axis=0)


@dataclasses.dataclass
class _Layout:
    mesh: Mesh
    population: NamedSharding
    replicated: NamedSharding
    donate: bool

    @classmethod
    def build(cls, devices: Sequence[jax.Device] | None) -> _Layout:
        devices = list(devices) if devices is not None else jax.devices()
        mesh = Mesh(np.asarray(devices), (POPULATION_AXIS,))
        return cls(
            mesh=mesh,
            population=NamedSharding(mesh, PartitionSpec(POPULATION_AXIS)),
            replicated=NamedSharding(mesh, PartitionSpec()),
            donate=devices[0].platform != "cpu",
        )

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def put(self, tree: Any, sharding: NamedSharding | None = None) -> Any:
        """Host numpy -> global arrays. Every process holds the same host values (they are
        derived deterministically from the sweep), so each fills its addressable shards; this
        works the same on one process and on many (``jax.distributed``)."""
        sharding = sharding or self.population

        def one(value):
            value = np.asarray(value)
            return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

        return jax.tree_util.tree_map(one, tree)

    def replicate(self, tree: Any) -> Any:
        """Host numpy -> arrays replicated on every device of the mesh."""
        return self.put(tree, self.replicated)


def _put_like(value: np.ndarray, template: jax.Array) -> jax.Array:
    """A host array (a restored checkpoint's, dtype checked against ``template``) placed with
    ``template``'s sharding, so the next segment runs the program already compiled."""
    return jax.make_array_from_callback(value.shape, template.sharding, lambda index: value[index])


def _to_host(tree: Any) -> Any:
    """Global arrays -> host numpy on every process (an all-gather when several processes)."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree_util.tree_map(one, tree)


def train(
    task: Task,
    configs: Sequence[Mapping[str, Any]],
    split: data_lib.Split,
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
    """Trains every configuration as one member of a vectorized population.

    Args:
      task: the :class:`~jaxtune.task.Task` each member runs.
      configs: one dict per member, mapping hyperparameter names to values.
      split: the data; members train on ``split.train`` and are validated on ``split.valid``
        after every segment (and on ``split.test`` at the end if ``evaluate_test``).
      num_steps: optimizer steps per member. A config's static ``num_steps`` overrides it.
      batch_size: rows per minibatch (sampled per member, with replacement, inside the
        compiled step), or ``None`` for full-batch gradient descent. A config's static
        ``batch_size`` overrides it.
      steps_per_segment: steps per compiled segment; metrics are recorded once a segment.
      seed: the sweep seed.
      member_seeds: one seed per member (default 0 for all); part of the member's identity.
      folds: one fold index (or None) per member; part of the member's identity.
      member_ids: ids written into Results (default ``0..len(configs)-1``).
      static_names: which names are static. Default: a :class:`~jaxtune.space.Space` has
        already said so for configs it made; for hand-written configs every non-float value is
        static and every float is dynamic.
      devices: devices of the population mesh (default: ``jax.devices()``, every device of
        every process; with one process, its local devices).
      pad_to: pad every population chunk to this many members (inert copies that never reach
        Results). Replaying one member with ``pad_to`` equal to the original population size
        and the same devices reproduces it bit for bit.
      max_members_per_chunk: cap on members trained at once; larger groups run in chunks of
        this size (the same compiled program). Rounded down to a multiple of the device count
        (so padding never takes a chunk past the cap); must be at least the device count.
        Default: as many as fit in memory.
      members_per_device: pin the per-device layout: every chunk holds exactly
        ``members_per_device * num_devices`` slots (the last one padded with inert copies), so
        each device always trains a ``[members_per_device, ...]`` slice. Every member then runs
        the same per-device program whatever the device count, and its parameters, metrics and
        curves are bit-identical on 1, 2, 4 or 8 devices (docs/distributed.md). Exclusive with
        ``pad_to`` and ``max_members_per_chunk``; must fit the memory budget.
      memory_budget_bytes: device memory jaxtune may use (default: the device's limit, or host
        memory on CPU).
      evaluate_test: also evaluate final parameters on ``split.test``.
      on_segment: called on the host after every segment with a :class:`SegmentReport`. On a
        resume, its ``restored(member_steps)`` method, when it has one (as
        :class:`~jaxtune.ProgressBar` does), is told the member-steps restored from the
        checkpoint, which no report covers.
      return_params: also return every member's final parameters.
      member_rows: per-member row tables (cross-validation folds), aligned with ``configs``:
        members train on their ``train_rows`` of ``split.x_train`` and are validated on their
        ``valid_rows`` of it (weighted means over real rows).
      standardize: members standardize their inputs with the mean and standard deviation of
        their own training rows (fitted on device, per fold: nothing leaks from held-out rows).
      batch_mode: ``"independent"`` (default: each member samples its own minibatches) or
        ``"shared"`` (one minibatch per step for all members: common random numbers, less
        variance between members, and with ``member_loop="vmap"`` the first layer becomes
        one wide product).
      member_loop: how a device runs its members in a segment: ``"vmap"`` batches them into
        one program (``[P, ...]`` products: what fills a GPU or TPU), ``"map"`` loops over
        them one after another, each member's whole segment at a time (its own products, its
        state in cache: about 1.25x faster than ``"vmap"`` on XLA:CPU). Default (None):
        ``"map"`` on CPU devices, ``"vmap"`` on others. Either way it is one compiled program,
        and with ``"map"`` a member's arithmetic does not depend on the population at all.
      scheduler: a :class:`Scheduler` acting between segments (halving, Hyperband, PBT).
        Members it stops are recorded as ``"stopped"``; members it starts get new ids after
        the largest of ``member_ids``.
      checkpoint: a directory (or a :class:`jaxtune.checkpoint.Checkpointer`) to checkpoint
        into at segment boundaries (docs/checkpointing.md); needs ``orbax-checkpoint``.
      resume: continue the sweep checkpointed in ``checkpoint`` (from its last saved segment;
        a directory without a checkpoint yet starts afresh). The Results equal those of an
        uninterrupted run except ``wall_time_s``, the compile counts and
        ``num_guarded_segments``.
      allow_unused_hparams: warn (``UserWarning``) about a hyperparameter nothing reads
        instead of refusing it (see Raises).
      sweep_reads: names the rest of the sweep reads (a driver passes what
        :func:`jaxtune.checks.check_space` found for its Space): never refused as unread,
        like the names read by any static group of this call (a sweep may mix schedules or
        models, and one round may draw only some of its static groups).

    Returns:
      :class:`~jaxtune.results.Results` with one row per member, in the order of ``configs``.
      ``metadata["num_compilations"]`` counts the XLA compilations this call triggered and
      ``metadata["num_segment_compilations"]`` those of the training segment (one per static
      group on a first call, zero when the same signatures ran before);
      ``metadata["num_guarded_segments"]`` counts the segments that ran the guarded scan (a
      member diverged in them, or one had less than a segment left: see the module
      docstring). With
      ``return_params``, a tuple ``(results, params)`` where ``params[i]`` is member i's final
      parameter pytree (numpy arrays).

    Raises:
      ValueError, TypeError: bad configs, data, step counts or optimizer names, hyperparameter
        values outside their valid ranges (``optim.VALUE_RANGES`` for the names the group's
        optimizer and schedule read, ``task.value_ranges``), a name the engine or the task
        reads as static (``batch_size``, ``num_steps``, ``task.static_hparams``) declared
        dynamic, or a task that does not fit the data (declared
        ``input_shape``/``num_classes``/``kind``, or shapes that fail the abstract trace), a
        ``task`` that is not a Task, a seed that is not a non-negative int, and a hyperparameter
        name that nothing in the sweep reads: not the optimizer or schedule of any static group
        (``optim.OPTIMIZER_HPARAMS``), not the engine (``batch_size``, ``num_steps``), not the
        task (the names its init/loss/evaluate look up in ``hp`` while traced abstractly for
        some group, and ``task.extra_hparams``), nor ``sweep_reads``, with a "did you mean",
        all before any compilation.
      Exception: an exception of the task's own code met while tracing it (a ``NameError``, a
        wrong key) is raised as itself, with a note naming the task function that raised it.

    Example:
      >>> from jaxtune import data, task as task_lib
      >>> split = data.standardize(data.train_valid_test_split(data.load_dataset("digits")))
      >>> task = task_lib.classification_task("mlp", num_classes=10, input_shape=(64,))
      >>> configs = [{"learning_rate": lr, "optimizer": "adam", "width": 64}
      ...            for lr in (1e-3, 3e-3)]
      >>> results = train(task, configs, split, num_steps=100)  # doctest: +SKIP
    """
    checks.check_task_and_data(task, split)
    seed = checks.check_seed("seed", seed)
    configs = [dict(c) for c in configs]
    num_members = len(configs)
    static = (
        frozenset(static_names) if static_names is not None else infer_static_names(configs)
    )
    _validate_configs(configs, static, task)
    limits.check_positive_int("num_steps", num_steps)
    limits.check_positive_int("steps_per_segment", steps_per_segment)
    if batch_size is not None:
        limits.check_positive_int("batch_size", batch_size)
    member_seeds = ([checks.check_seed(f"member_seeds[{i}]", s, limits.MAX_MEMBER_SEED)
                     for i, s in enumerate(member_seeds)]
                    if member_seeds is not None else [0] * num_members)
    folds = list(folds) if folds is not None else [None] * num_members
    member_ids = list(member_ids) if member_ids is not None else list(range(num_members))
    for field, values in (("member_seeds", member_seeds), ("folds", folds),
                          ("member_ids", member_ids)):
        if len(values) != num_members:
            raise ValueError(
                f"{field} has {len(values)} entries but there are {num_members} configs; "
                "give one per config."
            )
    if len(set(member_ids)) != num_members:
        raise ValueError("member_ids must be unique.")
    if batch_mode not in ("independent", "shared"):
        raise ValueError(f"batch_mode={batch_mode!r} must be 'independent' or 'shared'.")
    if member_loop not in (None, "vmap", "map"):
        raise ValueError(f"member_loop={member_loop!r} must be 'vmap', 'map' or None (the "
                         "device's default: 'map' on CPU, 'vmap' on GPU/TPU).")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=<the directory the sweep saved into>.")
    if member_rows is not None:
        member_rows = MemberRows(*(np.asarray(a) for a in member_rows))
        for field, array in zip(MemberRows._fields, member_rows, strict=True):
            if array.shape[0] != num_members:
                raise ValueError(
                    f"member_rows.{field} has {array.shape[0]} rows for {num_members} configs; "
                    "give one row per config."
                )
        num_rows = len(split.y_train)
        for field in ("train_rows", "valid_rows"):
            table = getattr(member_rows, field)
            if table.size and (table.min() < 0 or table.max() >= num_rows):
                raise ValueError(
                    f"member_rows.{field} indexes rows outside 0..{num_rows - 1} of x_train."
                )
        if np.any(member_rows.train_counts < 1):
            raise ValueError("member_rows.train_counts must be >= 1 for every member.")
        if batch_mode == "shared":
            raise ValueError(
                "batch_mode='shared' cannot be combined with member_rows (folds): each fold "
                "samples from its own rows. Use batch_mode='independent'."
            )
    evaluate_test = evaluate_test and split.x_test is not None and len(split.y_test) > 0
    check_task_data(task, split, include_test=evaluate_test)

    layout = _Layout.build(devices)
    if member_loop is None:
        member_loop = "map" if layout.mesh.devices.flat[0].platform == "cpu" else "vmap"
    chunk_cap = _chunk_cap(layout, max_members_per_chunk, members_per_device, pad_to)
    groups = _split_groups(configs, static)
    num_train_rows = len(split.y_train)
    specs: list[tuple[GroupSpec, list[int]]] = []
    for static_key, indices in groups.items():
        static_hp = dict(static_key)
        dynamic_names = tuple(sorted(set(configs[indices[0]]) - static))
        for i in indices:
            if tuple(sorted(set(configs[i]) - static)) != dynamic_names:
                raise ValueError(
                    f"configs[{i}] has hyperparameters {sorted(configs[i])} but configs"
                    f"[{indices[0]}] of the same static group has {sorted(configs[indices[0]])};"
                    " every config of a group must name the same hyperparameters."
                )
        group_steps = int(static_hp.get("num_steps", num_steps))
        group_batch = static_hp.get("batch_size", batch_size)
        limits.check_positive_int("num_steps", group_steps)
        if group_batch is not None:
            limits.check_positive_int("batch_size", group_batch)
            if group_batch > num_train_rows:
                raise ValueError(
                    f"batch_size={group_batch} is larger than the {num_train_rows} training "
                    "rows; lower it or use batch_size=None for full-batch training."
                )
        read = optim.validate_optimizer(static_hp, dynamic_names, group_steps)
        # Only the names this group's optimizer, schedule and task read have a valid range:
        # the same name may mean something else to a user's own task (an `alpha` of 2).
        ranges = {**{n: r for n, r in optim.VALUE_RANGES.items() if n in read},
                  **task.value_ranges}
        for i in indices:
            optim.check_value_ranges(configs[i], ranges, where=f"configs[{i}]")
        if batch_mode == "shared" and group_batch is None:
            raise ValueError("batch_mode='shared' needs a batch_size (not full-batch training).")
        spec = GroupSpec(
            task=task,
            static_hp=tuple(sorted(static_hp.items())),
            dynamic_names=dynamic_names,
            num_steps=group_steps,
            batch_size=None if group_batch is None else int(group_batch),
            steps_per_segment=min(steps_per_segment, group_steps),
            batch_mode=batch_mode,
            member_rows=member_rows is not None,
            standardize=standardize,
            member_loop=member_loop,
        )
        specs.append((spec, indices))
    _check_names_read(task, specs, configs, split, sweep_reads, allow_unused_hparams)

    # Memory: decide chunk sizes before compiling anything.
    budget = memory_budget_bytes or _device_memory_bytes(list(layout.mesh.devices.flat))
    data_bytes = _replicated_data_bytes(split, evaluate_test)
    chunk_sizes = []
    member_bytes: dict[str, int] = {}
    for spec, indices in specs:
        try:
            per_member = member_memory_bytes(
                spec, {n: configs[indices[0]][n] for n in spec.dynamic_names},
                split.x_train.shape[1:],
                eval_bytes=split.x_valid.nbytes + split.y_valid.nbytes,
                eval_rows=len(split.y_valid), train_rows=num_train_rows,
                input_dtype=split.x_train.dtype, label_dtype=split.y_train.dtype,
            )
        except checks.TRACE_ERRORS as error:  # the names trace (checks.task_reads) saw most
            raise checks.trace_error(
                error, task, "init/loss/evaluate", spec.label, split.x_train, split.y_train,
                [n for n, _ in spec.static_hp] + list(spec.dynamic_names),
                spec.dynamic_names) from error
        member_bytes[spec.label] = per_member
        chunk_sizes.append(_chunk_size(spec.label, len(indices), per_member, budget, data_bytes,
                                       layout, chunk_cap, members_per_device))
    num_chunks = sum(
        -(-len(indices) // size) for (_, indices), size in zip(specs, chunk_sizes, strict=True)
    )

    session = None
    if checkpoint is not None:
        from jaxtune import checkpoint as checkpoint_lib

        session = checkpoint_lib.open_train_session(
            checkpoint, resume, _checkpoint_arguments(
                task, configs, split, static, member_seeds, folds, member_ids, num_steps,
                batch_size, steps_per_segment, seed, pad_to, chunk_sizes, layout, evaluate_test,
                return_params, member_rows, standardize, batch_mode, member_loop, scheduler,
            ),
            next_id=max(member_ids) + 1,
        )
        if session.num_restored_chunks:
            _report_restored(on_segment, session.restored_member_steps())
    train_data = layout.replicate({"x": split.x_train, "y": split.y_train})
    valid_data = layout.replicate({"x": split.x_valid, "y": split.y_valid})
    test_data = layout.replicate({"x": split.x_test, "y": split.y_test}) if evaluate_test else None
    next_id = [max(member_ids) + 1 if session is None else session.next_id]

    def new_member_id() -> int:
        next_id[0] += 1
        return next_id[0] - 1

    results_rows: list[MemberResult] = []
    final_params: list[Any] = []
    chunk_index = -1
    stats = {"guarded_segments": 0}
    with compile_cache.CompileCounter() as counter:
        for group_index, ((spec, indices), chunk) in enumerate(zip(specs, chunk_sizes,
                                                                     strict=True)):
            for start in range(0, len(indices), chunk):
                chunk_index += 1
                if session is not None and chunk_index < session.num_done_chunks:
                    continue  # finished before the resume: its rows come from the checkpoint
                chunk_indices = indices[start : start + chunk]
                size = _chunk_population_size(len(chunk_indices), chunk, pad_to, layout)
                members = [
                    _Member(member_ids[i], dict(configs[i]), member_seeds[i], folds[i])
                    for i in chunk_indices
                ]
                chunk_rows = None
                if member_rows is not None:
                    chunk_rows = MemberRows(*(a[chunk_indices] for a in member_rows))
                finished = _run_chunk(
                    spec, layout, members, size, seed, chunk_rows,
                    (train_data, valid_data, test_data), group_index, len(specs),
                    on_segment, return_params, scheduler, new_member_id, stats,
                    None if session is None else (session, chunk_index, next_id),
                )
                rows = [member.result(spec.label) for member in finished]
                results_rows.extend(rows)
                final_params.extend(member.params for member in finished)
                if session is not None:
                    session.counts = _counts(counter, stats)
                    session.chunk_done(
                        chunk_index, rows,
                        [m.params for m in finished] if return_params else None,
                        next_id[0], final=chunk_index == num_chunks - 1,
                    )
    if session is not None and session.num_restored_chunks:
        # Chunks finished before the resume: their rows (and parameters) from the checkpoint.
        group_of_chunk = [
            spec for (spec, indices), chunk in zip(specs, chunk_sizes, strict=True)
            for _ in range(0, len(indices), chunk)
        ]
        restored_rows, restored_params = session.restored_rows_and_params(
            lambda chunk: _params_treedef(group_of_chunk[chunk])
        )
        results_rows = restored_rows + results_rows
        final_params = (restored_params or [None] * len(restored_rows)) + final_params
    order = {member_id: i for i, member_id in enumerate(member_ids)}
    ranked = sorted(
        range(len(results_rows)),
        key=lambda i: (order.get(results_rows[i].member_id, num_members),
                       results_rows[i].member_id),
    )
    results_rows = [results_rows[i] for i in ranked]
    final_params = [final_params[i] for i in ranked]
    counts = _counts(counter, stats)
    if session is not None:  # a resumed call counts what ran before the resume too
        session.counts = counts
        counts = session.total_counts()
    metadata = {
        **counts,
        "num_static_groups": len(specs),
        "num_devices": layout.num_devices,
        "num_processes": jax.process_count(),
        "num_chunks": num_chunks,
        "members_per_device": members_per_device,
        "member_loop": member_loop,
        "member_memory_bytes": member_bytes,
        "memory_budget_bytes": int(budget),
        "seed": seed,
        "task": task.name,
        "metric_modes": dict(task.metric_modes),
    }
    results = Results(results_rows, metadata)
    return (results, final_params) if return_params else results


def _counts(counter: compile_cache.CompileCounter, stats: Mapping[str, int]) -> dict[str, int]:
    """The counts of a train() call's metadata: compilations and guarded segments."""
    return {
        "num_compilations": counter.count,
        "num_segment_compilations": counter.by_function.get("jit(_segment)", 0),
        "num_guarded_segments": stats["guarded_segments"],
    }


def _checkpoint_arguments(task, configs, split, static, member_seeds, folds, member_ids,
                          num_steps, batch_size, steps_per_segment, seed, pad_to, chunk_sizes,
                          layout, evaluate_test, return_params, member_rows, standardize,
                          batch_mode, member_loop, scheduler) -> dict[str, Any]:
    """What identifies a train() call for its checkpoint: resuming needs the same values."""
    from jaxtune import checkpoint as checkpoint_lib

    return {
        "task": task.name, "configs": [jsonio.plain(c) for c in configs],
        "data": checkpoint_lib.split_digest(split), "static_names": sorted(static),
        "member_seeds": member_seeds, "folds": folds, "member_ids": member_ids,
        "num_steps": num_steps, "batch_size": batch_size,
        "steps_per_segment": steps_per_segment, "seed": seed, "pad_to": pad_to,
        "chunk_sizes": chunk_sizes, "num_devices": layout.num_devices,
        "evaluate_test": evaluate_test, "return_params": return_params,
        "member_rows": None if member_rows is None else list(member_rows),
        "standardize": standardize, "batch_mode": batch_mode, "member_loop": member_loop,
        "scheduler": scheduler is not None,
    }


def _params_treedef(spec: GroupSpec) -> Any:
    """The tree structure of one member's parameters in group ``spec`` (tracing only)."""
    dyn = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in spec.dynamic_names}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    params, _ = jax.eval_shape(lambda k, d: _member_init(spec, k, d), key, dyn)
    return jax.tree_util.tree_structure(params)


def _chunk_cap(layout: _Layout, max_members_per_chunk: int | None,
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


def _replicated_data_bytes(split: data_lib.Split, evaluate_test: bool) -> int:
    """Bytes of the data every device holds a copy of: train, validation and (if evaluated)
    test inputs and labels."""
    arrays = [split.x_train, split.y_train, split.x_valid, split.y_valid]
    if evaluate_test:
        arrays += [split.x_test, split.y_test]
    return sum(np.asarray(a).nbytes for a in arrays)


def _chunk_size(label: str, num_members: int, per_member: int, budget: float, data_bytes: int,
                layout: _Layout, cap: int | None, members_per_device: int | None) -> int:
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


def _chunk_population_size(num_real: int, chunk: int, pad_to: int | None, layout: _Layout) -> int:
    # Every chunk of a group has the same size, so all chunks share one compiled program.
    size = max(num_real, chunk)
    if pad_to is not None:
        size = max(size, pad_to)
    return -(-size // layout.num_devices) * layout.num_devices


def _run_chunk(
    spec: GroupSpec,
    layout: _Layout,
    members: list[_Member],
    population_size: int,
    seed: int,
    rows_np: MemberRows | None,
    data: tuple[Any, Any, Any],
    group_index: int,
    num_groups: int,
    on_segment: Callable[[SegmentReport], None] | None,
    return_params: bool,
    scheduler: Scheduler | None,
    next_member_id: Callable[[], int],
    stats: dict[str, int],
    checkpoint: tuple[Any, int, list[int]] | None = None,
) -> list[_Member]:
    """Trains one chunk of a static group; returns every member it ran, in start order.

    ``stats["guarded_segments"]`` counts the segments that ran the guarded scan.

    ``checkpoint`` is ``(session, chunk_index, next_id)``: the chunk continues from the
    session's saved progress, if any, and saves at segment boundaries when due.
    """
    start_time = time.perf_counter()
    train_data, valid_data, test_data = data
    num_real = len(members)
    slots: list[_Member | None] = [*members, *([None] * (population_size - num_real))]
    finished_members: list[_Member] = []

    def slot_arrays(slot_members):
        configs = [m.config if m is not None else members[0].config for m in slot_members]
        seeds = [m.seed if m is not None else members[0].seed for m in slot_members]
        folds = [m.fold if m is not None else members[0].fold for m in slot_members]
        keys = member_keys(seed, seeds, configs, folds)
        dynamic = _stack_dynamic(configs, spec.dynamic_names)
        return layout.put(keys), layout.put(dynamic)

    member_key, dynamic = slot_arrays(slots)
    rows = None
    if rows_np is not None:
        rows = layout.put(MemberRows(*(_pad(np.asarray(a), population_size) for a in rows_np)))
    alive = layout.put(np.arange(population_size) < num_real)
    state = _init_jit(spec, layout.population, member_key, dynamic, rows, train_data, alive)
    shared_key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED)
    segment = _segment_jit_donating if layout.donate else _segment_jit
    scheduler_state = None
    segment_index = 0
    num_diverged = 0
    previous_steps = np.zeros(population_size, np.int64)
    host_step = previous_steps.copy()
    host_alive = np.arange(population_size) < num_real
    views: list[dict[str, Any]] = []  # a scheduler's inputs, replayed on resume
    saved_segment = 0
    if checkpoint is not None:
        from jaxtune import checkpoint as checkpoint_lib

        session, chunk_index, next_id = checkpoint
        progress = session.chunk_progress(
            chunk_index, jax.tree_util.tree_leaves(state), spec.dynamic_names
        )
        if progress is not None:
            treedef = jax.tree_util.tree_structure(state)
            state = jax.tree_util.tree_unflatten(treedef, [
                _put_like(value, template)
                for value, template in zip(progress.state_leaves, jax.tree_util.tree_leaves(state),
                                           strict=True)
            ])
            dynamic = layout.put(progress.dynamic)
            slots[:] = progress.slots
            finished_members.extend(progress.finished)
            segment_index = saved_segment = progress.segment_index
            num_diverged = progress.num_diverged
            views = progress.views
            host_step, host_alive = _to_host((state.step, state.alive))
            host_step = np.asarray(host_step, np.int64)
            previous_steps = host_step.copy()
            _report_restored(on_segment, _member_steps_done([*slots, *finished_members]))
            if scheduler is not None and views:
                scheduler_state = checkpoint_lib.replay_scheduler(
                    scheduler, views, host_step.dtype, host_alive.dtype
                )
    while np.any(host_alive & (host_step < spec.num_steps)):
        if checkpoint is not None and segment_index > saved_segment and session.store.due():
            session.save_chunk(
                chunk_index, _to_host(jax.tree_util.tree_leaves(state)), _to_host(dynamic),
                slots, finished_members, segment_index, num_diverged, views, next_id[0],
            )
            saved_segment = segment_index
        state, metrics, guarded = segment(
            spec, layout.population, state, dynamic, rows, shared_key, jnp.int32(segment_index),
            train_data, valid_data,
        )
        segment_index += 1
        if checkpoint is not None:
            session.store.segment_done()
        host_metrics, host_step, host_alive, host_diverged, guarded = _to_host(
            (metrics, state.step, state.alive, state.diverged_step, guarded)
        )
        stats["guarded_segments"] += int(guarded)
        host_step = np.asarray(host_step, np.int64)
        for slot, member in enumerate(slots):
            if member is None or member.status != "running":
                continue
            member.record(host_step[slot], host_metrics, slot)
            if host_diverged[slot] >= 0:
                member.status, member.diverged_step = "diverged", int(host_diverged[slot])
                num_diverged += 1
            elif host_step[slot] >= spec.num_steps:
                member.status = "completed"
        member_steps = int(np.sum(host_step - previous_steps))
        previous_steps = host_step.copy()
        if on_segment is not None:
            on_segment(
                SegmentReport(
                    group=spec.label, group_index=group_index, num_groups=num_groups,
                    step=int(host_step[:num_real].max()), num_steps=spec.num_steps,
                    num_members=num_real, num_alive=int(host_alive[:num_real].sum()),
                    num_diverged=num_diverged,
                    metrics={k: v[:num_real] for k, v in host_metrics.items()},
                    member_steps=member_steps,
                )
            )
        if scheduler is None:
            continue
        view = SlotView(
            segment=segment_index,
            step=host_step[:num_real],
            alive=np.asarray(host_alive[:num_real]),
            finished=host_step[:num_real] >= spec.num_steps,
            metrics={k: v[:num_real] for k, v in host_metrics.items()},
            configs=[m.config for m in slots[:num_real]],
            member_ids=[m.member_id for m in slots[:num_real]],
            num_steps=spec.num_steps,
            steps_per_segment=spec.steps_per_segment,
        )
        if checkpoint is not None:
            views.append(checkpoint_lib.view_to_json(view))
        if scheduler_state is None:
            scheduler_state = scheduler.init(view)
        decision, scheduler_state = scheduler.update(scheduler_state, view)
        if decision is None or not (
            decision.stop or decision.refill or decision.exploit or decision.explore
        ):
            continue
        state, dynamic, host_alive, host_step = _apply_decision(
            spec, layout, decision, state, dynamic, rows, train_data, slots, num_real,
            finished_members, slot_arrays, next_member_id, host_step,
        )
        previous_steps = host_step.copy()

    for member in slots[:num_real]:
        finished_members.append(member)
    if test_data is not None:
        test_metrics = _to_host(
            _evaluate_jit(spec, layout.population, state, dynamic, None, train_data, test_data,
                          "test")
        )
        for slot, member in enumerate(slots[:num_real]):
            member.metrics.update({k: float(v[slot]) for k, v in test_metrics.items()})
    if return_params:
        params = _to_host(state.params)
        for slot, member in enumerate(slots[:num_real]):
            member.params = jax.tree_util.tree_map(lambda x, s=slot: x[s], params)
    wall_time_s = (time.perf_counter() - start_time) / max(len(finished_members), 1)
    for member in finished_members:
        member.wall_time_s = wall_time_s
    return finished_members


def _member_steps_done(members: Sequence[_Member | None]) -> int:
    """Steps the members have taken (the last point of each one's curve)."""
    return sum(m.curve_steps[-1] for m in members if m is not None and m.curve_steps)


def _report_restored(on_segment: Callable[..., Any] | None, member_steps: int) -> None:
    """Tells ``on_segment.restored(member_steps)`` (a progress bar's) the work a resume skips:
    it counts as done, not in the rate, and no segment report covers it."""
    restored = getattr(on_segment, "restored", None)
    if callable(restored) and member_steps > 0:
        restored(member_steps)


def _apply_decision(spec, layout, decision, state, dynamic, rows, train_data, slots, num_real,
                    finished_members, slot_arrays, next_member_id, host_step):
    population_size = len(slots)
    for slot in [*decision.stop, *decision.refill, *decision.exploit, *decision.explore]:
        if not 0 <= int(slot) < num_real:
            raise ValueError(f"scheduler named slot {slot}; valid slots are 0..{num_real - 1}.")
    for what, configs in (("refill", decision.refill), ("explore", decision.explore)):
        for slot, config in configs.items():
            _check_in_group(spec, what, slot, config)
    source = np.arange(population_size, dtype=np.int32)
    reinit = np.zeros(population_size, bool)
    stop = np.zeros(population_size, bool)
    for slot in decision.stop:
        stop[slot] = True
        member = slots[slot]
        if member.status == "running":
            member.status = "stopped"
    for slot, config in decision.refill.items():
        reinit[slot] = True
        old = slots[slot]
        if old.status == "running":
            old.status = "stopped"
        finished_members.append(old)
        slots[slot] = _Member(next_member_id(), dict(config), old.seed, old.fold)
    for slot, src in decision.exploit.items():
        source[slot] = src
        member, donor = slots[slot], slots[src]
        member.status = "running" if donor.status in ("running", "completed") else member.status
        member.hp_schedule = _schedule_with_start(member)
        member.hp_schedule.append(
            {"step": int(host_step[src]), "copied_from": donor.member_id,
             "config": dict(donor.config)}
        )
        member.config = dict(donor.config)
    for slot, config in decision.explore.items():
        member = slots[slot]
        member.hp_schedule = _schedule_with_start(member)
        member.config = dict(config)
        member.hp_schedule.append({"step": int(host_step[source[slot]]), "config": dict(config)})
    new_keys, new_dynamic = slot_arrays(slots)
    state, dynamic = _update_jit(
        spec, layout.population, state, dynamic,
        layout.put(source),
        layout.put(reinit),
        layout.put(stop),
        new_keys, new_dynamic, rows, train_data,
    )
    host_alive, host_step = _to_host((state.alive, state.step))
    return state, dynamic, np.asarray(host_alive), np.asarray(host_step, np.int64)


def _schedule_with_start(member: _Member) -> list[dict[str, Any]]:
    """The member's hp schedule, opened with ``{"step": 0, "config": <its first config>}``.

    The first config (with the seed and fold) is what the member's key derives from, so a
    replay of the member needs it even after exploit/explore replaced ``member.config``.
    """
    if member.hp_schedule:
        return list(member.hp_schedule)
    return [{"step": 0, "config": dict(member.config)}]


def _check_in_group(spec: GroupSpec, what: str, slot: int, config: Mapping[str, Any]) -> None:
    """A scheduler's new config must keep the slot's static group: same names, same static
    values (the compiled program has them baked in; a change would be silently ignored)."""
    names = {name for name, _ in spec.static_hp} | set(spec.dynamic_names)
    changed = [
        name for name, value in spec.static_hp if _hashable(config.get(name, ...)) != value
    ]
    if set(config) != names or changed:
        raise ValueError(
            f"scheduler {what}[{slot}] = {dict(config)!r} leaves the static group "
            f"{spec.label!r} (names must be {sorted(names)}; static values differ for "
            f"{changed}); a scheduler may only change dynamic values."
        )


class RunOutput(NamedTuple):
    """What :func:`run` returns.

    Attributes:
      results: one row per member.
      params: with ``keep_params=True``, each member's final parameters in the order of
        ``results`` (host arrays); else ``None``.
    """

    results: Results
    params: list[Any] | None = None


class _RestoreRelay:
    """Adapter: the hooks' ``on_restore`` as the ``restored`` method :func:`train` looks for."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks

    def __call__(self, report: SegmentReport) -> None:
        if self._hooks.on_segment is not None:
            self._hooks.on_segment(report)

    def restored(self, member_steps: int) -> None:
        self._hooks.on_restore(member_steps)


def run(
    task: Task,
    configs: Sequence[Mapping[str, Any]],
    split: data_lib.Split,
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
      task: the :class:`~jaxtune.task.Task` each member runs.
      configs: one dict per member.
      split: the data.
      options: how to train (:class:`~jaxtune.engine.options.EngineOptions`).
      seed: the sweep seed.
      member_seeds: one seed per member (default 0 for all); part of its identity.
      folds: one fold index (or ``None``) per member; part of its identity.
      member_ids: ids written into the results (default ``0..len(configs)-1``).
      member_rows: per-member training/validation rows (cross-validation).
      hooks: progress callbacks and the scheduler (default: none).
      checkpoint: a checkpoint directory (or a driver's scope in one), or ``None``.
      resume: continue from ``checkpoint``.
      keep_params: also return every member's final parameters.

    Returns:
      A :class:`RunOutput`.
    """
    hooks = Hooks() if hooks is None else hooks
    compile_cache.ensure_compilation_cache()
    on_segment = hooks.on_segment if hooks.on_restore is None else _RestoreRelay(hooks)
    out = train(
        task, configs, split, seed=seed, member_seeds=member_seeds, folds=folds,
        member_ids=member_ids, member_rows=member_rows, on_segment=on_segment,
        scheduler=hooks.scheduler, checkpoint=checkpoint, resume=resume,
        return_params=keep_params, **options.train_kwargs(),
    )
    if keep_params:
        results, params = out
        return RunOutput(results, params)
    return RunOutput(out, None)
