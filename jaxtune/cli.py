"""The ``jaxtune`` command line.

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
budget, a missing or corrupt results folder) print one line, ``jaxtune: error: ...``, naming the
offending field, and exit with status 2; so do argparse's usage errors. Set ``JAXTUNE_DEBUG=1``
to get the full traceback instead. Anything else (a bug) is not caught and shows its traceback.

Strategies come from :data:`STRATEGIES`, a registry of name -> :class:`StrategyEntry`; a new
strategy plugs in by adding an entry (its factory is only called, and its module only imported,
when the strategy is chosen). ``grid``, ``random``, ``sobol`` and ``bayes`` run the ask/tell loop
of :func:`jaxtune.tuning.tune`; ``halving``, ``hyperband`` and ``pbt`` are schedulers acting
between segments of one population (their entries have a ``run``), spending the budget random
search would (``--num-configs`` x ``--num-steps`` member-steps) unless ``--max-member-steps``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from jaxtune import __version__, storage

if TYPE_CHECKING:
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
#: ``--batch-size`` when not given (capped at the number of training rows).
DEFAULT_BATCH_SIZE = 128


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
        scheduler, ``run(args, task, split, space, strategy, *, population_size, batch_size,
        steps_per_segment, metric, mode, on_segment) -> Results``, where ``strategy`` (from
        ``factory``) proposes the configurations the scheduler starts.
    """

    factory: Callable[[argparse.Namespace], Strategy]
    help: str
    default_rounds: int = 1
    run: Callable[..., Results] | None = None


