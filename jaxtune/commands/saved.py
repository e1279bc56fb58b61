"""The commands on a saved sweep: ``jaxtune show``, ``jaxtune plot``, ``jaxtune export-optuna``.

Each takes a folder written by ``jaxtune sweep --out`` (:func:`load_results` refuses anything
else in one line). :func:`write_figures` is also what ``jaxtune sweep`` writes after training.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from jaxtune import plot
from jaxtune.commands.check import check_out, check_plotting
from jaxtune.commands.request import CliError
from jaxtune.integrations import optuna as optuna_lib
from jaxtune.results import RESULTS_JSON, Results

__all__ = ["export_optuna", "load_results", "metric_for", "plot_sweep", "show", "write_figures"]


def load_results(directory: str) -> Results:
    """The results saved in ``directory``.

    Raises:
      CliError: no such folder, no ``results.json`` in it, or one that cannot be read.
    """
    path = Path(directory)
    if not path.exists():
        raise CliError(f"directory: {directory!r} does not exist")
    if path.is_dir() and not (path / RESULTS_JSON).is_file():
        raise CliError(
            f"directory: {directory!r} has no {RESULTS_JSON}; give a folder written by "
            "`jaxtune sweep --out`"
        )
    try:
        return Results.load(path)
    except ValueError as error:
        raise CliError(f"directory: {error}") from error
    except RecursionError:
        raise CliError(
            f"directory: {str(path / RESULTS_JSON)!r} is nested too deeply to read: it is "
            "damaged or was not written by jaxtune"
        ) from None


def metric_for(results: Results, metric: str | None) -> tuple[str, str]:
    """The metric to rank by (``--metric`` or the sweep's) and its mode, as Python ranks."""
    chosen, mode = results.resolve_metric(metric)
    if chosen not in results.metric_names:
        raise CliError(
            f"--metric {chosen!r} is not in the results; available metrics: "
            f"{', '.join(results.metric_names) or 'none (no rows)'}"
        )
    return chosen, mode


def write_figures(results: Results, out: Path, metric: str, mode: str, fmt: str) -> list[Path]:
    """Writes the standard figures of a sweep into ``out``; returns their paths.

    Args:
      results: the sweep.
      out: the folder (created if needed).
      metric: the metric to show.
      mode: ``"max"`` or ``"min"``.
      fmt: ``"png"``, ``"svg"`` or ``"pdf"``.

    Returns:
      The paths written: ``summary.<fmt>`` (learning curves and the metric against each
      hyperparameter that varies, log axes where the space is log, categorical ones as strip
      plots), ``parallel_coordinates.<fmt>`` (when
      the sweep has hyperparameters), ``best_so_far.<fmt>`` (the best metric among the first
      *n* members: a strategy's progress), ``learning_curves.<fmt>`` (when ``metric`` has
      curves) and ``pareto.<fmt>`` (a multi-objective sweep: its first two metrics and the
      Pareto front).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot.summary_figure(results, out / f"summary.{fmt}", metric=metric, mode=mode)]
    if results.hp_names:
        paths.append(plot.save_figure(plot.parallel_coordinates(results, metric, mode=mode),
                                      out / f"parallel_coordinates.{fmt}"))
    paths.append(plot.save_figure(plot.best_so_far(results, metric, mode=mode),
                                  out / f"best_so_far.{fmt}"))
    if any(metric in row.curves for row in results):
        paths.append(plot.save_figure(plot.learning_curves(results, metric, mode=mode),
                                      out / f"learning_curves.{fmt}"))
    if len(results.metadata.get("metrics") or ()) > 1:
        paths.append(plot.save_figure(plot.pareto_plot(results), out / f"pareto.{fmt}"))
    return paths


def show(directory: str, *, top: int, metric: str | None) -> int:
    """``jaxtune show``: prints the saved sweep's table; returns the exit status."""
    if top < 0:
        raise CliError(f"--top must be >= 0, got {top}")
    results = load_results(directory)
    metric, mode = metric_for(results, metric)
    print(results.table(k=top, metric=metric, mode=mode))
    return 0


def plot_sweep(directory: str, *, out: str | None, metric: str | None, fmt: str) -> int:
    """``jaxtune plot``: writes the figures (into ``out``, default the folder itself)."""
    out = out if out is not None else directory
    check_out(out, "--out")
    check_plotting(no_plot_hint=False)
    results = load_results(directory)
    metric, mode = metric_for(results, metric)
    for path in write_figures(results, Path(out), metric, mode, fmt):
        print(f"wrote {path}")
    return 0


def export_optuna(directory: str, *, storage: str, study_name: str | None,
                  metric: str | None, load_if_exists: bool) -> int:
    """``jaxtune export-optuna``: copies the saved sweep into an Optuna study, one trial per
    member; returns the exit status."""
    if "://" not in storage:
        raise CliError(f"--storage {storage!r} is not a storage URL; give e.g. sqlite:///sweep.db")
    if importlib.util.find_spec("optuna") is None:
        raise ImportError(
            "export-optuna needs Optuna: `pip install jaxtune[integrations]` (or pip install "
            "optuna)"
        )
    results = load_results(directory)
    metric, mode = metric_for(results, metric)
    import optuna  # an optional extra: imported once it is known to be installed

    name = study_name or Path(directory).resolve().name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna_lib.export_to_optuna(results, storage=storage, study_name=name,
                                            metric=metric, direction=mode,
                                            load_if_exists=load_if_exists)
    except optuna.exceptions.DuplicatedStudyError as error:
        raise CliError(
            f"--study-name: a study named {name!r} already exists in {storage}; pass "
            "another --study-name, or --load-if-exists to add to it"
        ) from error
    print(f"exported {len(results)} members as trials of study {study.study_name!r} "
          f"({metric}, {'maximize' if mode == 'max' else 'minimize'}) into {storage}")
    print(f"view it with: optuna-dashboard {storage}")
    return 0
