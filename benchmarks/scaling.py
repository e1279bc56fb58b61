"""Scaling benchmark: per-member time and throughput as the population grows.

Workload: digits, MLP 64-128-128-10, batch 128, AdamW (learning rate log-uniform [1e-4, 1e-1],
weight decay log-uniform [1e-6, 1e-2]), P in {1, 4, 16, 64, 256, 1024} members (with ``--gpu``
also 2048 and 4096), trained with
jaxtune's engine (``jt.train``) in both minibatch modes (``independent``: every member samples its
own minibatches; ``shared``: one minibatch per step for all members).

On the CPU each device count (default 1 and 2 XLA CPU devices) runs in its own subprocess, since
the device count (``XLA_FLAGS=--xla_force_host_platform_device_count=N``) must be fixed before
JAX starts; within a subprocess, P and the two modes are timed side by side. Times are warm: a
first call compiles the program, then ``--repeats`` timed calls of ``--num-steps`` steps
(median). A member's time is the call's wall time over P; throughput is member-steps per
second, ``P * num_steps / wall``; the steady throughput leaves out the call's fixed costs (it
is timed between the first and the last segment boundary).

    python benchmarks/scaling.py            # full: 100 steps per member
    python benchmarks/scaling.py --quick    # 30 steps, one repeat
    python benchmarks/scaling.py --gpu      # the default backend's devices (a GPU), P to 4096

The plot goes to ``docs/scaling.png`` (``--plot``). The last line is machine-readable:
``p1_ms=<> p1024_ms=<> throughput_gain_1024=<> devices=<n>``, for the largest device count in
``independent`` mode, between the smallest P and P=1024 (the largest P when 1024 is not
measured; ``p*_ms``: milliseconds of wall time per member for ``--num-steps`` steps; the gain is
member-steps per second at P=1024 over that at P=1). Larger populations (2048, 4096) get their
own line just above it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (1, 4, 16, 64, 256, 1024)
GPU_SIZES = (*SIZES, 2048, 4096)
REFERENCE_SIZE = 1024  # the P of the required last line
MODES = ("independent", "shared")
HIDDEN = (128, 128)
BATCH_SIZE = 128


# --------------------------------------------------------------------------------------------
# One device count, in a fresh process


def _configs(num_members: int, seed: int) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    lrs = np.exp(rng.uniform(np.log(1e-4), np.log(1e-1), num_members))
    wds = np.exp(rng.uniform(np.log(1e-6), np.log(1e-2), num_members))
    return [
        {"learning_rate": float(lr), "weight_decay": float(wd), "optimizer": "adamw",
         "hidden_sizes": HIDDEN}
        for lr, wd in zip(lrs, wds, strict=True)
    ]


def measure(sizes, num_steps, steps_per_segment, repeats, member_loop=None) -> dict:
    """Times every (P, mode) on this process's devices; returns a JSON-ready report.

    Two figures per run: the whole ``jt.train`` call (what a user waits for, including the
    call's fixed costs: the memory estimate's tracing, host transfers, the final evaluation) and
    the steady state between the first and the last segment boundary (training and the
    per-segment validation only).
    """
    import jax

    import jaxtune as jt

    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))
    task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
    rows = []
    for size in sizes:
        configs = _configs(size, seed=size)
        for mode in MODES:
            boundaries: list[float] = []

            def run(configs=configs, mode=mode, boundaries=boundaries):
                boundaries.clear()
                return jt.train(task, configs, split, num_steps=num_steps, batch_size=BATCH_SIZE,
                                steps_per_segment=steps_per_segment, evaluate_test=False,
                                batch_mode=mode, member_loop=member_loop,
                                on_segment=lambda report: boundaries.append(time.perf_counter()))

            start = time.perf_counter()
            first = run()  # compiles (num_steps is part of the program's signature)
            compile_s = time.perf_counter() - start
            times, steady = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                results = run()
                times.append(time.perf_counter() - start)
                if len(boundaries) == num_steps // steps_per_segment > 1:  # one chunk
                    steady.append((boundaries[-1] - boundaries[0])
                                  / (num_steps - steps_per_segment))
            assert results.metadata["num_segment_compilations"] == 0, "timed call recompiled"
            assert all(row.status in ("completed", "diverged") for row in results)
            wall_s = statistics.median(times)
            step_s = statistics.median(steady) if steady else None
            rows.append({
                "num_members": size, "batch_mode": mode, "wall_s": wall_s,
                "member_ms": 1e3 * wall_s / size,
                "member_steps_per_s": size * num_steps / wall_s,
                "steady_member_steps_per_s": size / step_s if step_s else None,
                "first_call_s": compile_s,
                "num_chunks": results.metadata.get("num_chunks"),
                "member_memory_bytes": first.metadata.get("member_memory_bytes"),
            })
            steady_text = (f"{size / step_s:10.0f}" if step_s else "         -")
            print(f"  devices={jax.device_count()} P={size:5d} {mode:11s} wall={wall_s:7.3f} s "
                  f"member={rows[-1]['member_ms']:9.3f} ms "
                  f"throughput={rows[-1]['member_steps_per_s']:8.0f} "
                  f"(steady {steady_text}) member-steps/s  first call {compile_s:5.1f} s",
                  flush=True)
    return {"num_devices": jax.device_count(), "platform": jax.devices()[0].platform,
            "member_loop": results.metadata["member_loop"],
            "device_kind": jax.devices()[0].device_kind, "rows": rows}


# --------------------------------------------------------------------------------------------
# Driver


def _run_child(args, num_devices: int | None, out: Path) -> dict:
    env = dict(os.environ)
    if num_devices is not None:
        env["JAX_PLATFORMS"] = "cpu"
        flags = [flag for flag in env.get("XLA_FLAGS", "").split()
                 if not flag.startswith("--xla_force_host_platform_device_count")]
        env["XLA_FLAGS"] = " ".join(
            [*flags, f"--xla_force_host_platform_device_count={num_devices}"])
    env["JAXTUNE_CPU_DEVICES"] = str(num_devices or 1)  # not read by jt.train; kept coherent
    command = [sys.executable, __file__, "--child", str(out), "--sizes",
               ",".join(map(str, args.sizes)), "--num-steps", str(args.num_steps),
               "--steps-per-segment", str(args.steps_per_segment), "--repeats",
               str(args.repeats)]
    if args.member_loop:
        command += ["--member-loop", args.member_loop]
    subprocess.run(command, env=env, check=True)
    return json.loads(out.read_text())


def _plot(reports: list[dict], num_steps: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for report in reports:
        for mode, style in zip(MODES, ("-", "--"), strict=True):
            rows = [r for r in report["rows"] if r["batch_mode"] == mode]
            sizes = [r["num_members"] for r in rows]
            label = f"{report['num_devices']} {report['platform']} device(s), {mode}"
            left.plot(sizes, [r["member_ms"] for r in rows], style, marker="o", label=label)
            right.plot(sizes, [r["member_steps_per_s"] for r in rows], style, marker="o",
                       label=label)
    left.set(xscale="log", yscale="log", xlabel="population size P",
             ylabel=f"wall time per member, ms ({num_steps} steps)")
    right.set(xscale="log", yscale="log", xlabel="population size P",
              ylabel="throughput, member-steps / s")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(report: dict, size: int, mode: str) -> dict:
    return next(r for r in report["rows"] if r["num_members"] == size and r["batch_mode"] == mode)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 steps, one repeat")
    parser.add_argument("--gpu", action="store_true",
                        help="one run on the default backend's devices instead of CPU counts")
    parser.add_argument("--device-counts", default="1,2", help="CPU device counts (comma list)")
    parser.add_argument("--sizes", default=None,
                        help="population sizes (comma list; default "
                        f"{','.join(map(str, SIZES))}, with --gpu {','.join(map(str, GPU_SIZES))}"
                        "); the last line compares the smallest with 1024")
    parser.add_argument("--num-steps", type=int, default=None, help="timed steps per member")
    parser.add_argument("--steps-per-segment", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--plot", default="docs/scaling.png", help="figure path ('' for none)")
    parser.add_argument("--json", default=None, help="also write every figure here")
    parser.add_argument("--member-loop", choices=("map", "vmap"), default=None,
                        help="jt.train's member_loop (default: the engine's, map on CPU)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = ",".join(map(str, GPU_SIZES if args.gpu else SIZES))
    args.sizes = sorted({int(s) for s in str(args.sizes).split(",")})
    args.num_steps = args.num_steps or (30 if args.quick else 100)
    args.repeats = args.repeats or (1 if args.quick else 2)
    if args.num_steps % args.steps_per_segment:
        parser.error("--num-steps must be a multiple of --steps-per-segment")

    if args.child is not None:
        report = measure(args.sizes, args.num_steps, args.steps_per_segment, args.repeats,
                         args.member_loop)
        Path(args.child).write_text(json.dumps(report))
        return 0

    counts = [None] if args.gpu else [int(c) for c in args.device_counts.split(",")]
    print(f"digits MLP 64-128-128-10, batch {BATCH_SIZE}, AdamW, {args.num_steps} timed steps, "
          f"median of {args.repeats}, member_loop {args.member_loop or 'default'}; host has "
          f"{os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    reports = []
    with tempfile.TemporaryDirectory() as folder:
        for count in counts:
            reports.append(_run_child(args, count, Path(folder) / f"devices{count}.json"))

    print(f"\n| devices | P | batch mode | ms per member | member-steps/s | "
          f"gain vs P={args.sizes[0]} | steady member-steps/s | steady gain |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for report in reports:
        for mode in MODES:
            base = _row(report, args.sizes[0], mode)
            for size in args.sizes:
                row = _row(report, size, mode)
                rate, steady = row["member_steps_per_s"], row["steady_member_steps_per_s"]
                steady_gain = (steady / base["steady_member_steps_per_s"]
                               if steady and base["steady_member_steps_per_s"] else None)
                print(f"| {report['num_devices']} | {size} | {mode} | {row['member_ms']:.3f} | "
                      f"{rate:.0f} | {rate / base['member_steps_per_s']:.1f}x | "
                      f"{_fmt(steady, '.0f')} | {_fmt(steady_gain, '.1f')}x |")
    for report in reports:
        big = args.sizes[-1]
        ratio = (_row(report, big, "shared")["member_steps_per_s"]
                 / _row(report, big, "independent")["member_steps_per_s"])
        print(f"devices={report['num_devices']}: shared / independent throughput at P={big}: "
              f"{ratio:.2f}x")
    if len(reports) > 1:
        first, last = reports[0], reports[-1]
        for size in args.sizes:
            ratio = (_row(last, size, "independent")["member_steps_per_s"]
                     / _row(first, size, "independent")["member_steps_per_s"])
            print(f"P={size}: {last['num_devices']} devices / {first['num_devices']}: "
                  f"{ratio:.2f}x (independent)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "reports": reports}))
    if args.plot:
        title = (f"jaxtune scaling: digits MLP, {args.num_steps} steps, batch {BATCH_SIZE} "
                 f"({reports[-1]['device_kind']}, {os.cpu_count()} cores, shared machine)")
        _plot(reports, args.num_steps, Path(args.plot), title)
        print(f"wrote {args.plot}")

    print(_last_line(reports[-1], args.sizes))
    return 0


def _last_line(head: dict, sizes: list[int]) -> str:
    """The machine-readable summary: P=1024 against the smallest P, and before it one line for
    every larger P measured (``--gpu``: 2048 and 4096)."""
    low = sizes[0]
    reference = REFERENCE_SIZE if REFERENCE_SIZE in sizes else sizes[-1]
    small = _row(head, low, "independent")

    def fields(size):
        row = _row(head, size, "independent")
        gain = row["member_steps_per_s"] / small["member_steps_per_s"]
        return f"p{size}_ms={row['member_ms']:.3f} throughput_gain_{size}={gain:.1f}"

    larger = [fields(size) for size in sizes if size > reference]
    lines = [" ".join(larger)] if larger else []
    row = _row(head, reference, "independent")
    gain = row["member_steps_per_s"] / small["member_steps_per_s"]
    lines.append(f"p{low}_ms={small['member_ms']:.3f} p{reference}_ms={row['member_ms']:.3f} "
                 f"throughput_gain_{reference}={gain:.1f} devices={head['num_devices']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
