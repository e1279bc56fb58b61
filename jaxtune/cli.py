"""The ``jaxtune`` command line: the argument parser, the strategy registry and the dispatch.

    jaxtune sweep --dataset digits --model mlp --space space.json --strategy random \\
                  --num-configs 64 --num-steps 500 --out runs/digits
    jaxtune show runs/digits
    jaxtune plot runs/digits --format svg

Several processes (hosts) run one sweep when each starts the same command with the cluster's
coordinator, size and its own index (or ``JAXTUNE_COORDINATOR``/``JAXTUNE_NUM_PROCESSES``/
``JAXTUNE_PROCESS_ID``, or nothing on SLURM and Cloud TPU, where JAX finds them itself)::

    jaxtune sweep ... --coordinator-address 10.0.0.1:1234 --num-processes 2 --process-id 0
    jaxtune sweep ... --coordinator-address 10.0.0.1:1234 --num-processes 2 --process-id 1

Every process trains its share of the population and ends with every row; process 0 alone
prints the table and writes ``--out`` (docs/distributed.md).

Errors in the input (a malformed space file, an unknown dataset, model or strategy, a negative
budget, a missing or corrupt results folder, a ``--task`` module that does not import, a
``--data`` file that does not fit) print one line, ``jaxtune: error: ...``, naming the
offending field, and exit with status 2; so do argparse's usage errors. Set ``JAXTUNE_DEBUG=1``
to get the full traceback instead. Anything else (a bug) is not caught and shows its traceback.

Strategies come from :data:`STRATEGIES`, a registry of name -> :class:`StrategyEntry`; a new
strategy plugs in by adding an entry (its factory is only called, and its module only imported,
when the strategy is chosen). ``grid``, ``random``, ``sobol`` and ``bayes`` run the ask/tell loop
of :func:`jaxtune.tuning.tune`; ``halving``, ``hyperband`` and ``pbt`` are schedulers acting
between segments of one population (their entries have a ``run``), spending the budget random
search would (``--num-configs`` x ``--num-steps`` member-steps) unless ``--max-member-steps``.
Every strategy gets the same engine options (one :class:`~jaxtune.engine.EngineOptions`).

``sweep`` runs in four steps: parse (here), then check, build and run (:mod:`jaxtune.commands`).
This module imports the commands, JAX and the strategies only when a command runs (the one
module of jaxtune whose imports are late), so that parsing the command line stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxtune import __version__, storage
from jaxtune.commands import flags
from jaxtune.commands.devices import use_cpu_cores
from jaxtune.commands.request import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_STEPS_PER_SEGMENT,
    CliError,
    StrategyEntry,
    SweepRequest,
    objective_fields,
)

if TYPE_CHECKING:
    from jaxtune.commands.build import SweepPlan
    from jaxtune.results import Results
    from jaxtune.strategies import Strategy

__all__ = [
    "DATASETS",
    "MODELS",
    "STRATEGIES",
    "StrategyEntry",
    "main",
    "run_sweep",
    "use_cpu_cores",
    "write_figures",
]

#: Dataset names ``--dataset`` accepts (``jaxtune.data.DATASETS``).
DATASETS = ("digits", "breast_cancer", "wine", "diabetes", "linear")
#: Model names ``--model`` accepts (``jaxtune.task.MODELS``).
MODELS = ("mlp", "cnn", "linear")
#: Environment variable: when set (to anything but ``""``/``0``/``false``/``no``), input
#: errors are re-raised with their traceback instead of printed as one line.
DEBUG_ENV = "JAXTUNE_DEBUG"


# --------------------------------------------------------------------------------------------
# The strategy registry


def _strategy_function(attribute: str, module: str) -> Callable[..., Strategy]:
    """``<module>.<attribute>``, imported when chosen: a plug-in strategy outside jaxtune
    (jaxtune's own strategies are imported plainly).

    Raises:
      ImportError: the module is missing, needs a missing package or fails to import, or has
        no ``attribute`` (the message says which strategy and why).
    """
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name not in (module, None):  # the module exists but needs something missing
            raise ImportError(
                f"--strategy: {module} needs the package {error.name!r}, which is not "
                f"installed ({error})"
            ) from error
        raise ImportError(
            f"--strategy: {attribute} is not available in this installation ({module} not "
            "found)"
        ) from error
    except ImportError as error:
        raise ImportError(f"--strategy: importing {module} failed: {error}") from error
    if not hasattr(found, attribute):
        raise ImportError(f"--strategy: {module} has no {attribute}")
    return getattr(found, attribute)


def _grid(args: argparse.Namespace) -> Strategy:
    from jaxtune.strategies import grid_search

    return grid_search(num_float_points=args.grid_points)


def _random(args: argparse.Namespace) -> Strategy:
    from jaxtune.strategies import random_search

    return random_search()


def _sobol(args: argparse.Namespace) -> Strategy:
    from jaxtune.strategies import sobol_search

    return sobol_search()


def _bayes(args: argparse.Namespace) -> Strategy:
    from jaxtune.strategies import bayes_search

    return bayes_search()


def _optuna_sampler(name: str) -> Callable[[argparse.Namespace], Strategy]:
    """``--strategy optuna-tpe`` / ``optuna-cmaes``: an Optuna sampler seeded from --seed."""

    def factory(args: argparse.Namespace) -> Strategy:
        if importlib.util.find_spec("optuna") is None:
            raise ImportError(
                f"--strategy optuna-{name} needs Optuna: `pip install jaxtune[integrations]`"
            )
        if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
            raise ImportError(
                "--strategy optuna-cmaes needs cmaes: `pip install jaxtune[integrations]`"
            )
        import optuna

        from jaxtune.integrations.optuna import optuna_strategy

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if name == "tpe":
            return optuna_strategy(
                lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True)
            )
        return optuna_strategy(
            lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        )

    return factory


def _run_halving(request: SweepRequest, plan: SweepPlan, on_segment: Any) -> Results:
    from jaxtune.commands import drivers

    return drivers.run_halving_sweep(request, plan, on_segment)


def _run_pbt(request: SweepRequest, plan: SweepPlan, on_segment: Any) -> Results:
    from jaxtune.commands import drivers

    return drivers.run_pbt_sweep(request, plan, on_segment)


#: ``--strategy`` name -> :class:`StrategyEntry`. Add entries here to offer more strategies.
STRATEGIES: dict[str, StrategyEntry] = {
    "grid": StrategyEntry(_grid, "cartesian grid; --grid-points points per float/int axis"),
    "random": StrategyEntry(_random, "uniform in the unit cube (log-uniform for log params)"),
    "sobol": StrategyEntry(_sobol, "scrambled Sobol quasi-random points"),
    "bayes": StrategyEntry(
        _bayes, "Bayesian optimization; 4 rounds unless --population-size", default_rounds=4
    ),
    "halving": StrategyEntry(
        _random,
        "asynchronous successive halving (ASHA): --population-size slots (default a quarter of "
        "--num-configs), first rung --min-steps, keep 1 in --eta",
        default_rounds=4,
        run=_run_halving,
    ),
    "hyperband": StrategyEntry(
        _random,
        "Hyperband: every bracket of halving side by side in one population (same flags)",
        default_rounds=4,
        run=_run_halving,
    ),
    "pbt": StrategyEntry(
        _random,
        "population-based training: --num-configs members; every --pbt-interval segments the "
        "worst quarter copy the best and perturb their values",
        run=_run_pbt,
    ),
    "optuna-tpe": StrategyEntry(
        _optuna_sampler("tpe"),
        "Optuna's TPE sampler through ask/tell (needs jaxtune[integrations]); 4 rounds unless "
        "--population-size",
        default_rounds=4,
    ),
    "optuna-cmaes": StrategyEntry(
        _optuna_sampler("cmaes"),
        "Optuna's CMA-ES sampler (numeric parameters; needs jaxtune[integrations]); 4 rounds "
        "unless --population-size",
        default_rounds=4,
    ),
}


def write_figures(results: Results, out: Path, metric: str, mode: str, fmt: str) -> list[Path]:
    """Writes the standard figures of a sweep into ``out``; returns their paths.

    The arguments and the figures are those of :func:`jaxtune.commands.saved.write_figures`,
    imported on use (the plotting code loads only when figures are drawn).
    """
    from jaxtune.commands import saved

    return saved.write_figures(results, out, metric, mode, fmt)


# --------------------------------------------------------------------------------------------
# Parsing


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one ``jaxtune: error:`` line, like the others."""

    def error(self, message: str) -> Any:  # argparse declares NoReturn
        raise CliError(f"{message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxtune", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{sweep,show,plot,export-optuna}"
    )
    sweep = sub.add_parser("sweep", help="run a sweep and write results to --out")
    for add in (_add_budget_flags, flags.add_population_flags, flags.add_scheduler_flags,
                flags.add_output_flags, flags.add_checkpoint_flags, flags.add_cluster_flags):
        add(sweep)
    flags.add_saved_commands(sub)
    return parser


def _add_budget_flags(sweep: argparse.ArgumentParser) -> None:
    """What to tune and how much: data, model, space, strategy, configs, steps."""

    sweep.add_argument("--dataset", default=None, choices=DATASETS,
                       help="an embedded dataset (or --data)")
    sweep.add_argument("--data", default=None, metavar="FILE", help="your own data: .npz with "
                       "x, y (and x_valid/y_valid, x_test/y_test) or .csv with a header")
    sweep.add_argument("--target", default=None, help="--data .csv: the target column (default: "
                       "the last)")
    sweep.add_argument("--kind", default=None, choices=("classification", "regression"),
                       help="--data: default inferred (whole-number targets: classification)")
    sweep.add_argument("--model", default=None, choices=MODELS, help="default mlp (or --task)")
    sweep.add_argument("--task", default=None, metavar="MODULE:ATTR", help="your own Task, or a "
                       "function returning one, imported from MODULE (docs/cli.md)")
    sweep.add_argument("--space", required=True, help="search-space file (.json, .yaml, .yml)")
    sweep.add_argument(
        "--strategy",
        default="random",
        choices=tuple(STRATEGIES),
        help="; ".join(f"{name}: {entry.help}" for name, entry in STRATEGIES.items()),
    )
    sweep.add_argument("--num-configs", type=int, default=16, help="configurations to evaluate")
    sweep.add_argument(
        "--population-size",
        type=int,
        default=None,
        help="configs per ask/tell round (default: all at once; bayes: a quarter)",
    )
    sweep.add_argument("--num-steps", type=int, default=500, help="training steps per member")
    sweep.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"minibatch rows (default {DEFAULT_BATCH_SIZE}, or the whole training set when "
        "smaller; 0 for full batch)",
    )
    sweep.add_argument(
        "--steps-per-segment",
        type=int,
        default=None,
        help=f"default {DEFAULT_STEPS_PER_SEGMENT}; halving/hyperband: --min-steps",
    )


