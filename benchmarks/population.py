"""Population benchmark: jaxtune against the ways people run the same sweep today.

Workload (issue 2): digits, MLP 64-128-128-10, batch 128, 500 AdamW steps, learning rate
log-uniform [1e-4, 1e-1], weight decay log-uniform [1e-6, 1e-2], P = 64 members.

  (a) jaxtune's engine (its defaults: one CPU device per core, population sharded);
  (a'') the same MLP written as a user's own jaxtune.Step (its own value_and_grad and
      optax.adamw step), run by the same engine: the cost of the Step contract against the
      built-in task (issue 13: at most 5% slower);
  (b) a hand-written jit(vmap(lax.scan(step))) of the same training, on the same devices;
  (c) one jitted lax.scan training called once per config (sequential best case: calls are
      dispatched asynchronously round-robin over the same devices);
  (d) the common Optuna pattern (RandomSampler, optax.adamw(lr) from Python floats, a jitted step
      in a Python loop), P = 16, if optuna is installed;
  (e) scikit-learn's MLPClassifier, same hyperparameters and about the same number of gradient
      samples, joblib n_jobs=2, if scikit-learn is installed;
  (f) the machine's fp32 matmul peak in JAX: one 1024^3 product per device, every device at
      once (the devices jaxtune's population is sharded over).

All JAX timings are warm (compiled once before timing), medians of --repeats runs of (a), (a'),
(b) and (c) timed in turn within each repeat; (d) includes its own compilations because they are
what that pattern costs. Figures are per-trial seconds and
ratios measured side by side in this one run. The last line is machine-readable.

    python benchmarks/population.py            # the full workload
    python benchmarks/population.py --quick    # smaller, under 2 minutes
    python benchmarks/population.py --profile  # where a step's time goes, op by op
    python benchmarks/population.py --step-only  # (a) against (a'') only
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

# One XLA CPU device per core, before JAX starts (jaxtune's CLI does the same).
os.environ.setdefault("JAXTUNE_CPU_DEVICES", str(os.cpu_count() or 1))

import jax

jax.config.update("jax_num_cpu_devices", int(os.environ["JAXTUNE_CPU_DEVICES"]))

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

import jaxtune as jt  # noqa: E402

HIDDEN = (128, 128)


def _sample_configs(num, seed):
    rng = np.random.default_rng(seed)
    lrs = np.exp(rng.uniform(np.log(1e-4), np.log(1e-1), num))
    wds = np.exp(rng.uniform(np.log(1e-6), np.log(1e-2), num))
    return [
        {"learning_rate": float(lr), "weight_decay": float(wd), "optimizer": "adamw"}
        for lr, wd in zip(lrs, wds, strict=True)
    ]


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _Mlp(nn.Module):
    @nn.compact
    def __call__(self, x, *, dropout_rate=0.0, deterministic=True):  # no dropout in this workload
        for width in HIDDEN:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)


def _handwritten_train(num_steps, batch_size):
    """A plain jit-able training of one member: what a careful user writes by hand."""
    model = _Mlp()

    def train_one(key, lr, wd, x, y):
        init_key, data_key = jax.random.split(key)
        params = model.init(init_key, x[:1])["params"]
        opt = optax.adamw(lr, weight_decay=wd)
        opt_state = opt.init(params)

        def loss_fn(p, xb, yb):
            logits = model.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        def step(carry, t):
            p, s = carry
            idx = jax.random.randint(jax.random.fold_in(data_key, t), (batch_size,), 0,
                                     x.shape[0])
            grads = jax.grad(loss_fn)(p, x[idx], y[idx])
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        (params, _), _ = jax.lax.scan(step, (params, opt_state), jnp.arange(num_steps))
        logits = model.apply({"params": params}, x)
        return params, jnp.mean(jnp.argmax(logits, -1) == y)

    return train_one


def user_step():
    """The digits MLP as a user's own Step: a hand-written gradient step with optax.adamw."""
    model = _Mlp()

    def adamw(hp):
        return optax.adamw(hp["learning_rate"], weight_decay=hp["weight_decay"])

    def init(key, hp):
        params = model.init(key, jnp.zeros((1, 64)))["params"]
        return params, adamw(hp).init(params)

    def losses(params, data):
        logits = model.apply({"params": params}, data["x"])
        return logits, optax.softmax_cross_entropy_with_integer_labels(logits, data["y"]).mean()

    def step(carry, batch, key, hp):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(lambda p: losses(p, batch)[1])(params)
        updates, opt_state = adamw(hp).update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"loss": loss}

    def evaluate(carry, data, hp):
        logits, loss = losses(carry[0], data)
        return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == data["y"]), "loss": loss}

    return jt.Step(init, step, evaluate, name="digits-mlp-step",
                   metric_modes={"accuracy": "max", "loss": "min"}, params=lambda c: c[0])


