"""Overlap (issue 14): later static groups' programs compile in threads while the first trains.

The reference is the same sweep with the overlap off (``JAXTUNE_OVERLAP=0``): every program then
compiles in the run's own thread when its chunk first calls it. With the overlap on, results
must be bit-identical, the compile counts the same, and each later group's programs compiled
once, in a compiling thread, and never again when the chunk calls them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxtune as jt
from jaxtune import compile_cache, engine
from jaxtune.engine import precompile

WIDTHS = (4, 8, 12)  # three static groups
KWARGS = dict(num_steps=20, batch_size=8, steps_per_segment=10, return_params=True)
PROGRAMS = ("jit(_init_over_members)", "jit(run_segment)", "jit(evaluate_population)")


@pytest.fixture(scope="module")
def wine_split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))


def _configs(widths=WIDTHS, batch_sizes=()):
    """Two members per width; then, per batch size, a group of the first width with that
    batch size, which shares the first group's set-up and evaluation programs."""
    base = [{"learning_rate": lr, "optimizer": "adam", "width": w, "depth": 1}
            for w in widths for lr in (0.003, 0.01)]
    return base + [{**config, "batch_size": b} for b in batch_sizes for config in base[:2]]


class _CompileThreads:
    """Records ``(program name, thread name)`` of every XLA compile while active."""

    def __init__(self):
        self.events = []

    def _on_duration(self, event, duration_s, **kwargs):
        if event == compile_cache.COMPILE_EVENT:
            self.events.append((str(kwargs.get("fun_name")), threading.current_thread().name))

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._on_duration)

    def count(self, name, background=None):
        return sum(1 for fun, thread in self.events if fun == name and (
            background is None or thread.startswith("jaxtune-compile") == background))


class _RecordingPrograms(precompile.Programs):
    """The runner's Programs, kept for the test to read what was prepared and used."""

    made: ClassVar[list[precompile.Programs]] = []

    def __init__(self, threads=0):
        super().__init__(threads)
        _RecordingPrograms.made.append(self)


def _sweep(monkeypatch, split, overlap, configs):
    """The sweep from fresh programs (no cache of an earlier run), overlap on or off."""
    monkeypatch.setenv(precompile.ENV_SWITCH, "1" if overlap else "0")
    monkeypatch.setattr(precompile, "Programs", _RecordingPrograms)
    _RecordingPrograms.made.clear()
    jax.clear_caches()
    task = jt.classification_task("mlp", num_classes=3, input_shape=(13,))
    with _CompileThreads() as threads:
        results, params = engine.train(task, configs, split, **KWARGS)
    (programs,) = _RecordingPrograms.made
    return results, params, threads, programs


def _assert_same_rows(a, b):
    assert len(a.rows) == len(b.rows)
    for x, y in zip(a.rows, b.rows, strict=True):
        assert (x.member_id, x.config, x.status, x.static_group) == (
            y.member_id, y.config, y.status, y.static_group)
        assert x.metrics == y.metrics  # exact floats
        assert x.curves == y.curves and x.curve_steps == y.curve_steps


def test_overlap_gives_the_sequential_results_and_compile_counts(monkeypatch, wine_split):
    # Three widths, and the first width again with another batch size: a fourth group whose
    # set-up and evaluation programs are the first group's (compiled once, by its jit).
    configs = _configs(batch_sizes=(16,))
    off, off_params, off_threads, off_programs = _sweep(monkeypatch, wine_split, False, configs)
    on, on_params, on_threads, on_programs = _sweep(monkeypatch, wine_split, True, configs)

    # Bit-identical members: metrics, curves and parameters.
    _assert_same_rows(on, off)
    for a, b in zip(on_params, off_params, strict=True):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)

    # The same compile counts, one segment per group.
    for key in ("num_compilations", "num_segment_compilations"):
        assert on.metadata[key] == off.metadata[key], key
    assert on.metadata["num_static_groups"] == on.metadata["num_segment_compilations"] == 4

    # Off: nothing prepared, every compile in the run's thread.
    assert off_programs.num_prepared == 0 and off_programs.num_used == 0
    assert all(not thread.startswith("jaxtune-compile") for _, thread in off_threads.events)
    # On: the later groups' programs compiled once each in a compiling thread, the first
    # group's in the run's thread, and none compiled again when its chunk called it.
    segment, *setup_and_evaluation = PROGRAMS[1], PROGRAMS[0], PROGRAMS[2]
    assert on_threads.count(segment) == 4 and on_threads.count(segment, background=True) == 3
    for name in setup_and_evaluation:  # the fourth group's are the first's
        assert on_threads.count(name) == 3, name
        assert on_threads.count(name, background=True) == 2, name
    assert on_programs.num_prepared == 3 + 3 + 1
    # Used: the set-up, both segments and the test evaluation of the second and third
    # groups; the fourth group's two segments (its set-up and evaluation are the jit's).
    assert on_programs.num_used == 4 + 4 + 2