def _parse_sweep(args: argparse.Namespace) -> SweepRequest:
    """Step 1 of ``jaxtune sweep``: the namespace as a typed, frozen request.

    ``args.argv`` and ``args.resumed`` (set by :func:`main`) are optional.
    """
    fields = {name: getattr(args, name) for name in (
        "strategy", "dataset", "model", "space", "out", "num_configs", "population_size",
        "num_steps", "batch_size", "steps_per_segment", "batch_mode", "max_members_per_chunk",
        "members_per_device", "member_loop", "seed", "grid_points", "eta",
        "min_steps", "max_member_steps", "pbt_interval", "allow_unused_hparams", "top",
        "no_plot", "checkpoint_every_s", "checkpoint_every_segments", "coordinator_address",
        "num_processes", "process_id", "task", "data", "target", "kind", "warm_start",
        "time_budget",
    )}
    entry = STRATEGIES[args.strategy]
    return SweepRequest(
        args=args,
        entry=entry,
        **objective_fields(args),
        seeds=tuple(args.seeds),
        progress=_progress_enabled(args),
        tensorboard=getattr(args, "tensorboard", None),
        figure_format=args.format,
        checkpoint_dir=args.resume if args.resume is not None else args.checkpoint_dir,
        resume=args.resume is not None,
        argv=tuple(getattr(args, "argv", None) or ()),
        resumed=dict(getattr(args, "resumed", None) or {}),
        **fields,
    )