def _interleaved_medians(runners, repeats):
    """Median seconds of each warm runner, timed in turn within every repeat (A B C A B C ...),
    so a slow spell of the machine lands on all of them rather than on one."""
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_jaxtune(task, configs, split, num_steps, batch_size, batch_mode="independent"):
    """Returns a warm runner of jaxtune's sweep, the first call's seconds and its Results."""

    def run():
        return jt.train(task, configs, split, num_steps=num_steps, batch_size=batch_size,
                        steps_per_segment=num_steps // 5, evaluate_test=False,
                        batch_mode=batch_mode)

    start = time.perf_counter()
    first = run()
    first_s = time.perf_counter() - start
    return run, first_s, first


def bench_vmap(configs, split, num_steps, batch_size):
    """Returns a warm runner of the hand-written jit(vmap(scan)) population."""
    devices = jax.devices()
    mesh = Mesh(np.asarray(devices), ("p",))
    sharded = NamedSharding(mesh, PartitionSpec("p"))
    replicated = NamedSharding(mesh, PartitionSpec())
    num = len(configs)
    padded = -(-num // len(devices)) * len(devices)
    lr = np.asarray([c["learning_rate"] for c in configs] + [1e-3] * (padded - num), np.float32)
    wd = np.asarray([c["weight_decay"] for c in configs] + [0.0] * (padded - num), np.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), padded)
    lr, wd, keys = jax.device_put((lr, wd, keys), sharded)
    x, y = jax.device_put((split.x_train, split.y_train), replicated)
    fn = jax.jit(jax.vmap(_handwritten_train(num_steps, batch_size), in_axes=(0, 0, 0, None, None)))

    def run():
        return jax.block_until_ready(fn(keys, lr, wd, x, y))

    run()
    run.lowered = lambda: fn.lower(keys, lr, wd, x, y)
    return run


def bench_sequential(configs, split, num_steps, batch_size):
    """Returns a warm runner of one jitted training per config, dispatched round-robin."""
    devices = jax.devices()
    fn = jax.jit(_handwritten_train(num_steps, batch_size))
    data = [jax.device_put((split.x_train, split.y_train), d) for d in devices]
    args = []
    for i, c in enumerate(configs):
        d = devices[i % len(devices)]
        args.append(jax.device_put(
            (jax.random.PRNGKey(i), np.float32(c["learning_rate"]), np.float32(c["weight_decay"])),
            d) + data[i % len(devices)])

    def run():
        outs = [fn(*a) for a in args]  # asynchronous dispatch overlaps devices
        return jax.block_until_ready(outs)

    run()
    return run


