"""Runs one small sweep in a fresh process and writes what it saw as JSON (used by the tests).

The device count (and, for ``--mode distributed``, the cluster) must be set before JAX starts,
so the tests launch this file as a subprocess::

    python tests/_distributed_worker.py --mode local --devices 4 --out local.json
    python tests/_distributed_worker.py --mode distributed --devices 2 \\
        --coordinator 127.0.0.1:12345 --num-processes 2 --process-id 0 --out p0.json
    python tests/_distributed_worker.py --mode devices --devices 8 --runs default_1,pinned_8 \
        --out devices.json
    python tests/_distributed_worker.py --mode batch-modes --devices 2 --out modes.json

``local`` and ``distributed`` train :func:`sweep` on every visible (global) device.
``devices`` trains the same sweep on the first N devices of one process, with the default layout
(``default_N``: on CPU each device loops over its members, ``member_loop="map"``), with 3
members per device (``fixed_N``: ``pad_to=3 * N``, which is what the default layout puts on 2
devices), with the members batched (``member_loop="vmap"``) in the default layout
(``batched_N``) or in one pinned by ``members_per_device=2`` (``pinned_N``: chunks of 2 x N
slots), or in chunks capped by ``max_members_per_chunk=2 * N + 1`` (``chunked_N``: rounded
down to 2 x N). ``batch-modes`` runs :func:`batch_mode_probe` on 2
devices in both modes.

The process's CPU device count comes from ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
(``--devices N``), set here before JAX is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# Fresh process: the CPU device count must be fixed before JAX's backend starts.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NUM_MEMBERS = 6  # not a multiple of 4 or 8: padding members must be added and dropped
PER_DEVICE = 3  # members per device of the fixed-layout runs (pad_to = 3 * num_devices)
PINNED_PER_DEVICE = 2  # members_per_device of the pinned runs: 3, 2, 1 and 1 chunks on 1/2/4/8


def sweep(devices=None, pad_to=None, batch_mode="independent", members_per_device=None,
          max_members_per_chunk=None, on_segment=None, member_loop=None):
    """The sweep every mode runs: 6 Adam members of a small MLP on digits, 20 steps."""
    import numpy as np

    import jaxtune as jt
    from jaxtune import engine

    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))
    task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
    configs = [
        {"learning_rate": float(lr), "optimizer": "adam", "width": 16, "depth": 1}
        for lr in np.geomspace(1e-3, 3e-2, NUM_MEMBERS)
    ]
    return engine.train(
        task, configs, split, num_steps=20, batch_size=32, steps_per_segment=10, seed=3,
        member_seeds=list(range(NUM_MEMBERS)), devices=devices, pad_to=pad_to,
        batch_mode=batch_mode, return_params=True, members_per_device=members_per_device,
        max_members_per_chunk=max_members_per_chunk, on_segment=on_segment,
        member_loop=member_loop,
    )


def optuna_tune(storage):
    """Three rounds of 4 TPE proposals on wine, mirrored into the Optuna ``storage``."""
    import optuna

    import jaxtune as jt
    from jaxtune.integrations.optuna import optuna_strategy

    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1.0, log=True),
                      "optimizer": jt.Fixed("sgd")})
    strategy = optuna_strategy(
        lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        storage=storage, study_name="two-processes",
    )
    return jt.tune(task, split, space, strategy, num_configs=12, population_size=4,
                   num_steps=10, steps_per_segment=10, batch_size=None, seed=0)


def batch_mode_probe(devices, batch_mode):
    """Two members with the same config and different seeds, on different devices.

    The model starts from zeros and its loss draws no random numbers, so the only thing a
    member's seed changes is which minibatches it samples: the two members end equal exactly
    when they saw the same minibatches.
    """
    import jax.numpy as jnp

    import jaxtune as jt
    from jaxtune import engine

    split = jt.train_valid_test_split(jt.make_linear(num_samples=256, noise=0.5, seed=0),
                                      stratify=False)

    def init(key, hp):
        return {"w": jnp.zeros(()), "b": jnp.zeros(())}

    def loss(params, batch, key, hp):
        return jnp.mean((params["w"] * batch["x"][:, 0] + params["b"] - batch["y"]) ** 2), {}

    def evaluate(params, data, hp):
        return {"mse": loss(params, data, None, hp)[0]}

    task = jt.Task(init, loss, evaluate, name="probe", metric_modes={"mse": "min"})
    config = {"learning_rate": 0.05, "optimizer": "sgd"}
    return engine.train(
        task, [config, config], split, num_steps=30, batch_size=8, steps_per_segment=10,
        member_seeds=[0, 1], devices=devices, batch_mode=batch_mode, return_params=True,
        evaluate_test=False,
    )


def summarize(results_and_params):
    """Results rows (without wall times) and parameters as JSON-ready values."""
    import jax
    import numpy as np

    results, params = results_and_params
    rows = []
    for row in results:
        record = row.to_dict()
        record.pop("wall_time_s", None)
        rows.append(record)
    leaves = [
        [np.asarray(leaf, np.float64).tolist() for leaf in jax.tree_util.tree_leaves(p)]
        for p in params
    ]
    return {"rows": rows, "params": leaves,
            "num_devices": results.metadata["num_devices"],
            "num_chunks": results.metadata.get("num_chunks")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", required=True,
                        choices=("local", "distributed", "devices", "batch-modes"))
    parser.add_argument("--devices", type=int, default=1, help="CPU devices of this process")
    parser.add_argument("--out", required=True, help="this process's JSON report")
    parser.add_argument("--save", help="directory the writer process saves Results to")
    parser.add_argument("--optuna-storage", default=None,
                        help="--mode distributed: run optuna_tune() into this storage URL "
                        "instead of the plain sweep")
    parser.add_argument("--runs", default="default_1,default_2,default_4,default_8,fixed_8",
                        help="--mode devices: LAYOUT_N runs, LAYOUT = default, batched, fixed "
                        f"(pad_to={PER_DEVICE} x N), pinned "
                        f"(members_per_device={PINNED_PER_DEVICE}) or chunked "
                        "(max_members_per_chunk=2 x N + 1), N = devices")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--exit-early", type=int, default=None,
                        help="exit with this status after joining, before training")
    parser.add_argument("--hard-exit", action="store_true",
                        help="with --exit-early: os._exit, as a crash (no shutdown barrier)")
    parser.add_argument("--kill-after-segments", type=int, default=None,
                        help="SIGKILL this process once it has trained this many segments")
    parser.add_argument("--timeout-s", type=int, default=20,
                        help="heartbeat / shutdown timeouts of the cluster")
    args = parser.parse_args(argv)

    # The device count as the XLA flag, replacing any count inherited from the environment.
    flags = [flag for flag in os.environ.get("XLA_FLAGS", "").split()
             if not flag.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(
        [*flags, f"--xla_force_host_platform_device_count={args.devices}"])
    import jax
    report = {"argv": sys.argv[1:]}
    if args.mode == "distributed":
        from jaxtune import distributed

        joined = distributed.initialize_from_env_or_args(
            args.coordinator, args.num_processes, args.process_id,
            initialization_timeout_s=60, heartbeat_timeout_s=args.timeout_s,
            shutdown_timeout_s=args.timeout_s,
        )
        report.update(joined=joined, process_index=jax.process_index(),
                      process_count=jax.process_count(), writer=distributed.is_writer())
        if args.exit_early is not None:
            print(f"process {args.process_id}: exiting early with {args.exit_early}",
                  flush=True)
            if args.hard_exit:
                os._exit(args.exit_early)
            sys.exit(args.exit_early)
    start = time.perf_counter()
    if args.mode in ("local", "distributed"):
        from jaxtune import distributed

        on_segment = None
        if args.kill_after_segments is not None:
            import signal

            done = []

            def on_segment(report):
                done.append(report)
                if len(done) >= args.kill_after_segments:
                    print(f"process {jax.process_index()}: killed after {len(done)} "
                          "segment(s)", flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)

        if args.optuna_storage:
            results = optuna_tune(args.optuna_storage)
            report["rows"] = [{k: v for k, v in row.to_dict().items() if k != "wall_time_s"}
                              for row in results]
        else:
            results, params = sweep(on_segment=on_segment)
            report.update(summarize((results, params)))
        if args.save and distributed.is_writer():
            results.save(args.save)
    elif args.mode == "devices":
        runs = {}
        for name in args.runs.split(","):
            layout, count = name.split("_")
            pad_to = PER_DEVICE * int(count) if layout == "fixed" else None
            per_device = PINNED_PER_DEVICE if layout == "pinned" else None
            cap = 2 * int(count) + 1 if layout == "chunked" else None
            member_loop = "vmap" if layout in ("pinned", "batched") else None
            runs[name] = summarize(sweep(jax.devices()[: int(count)], pad_to=pad_to,
                                         members_per_device=per_device,
                                         max_members_per_chunk=cap, member_loop=member_loop))
        report["runs"] = runs
    else:
        report["runs"] = {
            mode: summarize(batch_mode_probe(jax.devices()[:2], mode))
            for mode in ("independent", "shared")
        }
    report["train_s"] = time.perf_counter() - start
    report["local_devices"] = jax.local_device_count()
    report["global_devices"] = jax.device_count()
    report["xla_flags"] = os.environ["XLA_FLAGS"]
    with open(args.out, "w") as file:
        json.dump(report, file)
    print(f"wrote {args.out} in {report['train_s']:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
