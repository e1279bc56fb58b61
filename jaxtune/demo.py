"""The demo behind ``make demo``: a real random-search sweep on the embedded digits data.

64 configurations of an MLP (learning rate, weight decay and dropout dynamic; hidden width in
{64, 128} static, so two compiled programs), 500 AdamW steps each, trained as one population per
width. Prints progress and the ten best configurations, and writes ``results.json``,
``results.csv`` and ``summary.png`` into ``--out``.

    python -m jaxtune.demo --out runs/demo
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax

import jaxtune as jt
from jaxtune.cli import use_cpu_cores
from jaxtune.commands.saved import write_figures


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo sweep; returns the exit status.

    Args:
      argv: command-line arguments (default ``sys.argv[1:]``): ``--out``, ``--num-configs``,
        ``--num-steps``, ``--steps-per-segment``, ``--seed``.

    Returns:
      0 on success.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--num-configs", type=int, default=64)
    parser.add_argument("--num-steps", type=int, default=500)
    parser.add_argument("--steps-per-segment", type=int, default=50,
                        help="steps between two points of the learning curves")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    use_cpu_cores()  # before the first JAX computation (importing JAX starts nothing)
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=args.seed))
    space = jt.Space(
        {
            "learning_rate": jt.Float(1e-4, 1e-1, log=True),
            "weight_decay": jt.Float(1e-6, 1e-2, log=True),
            "dropout": jt.Float(0.0, 0.5),
            "width": jt.Choice([64, 128]),
            "optimizer": jt.Fixed("adamw"),
        }
    )
    task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
    print(
        f"jaxtune demo: random search, {args.num_configs} configs x {args.num_steps} AdamW steps "
        f"on digits ({len(split.y_train)} train / {len(split.y_valid)} valid / "
        f"{len(split.y_test)} test rows), {len(jax.devices())} {jax.devices()[0].platform} "
        "device(s)"
    )
    progress = jt.ProgressBar(args.num_configs * args.num_steps, metric="valid_accuracy")
    start = time.perf_counter()
    results = jt.tune(
        task, split, space, jt.random_search(),
        num_configs=args.num_configs,
        num_steps=args.num_steps,
        batch_size=128,
        steps_per_segment=args.steps_per_segment,
        seed=args.seed,
        on_segment=progress,
    )
    wall_s = time.perf_counter() - start
    print()
    print(results.table(k=10, metric="valid_accuracy", mode="max"))
    best = results.best("valid_accuracy", mode="max")
    print(
        f"\nbest member {best.member_id}: valid accuracy {best.metrics['valid_accuracy']:.4f}, "
        f"test accuracy {best.metrics.get('test_accuracy', float('nan')):.4f}"
    )
    print(
        f"{len(results)} members in {wall_s:.1f} s ({wall_s / len(results):.3f} s per member), "
        f"{results.metadata['num_static_groups']} static groups, "
        f"{results.metadata['num_compilations']} XLA compilations"
    )
    out = Path(args.out)
    results.save(out)
    print(f"wrote {out / 'results.json'}, {out / 'results.csv'}")
    for path in write_figures(results, out, "valid_accuracy", "max", "png"):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