def bench_optuna(configs, split, num_steps, batch_size):
    try:
        import optuna
    except ImportError:
        return float("nan")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model = _Mlp()
    x = jnp.asarray(split.x_train)
    y = jnp.asarray(split.y_train)

    def objective(trial):
        lr = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        wd = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        opt = optax.adamw(lr, weight_decay=wd)  # Python floats: baked into each trial's program
        params = model.init(jax.random.PRNGKey(trial.number), x[:1])["params"]
        opt_state = opt.init(params)

        @jax.jit
        def step(p, s, key):
            idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])

            def loss_fn(p):
                logits = model.apply({"params": p}, x[idx])
                return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

            grads = jax.grad(loss_fn)(p)
            updates, s = opt.update(grads, s, p)
            return optax.apply_updates(p, updates), s

        key = jax.random.PRNGKey(1000 + trial.number)
        for t in range(num_steps):
            params, opt_state = step(params, opt_state, jax.random.fold_in(key, t))
        logits = model.apply({"params": params}, x)
        return float(jnp.mean(jnp.argmax(logits, -1) == y))

    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    start = time.perf_counter()
    study.optimize(objective, n_trials=len(configs))
    return (time.perf_counter() - start) / len(configs)


def bench_sklearn(configs, split, num_steps, batch_size):
    try:
        from joblib import Parallel, delayed
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return float("nan")
    import warnings

    epochs = max(1, round(num_steps * batch_size / len(split.y_train)))

    def fit(c):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = MLPClassifier(hidden_layer_sizes=HIDDEN, solver="adam",
                                learning_rate_init=c["learning_rate"], alpha=c["weight_decay"],
                                batch_size=batch_size, max_iter=epochs, tol=0.0,
                                n_iter_no_change=10**6, random_state=0)
            clf.fit(split.x_train, split.y_train)
        return clf.score(split.x_valid, split.y_valid)

    start = time.perf_counter()
    Parallel(n_jobs=2)(delayed(fit)(c) for c in configs)
    return (time.perf_counter() - start) / len(configs)


def bench_matmul_peak(size=1024, repeats=20, devices=None):
    """fp32 matmul FLOP/s of ``devices`` working at once: one ``size^3`` product per device.

    The operand ``[num_devices, size, size]`` is sharded one slice per device and the batched
    product runs as one program, so every device multiplies at the same time: the peak of the
    same devices jaxtune's population is sharded over (a single device's peak would flatter
    ``frac_peak`` when the population uses several).
    """
    devices = list(devices or jax.devices())
    mesh = Mesh(np.asarray(devices), ("d",))
    host = np.random.default_rng(0).standard_normal((len(devices), size, size), np.float32)
    a = jax.device_put(host, NamedSharding(mesh, PartitionSpec("d")))
    f = jax.jit(lambda a: jnp.einsum("dij,djk->dik", a, a))
    jax.block_until_ready(f(a))
    seconds = _median_time(lambda: jax.block_until_ready(f(a)), repeats)
    return 2 * size**3 * len(devices) / seconds


def training_flops(num_members, num_steps, batch_size, input_dim=64):
    """FLOPs of forward + backward of the MLP (3x the forward matmuls)."""
    widths = (input_dim, *HIDDEN, 10)
    forward = sum(2 * batch_size * a * b for a, b in itertools.pairwise(widths))
    return 3 * forward * num_steps * num_members


