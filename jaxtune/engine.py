"""The vectorized trainer: a whole population of training runs as one compiled program.

Every array of a run carries a leading population axis ``[num_members, ...]``. Training is

    jit(segment),  segment = lax.scan over steps_per_segment steps of vmap(step) over members,

followed, inside the same program, by a validation pass. The population axis is sharded over a
one-dimensional device mesh (axis name ``"population"``). Between segments the host reads the
metrics back, grows the learning curves and reports progress; nothing else crosses.

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
other members' results are unaffected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxtune import data as data_lib
from jaxtune import optim
from jaxtune.results import MemberResult, Results
from jaxtune.task import Task

POPULATION_AXIS = "population"
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class PopulationState(NamedTuple):
    """The training state of a population; every leaf has the population axis first.

    Attributes:
      params: model parameters, leaves ``[P, ...]``.
      opt_state: Optax state, leaves ``[P, ...]``.
      train_key: ``[P, 2]`` uint32, each member's training key (step keys are folded from it).
      alive: ``[P]`` bool, False once a member diverged (or is an inert padding member).
      diverged_step: ``[P]`` int32, the step at which a member diverged, -1 otherwise.
    """

    params: Any
    opt_state: Any
    train_key: jax.Array
    alive: jax.Array
    diverged_step: jax.Array


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
    """

    task: Task
    static_hp: tuple[tuple[str, Any], ...]
    dynamic_names: tuple[str, ...]
    num_steps: int
    batch_size: int | None
    steps_per_segment: int

    def hp(self, dynamic: Mapping[str, jax.Array]) -> dict[str, Any]:
        """One member's hyperparameters: static Python values and traced dynamic scalars."""
        return {**dict(self.static_hp), **dynamic}

    @property
    def label(self) -> str:
        """A readable name for the group, e.g. ``"optimizer=adamw,width=64"``."""
        if not self.static_hp:
            return "default"
        return ",".join(f"{k}={v}" for k, v in self.static_hp)


class SegmentReport(NamedTuple):
    """What the host learns after each segment; handed to ``on_segment`` callbacks.

    Attributes:
      group: the static group's label.
      group_index: index of the group, from 0.
      num_groups: number of static groups in this call.
      step: steps done in this group.
      num_steps: steps per member.
      num_members: real members in the group.
      num_alive: members still training.
      num_diverged: members that diverged.
      metrics: ``{name: np.ndarray [num_members]}`` at this segment.
    """

    group: str
    group_index: int
    num_groups: int
    step: int
    num_steps: int
    num_members: int
    num_alive: int
    num_diverged: int
    metrics: Mapping[str, np.ndarray]


# --------------------------------------------------------------------------- member code


def _member_init(spec: GroupSpec, key: jax.Array, dynamic: Mapping[str, jax.Array]):
    hp = spec.hp(dynamic)
    params = spec.task.init(jax.random.fold_in(key, 0), hp)
    opt_state = optim.make_optimizer(hp, spec.num_steps).init(params)
    return params, opt_state


def _member_batch(spec: GroupSpec, key: jax.Array, train: Mapping[str, jax.Array]):
    if spec.batch_size is None:
        return train
    num_rows = train["y"].shape[0]
    idx = data_lib.sample_batch_indices(key, num_rows, spec.batch_size)
    return {name: value[idx] for name, value in train.items()}


def _tree_select(pred: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda n, o: jnp.where(pred, n, o), new, old)


def _member_step(spec, params, opt_state, train_key, alive, diverged_step, dynamic, step, train):
    hp = spec.hp(dynamic)
    step_key = jax.random.fold_in(train_key, step)
    batch_key, dropout_key = jax.random.split(step_key)
    batch = _member_batch(spec, batch_key, train)
    (loss, _), grads = jax.value_and_grad(spec.task.loss, has_aux=True)(
        params, batch, dropout_key, hp
    )
    optimizer = optim.make_optimizer(hp, spec.num_steps)
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(updates))
    in_range = step < spec.num_steps
    take = alive & finite & in_range
    # The selects fuse into the update loops, so freezing costs no extra pass over memory.
    params = _tree_select(take, new_params, params)
    opt_state = _tree_select(take, new_opt_state, opt_state)
    newly_diverged = alive & in_range & ~finite
    diverged_step = jnp.where(newly_diverged, step, diverged_step)
    alive = alive & ~newly_diverged
    counted = take.astype(jnp.float32)
    return params, opt_state, alive, diverged_step, jnp.where(take, loss, 0.0), counted


