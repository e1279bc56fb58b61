"""Step 1 of ``jaxtune sweep``: the parsed command line as one typed value.

:func:`jaxtune.cli.main` turns argparse's namespace into a frozen :class:`SweepRequest`; the
later steps (check, build, run) read its fields and never the namespace. The scheduler defaults that
depend on other flags (``--min-steps``, ``--max-member-steps``, ``--steps-per-segment``) are
resolved here, in one place.

This module imports no JAX: the command line is parsed before anything heavy is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from jaxtune.contracts import Strategy
    from jaxtune.results import Results

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_ETA",
    "DEFAULT_STEPS_PER_SEGMENT",
    "HALVING_STRATEGIES",
    "SCHEDULER_FLAGS",
    "CliError",
    "StrategyEntry",
    "SweepRequest",
    "add_objective_flags",
    "objective_fields",
    "objectives",
    "parse_constraint",
]

#: ``--batch-size`` when not given (capped at the number of training rows).
DEFAULT_BATCH_SIZE = 128
#: ``--eta`` when not given.
DEFAULT_ETA = 3
#: ``--steps-per-segment`` when not given (halving/hyperband: ``--min-steps``).
DEFAULT_STEPS_PER_SEGMENT = 50
#: The strategies that stop members early at rungs (they take --eta, --min-steps and a budget).
HALVING_STRATEGIES = ("halving", "hyperband")
#: Scheduler flags and the strategies that take them (anything else refuses them).
SCHEDULER_FLAGS = {
    "eta": HALVING_STRATEGIES,
    "min_steps": HALVING_STRATEGIES,
    "max_member_steps": HALVING_STRATEGIES,
    "pbt_interval": ("pbt",),
}


class CliError(ValueError):
    """Bad command-line input: printed as one ``jaxtune: error:`` line, exit status 2."""


class StrategyEntry(NamedTuple):
    """One ``--strategy`` choice.

    Attributes:
      factory: ``args -> Strategy``; receives the parsed command line, so a strategy can read
        its own flags. Import the strategy's module inside the factory, so that a strategy whose
        module is missing or broken fails only when chosen.
      help: one line for ``--help`` and docs/cli.md.
      default_rounds: rounds of ``ask``/``tell`` when ``--population-size`` is not given (1: the
        whole budget at once, right for strategies that do not learn from scores); for a
        scheduler, ``--population-size`` defaults to ``ceil(num_configs / default_rounds)``.
      run: ``None`` for ask/tell strategies (run by :func:`jaxtune.tuning.tune`); for a
        scheduler, ``run(request, plan, on_segment) -> Results`` with the
        :class:`SweepRequest`, the :class:`~jaxtune.commands.build.SweepPlan` (its
        ``strategy``, from ``factory``, proposes the configurations the scheduler starts; its
        ``options`` are the engine options every path gets) and the progress callback.
    """

    factory: Callable[[argparse.Namespace], Strategy]
    help: str
    default_rounds: int = 1
    run: Callable[..., Results] | None = None


@dataclasses.dataclass(frozen=True)
class SweepRequest:
    """What ``jaxtune sweep`` was asked to do: every flag, typed, as given.

    Fields are named as argparse's destinations (``--num-configs`` is ``num_configs``), so an
    error message can name the flag of a field. ``None`` means "not given" wherever the flag
    has a default that depends on others (see the properties).

    Attributes:
      args: the parsed namespace, kept only for the strategy's ``factory`` (a strategy may
        read its own flags).
      entry: the chosen ``--strategy``'s registry entry.
      resumed: what a ``--resume``'s checkpoint marker keeps (``space``, ``cpu_devices``);
        empty for a first run.
      argv: the arguments of this run, kept in a checkpoint's marker for ``--resume``.
      warm_start: ``--warm-start``: a saved sweep's ``--out`` folder to warm-start from.
      checkpoint_dir: ``--checkpoint-dir``, or the ``--resume`` directory.
      resume: whether ``--resume`` was given.
      dataset, data: ``--dataset`` (an embedded dataset) or ``--data`` (a ``.npz``/``.csv``
        file): exactly one is given. ``target``, ``kind``: ``--data``'s CSV target column and
        kind (default: the last column; inferred from the targets).
      model, task: ``--model`` (a ready-made model, default ``mlp``) or ``--task``
        (``MODULE:ATTR``, the user's own Task or factory): at most one is given.
      progress: ``False`` (``--quiet``), ``True`` (``--progress``), or ``None`` (only when
        stderr is a terminal).
      metric, metrics, directions: the first ``--metric`` (``None``: the task's default), every
        ``--metric`` in order (several: a multi-objective search) and every ``--direction``
        (none, or one per ``--metric``); see :func:`objectives`.
      constraints: every ``--constraint METRIC<=BOUND`` (or ``>=``), parsed.
      time_budget: ``--time-budget``: seconds of wall time, or ``None`` for no limit.
    """

    args: argparse.Namespace
    entry: StrategyEntry
    strategy: str
    dataset: str | None
    model: str | None
    space: str
    out: str
    num_configs: int
    population_size: int | None
    num_steps: int
    batch_size: int | None
    steps_per_segment: int | None
    batch_mode: str
    max_members_per_chunk: int | None
    members_per_device: int | None
    member_loop: str | None
    seeds: tuple[int, ...]
    seed: int
    metric: str | None
    grid_points: int
    eta: int | None
    min_steps: int | None
    max_member_steps: int | None
    pbt_interval: int | None
    allow_unused_hparams: bool
    top: int
    progress: bool | None
    tensorboard: str | None
    no_plot: bool
    figure_format: str
    checkpoint_dir: str | None
    checkpoint_every_s: float | None
    checkpoint_every_segments: int | None
    resume: bool
    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    task: str | None = None
    data: str | None = None
    target: str | None = None
    kind: str | None = None
    argv: tuple[str, ...] = ()
    resumed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    directions: tuple[str, ...] = ()
    constraints: tuple[tuple[str, str, float], ...] = ()
    warm_start: str | None = None
    time_budget: float | None = None

    @property
    def scheduled(self) -> bool:
        """Whether a scheduler runs the sweep (halving, hyperband, pbt), not ``tune``."""
        return self.entry.run is not None

    @property
    def stops_early(self) -> bool:
        """Whether members stop at rungs (halving, hyperband): rows may be ``"stopped"``."""
        return self.strategy in HALVING_STRATEGIES

    @property
    def rung_steps(self) -> int:
        """The first rung: ``--min-steps``, default ``num_steps // eta**3``, at least 1."""
        return _min_steps(self)

    @property
    def member_step_budget(self) -> int:
        """Member-steps a halving/hyperband sweep may spend (``--max-member-steps``)."""
        return _scheduler_budget(self)

    @property
    def segment_steps(self) -> int:
        """``--steps-per-segment``; default the first rung (halving, hyperband), else 50."""
        if self.steps_per_segment:
            return self.steps_per_segment
        return self.rung_steps if self.stops_early else DEFAULT_STEPS_PER_SEGMENT

    @property
    def data_flag(self) -> str:
        """The flag and value that name the data in messages: ``--data F`` or ``--dataset D``."""
        return f"--data {self.data}" if self.data is not None else f"--dataset {self.dataset}"


def _min_steps(args: Any) -> int:
    """``--min-steps``, default ``num_steps // eta**3`` (three halvings), at least 1."""
    if args.min_steps is not None:
        return int(args.min_steps)
    return max(1, args.num_steps // (args.eta or DEFAULT_ETA) ** 3)


def _scheduler_budget(args: Any) -> int:
    """Member-steps a halving/hyperband sweep may spend: random search's, unless given."""
    if args.max_member_steps is not None:
        return int(args.max_member_steps)
    return args.num_configs * args.num_steps


def objectives(metrics: Any, directions: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``--metric`` (repeated) and ``--direction`` (none, or one per ``--metric``), checked.

    Raises:
      CliError: directions without a metric, or counts that differ. Every strategy takes
        several metrics (halving, hyperband and pbt compare members in NSGA-II's order,
        :mod:`jaxtune.objectives`).
    """
    metrics, directions = tuple(metrics or ()), tuple(directions or ())
    if directions and len(directions) != len(metrics):
        raise CliError(
            f"--direction: given {len(directions)} time(s) for {len(metrics)} --metric; give "
            "one --direction per --metric, in the same order (or none: each metric's own), "
            "e.g. --metric valid_accuracy --direction max --metric valid_loss --direction min"
        )
    return metrics, directions


def parse_constraint(text: str) -> tuple[str, str, float]:
    """One ``--constraint``: ``METRIC<=BOUND`` or ``METRIC>=BOUND``, e.g. ``valid_loss<=0.5``.

    Raises:
      CliError: another form, or a bound that is not a finite number.
    """
    for operator in ("<=", ">="):
        name, found, bound = text.partition(operator)
        if found:
            try:
                value = float(bound)
            except ValueError:
                value = math.nan
            if name.strip() and math.isfinite(value):
                return name.strip(), operator, value
            break
    raise CliError(
        f"--constraint {text!r}: write METRIC<=BOUND or METRIC>=BOUND with a finite bound, "
        "e.g. --constraint 'valid_loss<=0.5'"
    )


def add_objective_flags(sweep: argparse.ArgumentParser) -> None:
    """``--metric`` (repeatable), ``--direction`` (one per ``--metric``), ``--constraint``."""
    sweep.add_argument("--metric", action="append", default=None,
                       help="the metric to select on (default valid_accuracy or valid_mse); "
                       "repeat for several objectives: a Pareto front (docs/multiobjective.md)")
    sweep.add_argument("--direction", action="append", choices=("max", "min"), default=None,
                       help="max or min per --metric, in the same order (default: the task's "
                       "or the name's: loss/error-like names are minimized)")
    sweep.add_argument("--constraint", action="append", default=None, metavar="METRIC<=BOUND",
                       help="feasibility: a member breaking it is marked infeasible, never "
                       "chosen; bayes learns to avoid it, halving/hyperband/pbt rank it last "
                       "(repeatable; <= or >=)")


def objective_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`SweepRequest` fields of :func:`add_objective_flags`' flags, checked."""
    metrics, directions = objectives(args.metric, getattr(args, "direction", None))
    constraints = tuple(parse_constraint(text)
                        for text in getattr(args, "constraint", None) or ())
    return {"metric": metrics[0] if metrics else None, "metrics": metrics,
            "directions": directions, "constraints": constraints}
