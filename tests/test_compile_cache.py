"""The persistent compilation cache: on by default, shared safely, never in the way."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxtune import compile_cache

ROOT = Path(__file__).resolve().parents[1]

# A small sweep in a fresh process; prints the cache status, the compile counts and the rows.
SWEEP = textwrap.dedent("""
    import json, jaxtune as jt
    from jaxtune import compile_cache, engine
    ds = jt.load_dataset("breast_cancer")
    split = jt.train_valid_test_split(ds)
    task = jt.classification_task("linear", num_classes=2, input_shape=split.x_train.shape[1:])
    configs = [{"learning_rate": 0.1}, {"learning_rate": 0.01}]
    out = engine.run(task, configs, split, engine.EngineOptions(num_steps=20, steps_per_segment=10))
    status = compile_cache.compilation_cache_status()
    print(json.dumps({"status": list(status), "metadata": {
        k: out.results.metadata[k] for k in ("num_compilations", "num_segment_compilations")},
        "metrics": [row.metrics for row in out.results]}))
""")

STATUS = textwrap.dedent("""
    import json
    from jaxtune import compile_cache
    print(json.dumps(list(compile_cache.ensure_compilation_cache())))
""")


def _run(code: str, env: dict[str, str]) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("JAXTUNE_", "JAX_COMP"))}
    full.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **env)
    return subprocess.Popen([sys.executable, "-c", code], env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict | list:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_default_directory_order(tmp_path):
    home = Path("~").expanduser()
    assert compile_cache.default_cache_directory({}) == home / ".cache" / "jaxtune" / "xla"
    xdg = {"XDG_CACHE_HOME": str(tmp_path)}
    assert compile_cache.default_cache_directory(xdg) == tmp_path / "jaxtune" / "xla"
    both = {**xdg, compile_cache.ENV_DIR: str(tmp_path / "mine")}
    assert compile_cache.default_cache_directory(both) == tmp_path / "mine"


def test_opt_out_leaves_the_cache_off():
    # This process runs with JAXTUNE_COMPILATION_CACHE=0 (tests/conftest.py).
    for word in ("0", "off", "False", "no"):
        status = compile_cache.ensure_compilation_cache({compile_cache.ENV_SWITCH: word})
        assert status == (False, None, f"turned off by {compile_cache.ENV_SWITCH}")
    assert not compile_cache.compilation_cache_status().enabled


def test_explicit_enable_refuses_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"not writable.*JAXTUNE_COMPILATION_CACHE=0"):
        compile_cache.enable_compilation_cache(blocker / "xla")
    with pytest.raises(ValueError, match="max_bytes"):
        compile_cache.enable_compilation_cache(tmp_path, max_bytes=0)
    assert not compile_cache.compilation_cache_status().enabled


def test_a_second_process_loads_instead_of_compiling(tmp_path):
    env = {compile_cache.ENV_DIR: str(tmp_path / "cache")}
    cold = _result(_run(SWEEP, env))
    assert cold["status"][:2] == [True, str(tmp_path / "cache")]
    assert cold["metadata"]["num_segment_compilations"] == 1
    assert any((tmp_path / "cache").iterdir())
    warm = _result(_run(SWEEP, env))
    assert warm["metadata"]["num_segment_compilations"] == 0  # loaded from the cache
    assert warm["metadata"]["num_compilations"] < cold["metadata"]["num_compilations"]
    assert warm["metrics"] == cold["metrics"]  # the loaded program computes the same


def test_processes_share_one_empty_folder(tmp_path):
    env = {compile_cache.ENV_DIR: str(tmp_path / "shared")}
    first, second = _run(SWEEP, env), _run(SWEEP, env)
    results = [_result(first), _result(second)]
    assert results[0]["metrics"] == results[1]["metrics"]
    assert all(r["status"][0] for r in results)
    third = _result(_run(SWEEP, env))  # the folder the two wrote at once is sound
    assert third["metadata"]["num_segment_compilations"] == 0
    assert third["metrics"] == results[0]["metrics"]


def test_unwritable_folder_and_a_folder_set_for_jax(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    off = _result(_run(STATUS, {compile_cache.ENV_DIR: str(blocker / "xla")}))
    assert off[0] is False and "not writable" in off[2]
    theirs = str(tmp_path / "theirs")
    kept = _result(_run(STATUS, {"JAX_COMPILATION_CACHE_DIR": theirs,
                                 compile_cache.ENV_DIR: str(tmp_path / "ours")}))
    assert kept == [True, theirs, "jax_compilation_cache_dir is set"]
    assert not (tmp_path / "ours").exists()