def _progress_enabled(args: argparse.Namespace) -> bool | None:
    """``--quiet``: never; ``--progress``: always; else only when stderr is a terminal."""
    if args.quiet:
        return False
    return True if getattr(args, "progress", False) else None


# --------------------------------------------------------------------------------------------
# Commands


def run_sweep(args: argparse.Namespace) -> int:
    """Runs ``jaxtune sweep``; returns the exit status.

    Four steps (:mod:`jaxtune.commands`): parse the namespace into a typed request, check every
    flag and file, split the CPU into devices, build the space, data, task, strategy and
    engine options (the input errors that need them are raised there), then run: train
    through the strategy's driver and write ``--out``. Nothing is compiled before the last
    step.
    """
    from jaxtune.commands import build, check, sweep

    request = _parse_sweep(args)
    check.check_sweep(request)
    # Before the first JAX computation, which a --task module may run when it is imported.
    use_cpu_cores(build.sweep_cpu_devices(request))
    return sweep.run_sweep(request, build.build_sweep(request))


def _show(args: argparse.Namespace) -> int:
    from jaxtune.commands import saved

    return saved.show(args.directory, top=args.top, metric=args.metric)


def _plot(args: argparse.Namespace) -> int:
    from jaxtune.commands import saved

    return saved.plot_sweep(args.directory, out=args.out, metric=args.metric, fmt=args.format)