def _segment(
    spec: GroupSpec,
    state: PopulationState,
    dynamic: Mapping[str, jax.Array],
    step0: jax.Array,
    train: Mapping[str, jax.Array],
    valid: Mapping[str, jax.Array],
) -> tuple[PopulationState, dict[str, jax.Array]]:
    step_all = jax.vmap(_member_step, in_axes=(None, 0, 0, 0, 0, 0, 0, None, None))

    def body(carry, i):
        params, opt_state, alive, diverged_step = carry
        params, opt_state, alive, diverged_step, loss, counted = step_all(
            spec, params, opt_state, state.train_key, alive, diverged_step, dynamic, step0 + i,
            train,
        )
        return (params, opt_state, alive, diverged_step), (loss, counted)

    carry = (state.params, state.opt_state, state.alive, state.diverged_step)
    carry, (losses, counted) = jax.lax.scan(
        body, carry, jnp.arange(spec.steps_per_segment, dtype=jnp.int32)
    )
    params, opt_state, alive, diverged_step = carry
    steps_taken = jnp.sum(counted, axis=0)
    metrics = {
        "train_loss": jnp.where(
            steps_taken > 0, jnp.sum(losses, axis=0) / jnp.maximum(steps_taken, 1.0), jnp.nan
        )
    }
    metrics.update(_evaluate_population(spec, params, dynamic, valid, "valid"))
    new_state = PopulationState(params, opt_state, state.train_key, alive, diverged_step)
    return new_state, metrics


def _evaluate_population(spec, params, dynamic, data, prefix):
    def one(p, d, member_data):
        return spec.task.evaluate(p, member_data, spec.hp(d))

    # Shared data under vmap turns the first layer into one wide product x @ [W_1 ... W_P],
    # whose blocking (and so rounding) depends on P. A member axis on the data keeps every
    # member's product its own: results are then independent of the population's size.
    num_members = jax.tree_util.tree_leaves(dynamic)[0].shape[0] if dynamic else (
        jax.tree_util.tree_leaves(params)[0].shape[0]
    )
    member_data = jax.tree_util.tree_map(
        lambda v: jnp.broadcast_to(v, (num_members, *v.shape)), dict(data)
    )
    values = jax.vmap(one)(params, dynamic, member_data)
    return {f"{prefix}_{name}": jnp.asarray(v, jnp.float32) for name, v in values.items()}


_init_jit = jax.jit(jax.vmap(_member_init, in_axes=(None, 0, 0)), static_argnums=0)
_segment_jit = jax.jit(_segment, static_argnums=0)
_segment_jit_donating = jax.jit(_segment, static_argnums=0, donate_argnums=1)
_evaluate_jit = jax.jit(_evaluate_population, static_argnums=(0, 4))


# --------------------------------------------------------------------------- host side


def config_hash(config: Mapping[str, Any]) -> int:
    """A stable 31-bit hash of a config, used to derive the member's key.

    Args:
      config: a configuration (plain JSON-serializable values).

    Returns:
      An int in ``[0, 2**31)``, the same in every process and Python session.
    """
    text = json.dumps(_jsonable(config), sort_keys=True)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def member_keys(
    sweep_seed: int, seeds: Sequence[int], configs: Sequence[Mapping[str, Any]],
    folds: Sequence[int | None],
) -> np.ndarray:
    """Derives each member's key from the sweep seed and its identity.

    ``key = fold_in(fold_in(fold_in(PRNGKey(sweep_seed), seed), config_hash), fold + 1)``
    (fold 0 for "no fold"), so a member's key does not depend on its position or neighbours.

    Returns:
      ``np.ndarray [num_members, 2]`` uint32 raw keys.
    """
    base = jax.random.PRNGKey(sweep_seed)
    seeds_a = jnp.asarray(np.asarray(seeds, np.int64) & 0x7FFFFFFF, jnp.int32)
    hashes = jnp.asarray([config_hash(c) for c in configs], jnp.int32)
    folds_a = jnp.asarray([0 if f is None else int(f) + 1 for f in folds], jnp.int32)

    def derive(s, h, f):
        return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(base, s), h), f)

    return np.asarray(jax.vmap(derive)(seeds_a, hashes, folds_a))


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


