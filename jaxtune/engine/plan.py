"""Host-side planning of a population run, before anything is traced or compiled.

:func:`plan` checks the configs and options, splits the configs into static groups (one
compiled program each), places the members on the device mesh and sizes the chunks from the
memory estimate; it returns a :class:`Plan` that the runner executes. Member keys derive here
from each member's identity (sweep seed, own seed, config, fold), never from its position.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxtune import checks, limits, optim
from jaxtune import data as data_lib
from jaxtune.engine import memory
from jaxtune.engine.layout import Layout
from jaxtune.engine.options import BATCH_MODES, MEMBER_LOOPS, EngineOptions
from jaxtune.engine.population import GroupSpec, MemberRows
from jaxtune.keys import config_hash as config_hash  # re-exported: engine.config_hash
from jaxtune.keys import fold_in_config as fold_in_config
from jaxtune.step import Step, as_step, from_task
from jaxtune.task import Task, check_task_data

__all__ = [
    "DYNAMIC_NAMES", "ENGINE_STATIC_NAMES", "GroupPlan", "Plan", "check_integer_value",
    "HORIZON_SCHEDULES", "Members", "config_hash", "fold_in_config", "hashable",
    "infer_static_names", "member_budget", "member_keys", "plan",
]

#: Schedules that read the step horizon ``num_steps`` (``optim.make_schedule``) as a Python
#: int: their groups keep ``num_steps`` static (one program per value). Every other group
#: takes each member's ``num_steps`` as a runtime budget, so an epochs grid is one program.
HORIZON_SCHEDULES = frozenset({"cosine", "warmup_cosine"})

#: ``num_steps``'s place in a group key when it is a runtime budget: configs that give one
#: group apart from configs that take the run's (a member's budget then follows its config).
_RUNTIME_BUDGET = "runtime"


def _reads_horizon(config: Mapping[str, Any]) -> bool:
    return config.get("schedule", "constant") in HORIZON_SCHEDULES


def member_budget(spec: GroupSpec, config: Mapping[str, Any]) -> int:
    """A member's step budget: its config's ``num_steps``, else the group's (the run's)."""
    return int(config.get("num_steps", spec.num_steps))


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


def _check_names_read(task, specs, configs, split, num_valid, sweep_reads,
                      allow_unused) -> None:
    """Refuses (or warns about) names that nothing in the sweep reads (before compiling).

    Read are: what the optimizer and schedule of some static group read, what the task looks
    up in ``hp`` while traced abstractly for some group, the engine's names, and
    ``sweep_reads`` (the rest of the sweep, given by a driver).
    """
    optimizers, task_read = set(sweep_reads), set()
    x, y = (split.x_train, split.y_train) if split is not None else (None, None)
    for spec, _ in specs:
        static_hp = dict(spec.static_hp)
        if checks.builtin_optimizer(task):
            optimizers.update(checks.optimizer_reads([static_hp]) | {"optimizer", "schedule"})
        elif task.task is not None and isinstance(task.task.optimizer, Mapping):
            optimizers.add("optimizer")
        task_read |= checks.task_reads(
            spec.step, spec.static_hp, spec.dynamic_names, x, y,
            spec.batch_size or (0 if y is None else len(y)), num_valid, spec.label)
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
    configs: Sequence[Mapping[str, Any]], static_names: frozenset[str], task: Step
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
    """Configs by static values; ``num_steps``'s value counts only where the schedule reads it."""
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        runtime = not _reads_horizon(config)
        key = tuple(sorted(
            (k, _RUNTIME_BUDGET if runtime and k == "num_steps" else hashable(v))
            for k, v in config.items() if k in static_names))
        groups.setdefault(key, []).append(i)
    return groups


def hashable(value: Any) -> Any:
    """A config value as a hashable static value (lists as tuples, numpy scalars as Python)."""
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value



class GroupPlan(NamedTuple):
    """One static group of a run.

    Attributes:
      spec: the group's static values (the key of its compiled programs).
      indices: positions in ``configs`` of the group's members, in order.
      chunk_size: members of the group trained at once.
      member_bytes: the memory estimate of one member.
    """

    spec: GroupSpec
    indices: list[int]
    chunk_size: int
    member_bytes: int