def _strategy_function(attribute: str, module: str) -> Callable[..., Strategy]:
    """``jaxtune.strategies.<attribute>``, else ``<module>.<attribute>``, imported lazily.

    Raises:
      ImportError: neither holds it, or the strategy's module fails to import (the message says
        which strategy and why).
    """
    package = importlib.import_module("jaxtune.strategies")
    if hasattr(package, attribute):
        return getattr(package, attribute)
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name not in (module, None):  # the module exists but needs something missing
            raise ImportError(
                f"--strategy: {module} needs the package {error.name!r}, which is not "
                f"installed ({error})"
            ) from error
        raise ImportError(
            f"--strategy: jaxtune.strategies.{attribute} is not available in this installation "
            f"of jaxtune ({module} not found)"
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
    return _strategy_function("sobol_search", "jaxtune.strategies.sobol")()


def _bayes(args: argparse.Namespace) -> Strategy:
    return _strategy_function("bayes_search", "jaxtune.strategies.bayes")()


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


#: Scheduler flags and the strategies that take them (anything else refuses them).
_SCHEDULER_FLAGS = {
    "eta": ("halving", "hyperband"),
    "min_steps": ("halving", "hyperband"),
    "max_member_steps": ("halving", "hyperband"),
    "pbt_interval": ("pbt",),
}
#: ``--eta`` when not given.
DEFAULT_ETA = 3
#: ``--steps-per-segment`` when not given (halving/hyperband: ``--min-steps``).
DEFAULT_STEPS_PER_SEGMENT = 50


def _min_steps(args: argparse.Namespace) -> int:
    """``--min-steps``, default ``num_steps // eta**3`` (three halvings), at least 1."""
    if args.min_steps is not None:
        return int(args.min_steps)
    return max(1, args.num_steps // (args.eta or DEFAULT_ETA) ** 3)


def _scheduler_budget(args: argparse.Namespace) -> int:
    """Member-steps a halving/hyperband sweep may spend: random search's, unless given."""
    if args.max_member_steps is not None:
        return int(args.max_member_steps)
    return args.num_configs * args.num_steps


def _run_halving(args, the_task, split, space, strategy, *, population_size, batch_size,
                 steps_per_segment, metric, mode, on_segment, checkpoint=None,
                 resume=False) -> Results:
    from jaxtune.strategies.halving import run_halving

    return run_halving(
        the_task, split, space, strategy,
        population_size=population_size,
        num_steps=args.num_steps,
        min_steps=_min_steps(args),
        eta=args.eta or DEFAULT_ETA,
        max_member_steps=_scheduler_budget(args),
        num_brackets=1 if args.strategy == "halving" else None,
        metric=metric, mode=mode, seed=args.seed, batch_size=batch_size,
        steps_per_segment=steps_per_segment,
        engine_options={"member_seeds": [args.seeds[0]] * population_size,
                        "on_segment": on_segment, "checkpoint": checkpoint, "resume": resume,
                        "allow_unused_hparams": args.allow_unused_hparams},
    )


def _run_pbt(args, the_task, split, space, strategy, *, population_size, batch_size,
             steps_per_segment, metric, mode, on_segment, checkpoint=None,
                 resume=False) -> Results:
    from jaxtune.strategies.pbt import run_pbt

    return run_pbt(
        the_task, split, space, strategy,
        population_size=population_size,
        num_steps=args.num_steps,
        interval_segments=args.pbt_interval or 1,
        metric=metric, mode=mode, seed=args.seed, batch_size=batch_size,
        steps_per_segment=steps_per_segment,
        engine_options={"member_seeds": [args.seeds[0]] * population_size,
                        "on_segment": on_segment, "checkpoint": checkpoint, "resume": resume,
                        "allow_unused_hparams": args.allow_unused_hparams},
    )


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


def _cpu_device_count() -> int:
    """The CPU devices :func:`use_cpu_cores` makes by default: ``JAXTUNE_CPU_DEVICES`` or the
    core count."""
    return int(os.environ.get("JAXTUNE_CPU_DEVICES", 0)) or os.cpu_count() or 1


def use_cpu_cores(num_devices: int | None = None) -> None:
    """Splits the host CPU into one XLA device per core, before JAX starts its backend.

    One XLA CPU device does not keep several cores busy on a population's small matrix
    products; one device per core, with the population sharded over them, does
    (docs/benchmarks.md). Has no effect on GPU/TPU backends. Call it before any JAX
    computation; later calls are ignored.

    Args:
      num_devices: CPU devices to create (default: ``JAXTUNE_CPU_DEVICES`` or the core count).
    """
    import jax

    count = num_devices or _cpu_device_count()
    # Once the backend is up the setting is refused; keep the devices it has.
    with contextlib.suppress(RuntimeError):
        jax.config.update("jax_num_cpu_devices", int(count))


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
    sweep.add_argument("--dataset", required=True, choices=DATASETS)
    sweep.add_argument("--model", default="mlp", choices=MODELS)
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
    sweep.add_argument(
        "--batch-mode",
        default="independent",
        choices=("independent", "shared"),
        help="independent: each member samples its own minibatches; shared: one minibatch per "
        "step for all members (common random numbers; docs/distributed.md)",
    )
    sweep.add_argument(
        "--max-members-per-chunk",
        type=int,
        default=None,
        help="cap on members trained at once (default: as many as fit in device memory)",
    )
    sweep.add_argument(
        "--members-per-device",
        type=int,
        default=None,
        help="pin the layout: every chunk holds exactly K members per device, so batched "
        "members (--member-loop vmap) are bit-identical on any number of devices "
        "(docs/distributed.md)",
    )
    sweep.add_argument(
        "--member-loop",
        choices=("map", "vmap"),
        default=None,
        help="how a device runs its members: map loops over them (the CPU default: faster "
        "there, and bit-identical on any layout), vmap batches them (the GPU/TPU default)",
    )
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0], help="member seeds")
    sweep.add_argument("--seed", type=int, default=0, help="sweep seed (split, strategy, keys)")
    sweep.add_argument("--metric", default=None, help="default valid_accuracy or valid_mse")
    sweep.add_argument("--grid-points", type=int, default=5, help="points per float axis (grid)")
    sweep.add_argument("--eta", type=int, default=None,
                       help=f"halving/hyperband: keep 1 in eta per rung (default {DEFAULT_ETA})")
    sweep.add_argument("--min-steps", type=int, default=None,
                       help="halving/hyperband: first rung (default num-steps // eta**3)")
    sweep.add_argument("--max-member-steps", type=int, default=None,
                       help="halving/hyperband: budget in member-steps (default num-configs x "
                       "num-steps, what random search spends)")
    sweep.add_argument("--pbt-interval", type=int, default=None,
                       help="pbt: segments between exploit/explore steps (default 1)")
    sweep.add_argument("--out", required=True, help="output directory")
    sweep.add_argument("--allow-unused-hparams", action="store_true",
                       help="warn about a space name nothing reads (optimizer, schedule, "
                            "engine, model) instead of refusing it")
    sweep.add_argument("--top", type=int, default=10, help="rows of the printed table")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--progress", action="store_true",
                       help="show the progress bar even when stderr is not a terminal (one line "
                       "per tenth of the work); on a terminal it is shown unless --quiet")
    sweep.add_argument("--tensorboard", default=None, metavar="DIR",
                       help="also write TensorBoard event files into DIR, one run per member "
                       "(needs tensorboardX: pip install jaxtune[integrations])")
    sweep.add_argument("--no-plot", action="store_true", help="skip the figures")
    sweep.add_argument("--format", default="png", choices=("png", "svg", "pdf"),
                       help="figure format")
    sweep.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                       help="checkpoint the sweep into DIR (empty or new) at segment boundaries; "
                       "continue a killed sweep with `jaxtune sweep --resume DIR`")
    sweep.add_argument("--checkpoint-every-s", type=float, default=None, metavar="SECONDS",
                       help="with --checkpoint-dir: save at the first segment boundary after "
                       "this many seconds (default 30 unless --checkpoint-every-segments)")
    sweep.add_argument("--checkpoint-every-segments", type=int, default=None, metavar="N",
                       help="with --checkpoint-dir: save every N segments")
    sweep.add_argument("--resume", default=None, metavar="DIR",
                       help="continue the sweep checkpointed in DIR with its saved arguments "
                       "(only --quiet and --no-plot may be added)")
    cluster = sweep.add_argument_group(
        "several processes (jax.distributed; default: JAXTUNE_COORDINATOR, "
        "JAXTUNE_NUM_PROCESSES, JAXTUNE_PROCESS_ID, else JAX's own cluster detection)"
    )
    cluster.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                         help="process 0's address, reachable from every process")
    cluster.add_argument("--num-processes", type=int, default=None,
                         help="processes in the sweep")
    cluster.add_argument("--process-id", type=int, default=None,
                         help="this process's index, 0..num-processes-1 (0 writes the files)")

    show = sub.add_parser("show", help="print a saved sweep's results table")
    show.add_argument("directory", help="a folder written by `jaxtune sweep`")
    show.add_argument("--top", type=int, default=10, help="rows of the table")
    show.add_argument("--metric", default=None, help="rank by this metric (default: the sweep's)")

    plot = sub.add_parser("plot", help="write figures for a saved sweep")
    plot.add_argument("directory", help="a folder written by `jaxtune sweep`")
    plot.add_argument("--metric", default=None, help="the metric (default: the sweep's)")
    plot.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    plot.add_argument("--out", default=None, help="where to write (default: the directory)")

    export = sub.add_parser(
        "export-optuna", help="copy a saved sweep into an Optuna study (one trial per member)"
    )
    export.add_argument("directory", help="a folder written by `jaxtune sweep`")
    export.add_argument("--storage", required=True, metavar="URL",
                        help="an Optuna storage URL, e.g. sqlite:///sweep.db "
                        "(then: optuna-dashboard sqlite:///sweep.db)")
    export.add_argument("--study-name", default=None,
                        help="the study's name (default: the directory's name)")
    export.add_argument("--metric", default=None,
                        help="the trial value (default: the sweep's metric)")
    export.add_argument("--load-if-exists", action="store_true",
                        help="add the trials to an existing study of that name")
    return parser