def _export_optuna(args: argparse.Namespace) -> int:
    from jaxtune.commands import saved

    return saved.export_optuna(args.directory, storage=args.storage, study_name=args.study_name,
                               metric=args.metric, load_if_exists=args.load_if_exists)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sweep": run_sweep,
    "show": _show,
    "plot": _plot,
    "export-optuna": _export_optuna,
}


# --------------------------------------------------------------------------------------------
# Entry point


def _input_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input (never a bare ``Exception``).

    ``FileNotFoundError``, ``IsADirectoryError``, ``NotADirectoryError`` and ``PermissionError``
    are the ``OSError`` subclasses a wrong path gives; other ``OSError`` (a full disk) are not
    the user's input and keep their traceback, except :class:`jaxtune.storage.WriteError`: a
    write that failed, explained in one line (what was kept, how to go on).
    """
    errors: list[type[BaseException]] = [
        ValueError,  # includes CliError and json.JSONDecodeError
        TypeError,
        json.JSONDecodeError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        ImportError,
        storage.WriteError,  # a full disk, already explained in one line (what was kept)
    ]
    yaml_spec = importlib.util.find_spec("yaml")
    if yaml_spec is not None:
        import yaml

        errors.append(yaml.YAMLError)
    return tuple(errors)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages, e.g. YAML's, are joined)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


def _command_line(argv: list[str]) -> tuple[list[str], dict[str, Any] | None]:
    """``argv``, or for ``sweep --resume DIR`` the checkpointed sweep's own arguments and what
    its marker keeps (:func:`jaxtune.commands.resume.resume_argv`)."""
    if not any(a == "--resume" or a.startswith("--resume=") for a in argv):
        return argv, None
    from jaxtune.commands import resume

    return resume.resume_argv(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxtune`` console command.

    Args:
      argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
      The exit status: 0 on success, 2 for bad input (one ``jaxtune: error:`` line on stderr).
    """
    try:
        argv, resumed = _command_line(list(sys.argv[1:] if argv is None else argv))
        args = _parser().parse_args(argv)
        args.argv = argv  # kept in a checkpoint's marker, for --resume
        args.resumed = resumed
        return _COMMANDS[args.command](args)
    except _input_errors() as error:
        if _debug():
            raise
        print(f"jaxtune: error: {_one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