def _validate_configs(
    configs: Sequence[Mapping[str, Any]], static_names: frozenset[str]
) -> None:
    if len(configs) == 0:
        raise ValueError("configs is empty: pass at least one configuration to train.")
    for i, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise TypeError(f"configs[{i}] must be a mapping of hyperparameter names to values, "
                            f"got {type(config).__name__}.")
        for name, value in config.items():
            if name in static_names:
                continue
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


def _device_memory_bytes(device: jax.Device) -> int:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:  # CPU: the host's physical memory.
        import os

        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def member_memory_bytes(
    spec: GroupSpec,
    example_dynamic: Mapping[str, float],
    input_shape: Sequence[int],
    eval_bytes: int = 0,
) -> int:
    """Estimates one member's device memory from abstract shapes (no compilation).

    Counts parameters and optimizer state three times (current, new, selected), a coarse
    bound on one minibatch's activations (``batch * (input + 8 * sqrt(num_params))`` floats),
    and ``eval_bytes``, the member's own copy of the validation data.

    Returns:
      Bytes per member.
    """
    # Abstract inputs only: estimating must not compile (or run) anything.
    dyn = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in example_dynamic}
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    params, opt_state = jax.eval_shape(lambda k, d: _member_init(spec, k, d), key, dyn)
    state_bytes = sum(
        math.prod(x.shape) * x.dtype.itemsize
        for x in jax.tree_util.tree_leaves((params, opt_state))
    )
    rows = spec.batch_size or 1024
    num_params = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params))
    activation_bytes = 4 * rows * (math.prod(input_shape) + 8 * int(math.sqrt(num_params) + 1))
    return 3 * state_bytes + 2 * activation_bytes + eval_bytes


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