class ChunkPlan(NamedTuple):
    """One chunk of a static group: what one population trains.

    Attributes:
      index: the chunk's position among all the run's chunks.
      group_index: its group's position in :attr:`Plan.groups`.
      group: its group.
      indices: positions in ``configs`` of its members.
      population_size: slots of the population (members plus inert padding).
    """

    index: int
    group_index: int
    group: GroupPlan
    indices: list[int]
    population_size: int


class Plan(NamedTuple):
    """Everything decided on the host before the first program is traced.

    Attributes:
      task: the :class:`~jaxtune.step.Step` the members run (a Task's
        :func:`~jaxtune.step.from_task`; each group's spec holds it built for that group).
      configs: the members' configs (copies).
      static_names: the static hyperparameter names.
      seed: the sweep seed.
      member_seeds: one seed per member.
      folds: one fold (or ``None``) per member.
      member_ids: one id per member.
      member_rows: per-member row tables, or ``None``.
      options: the options, ``member_loop`` and ``evaluate_test`` resolved for these devices
        and this data.
      layout: the device mesh.
      groups: the static groups.
      budget_bytes: the per-device memory budget the chunks were sized for.
      num_chunks: chunks over all groups.
    """

    task: Step
    configs: list[dict[str, Any]]
    static_names: frozenset[str]
    seed: int
    member_seeds: list[int]
    folds: list[int | None]
    member_ids: list[int]
    member_rows: MemberRows | None
    options: EngineOptions
    layout: Layout
    groups: tuple[GroupPlan, ...]
    budget_bytes: int
    num_chunks: int

    def chunks(self) -> Iterator[ChunkPlan]:
        """The chunks in run order (group by group)."""
        index = 0
        for group_index, group in enumerate(self.groups):
            for start in range(0, len(group.indices), group.chunk_size):
                indices = group.indices[start : start + group.chunk_size]
                size = memory.chunk_population_size(len(indices), group.chunk_size,
                                                    self.options.pad_to, self.layout)
                yield ChunkPlan(index, group_index, group, indices, size)
                index += 1


class Members(NamedTuple):
    """Who a run's members are, beside their configs (each field is part of their identity).

    Attributes:
      seed: the sweep seed.
      member_seeds: one seed per member (default 0).
      folds: one fold per member (default ``None``).
      member_ids: one id per member (default ``0..len(configs)-1``).
      member_rows: per-member row tables (cross-validation), or ``None``.
    """

    seed: int = 0
    member_seeds: Sequence[int] | None = None
    folds: Sequence[int | None] | None = None
    member_ids: Sequence[int] | None = None
    member_rows: MemberRows | None = None


