"""Step 3 of ``jaxtune sweep``: from a checked request to what the drivers take.

:func:`build_sweep` reads the space and the data, makes the task and the strategy, resolves
the metric, the population size and the batch size, and builds one
:class:`~jaxtune.engine.EngineOptions` that every driver gets unchanged (``tune``,
``run_halving``, ``run_pbt``). Nothing is traced or compiled here; the input errors that need
the loaded space or data are raised here, as one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, NamedTuple

from jaxtune import contracts, data, datatree, limits, task, userdata, warmstart
from jaxtune.checkpoint import Checkpointer
from jaxtune.commands import resume as resume_lib
from jaxtune.commands import usertask
from jaxtune.commands.devices import cpu_device_count
from jaxtune.commands.request import DEFAULT_BATCH_SIZE, CliError, SweepRequest
from jaxtune.contracts import Strategy
from jaxtune.engine.options import EngineOptions
from jaxtune.results import Results
from jaxtune.space import Space
from jaxtune.step import Step
from jaxtune.task import Task

__all__ = ["COMMAND_LINE_OPTIONS", "SweepPlan", "build_sweep", "engine_options_mapping",
           "sweep_cpu_devices"]

#: The engine options the command line sets (``--batch-mode``, ``--allow-unused-hparams``,
#: ``--max-members-per-chunk``, ``--members-per-device``, ``--member-loop``): the drivers'
#: ``engine_options``. ``num_steps``, ``batch_size`` and ``steps_per_segment`` are the
#: drivers' own keywords; the other options keep the drivers' values (``static_names`` from
#: the space, ``sweep_reads`` from the space check).
COMMAND_LINE_OPTIONS = (
    "batch_mode", "allow_unused_hparams", "max_members_per_chunk", "members_per_device",
    "member_loop",
)


class SweepPlan(NamedTuple):
    """What a sweep trains, built from a :class:`~jaxtune.commands.request.SweepRequest`.

    Attributes:
      task: the model and loss: ``--model``'s for the data, or ``--task``'s.
      split: the standardized train/valid/test split (numpy) of ``--dataset`` or ``--data``,
        drawn with ``--seed`` (the parts a ``--data`` file gives are kept).
      space: the search space (from ``--space``, or the resumed checkpoint).
      strategy: what ``--strategy``'s factory made.
      metric: the selection metric; ``mode``: ``"max"`` or ``"min"``.
      num_configs: configurations to evaluate (grid: at most the grid's size).
      population_size: configurations per round (``None``: all at once); pbt: every member.
      options: the engine options every driver gets (steps, batch, segment, population flags).
      checkpointer: where the sweep checkpoints, or ``None``.
      cpu_devices: CPU devices to split the host into (the resumed sweep's count on a resume).
      metrics, modes: every objective and its direction (``metric``/``mode`` are the first).
      constraints: ``--constraint``, checked against the task's metrics, or ``None``.
      history: ``--warm-start``'s saved sweep (checked against the space), or ``None``.
    """

    task: Task
    split: data.Split
    space: Space
    strategy: Strategy
    metric: str
    mode: str
    num_configs: int
    population_size: int | None
    options: EngineOptions
    checkpointer: Checkpointer | None
    cpu_devices: int
    metrics: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    constraints: contracts.Constraints | None = None
    history: Results | None = None


def engine_options_mapping(options: EngineOptions) -> dict[str, Any]:
    """The drivers' ``engine_options`` for ``options``: the :data:`COMMAND_LINE_OPTIONS`."""
    return {name: getattr(options, name) for name in COMMAND_LINE_OPTIONS}


def build_sweep(request: SweepRequest) -> SweepPlan:
    """Builds what the sweep trains; raises the input errors that need the space or the data.

    Args:
      request: a request :func:`~jaxtune.commands.check.check_sweep` accepted.

    Returns:
      The :class:`SweepPlan`.

    Raises:
      CliError: an unknown ``--metric``, a ``--batch-size`` larger than the training set, a
        ``--task`` that does not import or make a Task, a ``--data`` file that cannot be read
        or does not fit the task.
      ValueError: a malformed space file, a grid or population too large for the host.
      ImportError: a strategy whose module or extra is missing.
    """
    resumed = request.resumed
    space = (Space.from_dict(resumed["space"]) if "space" in resumed
             else Space.from_file(request.space))
    cpu_devices = sweep_cpu_devices(request)
    checkpointer = _checkpointer(request, space, cpu_devices)
    strategy = request.entry.factory(request.args)
    the_task, split = _task_and_split(request)
    metrics, modes, constraints = _objectives(request, the_task)
    metric, mode = metrics[0], modes[0]
    num_configs = request.num_configs
    if request.strategy == "grid":
        num_configs = min(num_configs, len(space.grid(request.grid_points)))
    # Before a single config is drawn: a population the host cannot hold aborts XLA.
    limits.check_population("--num-configs", num_configs * len(request.seeds), len(space))
    options = EngineOptions(
        num_steps=request.num_steps,
        batch_size=_batch_size(request, datatree.num_rows(split.y_train, "y")),
        steps_per_segment=request.segment_steps,
        max_members_per_chunk=request.max_members_per_chunk,
        members_per_device=request.members_per_device,
        batch_mode=request.batch_mode,
        member_loop=request.member_loop,
        allow_unused_hparams=request.allow_unused_hparams,
    )
    return SweepPlan(the_task, split, space, strategy, metric, mode, num_configs,
                     _population_size(request, num_configs), options, checkpointer, cpu_devices,
                     metrics, modes, constraints, _history(request, space, metric, mode))


def _history(request: SweepRequest, space: Space, metric: str, mode: str) -> Results | None:
    """``--warm-start``'s saved sweep, checked against the space before anything trains."""
    if request.warm_start is None:
        return None
    try:
        history = Results.load(request.warm_start)
        warmstart.history_losses(history, space, metric, mode)
    except (OSError, TypeError, ValueError) as error:
        raise CliError(f"--warm-start {request.warm_start}: {error}") from error
    return history


def sweep_cpu_devices(request: SweepRequest) -> int:
    """The CPU devices the sweep splits the host into: a resumed sweep's count, else
    ``JAXTUNE_CPU_DEVICES`` or the core count
    (:func:`~jaxtune.commands.devices.cpu_device_count`)."""
    return int(request.resumed.get("cpu_devices") or cpu_device_count())


def _checkpointer(request: SweepRequest, space: Space, cpu_devices: int) -> Checkpointer | None:
    """The sweep's checkpointer; a first run's marker keeps what ``--resume`` needs."""
    if request.checkpoint_dir is None:
        return None
    every_s = request.checkpoint_every_s
    if every_s is None and request.checkpoint_every_segments is None:
        every_s = 30.0
    checkpointer = Checkpointer(
        request.checkpoint_dir, every_segments=request.checkpoint_every_segments, every_s=every_s,
    )
    if request.resume:
        return checkpointer
    # What --resume needs, kept in the marker: paths made absolute (it may run from another
    # folder), the space itself (the file may change or be gone) and the CPU device count
    # (part of the sweep's identity; another machine has another core count).
    cwd = os.getcwd()
    return dataclasses.replace(checkpointer, metadata={"cli": {
        "argv": resume_lib.absolute_paths(list(request.argv), cwd), "cwd": cwd,
        "space": space.to_dict(), "cpu_devices": cpu_devices,
    }})


def _task_and_split(request: SweepRequest) -> tuple[Task | Step, data.Split]:
    """The task (``--model`` or ``--task``) and the standardized split of ``--dataset`` or
    ``--data`` (drawn with ``--seed``), checked against each other."""
    found = None
    if request.task is not None:
        found = usertask.find_task(request.task, str(request.resumed.get("cwd") or os.getcwd()))
    if request.data is None:
        dataset = data.load_dataset(str(request.dataset))
        split = data.train_valid_test_split(dataset, seed=request.seed)
    else:
        # A Task or Step says its kind and classes.
        declared = found if isinstance(found, Task | Step) else None
        try:
            file = userdata.load_data_file(
                request.data, target=request.target,
                kind=request.kind or (declared.kind if declared else None),
                num_classes=declared.num_classes if declared else None)
            split = userdata.split_data_file(file, seed=request.seed)
        except (TypeError, ValueError, OSError) as error:
            raise CliError(f"--data: {error}") from error
        dataset = file.dataset
    if found is None:
        the_task = _task(request.model or "mlp", dataset)
    else:
        description = {"input_shape": datatree.row_shapes(dataset.x),
                       "num_classes": dataset.num_classes, "kind": dataset.kind}
        the_task = usertask.make_task(found, str(request.task), description)
    try:
        task.check_task_data(the_task, split)
    except (TypeError, ValueError) as error:
        model = f"--task {request.task}" if request.task else f"--model {request.model or 'mlp'}"
        hint = ("" if request.data is None or the_task.kind in (None, split.kind) else
                f" (--kind {the_task.kind} reads the file as {the_task.kind} data)")
        raise CliError(f"{request.data_flag} does not fit {model}: {error}{hint}") from error
    return the_task, data.standardize(split)  # numpy


def _task(model: str, dataset: data.Dataset) -> Task:
    if datatree.is_tree(dataset.x) or datatree.is_tree(dataset.y):
        raise CliError(f"--model {model} reads one array x and y, but the data holds dicts "
                       f"(x: {datatree.describe(dataset.x)}); write a task that reads them and "
                       "pass it with --task module:factory")
    input_shape = dataset.x.shape[1:]
    if dataset.kind == "classification":
        return task.classification_task(
            model, num_classes=dataset.num_classes, input_shape=input_shape
        )
    y = dataset.y
    num_outputs = int(y.shape[1]) if y.ndim == 2 else None  # several outputs: y [rows, k]
    return task.regression_task(model, input_shape=input_shape, num_outputs=num_outputs)


def _objectives(request: SweepRequest, the_task: Task) -> tuple[
        tuple[str, ...], tuple[str, ...], contracts.Constraints | None]:
    """``--metric`` (default: the task's; repeated: several objectives), ``--direction`` (each
    metric's own when not given) and ``--constraint``, checked against the task."""
    metrics = request.metrics or (request.metric or contracts.default_metric(
        the_task.metric_modes, kind=the_task.kind),)
    directions = request.directions or (None,) * len(metrics)
    try:
        modes = tuple(contracts.selection_mode(metric, direction,
                                               metric_modes=the_task.metric_modes)
                      for metric, direction in zip(metrics, directions, strict=True))
    except ValueError as error:
        raise CliError(f"--metric: {error}") from error
    names = [name for name, _, _ in request.constraints]
    if len(set(names)) != len(names):
        raise CliError(f"--constraint: {sorted(set(n for n in names if names.count(n) > 1))} "
                       "constrained more than once; give one bound per metric")
    try:
        constraints = contracts.check_constraints(
            {name: (op, bound) for name, op, bound in request.constraints} or None,
            the_task.metric_modes)
    except ValueError as error:
        raise CliError(f"--constraint: {error}") from error
    return tuple(metrics), modes, constraints


def _population_size(request: SweepRequest, num_configs: int) -> int | None:
    """``--population-size``; default ``ceil(num_configs / rounds)``; pbt: every member."""
    if request.scheduled and not request.stops_early:  # pbt trains one population
        return num_configs
    if request.population_size is None and request.entry.default_rounds > 1:
        return max(1, math.ceil(num_configs / request.entry.default_rounds))
    return request.population_size


def _batch_size(request: SweepRequest, num_train: int) -> int | None:
    """``--batch-size``: default 128 (at most the training rows), ``0``: full batch."""
    if request.batch_size is None:
        return min(DEFAULT_BATCH_SIZE, num_train)
    if request.batch_size == 0:
        return None
    if request.batch_size > num_train:
        raise CliError(
            f"--batch-size {request.batch_size} is larger than the {num_train} training rows "
            f"of {request.data_flag}; lower it, or pass 0 for full-batch training"
        )
    return request.batch_size
