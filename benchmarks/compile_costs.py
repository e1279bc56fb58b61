"""What the engine's programs cost to compile (issue 14, "compile less"), side by side.

Workload: the digits classifier of the first-result benchmark, Dense(128)-Dropout(0.2)-Dense(10)
with Adam, 8 learning rates, on this machine's CPU devices.

  init:  the population set-up program as it was (members' initializers batched with vmap) and
         as it is (members initialized one after another, as they train with
         member_loop="map"): compile seconds of each, and whether their parameters and optimizer
         states are bit-identical.
  batch: a run at batch 32 and at batch 128 (the program a batch-32 member padded to 128 rows
         with zero weights would run: the same products, plus a per-row weight): the cold run
         (compiling) and the warm one (compiled) of each, and the per-step cost.
  epochs: a cold epochs grid (4 learning rates x num_steps 100, 200, 300, batch 32): wall
         time and the training programs compiled (run it on two checkouts to compare).
  segment: lower + compile seconds of the two segment programs, the fast one (what every
         segment runs) and the guarded one (compiled only when a member diverges), and of
         both in one program under ``lax.cond`` (the segment program before issue 14 split
         it), for the digits MLP and a width-8 MLP (8 learning rates, 300 steps, batch 32, the
         default segment length), persistent compilation cache off, min of ``--repeats``; and
         the median warm call of each (one segment of the 8 members).

    python benchmarks/compile_costs.py [--steps 300] [--repeats 3] [--only segment]

Timings on a loaded machine are noisy: compare the two figures of one line, not runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import jaxtune as jt
from jaxtune import engine
from jaxtune.engine import population
from jaxtune.engine.layout import Layout
from jaxtune.engine.plan import member_keys
from jaxtune.step import from_task

TASK = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
STATIC = {"optimizer": "adam", "width": 128, "depth": 1}


def _configs(num: int) -> list[dict]:
    return [{"learning_rate": float(lr), "dropout": 0.2, **STATIC}
            for lr in np.geomspace(1e-4, 1e-1, num)]


def init_costs(split: jt.Split, num_members: int) -> None:
    """Compile seconds of the set-up program, batched (before) and looped (now), and bits."""
    layout = Layout.build(None)
    spec = population.GroupSpec(
        step=from_task(TASK), static_hp=tuple(sorted(STATIC.items())),
        dynamic_names=("dropout", "learning_rate"), num_steps=100, batch_size=32,
        steps_per_segment=10, member_loop="map")
    configs = _configs(num_members)
    keys = layout.put(member_keys(0, [0] * num_members, configs, [None] * num_members))
    dynamic = layout.put({n: np.asarray([c[n] for c in configs], np.float32)
                          for n in spec.dynamic_names})
    alive = layout.put(np.ones(num_members, bool))
    train = {"x": jax.numpy.asarray(split.x_train), "y": jax.numpy.asarray(split.y_train)}
    args = (spec, layout.population, keys, dynamic, None, train, alive)
    batched = jax.jit(population.pinned(population.init_population), static_argnums=(0, 1))
    out = {}
    for name, program in (("vmap (before)", batched), ("member loop (now)", population.init_jit),
                          ("vmap again", batched), ("member loop again", population.init_jit)):
        jax.clear_caches()
        start = time.perf_counter()
        compiled = program.lower(*args).compile()
        seconds = time.perf_counter() - start
        out[name] = jax.block_until_ready(compiled(*args[2:]))
        print(f"init compile {name:18s} {seconds:6.2f} s", flush=True)
    same = all(np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(out["vmap (before)"]),
        jax.tree_util.tree_leaves(out["member loop (now)"]), strict=True))
    print(f"init bit-identical: {same}")


def batch_costs(split: jt.Split, num_members: int, steps: int, repeats: int) -> None:
    """Cold and warm runs at batch 32 and 128; the per-step cost of each."""
    configs = _configs(num_members)
    kwargs = dict(num_steps=steps, steps_per_segment=steps // 3, evaluate_test=False)
    warm = {}
    for batch in (32, 128):
        jax.clear_caches()
        start = time.perf_counter()
        engine.train(TASK, configs, split, batch_size=batch, **kwargs)
        cold = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            engine.train(TASK, configs, split, batch_size=batch, **kwargs)
            times.append(time.perf_counter() - start)
        warm[batch] = statistics.median(times)
        print(f"batch {batch:3d}: cold {cold:6.2f} s  warm {warm[batch]:6.3f} s  "
              f"compile ~{cold - warm[batch]:5.2f} s  "
              f"per member-step {warm[batch] / (steps * num_members) * 1e6:6.1f} us", flush=True)
    print(f"per-step cost of batch 32 padded to 128: {warm[128] / warm[32]:.2f}x batch 32")


def epochs_costs(split: jt.Split) -> None:
    """A cold epochs grid: wall seconds, static groups and training programs compiled."""
    configs = [{**c, "num_steps": n} for n in (100, 200, 300) for c in _configs(4)]
    jax.clear_caches()
    start = time.perf_counter()
    results = engine.train(TASK, configs, split, num_steps=300, batch_size=32,
                           steps_per_segment=100, evaluate_test=False)
    meta = results.metadata
    print(f"epochs grid: cold {time.perf_counter() - start:.1f} s, "
          f"{meta['num_static_groups']} groups, {meta['num_segment_compilations']} training "
          f"programs, {meta['num_compilations']} compilations")


def _segment_args(split: jt.Split, width: int, num_members: int) -> tuple:
    """The arguments of the first segment call of a run of the digits MLP of ``width``."""
    configs = [{**c, "width": width} for c in _configs(num_members)]
    seen = []
    real = population.segment_jit

    def spy(*args):
        seen.append(args)
        return real(*args)

    population.segment_jit = spy
    try:
        engine.train(TASK, configs, split, num_steps=300, batch_size=32, evaluate_test=False)
    finally:
        population.segment_jit = real
    return seen[0]


def _both_in_one(spec, sharding, *args):
    """The two segment programs as one, as it was before the split: the fast steps, and the
    guarded ones under ``lax.cond`` when the fast ones say so (both compiled every time)."""
    state, metrics, redo = population.run_segment(spec, sharding, *args)
    return jax.lax.cond(
        redo, lambda: population.run_guarded_segment(spec, sharding, *args),
        lambda: (state, metrics))


def segment_costs(split: jt.Split, num_members: int, repeats: int) -> None:
    """Lower + compile seconds of the fast and the guarded segment programs and of both in one
    program (``lax.cond``, as before the split), cache off; then a warm call of each."""
    jax.config.update("jax_enable_compilation_cache", False)
    both = jax.jit(population.pinned(_both_in_one, pass_sharding=True), static_argnums=(0, 1))
    programs = (("both (lax.cond)", both), ("fast", population.segment_jit),
                ("guarded", population.guarded_jit))
    for width in (128, 8):
        args = _segment_args(split, width, num_members)
        seconds = {name: [] for name, _ in programs}
        calls = {name: [] for name, _ in programs}
        for _ in range(repeats):  # the programs in turn, so that a load spike hits them all
            for name, program in programs:
                jax.clear_caches()
                start = time.perf_counter()
                compiled = program.lower(*args).compile()
                seconds[name].append(time.perf_counter() - start)
                jax.block_until_ready(compiled(*args[2:]))
                start = time.perf_counter()
                jax.block_until_ready(compiled(*args[2:]))
                calls[name].append(time.perf_counter() - start)
        for name, _ in programs:
            print(f"segment width {width:3d} {name:16s} compile {min(seconds[name]):6.2f} s "
                  f"(runs: {' '.join(f'{v:.2f}' for v in seconds[name])})  warm call "
                  f"{statistics.median(calls[name]) * 1e3:7.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("init", "batch", "epochs", "segment"), default=None)
    args = parser.parse_args()
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))
    if args.only in (None, "init"):
        init_costs(split, args.members)
    if args.only in (None, "batch"):
        batch_costs(split, args.members, args.steps, args.repeats)
    if args.only in (None, "epochs"):
        epochs_costs(split)
    if args.only in (None, "segment"):
        segment_costs(split, args.members, args.repeats)


if __name__ == "__main__":
    main()
