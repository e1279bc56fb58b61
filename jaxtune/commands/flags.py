"""The flags of ``jaxtune``'s commands, added to argparse parsers by :mod:`jaxtune.cli`.

Each function adds one group of ``jaxtune sweep``'s flags (how members train, the schedulers'
settings, outputs, checkpoints, several processes), or the commands on a saved sweep
(``show``, ``plot``, ``export-optuna``). The flags that name the strategy registry stay in
:mod:`jaxtune.cli`, which owns it.

This module imports no JAX: the command line is parsed before anything heavy is loaded.
"""

from __future__ import annotations

import argparse
from typing import Any

from jaxtune.commands.request import DEFAULT_ETA, add_objective_flags

__all__ = [
    "add_checkpoint_flags",
    "add_cluster_flags",
    "add_output_flags",
    "add_population_flags",
    "add_saved_commands",
    "add_scheduler_flags",
]


def add_population_flags(sweep: argparse.ArgumentParser) -> None:
    """How members train (the engine options), their seeds, the metric, the grid."""

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
    add_objective_flags(sweep)
    sweep.add_argument("--grid-points", type=int, default=5, help="points per float axis (grid)")


def add_scheduler_flags(sweep: argparse.ArgumentParser) -> None:
    """halving/hyperband and pbt settings (refused by the other strategies)."""

    sweep.add_argument("--eta", type=int, default=None,
                       help=f"halving/hyperband: keep 1 in eta per rung (default {DEFAULT_ETA})")
    sweep.add_argument("--min-steps", type=int, default=None,
                       help="halving/hyperband: first rung (default num-steps // eta**3)")
    sweep.add_argument("--max-member-steps", type=int, default=None,
                       help="halving/hyperband: budget in member-steps (default num-configs x "
                       "num-steps, what random search spends)")
    sweep.add_argument("--pbt-interval", type=int, default=None,
                       help="pbt: segments between exploit/explore steps (default 1)")


def add_output_flags(sweep: argparse.ArgumentParser) -> None:
    """Where the results go and what is printed and drawn."""

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


def add_checkpoint_flags(sweep: argparse.ArgumentParser) -> None:
    """Checkpointing and ``--resume``."""

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
    sweep.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                       help="stop proposing after SECONDS of wall time: the running segment "
                       "ends, the sweep is saved (with --checkpoint-dir) and --out gets every "
                       "member so far; the command to continue is printed")
    sweep.add_argument("--warm-start", default=None, metavar="DIR",
                       help="warm-start from the sweep saved in DIR (an earlier --out, same or "
                       "compatible space): its configs are not proposed again, bayes fits its "
                       "model on them first, halving/pbt start from its best half")


def add_cluster_flags(sweep: argparse.ArgumentParser) -> None:
    """Several processes in one sweep (``jax.distributed``)."""

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


def add_saved_commands(sub: Any) -> None:
    """``show``, ``plot`` and ``export-optuna``: commands on a folder ``sweep`` wrote."""

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
