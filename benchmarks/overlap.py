"""Overlap: a sweep of several static groups with later groups' programs compiled ahead.

The digits MLP (Dense(width)-Dropout(0.2)-Dense(10), Adam, batch 32, 300 steps) over a few
learning rates at each width: one static group per width. The same sweep runs with the overlap
off (``JAXTUNE_OVERLAP=0``: each group compiles when its first chunk starts) and on (the
default: while the first group compiles and trains, the others compile in background threads),
alternating in one process, each from fresh programs (``jax.clear_caches()`` and a new task
before every run; the persistent compilation cache off), so the two see the same machine load.

    python benchmarks/overlap.py                          # widths 32,64,128,256; 2 repeats
    python benchmarks/overlap.py --widths 32,64,128 --repeats 3 --threads 1,2

The last line is machine-readable: ``overlap_speedup=<median off_s / median on_s>`` (for the
default thread count).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ["JAXTUNE_COMPILATION_CACHE"] = "0"  # fresh compiles: what a first run pays

import jax

import jaxtune as jt
from jaxtune import compile_cache, engine
from jaxtune.engine import precompile

LEARNING_RATES = (3e-4, 1e-3, 3e-3, 1e-2)


class CompileTime:
    """Sums XLA compile seconds while active, in the run's thread and in others."""

    def __init__(self) -> None:
        self.main_s = 0.0
        self.background_s = 0.0

    def _on_duration(self, event: str, duration_s: float, **kwargs) -> None:
        if event != compile_cache.COMPILE_EVENT:
            return
        if threading.current_thread() is threading.main_thread():
            self.main_s += duration_s
        else:
            self.background_s += duration_s

    def __enter__(self) -> CompileTime:
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._on_duration)


def sweep(split, widths: list[int], threads: int, num_steps: int) -> dict:
    """One sweep from fresh programs; ``threads == 0`` turns the overlap off."""
    os.environ[precompile.ENV_SWITCH] = "1" if threads else "0"
    os.environ[precompile.ENV_THREADS] = str(max(threads, 1))
    jax.clear_caches()
    task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
    configs = [{"learning_rate": lr, "optimizer": "adam", "width": w, "dropout": 0.2}
               for w in widths for lr in LEARNING_RATES]
    with CompileTime() as compiled:
        start = time.perf_counter()
        results = engine.train(task, configs, split, num_steps=num_steps, batch_size=32)
        wall_s = time.perf_counter() - start
    best = results.best("valid_accuracy", "max")
    return {
        "wall_s": wall_s,
        "compile_main_s": compiled.main_s,
        "compile_background_s": compiled.background_s,
        "num_compilations": results.metadata["num_compilations"],
        "num_segment_compilations": results.metadata["num_segment_compilations"],
        "best": (best.config["width"], best.config["learning_rate"],
                 best.metrics["valid_accuracy"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="32,64,128,256")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", default=str(precompile.DEFAULT_THREADS),
                        help="compiling threads to compare with the overlap off, e.g. 1,2")
    parser.add_argument("--num-steps", type=int, default=300)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))
    modes = [0, *thread_counts]
    runs: dict[int, list[dict]] = {m: [] for m in modes}
    sweep(split, widths[:1], 0, 10)  # warm-up: imports, data, key programs
    for repeat in range(args.repeats):
        for mode in modes if repeat % 2 == 0 else modes[::-1]:
            run = sweep(split, widths, mode, args.num_steps)
            runs[mode].append(run)
            print(f"repeat {repeat} threads={mode}: {run}", flush=True)
    off = statistics.median(r["wall_s"] for r in runs[0])
    print(f"\n{len(widths)} static groups (widths {widths}), {len(LEARNING_RATES)} members each, "
          f"{args.num_steps} steps; median of {args.repeats}; {os.cpu_count()} CPUs")
    print("| overlap | wall s | compile s (run's thread) | compile s (background) "
          "| compilations (segment) | speedup |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode in modes:
        wall = statistics.median(r["wall_s"] for r in runs[mode])
        main_s = statistics.median(r["compile_main_s"] for r in runs[mode])
        back_s = statistics.median(r["compile_background_s"] for r in runs[mode])
        counts = {(r["num_compilations"], r["num_segment_compilations"]) for r in runs[mode]}
        label = "off" if mode == 0 else f"on, {mode} thread{'s' * (mode > 1)}"
        print(f"| {label} | {wall:.2f} | {main_s:.2f} | {back_s:.2f} | "
              f"{', '.join(f'{c} ({s})' for c, s in sorted(counts))} | {off / wall:.2f}x |")
    same = {r["best"] for rs in runs.values() for r in rs}
    print(f"best member identical across runs: {len(same) == 1} {sorted(same)[0]}")
    default = precompile.DEFAULT_THREADS if precompile.DEFAULT_THREADS in runs else modes[-1]
    on = statistics.median(r["wall_s"] for r in runs[default])
    print(f"overlap_speedup={off / on:.3f}")


if __name__ == "__main__":
    main()