def test_one_static_group_prepares_nothing(monkeypatch, wine_split):
    results, _, threads, programs = _sweep(monkeypatch, wine_split, overlap=True,
                                           configs=_configs(widths=(6,)))
    assert results.metadata["num_static_groups"] == 1
    assert programs.num_prepared == 0
    assert all(not thread.startswith("jaxtune-compile") for _, thread in threads.events)


def test_switch_and_threads_from_the_environment(monkeypatch, wine_split):
    threads = precompile.overlap_threads
    env_on, env_off = {precompile.ENV_SWITCH: "1"}, {precompile.ENV_SWITCH: "0"}
    for word in ("0", "off", "False", " no "):
        assert threads("gpu", {precompile.ENV_SWITCH: word}) == 0
    for word in ("1", "on", "TRUE", "yes"):
        assert threads("cpu", {precompile.ENV_SWITCH: word}) == precompile.DEFAULT_THREADS
    assert threads("cpu", {**env_on, precompile.ENV_THREADS: "3"}) == 3
    # Auto (unset): on with accelerators, and on CPU only with enough cores to spare.
    assert threads("gpu", {}) == threads("tpu", {"JAXTUNE_OVERLAP": "auto"}) == 2
    monkeypatch.setattr(precompile, "usable_cores", lambda: precompile.MIN_CPU_CORES - 1)
    assert threads("cpu", {}) == 0 and threads("gpu", {}) == 2
    monkeypatch.setattr(precompile, "usable_cores", lambda: precompile.MIN_CPU_CORES)
    assert threads("cpu", {}) == 2
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match=precompile.ENV_THREADS):
            threads("cpu", {**env_off, precompile.ENV_THREADS: bad})
    with pytest.raises(ValueError, match="JAXTUNE_OVERLAP='maybe': must be 1/on, 0/off or auto"):
        threads("cpu", {precompile.ENV_SWITCH: "maybe"})
    # A bad value stops the run before anything compiles.
    monkeypatch.setenv(precompile.ENV_THREADS, "many")
    task = jt.classification_task("mlp", num_classes=3, input_shape=(13,))
    with (compile_cache.CompileCounter() as counter,
          pytest.raises(ValueError, match="JAXTUNE_OVERLAP_THREADS='many'")):
        engine.train(task, _configs(), wine_split, num_steps=5, batch_size=8)
    assert counter.count == 0


def _toy():
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("population",))
    population = NamedSharding(mesh, PartitionSpec("population"))
    replicated = NamedSharding(mesh, PartitionSpec())

    def f(scale, sharding, x, y):
        return jax.lax.with_sharding_constraint(jnp.tanh(x * scale) @ x + y, sharding)

    jitted = jax.jit(f, static_argnums=(0, 1))
    x = jax.make_array_from_callback((4, 4), population,
                                     lambda i: np.arange(16, dtype=np.float32).reshape(4, 4)[i])
    return jitted, population, replicated, x


def test_signature_is_the_program_the_jit_would_run():
    jitted, population, replicated, x = _toy()
    y = jnp.float32(1.0)  # uncommitted
    key = precompile.signature(jitted, (2.0, population, x, y))
    abstract = jax.ShapeDtypeStruct((4, 4), jnp.float32, sharding=population)
    assert precompile.signature(jitted, (2.0, population, abstract, y)) == key
    # On one device the population axis and replicated are the same placement.
    x_replicated = jax.device_put(x, replicated)
    assert precompile.signature(jitted, (2.0, population, x_replicated, y)) == key
    different = [
        (3.0, population, x, y),  # a static value
        (2.0, population, x[:2], y),  # a shape
        (2.0, population, x.astype(jnp.bfloat16), y),  # a dtype
        (2.0, population, x, jax.device_put(y, replicated)),  # committed, not uncommitted
        (2.0, population, x, 1.0),  # a Python value
    ]
    for args in different:
        assert precompile.signature(jitted, args) != key, args
    assert precompile.signature(jax.jit(lambda *a: a[2], static_argnums=(0, 1)),
                                (2.0, population, x, y)) != key