# --------------------------------------------------------------------------------------------
# Checks on the host, before anything is imported, traced or trained


#: Count flags that are not int32 inside a program (totals): their own checks bound them.
_TOTAL_FLAGS = ("num_configs", "max_member_steps")


def _check_positive(args: argparse.Namespace, *fields: str) -> None:
    """Each flag is unset or a positive integer; counts used inside jit fit an int32."""
    from jaxtune import limits

    for field in fields:
        value = getattr(args, field)
        if value is not None and value <= 0:
            raise CliError(f"--{field.replace('_', '-')} must be a positive integer, got {value}")
        if field not in _TOTAL_FLAGS:
            limits.check_int32(f"--{field.replace('_', '-')}", value)


def _check_seeds(args: argparse.Namespace) -> None:
    """``--seed`` and ``--seeds`` in the ranges JAX keys take (:mod:`jaxtune.limits`)."""
    from jaxtune import limits

    limits.check_seed("--seed", args.seed)
    for seed in args.seeds:
        limits.check_seed("--seeds", seed, limits.MAX_MEMBER_SEED)


def _check_scheduler_flags(args: argparse.Namespace) -> None:
    """Scheduler flags: given only to the strategies that take them, and in range."""
    for field, takers in _SCHEDULER_FLAGS.items():
        if getattr(args, field) is not None and args.strategy not in takers:
            raise CliError(
                f"--{field.replace('_', '-')} applies to --strategy {'/'.join(takers)} only, "
                f"not {args.strategy}; drop it"
            )
    if STRATEGIES[args.strategy].run is None:
        return
    if len(args.seeds) != 1:
        raise CliError(
            f"--seeds: --strategy {args.strategy} trains each configuration once; give one seed, "
            f"got {len(args.seeds)}"
        )
    if args.strategy == "pbt":
        if args.population_size is not None:
            raise CliError(
                "--population-size: --strategy pbt trains all --num-configs members as one "
                "population; set --num-configs instead"
            )
        if args.num_configs < 2:
            raise CliError(f"--num-configs must be >= 2 for --strategy pbt, got {args.num_configs}")
        return
    if args.eta is not None and args.eta < 2:
        raise CliError(f"--eta must be an integer >= 2, got {args.eta}")
    min_steps = _min_steps(args)
    if min_steps >= args.num_steps:
        raise CliError(
            f"--min-steps {min_steps} must be smaller than --num-steps {args.num_steps} for "
            "members to stop early; lower it"
        )
    if _scheduler_budget(args) < min_steps:
        raise CliError(
            f"--max-member-steps {_scheduler_budget(args)} is less than one member's first rung "
            f"(--min-steps {min_steps}); raise it"
        )


