"""Step 4 of ``jaxtune sweep``: train through the strategy's driver, then write ``--out``.

:func:`run_sweep` joins the cluster (when there is one), holds ``--out``'s lock, trains with a
progress bar and, on process 0, saves the results, prints the table and writes the figures
(``--tensorboard``'s runs are written live, every segment as it ends). The CPU is split into
devices by the caller (:func:`jaxtune.cli.use_cpu_cores`) before this step, which runs the
first JAX computation.
"""

from __future__ import annotations

import contextlib
import shlex
import tempfile
from pathlib import Path

import jax

from jaxtune import distributed, storage
from jaxtune.checkpoint import Checkpointer
from jaxtune.commands import drivers
from jaxtune.commands.build import SweepPlan
from jaxtune.commands.request import CliError, SweepRequest
from jaxtune.commands.saved import write_figures
from jaxtune.integrations.tensorboard import TensorBoardLogger
from jaxtune.progress import ProgressBar, chain
from jaxtune.results import Results

__all__ = ["run_sweep"]


def run_sweep(request: SweepRequest, plan: SweepPlan) -> int:
    """Trains the sweep and writes its outputs; returns the exit status.

    Args:
      request: the checked request.
      plan: what :func:`~jaxtune.commands.build.build_sweep` built from it.

    Returns:
      0 (a failure to write is a one-line :class:`~jaxtune.commands.request.CliError`).
    """
    # Joins the cluster (flags, then JAXTUNE_* variables, then JAX's auto-detection) before
    # the backend starts; alone, nothing happens.
    distributed.initialize_from_env_or_args(
        request.coordinator_address, request.num_processes, request.process_id
    )
    writer = distributed.is_writer()
    # Held until the results are written: a second sweep into the same --out is refused now,
    # not after both trained (and their results.json and results.csv never mix).
    with storage.FolderLock(request.out, "--out") if writer else contextlib.nullcontext():
        live = TensorBoardLogger(request.tensorboard) if writer and request.tensorboard else None
        results = _train(request, plan, writer, live)
        if not writer:  # every process holds every row; one writes, or they would race
            print(f"process {jax.process_index()} of {jax.process_count()}: {len(results)} "
                  f"members trained; process 0 writes {request.out}")
            return 0
        return _write_outputs(request, plan, results, live)


def _train(request: SweepRequest, plan: SweepPlan, writer: bool,
           live: TensorBoardLogger | None) -> Results:
    """Runs the strategy's driver (``tune`` for ask/tell) under a progress bar (and the live
    TensorBoard logger of ``--tensorboard``, which writes every segment as it ends)."""
    budget = plan.num_configs * len(request.seeds) * request.num_steps
    if request.stops_early:
        budget = request.member_step_budget
    progress = ProgressBar(budget, metric=plan.metric, mode=plan.mode,
                           enabled=writer and request.progress)
    run = request.entry.run or drivers.run_ask_tell
    results = run(request, plan, progress if live is None else chain(progress, live))
    progress.close()  # ends the live line even when the sweep did less than the estimate
    return results


def _write_outputs(request: SweepRequest, plan: SweepPlan, results: Results,
                   live: TensorBoardLogger | None) -> int:
    """Process 0: saves ``--out``, prints the table, completes the TensorBoard runs, writes
    the figures."""
    out = Path(request.out)
    _save_results(results, out, plan.checkpointer)
    if live is not None:
        print(f"wrote TensorBoard runs into {live.finish(results)} "
              f"(tensorboard --logdir {request.tensorboard})")
    metric, mode = plan.metric, plan.mode
    if request.stops_early:
        # Stopped members carry metrics from an early rung: rank the completed ones.
        stopped = len(results.filter(status="stopped"))
        completed = results.filter(status="completed")
        print(f"{len(results)} members started, {stopped} stopped early, "
              f"{results.metadata.get('member_steps', '?')} member-steps; "
              + ("completed members:" if len(completed) else
                 "none completed --num-steps within the budget (raise --max-member-steps):"))
        shown = completed if len(completed) else results
        print(shown.table(k=request.top, metric=metric, mode=mode))
    else:
        print(results.table(k=request.top, metric=metric, mode=mode))
    if len(plan.metrics) > 1:
        front = results.pareto_front()
        over = ", ".join(f"{m} ({d})" for m, d in zip(plan.metrics, plan.modes, strict=True))
        print(f"\nPareto front over {over}:")
        print(front.table(k=max(len(front), 1), metric=metric, mode=mode))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.csv'}")
    if results.metadata.get("stopped_by") == "time_budget":
        print(_time_budget_note(request, plan, results))
    if not request.no_plot:
        try:
            for path in write_figures(results, out, metric, mode, request.figure_format):
                print(f"wrote {path}")
        except OSError as error:
            raise CliError(f"--out: could not write the figures into {str(out)!r} "
                           f"({error.strerror or error}); the results are written") from error
    return 0


def _time_budget_note(request: SweepRequest, plan: SweepPlan, results: Results) -> str:
    """What a sweep the time budget stopped did, and the exact command that continues it."""
    stopped = sum(row.extra.get("stopped_by") == "time_budget" for row in results)
    metadata = results.metadata
    undone = [f"{len(results) - stopped} members trained", f"{stopped} stopped mid-training"]
    if metadata.get("members_not_started"):
        undone.append(f"{metadata['members_not_started']} not started")
    if metadata.get("configs_not_asked"):
        undone.append(f"{metadata['configs_not_asked']} configs not proposed yet")
    head = f"\ntime budget of {request.time_budget:g} s spent: {', '.join(undone)}."
    if plan.checkpointer is None:
        return (f"{head} Nothing to resume from: run with --checkpoint-dir DIR to continue a "
                "sweep its --time-budget stops.")
    command = f"jaxtune sweep --resume {shlex.quote(str(plan.checkpointer.directory))}"
    return (f"{head} Continue it (add --time-budget SECONDS for a new budget) with:\n"
            f"  {command}")


def _save_results(results: Results, out: Path, checkpointer: Checkpointer | None) -> None:
    """``results.save(out)`` (under the caller's lock); if that fails (a full or removed
    disk), keeps the results in a new folder of the system's temporary directory and raises a
    one-line :class:`~jaxtune.commands.request.CliError` that names it."""
    try:
        results.save(out, lock=False)
        return
    except OSError as error:
        failure = f"could not write the results into {str(out)!r} ({error.strerror or error})"
    resume = ("" if checkpointer is None else
              f"; `jaxtune sweep --resume {checkpointer.directory}` writes them again")
    try:
        fallback = Path(tempfile.mkdtemp(prefix="jaxtune-results-"))
        results.save(fallback)
    except OSError as error:
        raise CliError(f"--out: {failure}, nor into a temporary folder ({error.strerror or error})"
                       f"{resume}") from error
    raise CliError(f"--out: {failure}; kept them in {fallback}{resume}")
