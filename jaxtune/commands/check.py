"""Step 2 of ``jaxtune sweep``: every error in the flags and files, before anything is loaded.

:func:`check_sweep` raises a one-line :class:`~jaxtune.commands.request.CliError` (or the
``ImportError`` of a missing extra) naming the flag, the value and the fix. It reads only the
:class:`~jaxtune.commands.request.SweepRequest` and the file system: no data is loaded, no
JAX device is touched. The errors that need the loaded space or data (an unknown metric, a
grid too large, a batch larger than the training set) are raised by the build step, still
before anything compiles.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from jaxtune import limits, storage
from jaxtune.checkpoint import MARKER
from jaxtune.commands.request import SCHEDULER_FLAGS, CliError, SweepRequest

__all__ = ["check_out", "check_plotting", "check_sweep"]

#: Count flags that are not int32 inside a program (totals): their own checks bound them.
_TOTAL_FLAGS = ("num_configs", "max_member_steps")


def check_sweep(request: SweepRequest) -> None:
    """Refuses a ``jaxtune sweep`` request whose flags or files are wrong.

    Args:
      request: the parsed command line.

    Raises:
      CliError: a flag out of range, flags that do not go together (``--dataset`` and
        ``--data``, ``--model`` and ``--task``), a missing space file, an
        output folder that cannot be written, a checkpoint folder that is not empty.
      ImportError: ``--tensorboard`` without tensorboardX, figures without matplotlib.
    """
    _check_checkpoint(request)
    _check_data_flags(request)
    _check_positive(
        request, "num_configs", "num_steps", "steps_per_segment", "population_size",
        "grid_points", "min_steps", "max_member_steps", "pbt_interval",
    )
    limits.check_seed("--seed", request.seed)
    for seed in request.seeds:
        limits.check_seed("--seeds", seed, limits.MAX_MEMBER_SEED)
    _check_scheduler_flags(request)
    _check_positive(request, "max_members_per_chunk", "members_per_device", "num_processes")
    _check_population_flags(request)
    _check_cluster_flags(request)
    if request.batch_size is not None and request.batch_size < 0:
        raise CliError(f"--batch-size must be >= 0 (0 = full batch), got {request.batch_size}")
    if request.top < 0:
        raise CliError(f"--top must be >= 0, got {request.top}")
    if request.time_budget is not None and not (
            math.isfinite(request.time_budget) and request.time_budget > 0):
        raise CliError(f"--time-budget must be a positive number of seconds, got "
                       f"{request.time_budget}; leave it out for no limit")
    if "space" not in request.resumed:  # a resume reads the space from its checkpoint
        _check_space_file(request.space)
    _check_warm_start(request.warm_start)
    check_out(request.out, "--out")
    _check_tensorboard(request.tensorboard)
    if not request.no_plot:
        check_plotting(no_plot_hint=True)


def check_out(path: str, flag: str) -> None:
    """Checks that the output folder ``path`` can be created and written (before any work)."""
    try:
        storage.check_writable(path, flag)
    except ValueError as error:
        raise CliError(str(error)) from error


def check_plotting(no_plot_hint: bool) -> None:
    """Figures need matplotlib (the ``jaxtune[plot]`` extra)."""
    if importlib.util.find_spec("matplotlib") is None:
        hint = " or pass --no-plot" if no_plot_hint else ""
        raise ImportError(f"figures need matplotlib: `pip install jaxtune[plot]`{hint}")


def _flag(field: str) -> str:
    return f"--{field.replace('_', '-')}"


def _check_positive(request: SweepRequest, *fields: str) -> None:
    """Each flag is unset or a positive integer; counts used inside jit fit an int32."""
    for field in fields:
        value = getattr(request, field)
        if value is not None and value <= 0:
            raise CliError(f"{_flag(field)} must be a positive integer, got {value}")
        if field not in _TOTAL_FLAGS:
            limits.check_int32(_flag(field), value)


def _check_checkpoint(request: SweepRequest) -> None:
    """The checkpoint flags, and a ``--checkpoint-dir`` that is new or empty (or resumed)."""
    if request.checkpoint_dir is None:
        for field in ("checkpoint_every_s", "checkpoint_every_segments"):
            if getattr(request, field) is not None:
                raise CliError(f"{_flag(field)} needs --checkpoint-dir DIR")
        return
    _check_positive(request, "checkpoint_every_segments")
    every_s = request.checkpoint_every_s
    if every_s is not None and not every_s >= 0:
        raise CliError(f"--checkpoint-every-s must be >= 0, got {every_s}")
    if (request.num_processes or 1) > 1:
        raise CliError("--checkpoint-dir is for one process; drop it or --num-processes")
    directory = Path(request.checkpoint_dir)
    check_out(request.checkpoint_dir, "--checkpoint-dir")
    # A marker's temporary file alone: a first run killed before it began (nothing to keep).
    storage.remove_temporaries(directory, [MARKER])
    if not request.resume and directory.is_dir() and any(directory.iterdir()):
        raise CliError(
            f"--checkpoint-dir: {str(directory)!r} is not empty; continue its sweep with "
            f"`jaxtune sweep --resume {directory}`, or give a new directory"
        )


def _check_data_flags(request: SweepRequest) -> None:
    """One source of data (``--dataset`` or ``--data``), one of the model (``--model`` or
    ``--task``), and ``--target``/``--kind`` only with ``--data``."""
    if (request.dataset is None) == (request.data is None):
        raise CliError("give the data with --dataset NAME (an embedded dataset) or --data FILE "
                       "(.npz or .csv), " + ("not both" if request.data else "one of them"))
    if request.model is not None and request.task is not None:
        raise CliError("--model picks a ready-made model and --task gives your own; drop one")
    for field in ("target", "kind"):
        if getattr(request, field) is not None and request.data is None:
            raise CliError(f"{_flag(field)} describes a --data file; drop it or give --data")


def _check_scheduler_flags(request: SweepRequest) -> None:
    """Scheduler flags: given only to the strategies that take them, and in range."""
    for field, takers in SCHEDULER_FLAGS.items():
        if getattr(request, field) is not None and request.strategy not in takers:
            raise CliError(
                f"{_flag(field)} applies to --strategy {'/'.join(takers)} only, "
                f"not {request.strategy}; drop it"
            )
    if not request.scheduled:
        return
    if len(request.seeds) != 1:
        raise CliError(
            f"--seeds: --strategy {request.strategy} trains each configuration once; give one "
            f"seed, got {len(request.seeds)}"
        )
    if not request.stops_early:  # pbt
        if request.population_size is not None:
            raise CliError(
                "--population-size: --strategy pbt trains all --num-configs members as one "
                "population; set --num-configs instead"
            )
        if request.num_configs < 2:
            raise CliError(
                f"--num-configs must be >= 2 for --strategy pbt, got {request.num_configs}")
        return
    if request.eta is not None and request.eta < 2:
        raise CliError(f"--eta must be an integer >= 2, got {request.eta}")
    min_steps = request.rung_steps
    if min_steps >= request.num_steps:
        raise CliError(
            f"--min-steps {min_steps} must be smaller than --num-steps {request.num_steps} for "
            "members to stop early; lower it"
        )
    if request.member_step_budget < min_steps:
        raise CliError(
            f"--max-member-steps {request.member_step_budget} is less than one member's first "
            f"rung (--min-steps {min_steps}); raise it"
        )


def _check_population_flags(request: SweepRequest) -> None:
    """``--batch-mode``, ``--members-per-device`` and ``--max-members-per-chunk`` together.

    Every strategy takes them: they are engine options, the same on every path.
    """
    if request.members_per_device is not None and request.max_members_per_chunk is not None:
        raise CliError("--members-per-device fixes the chunk size itself: drop "
                       "--max-members-per-chunk (or --members-per-device)")
    if request.batch_mode == "shared" and request.batch_size == 0:
        raise CliError("--batch-mode shared needs minibatches: give --batch-size > 0, or use "
                       "--batch-mode independent")


def _check_cluster_flags(request: SweepRequest) -> None:
    """The cluster flags (the JAXTUNE_* variables are checked by
    :func:`jaxtune.distributed.initialize_from_env_or_args`)."""
    process_id, num_processes = request.process_id, request.num_processes
    if process_id is not None and process_id < 0:
        raise CliError(f"--process-id must be >= 0, got {process_id}")
    if process_id is not None and num_processes is not None and process_id >= num_processes:
        raise CliError(
            f"--process-id {process_id} must be below --num-processes "
            f"{num_processes} (processes are numbered 0..{num_processes - 1})"
        )
    address = request.coordinator_address
    if address is not None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise CliError(
                f"--coordinator-address {address!r} must be HOST:PORT, e.g. 10.0.0.1:1234"
            )


def _check_space_file(path: str) -> None:
    file = Path(path)
    if not file.exists():
        raise CliError(f"--space: no such file {path!r}")
    if not file.is_file():
        raise CliError(f"--space: {path!r} is not a file")


def _check_warm_start(directory: str | None) -> None:
    """``--warm-start DIR``: a folder holding a saved sweep (its ``results.json``)."""
    if directory is None:
        return
    folder = Path(directory)
    if not folder.is_dir():
        raise CliError(f"--warm-start: no such folder {directory!r}; give an earlier sweep's "
                       "--out folder")
    if not (folder / "results.json").is_file():
        raise CliError(f"--warm-start: {directory!r} holds no results.json; give an earlier "
                       "sweep's --out folder")


def _check_tensorboard(directory: str | None) -> None:
    if directory is None:
        return
    check_out(directory, "--tensorboard")
    if importlib.util.find_spec("tensorboardX") is None:
        raise ImportError(
            "--tensorboard needs tensorboardX: `pip install jaxtune[integrations]` "
            "(or pip install tensorboardX)"
        )