def _check_space_file(path: str) -> None:
    file = Path(path)
    if not file.exists():
        raise CliError(f"--space: no such file {path!r}")
    if not file.is_file():
        raise CliError(f"--space: {path!r} is not a file")


def _check_out(path: str, flag: str) -> None:
    """Checks that the output folder ``path`` can be created and written (before any work)."""
    try:
        storage.check_writable(path, flag)
    except ValueError as error:
        raise CliError(str(error)) from error


def _check_plotting(no_plot_hint: bool) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        hint = " or pass --no-plot" if no_plot_hint else ""
        raise ImportError(f"figures need matplotlib: `pip install jaxtune[plot]`{hint}")


def _load_results(directory: str) -> Results:
    from jaxtune.results import RESULTS_JSON, Results

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


def _metric_for(results: Results, metric: str | None) -> tuple[str, str]:
    """The metric to rank by (``--metric`` or the sweep's) and its mode, as Python ranks."""
    chosen, mode = results.resolve_metric(metric)
    if chosen not in results.metric_names:
        raise CliError(
            f"--metric {chosen!r} is not in the results; available metrics: "
            f"{', '.join(results.metric_names) or 'none (no rows)'}"
        )
    return chosen, mode


# --------------------------------------------------------------------------------------------
# Commands


def run_sweep(args: argparse.Namespace) -> int:
    """Runs ``jaxtune sweep``; returns the exit status.

    Every check of the input (budgets, files, strategy, dataset, model, metric) runs before the
    CPU is split into devices and before anything is compiled.
    """
    checkpointer, resume = _checkpoint_flags(args)
    # A resumed sweep's own space and CPU device count, from its checkpoint (None for a first
    # run, or a checkpoint written before they were kept there).
    resumed = getattr(args, "resumed", None) or {}
    _check_positive(
        args, "num_configs", "num_steps", "steps_per_segment", "population_size", "grid_points",
        "min_steps", "max_member_steps", "pbt_interval",
    )
    _check_seeds(args)
    _check_scheduler_flags(args)
    _check_positive(args, "max_members_per_chunk", "members_per_device", "num_processes")
    _check_population_flags(args)
    if args.batch_size is not None and args.batch_size < 0:
        raise CliError(f"--batch-size must be >= 0 (0 = full batch), got {args.batch_size}")
    if args.top < 0:
        raise CliError(f"--top must be >= 0, got {args.top}")
    if "space" not in resumed:  # a resume reads the space from its checkpoint, not the file
        _check_space_file(args.space)
    _check_out(args.out, "--out")
    _check_tensorboard(getattr(args, "tensorboard", None))
    if not args.no_plot:
        _check_plotting(no_plot_hint=True)

    from jaxtune import contracts, data, limits, task
    from jaxtune.space import Space

    space = Space.from_dict(resumed["space"]) if "space" in resumed else Space.from_file(
        args.space)
    cpu_devices = int(resumed.get("cpu_devices") or _cpu_device_count())
    if checkpointer is not None and not resume:
        # What --resume needs, kept in the marker: paths made absolute (it may run from another
        # folder), the space itself (the file may change or be gone) and the CPU device count
        # (part of the sweep's identity; another machine has another core count).
        cwd = os.getcwd()
        checkpointer = dataclasses.replace(checkpointer, metadata={"cli": {
            "argv": _absolute_paths(list(getattr(args, "argv", [])), cwd), "cwd": cwd,
            "space": space.to_dict(), "cpu_devices": cpu_devices,
        }})
    entry = STRATEGIES[args.strategy]
    strategy = entry.factory(args)
    dataset = data.load_dataset(args.dataset)
    input_shape = dataset.x.shape[1:]
    if dataset.kind == "classification":
        the_task = task.classification_task(
            args.model, num_classes=dataset.num_classes, input_shape=input_shape
        )
    else:
        the_task = task.regression_task(args.model, input_shape=input_shape)
    metric = args.metric or contracts.default_metric(the_task.metric_modes, kind=the_task.kind)
    try:
        mode = contracts.selection_mode(metric, None, metric_modes=the_task.metric_modes)
    except ValueError as error:
        raise CliError(f"--metric: {error}") from error
    num_configs = args.num_configs
    if args.strategy == "grid":
        num_configs = min(num_configs, len(space.grid(args.grid_points)))
    # Before a single config is drawn: a population the host cannot hold aborts XLA.
    limits.check_population("--num-configs", num_configs * len(args.seeds), len(space))
    population_size = args.population_size
    if population_size is None and entry.default_rounds > 1:
        population_size = max(1, math.ceil(num_configs / entry.default_rounds))
    if args.strategy == "pbt":
        population_size = num_configs
    steps_per_segment = args.steps_per_segment or (
        _min_steps(args) if args.strategy in ("halving", "hyperband") else DEFAULT_STEPS_PER_SEGMENT
    )

    split = data.standardize(data.train_valid_test_split(dataset, seed=args.seed))  # numpy
    num_train = len(split.y_train)
    if args.batch_size is None:
        batch_size: int | None = min(DEFAULT_BATCH_SIZE, num_train)
    elif args.batch_size == 0:
        batch_size = None
    elif args.batch_size > num_train:
        raise CliError(
            f"--batch-size {args.batch_size} is larger than the {num_train} training rows of "
            f"{args.dataset!r}; lower it, or pass 0 for full-batch training"
        )
    else:
        batch_size = args.batch_size

    use_cpu_cores(cpu_devices)  # before the first JAX computation
    from jaxtune import distributed

    # Joins the cluster (flags, then JAXTUNE_* variables, then JAX's auto-detection) before
    # the backend starts; alone, nothing happens.
    distributed.initialize_from_env_or_args(
        args.coordinator_address, args.num_processes, args.process_id
    )
    writer = distributed.is_writer()
    # Held until the results are written: a second sweep into the same --out is refused now,
    # not after both trained (and their results.json and results.csv never mix).
    with storage.FolderLock(args.out, "--out") if writer else contextlib.nullcontext():
        return _train_and_write(args, _Plan(
            the_task, split, space, strategy, entry, metric, mode, num_configs, population_size,
            batch_size, steps_per_segment, checkpointer, resume, writer,
        ))