def plan(
    task: Task | Step,
    configs: Sequence[Mapping[str, Any]],
    split: data_lib.Split | None,
    options: EngineOptions,
    members: Members | None = None,
) -> Plan:
    """Checks a run's arguments and decides its static groups, device layout and chunks.

    With ``members.member_rows``, ``split.x_valid``/``y_valid`` are never read: each member
    validates on its own rows of ``x_train``.

    Args:
      task: the Task or Step every member runs.
      configs: one config per member.
      split: the data (``None`` for a Step with ``needs_data=False``).
      options: how to train.
      members: the members' identities (default: :class:`Members` defaults).

    Returns:
      The :class:`Plan`.

    Raises:
      ValueError, TypeError: see :func:`jaxtune.engine.train`; all before any compilation.
    """
    seed, member_seeds, folds, member_ids, member_rows = members or Members()
    checks.check_task_and_data(task, split)
    task = as_step(task)
    seed = checks.check_seed("seed", seed)
    configs = [dict(c) for c in configs]
    static = (frozenset(options.static_names) if options.static_names is not None
              else infer_static_names(configs))
    _validate_configs(configs, static, task)
    member_seeds, folds, member_ids = _check_members(options, len(configs), member_seeds,
                                                     folds, member_ids)
    if not task.needs_data:
        _check_data_free(task, member_rows, options)
    if member_rows is not None:
        member_rows = _check_member_rows(member_rows, len(configs), split, options.batch_mode)
    evaluate_test = (options.evaluate_test and split is not None and split.x_test is not None
                     and len(split.y_test) > 0 and task.evaluate is not None)
    if split is not None:
        check_task_data(task, split, include_test=evaluate_test,
                        include_valid=member_rows is None)
    layout = Layout.build(options.devices)
    member_loop = options.member_loop
    if member_loop is None:
        member_loop = "map" if layout.mesh.devices.flat[0].platform == "cpu" else "vmap"
    options = options.replace(member_loop=member_loop, evaluate_test=evaluate_test)
    specs = _group_specs(task, configs, static, split, options, member_rows is not None)
    num_valid = (int(np.asarray(member_rows.valid_rows).shape[1]) if member_rows is not None
                 else 0 if split is None or task.evaluate is None else len(split.y_valid))
    _check_names_read(task, specs, configs, split, num_valid, options.sweep_reads,
                      options.allow_unused_hparams)
    budget, groups = _size_chunks(task, configs, split, options, layout, specs, member_rows)
    num_chunks = sum(-(-len(g.indices) // g.chunk_size) for g in groups)
    return Plan(task, configs, static, seed, member_seeds, folds, member_ids, member_rows,
                options, layout, groups, int(budget), num_chunks)


def _check_data_free(step: Step, member_rows: MemberRows | None,
                     options: EngineOptions) -> None:
    """Refuses what needs data for a data-free Step (folds, standardization, shared batches)."""
    for field, given in (("member_rows (folds)", member_rows is not None),
                         ("standardize", options.standardize),
                         ("batch_mode='shared'", options.batch_mode == "shared")):
        if given:
            raise ValueError(
                f"{field} needs data, but Step {step.name!r} has needs_data=False (a whole "
                "training function): leave it at its default.")


def _check_members(options, num_members, member_seeds, folds, member_ids):
    """Checks the step counts and the members' identities; returns them as lists."""
    limits.check_positive_int("num_steps", options.num_steps)
    limits.check_positive_int("steps_per_segment", options.steps_per_segment)
    if options.batch_size is not None:
        limits.check_positive_int("batch_size", options.batch_size)
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
    if options.batch_mode not in BATCH_MODES:
        raise ValueError(f"batch_mode={options.batch_mode!r} must be 'independent' or 'shared'.")
    if options.member_loop is not None and options.member_loop not in MEMBER_LOOPS:
        raise ValueError(f"member_loop={options.member_loop!r} must be 'vmap', 'map' or None "
                         "(the device's default: 'map' on CPU, 'vmap' on GPU/TPU).")
    return member_seeds, folds, member_ids


def _check_member_rows(member_rows: MemberRows, num_members: int, split: data_lib.Split,
                       batch_mode: str) -> MemberRows:
    """Checks the members' row tables against ``x_train``; returns them as numpy arrays."""
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
    return member_rows


def _group_specs(task: Step, configs: Sequence[dict[str, Any]], static: frozenset[str],
                 split: data_lib.Split | None, options: EngineOptions,
                 has_member_rows: bool) -> list[tuple[GroupSpec, list[int]]]:
    """The static groups: each one's :class:`GroupSpec` and its members' positions."""
    num_train_rows = 0 if split is None else len(split.y_train)
    specs: list[tuple[GroupSpec, list[int]]] = []
    for static_key, indices in _split_groups(configs, static).items():
        static_hp = {k: v for k, v in static_key if k != "num_steps" or v != _RUNTIME_BUDGET}
        dynamic_names = tuple(sorted(set(configs[indices[0]]) - static))
        for i in indices:
            if tuple(sorted(set(configs[i]) - static)) != dynamic_names:
                raise ValueError(
                    f"configs[{i}] has hyperparameters {sorted(configs[i])} but configs"
                    f"[{indices[0]}] of the same static group has {sorted(configs[indices[0]])};"
                    " every config of a group must name the same hyperparameters."
                )
        budgets = sorted({configs[i].get("num_steps", options.num_steps) for i in indices})
        for budget in budgets:
            limits.check_positive_int("num_steps", budget)
            if checks.builtin_optimizer(task):
                optim.validate_optimizer(static_hp, dynamic_names, budget)
        group_steps = int(budgets[-1])
        group_batch = static_hp.get("batch_size", options.batch_size) if task.needs_data else None
        if group_batch is not None:
            limits.check_positive_int("batch_size", group_batch)
            if group_batch > num_train_rows:
                raise ValueError(
                    f"batch_size={group_batch} is larger than the {num_train_rows} training "
                    "rows; lower it or use batch_size=None for full-batch training."
                )
        read = (optim.validate_optimizer(static_hp, dynamic_names, group_steps)
                if checks.builtin_optimizer(task) else ())
        _check_optimizer_choice(task, static_hp)
        # Only the names this group's optimizer, schedule and task read have a valid range:
        # the same name may mean something else to a user's own task (an `alpha` of 2).
        ranges = {**{n: r for n, r in optim.VALUE_RANGES.items() if n in read},
                  **task.value_ranges}
        for i in indices:
            optim.check_value_ranges(configs[i], ranges, where=f"configs[{i}]")
        if options.batch_mode == "shared" and group_batch is None:
            raise ValueError("batch_mode='shared' needs a batch_size (not full-batch training).")
        builtin = checks.builtin_optimizer(task)
        horizon = group_steps if builtin and _reads_horizon(static_hp) else None
        spec = GroupSpec(
            step=task if task.task is None else from_task(task.task, num_steps=horizon),
            static_hp=tuple(sorted(static_hp.items())), dynamic_names=dynamic_names,
            num_steps=group_steps, batch_size=None if group_batch is None else int(group_batch),
            horizon=horizon,
            steps_per_segment=min(options.steps_per_segment, group_steps),
            batch_mode=options.batch_mode, member_rows=has_member_rows,
            standardize=options.standardize, member_loop=options.member_loop,
        )
        specs.append((spec, indices))
    return specs


def _check_optimizer_choice(step: Step, static_hp: Mapping[str, Any]) -> None:
    """A task whose ``optimizer`` maps names to factories: the group's static ``optimizer``
    must name one of them."""
    optimizers = None if step.task is None else step.task.optimizer
    if isinstance(optimizers, Mapping) and static_hp.get("optimizer") not in optimizers:
        raise ValueError(
            f"optimizer: got {static_hp.get('optimizer')!r}; task {step.name!r} maps the "
            f"optimizers {sorted(optimizers)} (Task.optimizer): give one of them as the "
            "static config value 'optimizer'.")


def _size_chunks(task: Step, configs: Sequence[dict[str, Any]], split: data_lib.Split | None,
                 options: EngineOptions, layout: Layout,
                 specs: Sequence[tuple[GroupSpec, list[int]]],
                 member_rows: MemberRows | None) -> tuple[int, tuple[GroupPlan, ...]]:
    """Memory: the budget and every group's chunk size, decided before compiling anything."""
    cap = memory.chunk_cap(layout, options.max_members_per_chunk, options.members_per_device,
                           options.pad_to)
    budget = options.memory_budget_bytes or memory.device_memory_bytes(
        list(layout.mesh.devices.flat))
    data_bytes, eval_bytes, eval_rows = 0, 0, 0
    if split is not None:
        data_bytes = memory.replicated_data_bytes(split, options.evaluate_test,
                                                  include_valid=member_rows is None)
        if task.evaluate is not None:
            eval_bytes, eval_rows = _eval_size(split, member_rows)
    x, y = (split.x_train, split.y_train) if split is not None else (None, None)
    groups = []
    for spec, indices in specs:
        try:
            per_member = memory.member_memory_bytes(
                spec, {n: configs[indices[0]][n] for n in spec.dynamic_names},
                () if x is None else x.shape[1:], eval_bytes=eval_bytes, eval_rows=eval_rows,
                train_rows=None if y is None else len(y),
                input_dtype=np.float32 if x is None else x.dtype,
                label_dtype=np.int32 if y is None else y.dtype,
            )
        except checks.TRACE_ERRORS as error:  # the names trace (checks.task_reads) saw most
            raise checks.trace_error(
                error, task, "init/loss/evaluate", spec.label, x, y,
                [n for n, _ in spec.static_hp] + list(spec.dynamic_names),
                spec.dynamic_names) from error
        size = memory.chunk_size(spec.label, len(indices), per_member, budget, data_bytes,
                                 layout, cap, options.members_per_device)
        groups.append(GroupPlan(spec, indices, size, per_member))
    return budget, tuple(groups)


def _eval_size(split: data_lib.Split, member_rows: MemberRows | None) -> tuple[int, int]:
    """``(bytes, rows)`` of the validation data one member holds: ``split``'s validation set,
    or with row tables the member's own rows of ``x_train`` (``split.x_valid`` unread)."""
    if member_rows is None:
        return split.x_valid.nbytes + split.y_valid.nbytes, len(split.y_valid)
    num_rows = int(member_rows.valid_rows.shape[1])
    row_bytes = (math.prod(split.x_train.shape[1:]) * split.x_train.dtype.itemsize
                 + split.y_train.dtype.itemsize + np.dtype(np.float32).itemsize)
    return num_rows * row_bytes, num_rows