class _CompileCounter:
    """Counts XLA backend compilations while active (jax.monitoring events), by function."""

    def __init__(self) -> None:
        self.count = 0
        self.by_function: dict[str, int] = {}

    def __call__(self, event: str, duration_s: float, **kwargs: Any) -> None:
        if event == _COMPILE_EVENT:
            self.count += 1
            name = str(kwargs.get("fun_name", "?"))
            self.by_function[name] = self.by_function.get(name, 0) + 1

    def __enter__(self) -> _CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        jax.monitoring.unregister_event_duration_listener(self)


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
    memory_budget_bytes: int | None = None,
    evaluate_test: bool = True,
    on_segment: Callable[[SegmentReport], None] | None = None,
    return_params: bool = False,
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
      devices: devices of the population mesh (default: all local devices).
      pad_to: pad every population chunk to this many members (inert copies that never reach
        Results). Replaying one member with ``pad_to`` equal to the original population size
        and the same devices reproduces it bit for bit.
      max_members_per_chunk: cap on members trained at once; larger groups run in chunks of
        this size (the same compiled program). Default: as many as fit in memory.
      memory_budget_bytes: device memory jaxtune may use (default: the device's limit, or host
        memory on CPU).
      evaluate_test: also evaluate final parameters on ``split.test``.
      on_segment: called on the host after every segment with a :class:`SegmentReport`.
      return_params: also return every member's final parameters.

    Returns:
      :class:`~jaxtune.results.Results` with one row per member, in the order of ``configs``.
      ``metadata["num_compilations"]`` counts the XLA compilations this call triggered and
      ``metadata["num_segment_compilations"]`` those of the training segment (one per static
      group on a first call, zero when the same signatures ran before). With
      ``return_params``, a tuple ``(results, params)`` where ``params[i]`` is member i's final
      parameter pytree (numpy arrays).

    Raises:
      ValueError, TypeError: bad configs, data, step counts or optimizer names, before any
        compilation.

    Example:
      >>> from jaxtune import data, task as task_lib
      >>> split = data.standardize(data.train_valid_test_split(data.load_dataset("digits")))
      >>> task = task_lib.classification_task("mlp", num_classes=10, input_shape=(64,))
      >>> configs = [{"learning_rate": lr, "optimizer": "adam", "width": 64}
      ...            for lr in (1e-3, 3e-3)]
      >>> results = train(task, configs, split, num_steps=100)  # doctest: +SKIP
    """
    configs = [dict(c) for c in configs]
    num_members = len(configs)
    static = (
        frozenset(static_names) if static_names is not None else infer_static_names(configs)
    )
    _validate_configs(configs, static)
    _check_positive_int("num_steps", num_steps)
    _check_positive_int("steps_per_segment", steps_per_segment)
    if batch_size is not None:
        _check_positive_int("batch_size", batch_size)
    member_seeds = list(member_seeds) if member_seeds is not None else [0] * num_members
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
    data_lib.check_arrays(split.x_train, split.y_train, split.kind)
    data_lib.check_arrays(split.x_valid, split.y_valid, split.kind)
    evaluate_test = evaluate_test and split.x_test is not None and len(split.y_test) > 0
    if evaluate_test:
        data_lib.check_arrays(split.x_test, split.y_test, split.kind)

    layout = _Layout.build(devices)
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
        _check_positive_int("num_steps", group_steps)
        if group_batch is not None:
            _check_positive_int("batch_size", group_batch)
            if group_batch > num_train_rows:
                raise ValueError(
                    f"batch_size={group_batch} is larger than the {num_train_rows} training "
                    "rows; lower it or use batch_size=None for full-batch training."
                )
        optim.validate_optimizer(static_hp, dynamic_names, group_steps)
        spec = GroupSpec(
            task=task,
            static_hp=tuple(sorted(static_hp.items())),
            dynamic_names=dynamic_names,
            num_steps=group_steps,
            batch_size=None if group_batch is None else int(group_batch),
            steps_per_segment=min(steps_per_segment, group_steps),
        )
        specs.append((spec, indices))

    # Memory: decide chunk sizes before compiling anything.
    budget = memory_budget_bytes or _device_memory_bytes(layout.mesh.devices.flat[0])
    budget_per_device = budget * 0.8
    chunk_sizes = []
    for spec, indices in specs:
        per_member = member_memory_bytes(
            spec, {n: configs[indices[0]][n] for n in spec.dynamic_names},
            split.x_train.shape[1:],
            eval_bytes=split.x_valid.nbytes + split.y_valid.nbytes,
        )
        data_bytes = split.x_train.nbytes + split.x_valid.nbytes
        fit = int((budget_per_device - data_bytes) // max(per_member, 1)) * layout.num_devices
        if fit < layout.num_devices:
            raise ValueError(
                f"one member of group {spec.label} needs about {per_member / 2**20:.1f} MiB but "
                f"the memory budget is {budget / 2**20:.1f} MiB per device; use a smaller model "
                "or batch_size, or raise memory_budget_bytes."
            )
        size = min(len(indices), fit)
        if max_members_per_chunk is not None:
            _check_positive_int("max_members_per_chunk", max_members_per_chunk)
            size = min(size, max_members_per_chunk)
        chunk_sizes.append(size)

    train_data = jax.device_put(
        {"x": np.asarray(split.x_train), "y": np.asarray(split.y_train)}, layout.replicated
    )
    valid_data = jax.device_put(
        {"x": np.asarray(split.x_valid), "y": np.asarray(split.y_valid)}, layout.replicated
    )
    test_data = (
        jax.device_put(
            {"x": np.asarray(split.x_test), "y": np.asarray(split.y_test)}, layout.replicated
        )
        if evaluate_test
        else None
    )
    keys = member_keys(seed, member_seeds, configs, folds)

    rows: list[MemberResult | None] = [None] * num_members
    final_params: list[Any] = [None] * num_members
    with _CompileCounter() as counter:
        for group_index, ((spec, indices), chunk) in enumerate(zip(specs, chunk_sizes,
                                                                     strict=True)):
            for start in range(0, len(indices), chunk):
                chunk_indices = indices[start : start + chunk]
                size = _chunk_population_size(len(chunk_indices), chunk, pad_to, layout)
                group_rows, group_params = _run_chunk(
                    spec, layout, [configs[i] for i in chunk_indices], keys[chunk_indices],
                    size, train_data, valid_data, test_data, group_index, len(specs),
                    on_segment, return_params,
                )
                for j, i in enumerate(chunk_indices):
                    if return_params:
                        final_params[i] = jax.tree_util.tree_map(
                            lambda x, j=j: x[j], group_params
                        )
                for i, row in zip(chunk_indices, group_rows, strict=True):
                    rows[i] = dataclasses.replace(
                        row, member_id=member_ids[i], seed=member_seeds[i], fold=folds[i]
                    )
    metadata = {
        "num_compilations": counter.count,
        "num_segment_compilations": counter.by_function.get("jit(_segment)", 0),
        "num_static_groups": len(specs),
        "num_devices": layout.num_devices,
        "seed": seed,
        "task": task.name,
        "metric_modes": dict(task.metric_modes),
    }
    results = Results([r for r in rows if r is not None], metadata)
    return (results, final_params) if return_params else results


def _chunk_population_size(num_real: int, chunk: int, pad_to: int | None, layout: _Layout) -> int:
    # Every chunk of a group has the same size, so all chunks share one compiled program.
    size = max(num_real, chunk)
    if pad_to is not None:
        _check_positive_int("pad_to", pad_to)
        size = max(size, pad_to)
    return -(-size // layout.num_devices) * layout.num_devices


def _run_chunk(
    spec: GroupSpec,
    layout: _Layout,
    configs: Sequence[Mapping[str, Any]],
    keys: np.ndarray,
    population_size: int,
    train_data: Mapping[str, jax.Array],
    valid_data: Mapping[str, jax.Array],
    test_data: Mapping[str, jax.Array] | None,
    group_index: int,
    num_groups: int,
    on_segment: Callable[[SegmentReport], None] | None,
    return_params: bool = False,
) -> tuple[list[MemberResult], Any]:
    start_time = time.perf_counter()
    num_real = len(configs)
    dynamic_np = {
        k: _pad(v, population_size) for k, v in _stack_dynamic(configs, spec.dynamic_names).items()
    }
    keys_np = _pad(keys, population_size)
    alive_np = np.arange(population_size) < num_real  # padding members are inert from the start
    dynamic = jax.device_put(dynamic_np, layout.population)
    member_key = jax.device_put(keys_np, layout.population)

    params, opt_state = _init_jit(spec, member_key, dynamic)
    train_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(member_key)
    state = PopulationState(
        params=params,
        opt_state=opt_state,
        train_key=train_keys,
        alive=jax.device_put(alive_np, layout.population),
        diverged_step=jax.device_put(np.full(population_size, -1, np.int32), layout.population),
    )
    segment = _segment_jit_donating if layout.donate else _segment_jit
    curve_steps: list[int] = []
    curves: dict[str, list[np.ndarray]] = {}
    step = 0
    while step < spec.num_steps:
        state, metrics = segment(spec, state, dynamic, jnp.int32(step), train_data, valid_data)
        step = min(step + spec.steps_per_segment, spec.num_steps)
        host_metrics = {k: np.asarray(v)[:num_real] for k, v in jax.device_get(metrics).items()}
        curve_steps.append(step)
        for name, values in host_metrics.items():
            curves.setdefault(name, []).append(values)
        if on_segment is not None:
            alive = np.asarray(state.alive)[:num_real]
            on_segment(
                SegmentReport(
                    group=spec.label,
                    group_index=group_index,
                    num_groups=num_groups,
                    step=step,
                    num_steps=spec.num_steps,
                    num_members=num_real,
                    num_alive=int(alive.sum()),
                    num_diverged=int((np.asarray(state.diverged_step)[:num_real] >= 0).sum()),
                    metrics=host_metrics,
                )
            )
    final = {name: values[-1] for name, values in curves.items()}
    if test_data is not None:
        test_metrics = _evaluate_jit(spec, state.params, dynamic, test_data, "test")
        final.update({k: np.asarray(v)[:num_real] for k, v in test_metrics.items()})
    diverged_step = np.asarray(state.diverged_step)[:num_real]
    wall_time_s = (time.perf_counter() - start_time) / max(num_real, 1)

    rows = []
    for m, config in enumerate(configs):
        diverged = bool(diverged_step[m] >= 0)
        rows.append(
            MemberResult(
                member_id=m,
                config=dict(config),
                seed=0,
                fold=None,
                static_group=spec.label,
                status="diverged" if diverged else "completed",
                diverged_step=int(diverged_step[m]) if diverged else None,
                metrics={k: float(v[m]) for k, v in final.items()},
                curve_steps=list(curve_steps),
                curves={k: [float(v[m]) for v in vs] for k, vs in curves.items()},
                wall_time_s=wall_time_s,
            )
        )
    params = jax.device_get(state.params) if return_params else None
    return rows, params


def _check_positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{field} must be a positive integer, got {value!r}.")