class _Plan(NamedTuple):
    """What :func:`run_sweep` decided, for :func:`_train_and_write`."""

    the_task: Any
    split: Any
    space: Any
    strategy: Any
    entry: StrategyEntry
    metric: str
    mode: str
    num_configs: int
    population_size: int | None
    batch_size: int | None
    steps_per_segment: int
    checkpointer: Any
    resume: bool
    writer: bool


def _train_and_write(args: argparse.Namespace, plan: _Plan) -> int:
    """The second half of :func:`run_sweep`: trains, then writes ``--out`` (process 0)."""
    from jaxtune.progress import ProgressBar
    from jaxtune.tuning import tune

    (the_task, split, space, strategy, entry, metric, mode, num_configs, population_size,
     batch_size, steps_per_segment, checkpointer, resume, writer) = plan
    budget = num_configs * len(args.seeds) * args.num_steps
    if args.strategy in ("halving", "hyperband"):
        budget = _scheduler_budget(args)
    progress = ProgressBar(budget, metric=metric, mode=mode,
                           enabled=writer and _progress_enabled(args))
    if entry.run is not None:
        results = entry.run(
            args, the_task, split, space, strategy,
            population_size=population_size,
            batch_size=batch_size,
            steps_per_segment=steps_per_segment,
            metric=metric,
            mode=mode,
            on_segment=progress,
            checkpoint=checkpointer,
            resume=resume,
        )
    else:
        results = tune(
            the_task, split, space, strategy,
            num_configs=num_configs,
            num_steps=args.num_steps,
            population_size=population_size,
            seeds=args.seeds,
            batch_size=batch_size,
            steps_per_segment=steps_per_segment,
            metric=metric,
            mode=mode,
            seed=args.seed,
            on_segment=progress,
            checkpoint=checkpointer,
            resume=resume,
            engine_options={"batch_mode": args.batch_mode,
                            "allow_unused_hparams": args.allow_unused_hparams,
                            "max_members_per_chunk": args.max_members_per_chunk,
                            "members_per_device": args.members_per_device,
                            "member_loop": args.member_loop},
        )
    progress.close()  # ends the live line even when the sweep did less than the estimate
    out = Path(args.out)
    if not writer:  # every process holds every row; one writes, or they would race
        import jax

        print(f"process {jax.process_index()} of {jax.process_count()}: {len(results)} members "
              f"trained; process 0 writes {out}")
        return 0
    _save_results(results, out, checkpointer)
    if getattr(args, "tensorboard", None):
        from jaxtune.integrations.tensorboard import write_tensorboard

        print(f"wrote TensorBoard runs into {write_tensorboard(results, args.tensorboard)} "
              f"(tensorboard --logdir {args.tensorboard})")
    if entry.run is not None and args.strategy != "pbt":
        # Stopped members carry metrics from an early rung: rank the completed ones.
        stopped = len(results.filter(status="stopped"))
        completed = results.filter(status="completed")
        print(f"{len(results)} members started, {stopped} stopped early, "
              f"{results.metadata.get('member_steps', '?')} member-steps; "
              + ("completed members:" if len(completed) else
                 "none completed --num-steps within the budget (raise --max-member-steps):"))
        shown = completed if len(completed) else results
        print(shown.table(k=args.top, metric=metric, mode=mode))
    else:
        print(results.table(k=args.top, metric=metric, mode=mode))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.csv'}")
    if not args.no_plot:
        try:
            for path in write_figures(results, out, metric, mode, args.format):
                print(f"wrote {path}")
        except OSError as error:
            raise CliError(f"--out: could not write the figures into {str(out)!r} "
                           f"({error.strerror or error}); the results are written") from error
    return 0


