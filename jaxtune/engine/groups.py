"""What is static about a population, and how its members are laid over the devices.

:class:`PopulationState` (the device state: every member's Step carry and counters),
:class:`MemberRows` (fold row tables), :class:`GroupSpec` (the key of a static group's compiled
programs), and the member loop :func:`over_members` that lifts one member's function over the
population (``vmap``, or ``shard_map`` + ``lax.map`` per device), with the selects and the
output pinning the population programs share (:mod:`jaxtune.engine.population`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxtune.step import Step

__all__ = [
    "POPULATION_AXIS", "GroupSpec", "MemberRows", "PopulationState", "all_finite",
    "over_members", "pinned", "tree_select", "tree_select_members",
]

POPULATION_AXIS = "population"


class PopulationState(NamedTuple):
    """The training state of a population; every leaf has the population axis first.

    Attributes:
      carry: every member's Step carry (:class:`jaxtune.step.Step`), leaves ``[P, ...]``; for
        a Task, ``(params, opt_state)`` (``(params, opt_state, state)`` with model state).
      train_key: ``[P, 2]`` uint32, each member's training key (step keys are folded from it).
      step: ``[P]`` int32, steps each member has taken (members refilled by a scheduler
        restart from 0).
      alive: ``[P]`` bool, False once a member diverged, was stopped, or is inert padding.
      diverged_step: ``[P]`` int32, the step at which a member diverged, -1 otherwise.
      preprocess: ``{"mean": [P, F], "scale": [P, F]}`` when members standardize their inputs
        with statistics of their own training rows, else ``{}``.
    """

    carry: Any
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
      step: the :class:`~jaxtune.step.Step` every member runs (a Task's
        :func:`~jaxtune.step.from_task`, built with the group's horizon).
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
      standardize: members standardize inputs with statistics of their own training rows.
      member_loop: ``"vmap"`` (members batched into one program) or ``"map"`` (each device
        loops over its own members); see :func:`jaxtune.engine.train`.
      horizon: the step horizon of a schedule that reads it (``cosine``, ``warmup_cosine``:
        their groups have one budget, this one, part of the key), else ``None``.
    """

    step: Step
    static_hp: tuple[tuple[str, Any], ...]
    dynamic_names: tuple[str, ...]
    num_steps: int = dataclasses.field(compare=False)
    batch_size: int | None
    steps_per_segment: int
    batch_mode: str = "independent"
    member_rows: bool = False
    standardize: bool = False
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
    def label(self) -> str:
        """A readable name for the group, e.g. ``"optimizer=adamw,width=64"``."""
        if not self.static_hp:
            return "default"
        return ",".join(f"{k}={v}" for k, v in self.static_hp)


def tree_select(pred: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where the scalar ``pred`` holds, else ``old``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda n, o: jnp.where(pred, n, o), new, old)


def tree_select_members(mask: jax.Array, new: Any, old: Any) -> Any:
    """Member ``i`` of ``new`` where ``mask[i]``, else of ``old`` (leaves ``[P, ...]``)."""
    def select(n, o):
        return jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    return jax.tree_util.tree_map(select, new, old)


def all_finite(tree: Any) -> jax.Array:
    """True when every element of every floating leaf is finite (one member's scalar); integer,
    boolean and key leaves (a step count, a PRNG key in a carry) are always finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.stack(leaves).all() if leaves else jnp.bool_(True)


def over_members(spec: GroupSpec, sharding: NamedSharding, fn: Callable[..., Any],
                 members: Any, shared: Any) -> Any:
    """``fn(member, shared)`` for every member of ``members`` (leaves ``[P, ...]``), stacked.

    ``spec.member_loop == "vmap"`` batches the members into one program (``[P, ...]``
    operands: what fills a GPU). ``"map"`` loops over each device's own members, one after
    another (``shard_map`` of ``lax.map``): every product is one member's own, and one member's
    carry stays in cache for the whole segment, which XLA:CPU runs about 1.25x faster than the
    batched products (docs/benchmarks.md).
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
