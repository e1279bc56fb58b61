"""PB2 against PBT on one small task: wine, a linear model, SGD, learning rate in [1e-4, 1].

Each explore step runs once with 8 members for 100 steps (segments of 10, full batch, seed 0);
the script prints the best and the mean final validation loss of the population, and checks
that the best member's replay (:func:`jaxtune.replay_pbt_member`) gives the same final loss.
One seed on one task: an illustration that PB2 runs in the engine and replays, not a benchmark
of PB2 against PBT.

    python benchmarks/pb2_wine.py
"""

from __future__ import annotations

import time

import numpy as np

import jaxtune as jt


def main() -> None:
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space({"learning_rate": jt.Float(1e-4, 1.0, log=True),
                      "optimizer": jt.Fixed("sgd")})
    for explore in ("perturb", "pb2"):
        start = time.perf_counter()
        results = jt.run_pbt(task, split, space, population_size=8, num_steps=100,
                             steps_per_segment=10, batch_size=None, metric="valid_loss", seed=0,
                             explore=explore)
        best = results.best("valid_loss", "min")
        _, replayed = jt.replay_pbt_member(task, split, results, best.member_id,
                                           return_result=True)
        mean = np.mean([row.metrics["valid_loss"] for row in results])
        print(f"{explore:8s} wall {time.perf_counter() - start:6.1f}s  best valid_loss "
              f"{best.metrics['valid_loss']:.4f}  mean {mean:.4f}  replay equal "
              f"{replayed.metrics['valid_loss'] == best.metrics['valid_loss']}")


if __name__ == "__main__":
    main()