def _save_results(results: Results, out: Path, checkpointer: Any) -> None:
    """``results.save(out)`` (under the caller's lock); if that fails (a full or removed
    disk), keeps the results in a new folder of the system's temporary directory and raises a
    one-line :class:`CliError` that names it."""
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


def _check_population_flags(args: argparse.Namespace) -> None:
    """``--batch-mode``, ``--max-members-per-chunk`` and the cluster flags, checked before
    anything starts (the JAXTUNE_* variables are checked by
    :func:`jaxtune.distributed.initialize_from_env_or_args`)."""
    if STRATEGIES[args.strategy].run is not None and (
            args.batch_mode != "independent" or args.max_members_per_chunk is not None
            or args.members_per_device is not None or args.member_loop is not None):
        raise CliError(
            "--batch-mode, --max-members-per-chunk, --members-per-device and --member-loop "
            "apply to the ask/tell strategies (grid, random, sobol, bayes), not --strategy "
            f"{args.strategy}; drop them"
        )
    if args.members_per_device is not None and args.max_members_per_chunk is not None:
        raise CliError("--members-per-device fixes the chunk size itself: drop "
                       "--max-members-per-chunk (or --members-per-device)")
    if args.batch_mode == "shared" and args.batch_size == 0:
        raise CliError("--batch-mode shared needs minibatches: give --batch-size > 0, or use "
                       "--batch-mode independent")
    if args.process_id is not None and args.process_id < 0:
        raise CliError(f"--process-id must be >= 0, got {args.process_id}")
    if (args.process_id is not None and args.num_processes is not None
            and args.process_id >= args.num_processes):
        raise CliError(
            f"--process-id {args.process_id} must be below --num-processes "
            f"{args.num_processes} (processes are numbered 0..{args.num_processes - 1})"
        )
    address = args.coordinator_address
    if address is not None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise CliError(
                f"--coordinator-address {address!r} must be HOST:PORT, e.g. 10.0.0.1:1234"
            )


