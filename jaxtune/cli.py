"""The ``jaxtune`` command line.

    jaxtune sweep --dataset digits --model mlp --space space.json --strategy random \\
                  --num-configs 64 --num-steps 500 --out runs/digits
    jaxtune show runs/digits
    jaxtune plot runs/digits

Errors in the input (a malformed space file, an unknown dataset, model or strategy, a negative
budget) print one line, ``jaxtune: error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

STRATEGIES = ("grid", "random")


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

    count = num_devices or int(os.environ.get("JAXTUNE_CPU_DEVICES", 0)) or os.cpu_count() or 1
    # Once the backend is up the setting is refused; keep the devices it has.
    with contextlib.suppress(RuntimeError):
        jax.config.update("jax_num_cpu_devices", int(count))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxtune", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sweep = sub.add_parser("sweep", help="run a sweep and write results to --out")
    sweep.add_argument("--dataset", required=True, help="digits, breast_cancer, wine, diabetes, "
                       "linear")
    sweep.add_argument("--model", default="mlp", help="mlp, cnn or linear")
    sweep.add_argument("--space", required=True, help="search-space file (JSON or YAML)")
    sweep.add_argument("--strategy", default="random", help="|".join(STRATEGIES))
    sweep.add_argument("--num-configs", type=int, default=16)
    sweep.add_argument("--population-size", type=int, default=None,
                       help="configs per round (default: all at once)")
    sweep.add_argument("--num-steps", type=int, default=500)
    sweep.add_argument("--batch-size", type=int, default=128, help="0 for full batch")
    sweep.add_argument("--steps-per-segment", type=int, default=50)
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0])
    sweep.add_argument("--seed", type=int, default=0, help="sweep seed")
    sweep.add_argument("--metric", default=None, help="default valid_accuracy or valid_mse")
    sweep.add_argument("--grid-points", type=int, default=5, help="points per float axis (grid)")
    sweep.add_argument("--out", required=True, help="output directory")
    sweep.add_argument("--top", type=int, default=10, help="rows of the printed table")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--no-plot", action="store_true", help="skip the figures")

    show = sub.add_parser("show", help="print a saved sweep's results table")
    show.add_argument("directory")
    show.add_argument("--top", type=int, default=10)
    show.add_argument("--metric", default=None)

    plot = sub.add_parser("plot", help="write figures for a saved sweep")
    plot.add_argument("directory")
    plot.add_argument("--metric", default=None)
    plot.add_argument("--format", default="png", choices=("png", "svg"))
    return parser


def _strategy(name: str, grid_points: int):
    from jaxtune import strategies

    if name == "grid":
        return strategies.grid_search(num_float_points=grid_points)
    if name == "random":
        return strategies.random_search()
    raise ValueError(f"--strategy {name!r} is not known; use one of {', '.join(STRATEGIES)}.")


def run_sweep(args: argparse.Namespace) -> int:
    """Runs ``jaxtune sweep``; returns the exit status."""
    use_cpu_cores()
    from jaxtune import data, task, tuning
    from jaxtune.progress import ProgressBar
    from jaxtune.space import Space

    for field in ("num_configs", "num_steps", "steps_per_segment"):
        if getattr(args, field) <= 0:
            raise ValueError(f"--{field.replace('_', '-')} must be positive, got "
                             f"{getattr(args, field)}.")
    if args.batch_size < 0:
        raise ValueError(f"--batch-size must be >= 0 (0 = full batch), got {args.batch_size}.")
    space = Space.from_file(args.space)
    strategy = _strategy(args.strategy, args.grid_points)
    dataset = data.load_dataset(args.dataset)
    split = data.standardize(data.train_valid_test_split(dataset, seed=args.seed))
    if dataset.kind == "classification":
        the_task = task.classification_task(
            args.model, num_classes=dataset.num_classes, input_shape=dataset.x.shape[1:]
        )
        metric = args.metric or "valid_accuracy"
    else:
        the_task = task.regression_task(args.model, input_shape=dataset.x.shape[1:])
        metric = args.metric or "valid_mse"
    mode = tuning.metric_mode(the_task, metric, None)
    num_configs = args.num_configs
    if args.strategy == "grid":
        num_configs = min(num_configs, len(space.grid(args.grid_points)))
    progress = ProgressBar(
        num_configs * len(args.seeds) * args.num_steps, metric=metric, mode=mode,
        enabled=not args.quiet,
    )
    results = tuning.tune(
        the_task, split, space, strategy,
        num_configs=num_configs,
        num_steps=args.num_steps,
        population_size=args.population_size,
        seeds=args.seeds,
        batch_size=args.batch_size or None,
        steps_per_segment=args.steps_per_segment,
        metric=metric,
        mode=mode,
        seed=args.seed,
        on_segment=progress,
    )
    out = Path(args.out)
    results.save(out)
    print(results.table(k=args.top, metric=metric, mode=mode))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.csv'}")
    if not args.no_plot:
        for path in write_figures(results, out, metric, mode, "png"):
            print(f"wrote {path}")
    return 0


def write_figures(results, out: Path, metric: str, mode: str, fmt: str) -> list[Path]:
    """Writes the standard figures of a sweep into ``out``; returns their paths."""
    from jaxtune import plot

    return [plot.summary_figure(results, out / f"summary.{fmt}", metric=metric)]


def _show(args: argparse.Namespace) -> int:
    from jaxtune.results import Results

    results = Results.load(args.directory)
    metric = args.metric or results.metadata.get("metric", "valid_accuracy")
    mode = results.metadata.get("mode", "max")
    print(results.table(k=args.top, metric=metric, mode=mode))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from jaxtune.results import Results

    results = Results.load(args.directory)
    metric = args.metric or results.metadata.get("metric", "valid_accuracy")
    mode = results.metadata.get("mode", "max")
    for path in write_figures(results, Path(args.directory), metric, mode, args.format):
        print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxtune`` console command."""
    args = _parser().parse_args(argv)
    commands = {"sweep": run_sweep, "show": _show, "plot": _plot}
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"jaxtune: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