def test_prepared_program_is_called_and_compiles_once():
    jitted, population, _, x = _toy()
    y = jnp.float32(0.5)
    expected = jitted(2.5, population, x, y)
    jax.clear_caches()
    abstract = jax.ShapeDtypeStruct((4, 4), jnp.float32, sharding=population)
    with compile_cache.CompileCounter() as counter, precompile.Programs(1) as programs:
        programs.prepare([precompile.ProgramCall(jitted, (2.5, population, abstract, y))])
        first = programs.call(jitted, 2.5, population, x, y)
        second = programs.call(jitted, 2.5, population, x, y + 1)  # new values, same program
        other = programs.call(jitted, 3.0, population, x, y)  # not prepared: the jit's
        assert counter.by_function.get("jit(f)") == 2  # the prepared one, and scale 3.0
    assert programs.num_prepared == 1 and programs.num_used == 2
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(second, jitted(2.5, population, x, y + 1))
    np.testing.assert_array_equal(other, jitted(3.0, population, x, y))


def test_a_context_of_the_callers_thread_leaves_the_call_to_the_jit():
    # A compiling thread does not see the caller's context managers (here the matmul
    # precision): it would build another program, so it builds none and the jit runs.
    jitted, population, _, x = _toy()
    y = jnp.float32(0.5)
    abstract = jax.ShapeDtypeStruct((4, 4), jnp.float32, sharding=population)
    with jax.default_matmul_precision("highest"):
        expected = jitted(2.5, population, x, y)
        jax.clear_caches()
        with precompile.Programs(1) as programs:
            programs.prepare([precompile.ProgramCall(jitted, (2.5, population, abstract, y))])
            got = programs.call(jitted, 2.5, population, x, y)
    assert programs.num_prepared == 1 and programs.num_used == 0
    np.testing.assert_array_equal(got, expected)


_TWO_DEVICE_SCRIPT = """
import json, os
import jax
jax.config.update("jax_num_cpu_devices", 2)
import numpy as np
import jaxtune as jt
from jaxtune.engine import precompile
split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
made = []
class Recording(precompile.Programs):
    def __init__(self, threads=0):
        super().__init__(threads)
        made.append(self)
precompile.Programs = Recording
out = {}
for overlap in ("0", "1"):
    os.environ["JAXTUNE_OVERLAP"] = overlap
    jax.clear_caches()
    task = jt.classification_task("mlp", num_classes=3, input_shape=(13,))
    configs = [{"learning_rate": lr, "optimizer": "adam", "width": w, "depth": 1}
               for w in (4, 8) for lr in (0.003, 0.01, 0.03)]
    results, params = jt.train(task, configs, split, num_steps=20, steps_per_segment=10,
                               batch_size=8, return_params=True)
    assert results.metadata["num_devices"] == 2, results.metadata
    out[overlap] = {
        "rows": [[r.metrics, r.curves] for r in results.rows],
        "params": [np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(p)]).tolist()
                   for p in params],
        "counts": [results.metadata["num_compilations"],
                   results.metadata["num_segment_compilations"]],
        "used": made[-1].num_used,
    }
print("RESULT", json.dumps(out))
"""


def test_two_devices_overlap_gives_the_sequential_results():
    proc = subprocess.run([sys.executable, "-c", _TWO_DEVICE_SCRIPT], capture_output=True,
                          text=True, timeout=300, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    off, on = out["0"], out["1"]
    assert on["rows"] == off["rows"] and on["params"] == off["params"]
    assert on["counts"] == off["counts"] and on["counts"][1] == 2
    assert off["used"] == 0
    assert on["used"] == 1 + 2 + 1  # the second group's set-up, two segments, test evaluation