#: Flags ``jaxtune sweep --resume DIR`` accepts besides DIR (the rest comes from the checkpoint).
_RESUME_FLAGS = ("--quiet", "--no-plot")
#: ``jaxtune sweep`` flags whose value is a path (made absolute in a checkpoint's marker).
_PATH_FLAGS = ("--out", "--space", "--tensorboard", "--checkpoint-dir")


def _absolute_paths(argv: list[str], cwd: str | os.PathLike[str]) -> list[str]:
    """``argv`` with the value of every :data:`_PATH_FLAGS` flag (``--flag X`` or
    ``--flag=X``) taken relative to ``cwd``; absolute values are kept."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        flag, equals, value = arg.partition("=")
        if flag not in _PATH_FLAGS:
            continue
        if equals:
            argv[i] = f"{flag}={Path(cwd) / value}"
        elif i + 1 < len(argv):
            argv[i + 1] = str(Path(cwd) / argv[i + 1])
    return argv


def _resume_argv(argv: list[str]) -> tuple[list[str], dict[str, Any] | None]:
    """``sweep --resume DIR [--quiet] [--no-plot]`` -> the checkpointed sweep's own arguments
    plus ``--resume DIR``, and what its marker keeps for the resume (``space``, ``cpu_devices``;
    see :func:`run_sweep`); any other argument list is returned unchanged, with ``None``."""
    if not argv or argv[0] != "sweep" or not any(
        a == "--resume" or a.startswith("--resume=") for a in argv
    ):
        return argv, None
    rest = argv[1:]
    directory = None
    for i, arg in enumerate(rest):
        if arg.startswith("--resume="):
            directory, rest = arg.partition("=")[2], rest[:i] + rest[i + 1:]
            break
        if arg == "--resume":
            if i + 1 >= len(rest):
                raise CliError("--resume needs the checkpoint directory: --resume DIR")
            directory, rest = rest[i + 1], rest[:i] + rest[i + 2:]
            break
    extra = [a for a in rest if a not in _RESUME_FLAGS]
    if extra:
        raise CliError(
            f"--resume takes the sweep's saved arguments; give only --resume DIR (and "
            f"{', '.join(_RESUME_FLAGS)}), not {' '.join(extra)}"
        )
    from jaxtune.checkpoint import read_marker

    try:
        marker = read_marker(directory)
    except FileNotFoundError as error:
        raise CliError(f"--resume: {error}") from error
    except ValueError as error:
        raise CliError(f"--resume: {error}") from error
    saved = marker.get("metadata", {}).get("cli")
    if not isinstance(saved, dict) or not isinstance(saved.get("argv"), list):
        raise CliError(
            f"--resume: {directory!r} was not written by `jaxtune sweep --checkpoint-dir`; "
            "resume it from Python with checkpoint=..., resume=True"
        )
    # Relative paths were relative to the first run's folder (older markers kept them so).
    saved_argv = _absolute_paths([str(a) for a in saved["argv"]], saved.get("cwd", "."))
    return ([*saved_argv, *(a for a in rest if a not in saved_argv), "--resume", directory],
            saved)


def _checkpoint_flags(args: argparse.Namespace) -> tuple[Any, bool]:
    """The sweep's :class:`~jaxtune.checkpoint.Checkpointer` (or None) and whether to resume."""
    if args.resume is not None:
        args.checkpoint_dir = args.resume
    elif args.checkpoint_dir is None:
        for flag in ("checkpoint_every_s", "checkpoint_every_segments"):
            if getattr(args, flag) is not None:
                raise CliError(f"--{flag.replace('_', '-')} needs --checkpoint-dir DIR")
        return None, False
    _check_positive(args, "checkpoint_every_segments")
    if args.checkpoint_every_s is not None and not args.checkpoint_every_s >= 0:
        raise CliError(f"--checkpoint-every-s must be >= 0, got {args.checkpoint_every_s}")
    if (getattr(args, "num_processes", None) or 1) > 1:
        raise CliError("--checkpoint-dir is for one process; drop it or --num-processes")
    from jaxtune.checkpoint import MARKER, Checkpointer

    directory = Path(args.checkpoint_dir)
    _check_out(args.checkpoint_dir, "--checkpoint-dir")
    # A marker's temporary file alone: a first run killed before it began (nothing to keep).
    storage.remove_temporaries(directory, [MARKER])
    if args.resume is None and directory.is_dir() and any(directory.iterdir()):
        raise CliError(
            f"--checkpoint-dir: {str(directory)!r} is not empty; continue its sweep with "
            f"`jaxtune sweep --resume {directory}`, or give a new directory"
        )
    every_s = args.checkpoint_every_s
    if every_s is None and args.checkpoint_every_segments is None:
        every_s = 30.0
    # Its metadata (what --resume needs) is set by run_sweep once the space is read.
    checkpointer = Checkpointer(
        directory, every_segments=args.checkpoint_every_segments, every_s=every_s,
    )
    return checkpointer, args.resume is not None


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
      *n* members: a strategy's progress) and ``learning_curves.<fmt>`` (when ``metric`` has
      curves).
    """
    from jaxtune import plot

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
    return paths


def _show(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise CliError(f"--top must be >= 0, got {args.top}")
    results = _load_results(args.directory)
    metric, mode = _metric_for(results, args.metric)
    print(results.table(k=args.top, metric=metric, mode=mode))
    return 0


def _progress_enabled(args: argparse.Namespace) -> bool | None:
    """``--quiet``: never; ``--progress``: always; else only when stderr is a terminal."""
    if args.quiet:
        return False
    return True if getattr(args, "progress", False) else None


def _check_tensorboard(directory: str | None) -> None:
    if directory is None:
        return
    _check_out(directory, "--tensorboard")
    if importlib.util.find_spec("tensorboardX") is None:
        raise ImportError(
            "--tensorboard needs tensorboardX: `pip install jaxtune[integrations]` "
            "(or pip install tensorboardX)"
        )


def _export_optuna(args: argparse.Namespace) -> int:
    if "://" not in args.storage:
        raise CliError(
            f"--storage {args.storage!r} is not a storage URL; give e.g. sqlite:///sweep.db"
        )
    if importlib.util.find_spec("optuna") is None:
        raise ImportError(
            "export-optuna needs Optuna: `pip install jaxtune[integrations]` (or pip install "
            "optuna)"
        )
    results = _load_results(args.directory)
    metric, mode = _metric_for(results, args.metric)
    import optuna

    from jaxtune.integrations.optuna import export_to_optuna

    name = args.study_name or Path(args.directory).resolve().name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = export_to_optuna(results, storage=args.storage, study_name=name, metric=metric,
                                 direction=mode, load_if_exists=args.load_if_exists)
    except optuna.exceptions.DuplicatedStudyError as error:
        raise CliError(
            f"--study-name: a study named {name!r} already exists in {args.storage}; pass "
            "another --study-name, or --load-if-exists to add to it"
        ) from error
    print(f"exported {len(results)} members as trials of study {study.study_name!r} "
          f"({metric}, {'maximize' if mode == 'max' else 'minimize'}) into {args.storage}")
    print(f"view it with: optuna-dashboard {args.storage}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else args.directory
    _check_out(out, "--out")
    _check_plotting(no_plot_hint=False)
    results = _load_results(args.directory)
    metric, mode = _metric_for(results, args.metric)
    for path in write_figures(results, Path(out), metric, mode, args.format):
        print(f"wrote {path}")
    return 0


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxtune`` console command.

    Args:
      argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
      The exit status: 0 on success, 2 for bad input (one ``jaxtune: error:`` line on stderr).
    """
    try:
        argv, resumed = _resume_argv(list(sys.argv[1:] if argv is None else argv))
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