def max_member_diff(task, configs, split, num_steps, batch_size):
    """Largest |member - solo run| over parameters, for the first 4 members."""
    _, params = jt.train(task, configs, split, num_steps=num_steps, batch_size=batch_size,
                         steps_per_segment=num_steps // 5, evaluate_test=False,
                         return_params=True)
    worst = 0.0
    for i in range(min(4, len(configs))):
        _, solo = jt.train(task, [configs[i]], split, num_steps=num_steps, batch_size=batch_size,
                           steps_per_segment=num_steps // 5, evaluate_test=False,
                           return_params=True)
        for a, b in zip(jax.tree_util.tree_leaves(params[i]), jax.tree_util.tree_leaves(solo[0]),
                        strict=True):
            worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def _hlo_ops(hlo_text):
    """``{instruction: (kind, op_name)}`` of a compiled HLO module's text; ``kind`` is
    ``"matmul"`` for dots and fusions around a dot, ``"copy"``, ``"loop"`` (while: the PRNG's
    loops) or ``"elementwise"`` for the other fusions."""
    import re

    computations, current = {}, None
    for line in hlo_text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            computations[current] = []
        elif current is not None:
            computations[current].append(line)
    has_dot = {name: any(" dot(" in line for line in body) for name, body in computations.items()}
    ops = {}
    for body in computations.values():
        for line in body:
            match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w\-]+)\(", line)
            if not match:
                continue
            name, opcode = match.groups()
            calls = re.search(r"calls=%?([\w.\-]+)", line)
            op_name = re.search(r'op_name="([^"]*)"', line)
            if opcode == "dot" or (calls and has_dot.get(calls.group(1))):
                kind = "matmul"
            elif opcode in ("copy", "while"):
                kind = {"copy": "copy", "while": "loop"}[opcode]
            else:
                kind = "elementwise"
            ops[name] = (kind, op_name.group(1).split("/", 1)[-1] if op_name else "")
    return ops


def profile_ops(run, hlo_text, num_steps, top=8):
    """Device time of one warm ``run()`` per compiled op (XLA:CPU thunk events of a
    ``jax.profiler`` trace), as milliseconds per step summed over devices, by kind and top ops."""
    import collections
    import glob
    import gzip
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        jax.profiler.start_trace(directory, create_perfetto_trace=True)
        run()
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{directory}/**/perfetto_trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    ops = _hlo_ops(hlo_text)
    module = hlo_text.split()[1].rstrip(",")  # "HloModule jit__segment, ..."
    per_op = collections.Counter()
    for event in events:
        args = event.get("args", {})
        name = args.get("hlo_op")
        if event.get("ph") == "X" and args.get("hlo_module") == module and name in ops:
            per_op[name] += event["dur"] / 1e3 / num_steps
    by_kind = collections.Counter()
    for name, ms in per_op.items():
        by_kind[ops[name][0]] += ms
    total = sum(by_kind.values())
    print(f"    {total:.2f} ms of device time per step (summed over devices): " + ", ".join(
        f"{kind} {ms / total:.0%}" for kind, ms in by_kind.most_common()))
    for name, ms in per_op.most_common(top):
        print(f"    {ms:6.3f} ms  {ops[name][0]:11s} {ops[name][1][-90:]}")


def profile(task, configs, split, num_steps, batch_size):
    """Where a step's time goes in (a) and (b), op by op (``--profile``)."""
    from jaxtune.engine import population

    runner_a, _, _ = bench_jaxtune(task, configs, split, num_steps, batch_size)
    seen = {}
    segment_jit = population.segment_jit

    def spy(*args):
        seen["args"] = args
        return segment_jit(*args)

    population.segment_jit = spy
    try:
        runner_a()
    finally:
        population.segment_jit = segment_jit
    print("(a) jaxtune, one segment program:")
    profile_ops(runner_a, segment_jit.lower(*seen["args"]).compile().as_text(), num_steps)
    runner_b = bench_vmap(configs, split, num_steps, batch_size)
    print("(b) hand-written vmap:")
    profile_ops(runner_b, runner_b.lowered().compile().as_text(), num_steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run, under 2 minutes")
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-only", action="store_true",
                        help="time only (a) against the same MLP as a user Step (a'')")
    parser.add_argument("--profile", action="store_true",
                        help="print where a step's device time goes in (a) and (b), op by op")
    args = parser.parse_args(argv)
    num_members = args.members or (32 if args.quick else 64)
    num_steps = args.steps or (200 if args.quick else 500)
    optuna_trials = 4 if args.quick else 16
    batch_size = 128
    repeats = 2 if args.quick else args.repeats

    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))
    task = jt.classification_task(lambda hp: _Mlp(), num_classes=10, input_shape=(64,))
    configs = _sample_configs(num_members, seed=0)
    print(f"devices: {len(jax.devices())} x {jax.devices()[0].platform}; P={num_members}, "
          f"{num_steps} AdamW steps, batch {batch_size}", flush=True)
    if args.profile:
        profile(task, configs, split, num_steps, batch_size)
        return 0

    run_a, a_first_s, first = bench_jaxtune(task, configs, split, num_steps, batch_size)
    compiles = first.metadata["num_segment_compilations"]
    # The Step reads no "optimizer" name: it is its own adamw.
    step_configs = [{k: v for k, v in c.items() if k != "optimizer"} for c in configs]
    run_step = bench_jaxtune(user_step(), step_configs, split, num_steps, batch_size)[0]
    if args.step_only:
        medians = _interleaved_medians({"a": run_a, "a_step": run_step}, repeats)
        print(f"(a) jaxtune        {medians['a']:8.3f} s warm; (a'') the MLP as a user Step "
              f"{medians['a_step']:8.3f} s warm")
        print(f"step_overhead={medians['a_step'] / medians['a']:.3f}")
        return 0
    runners = {
        "a": run_a,
        "a_step": run_step,
        "a_shared": bench_jaxtune(task, configs, split, num_steps, batch_size,
                                  batch_mode="shared")[0],
        "b": bench_vmap(configs, split, num_steps, batch_size),
        "c": bench_sequential(configs, split, num_steps, batch_size),
    }
    medians = _interleaved_medians(runners, repeats)
    a_s, shared_s, b_s, c_s = (medians[k] for k in ("a", "a_shared", "b", "c"))
    print(f"(a) jaxtune        {a_s:8.3f} s warm ({a_first_s:.3f} s with compilation), "
          f"{a_s / num_members:.4f} s/trial; "
          f"{first.metadata['num_guarded_segments']} guarded segments", flush=True)
    print(f"(a') jaxtune, one minibatch shared by all members {shared_s:8.3f} s warm "
          f"({a_s / shared_s:.2f}x the independent-minibatch speed)", flush=True)
    step_s = medians["a_step"]
    print(f"(a'') the MLP as a user Step {step_s:8.3f} s warm ({step_s / a_s:.3f}x the built-in "
          "task's time)", flush=True)
    print(f"(b) hand vmap      {b_s:8.3f} s, {b_s / num_members:.4f} s/trial", flush=True)
    print(f"(c) sequential     {c_s:8.3f} s, {c_s / num_members:.4f} s/trial", flush=True)
    d_trial = bench_optuna(configs[:optuna_trials], split, num_steps, batch_size)
    print(f"(d) optuna pattern {d_trial:8.4f} s/trial over {optuna_trials} trials", flush=True)
    e_trial = bench_sklearn(configs[: max(8, num_members // 4)], split, num_steps, batch_size)
    print(f"(e) sklearn MLP    {e_trial:8.4f} s/trial (n_jobs=2)", flush=True)
    peak = bench_matmul_peak()
    one_device_peak = bench_matmul_peak(devices=jax.devices()[:1])
    flops = training_flops(num_members, num_steps, batch_size)
    achieved = flops / a_s
    print(f"(f) matmul peak    {peak / 1e9:8.1f} GFLOP/s on all {len(jax.devices())} devices at "
          f"once ({one_device_peak / 1e9:.1f} on one); jaxtune reaches "
          f"{achieved / 1e9:.1f} GFLOP/s", flush=True)
    diff = max_member_diff(task, configs[:16], split, num_steps, batch_size)

    per_trial = a_s / num_members
    print(
        f"per_trial_s={per_trial:.5f} overhead_vs_vmap={a_s / b_s:.3f} "
        f"speedup_vs_sequential={c_s / a_s:.2f} speedup_vs_optuna={d_trial / per_trial:.2f} "
        f"speedup_vs_sklearn={e_trial / per_trial:.2f} frac_peak={achieved / peak:.3f} "
        f"compiles={compiles} max_member_diff={diff:.3g} step_overhead={step_s / a_s:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
