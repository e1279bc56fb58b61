"""Several processes via jax.distributed: two local processes of 2 CPU devices each.

Each test launches ``tests/_distributed_worker.py`` (or the ``jaxtune`` console command) as
separate processes (the cluster and the device count must be fixed before JAX starts), joined
through a coordinator on 127.0.0.1 and gloo collectives. Every launch has a deadline: a hung peer
fails the test, it never hangs CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

import jaxtune as jt
from jaxtune import cli, distributed

WORKER = Path(__file__).with_name("_distributed_worker.py")
DEADLINE_S = 240  # a hang guard, not a speed check: CI machines are shared and slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(args, log: Path, env=None, command=None) -> subprocess.Popen:
    environment = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
                 distributed.ENV_PROCESS_ID, distributed.ENV_LOCAL_DEVICE_IDS):
        if name not in (env or {}):
            environment.pop(name, None)
    command = command if command is not None else [sys.executable, str(WORKER)]
    with open(log, "w") as out:  # the child keeps its own descriptor
        return subprocess.Popen([*command, *args], stdout=out, stderr=subprocess.STDOUT,
                                env=environment)


def _wait_all(processes, logs, deadline_s=DEADLINE_S):
    """Return codes and seconds taken; kills every process if any outlives the deadline."""
    start = time.monotonic()
    codes = []
    try:
        for process in processes:
            remaining = max(deadline_s - (time.monotonic() - start), 0.1)
            codes.append(process.wait(timeout=remaining))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
            process.wait()
        tails = "\n".join(f"--- {log}\n{_tail(log)}" for log in logs)
        pytest.fail(f"processes still running after {deadline_s} s (a peer hung):\n{tails}")
    return codes, time.monotonic() - start


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(Path(log).read_text(errors="replace").splitlines()[-lines:])


def _cluster(tmp_path, port, process_id, extra=()):
    out = tmp_path / f"process{process_id}.json"
    log = tmp_path / f"process{process_id}.log"
    args = ["--mode", "distributed", "--devices", "2", "--out", str(out), *extra]
    if process_id == 0:  # process 0 from flags, process 1 from JAXTUNE_* variables
        args += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                 "--process-id", "0"]
        env = {}
    else:
        env = {distributed.ENV_COORDINATOR: f"127.0.0.1:{port}",
               distributed.ENV_NUM_PROCESSES: "2", distributed.ENV_PROCESS_ID: str(process_id)}
    return _launch(args, log, env), out, log


def test_two_processes_agree_with_one_process_of_four_devices(tmp_path):
    port = _free_port()
    save = tmp_path / "saved"
    launched = [_cluster(tmp_path, port, i, ["--save", str(save)]) for i in (0, 1)]
    codes, _ = _wait_all([p for p, _, _ in launched], [log for _, _, log in launched])
    for (_, _, log), code in zip(launched, codes, strict=True):
        assert code == 0, f"worker failed ({code}):\n{_tail(log)}"
    first, second = (json.loads(out.read_text()) for _, out, _ in launched)

    local_out, local_log = tmp_path / "local.json", tmp_path / "local.log"
    local = _launch(["--mode", "local", "--devices", "4", "--out", str(local_out)], local_log)
    (code,), _ = _wait_all([local], [local_log])
    assert code == 0, _tail(local_log)
    single = json.loads(local_out.read_text())

    assert [first["process_index"], second["process_index"]] == [0, 1]
    assert first["process_count"] == second["process_count"] == 2
    assert first["global_devices"] == 4 and first["local_devices"] == 2
    assert first["num_devices"] == single["num_devices"] == 4
    assert [first["writer"], second["writer"]] == [True, False]
    # 6 members on 4 devices: 2 padding slots, never in Results.
    assert [row["member_id"] for row in first["rows"]] == list(range(6))
    # Both processes hold every row, and the same bits.
    assert first["rows"] == second["rows"]
    assert first["params"] == second["params"]
    # The same global layout in one process gives the same bits too.
    assert first["rows"] == single["rows"]
    assert first["params"] == single["params"]
    # Only the writer saved, and what it saved is the sweep.
    saved = jt.Results.load(save)
    assert [row.member_id for row in saved] == list(range(6))
    assert saved[0].metrics == first["rows"][0]["metrics"]


def test_optuna_storage_is_written_once_by_two_processes(tmp_path):
    """Both processes run the same seeded proposals; the stored study gets each trial once,
    told once, from process 0, and holds what both processes' Results hold."""
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    port = _free_port()
    launched = [_cluster(tmp_path, port, i, ["--optuna-storage", storage]) for i in (0, 1)]
    codes, _ = _wait_all([p for p, _, _ in launched], [log for _, _, log in launched])
    for (_, _, log), code in zip(launched, codes, strict=True):
        assert code == 0, f"worker failed ({code}):\n{_tail(log)}"
    first, second = (json.loads(out.read_text()) for _, out, _ in launched)
    assert first["rows"] == second["rows"] and len(first["rows"]) == 12
    trials = optuna.load_study(study_name="two-processes", storage=storage).trials
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    rates = sorted(row["config"]["learning_rate"] for row in first["rows"])
    assert sorted(t.params["learning_rate"] for t in trials) == pytest.approx(rates)


#: What the survivor prints (JAX's coordination service, on stderr) when a peer is gone.
PEER_DIED = "This most likely indicates that another task died"


@pytest.mark.parametrize(
    ("dying", "how"),
    [pytest.param(1, ["--exit-early", "3"], id="sys.exit-before-training"),
     pytest.param(1, ["--exit-early", "3", "--hard-exit"], id="crash-before-training"),
     # Both processes compile and train a segment first: about 25 s each on a shared machine.
     pytest.param(1, ["--kill-after-segments", "1"], id="sigkill-mid-training",
                  marks=pytest.mark.slow),
     pytest.param(0, ["--kill-after-segments", "1"], id="sigkill-coordinator-mid-training",
                  marks=pytest.mark.slow)],
)
def test_a_dead_peer_fails_the_other_quickly(tmp_path, dying, how):
    port = _free_port()
    launched = [_cluster(tmp_path, port, i, ["--timeout-s", "10", *(how if i == dying else [])])
                for i in (0, 1)]
    codes, seconds = _wait_all([p for p, _, _ in launched], [log for _, _, log in launched],
                               deadline_s=90)
    survivor = 1 - dying
    survivor_log = launched[survivor][2]
    assert codes[survivor] != 0, (
        f"process {survivor} should fail when its peer dies:\n{_tail(survivor_log)}")
    assert not launched[survivor][1].exists(), f"process {survivor} must not report results"
    assert seconds < 60, f"took {seconds:.0f} s to notice the dead peer"
    dead_log = launched[dying][2].read_text()
    if "--kill-after-segments" in how:
        assert codes[dying] == -9 and "killed after 1 segment(s)" in dead_log
    else:
        assert "exiting early" in dead_log
    # The survivor says why it stopped, in words, not only a stack trace.
    assert PEER_DIED in survivor_log.read_text(), _tail(survivor_log)


def test_alone_initialize_does_nothing(monkeypatch):
    for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
                 distributed.ENV_PROCESS_ID, distributed.ENV_LOCAL_DEVICE_IDS,
                 "JAX_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_cluster_detected", lambda: False)
    assert distributed.initialize_from_env_or_args() is False
    assert distributed.is_writer()


@pytest.mark.parametrize(
    ("env", "kwargs", "match"),
    [
        ({distributed.ENV_NUM_PROCESSES: "two"}, {}, "JAXTUNE_NUM_PROCESSES"),
        ({distributed.ENV_LOCAL_DEVICE_IDS: "0;1"}, {}, "JAXTUNE_LOCAL_DEVICE_IDS"),
        ({distributed.ENV_HEARTBEAT_TIMEOUT_S: "soon"}, {}, "JAXTUNE_HEARTBEAT_TIMEOUT_S"),
        ({distributed.ENV_HEARTBEAT_TIMEOUT_S: "0"}, {}, "heartbeat_timeout_s .* 0"),
        ({}, dict(coordinator_address="127.0.0.1:1", num_processes=2, process_id=2),
         "process_id=2"),
        ({}, dict(coordinator_address="127.0.0.1:1", num_processes=0, process_id=0),
         "num_processes"),
    ],
)
def test_bad_cluster_settings_name_the_field(monkeypatch, env, kwargs, match):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=match):
        distributed.initialize_from_env_or_args(**kwargs)


@pytest.mark.parametrize(("env", "expected"), [(None, 100), ("7", 7)])
def test_heartbeat_timeout_comes_from_the_environment(monkeypatch, env, expected):
    seen = {}
    monkeypatch.setattr(distributed.jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.jax.distributed, "initialize",
                        lambda **kwargs: seen.update(kwargs))
    if env is None:
        monkeypatch.delenv(distributed.ENV_HEARTBEAT_TIMEOUT_S, raising=False)
    else:
        monkeypatch.setenv(distributed.ENV_HEARTBEAT_TIMEOUT_S, env)
    collectives = jax.config.jax_cpu_collectives_implementation
    try:
        assert distributed.initialize_from_env_or_args("127.0.0.1:1", 2, 0)
        assert seen["heartbeat_timeout_seconds"] == expected
        assert distributed.initialize_from_env_or_args(
            "127.0.0.1:1", 2, 0, heartbeat_timeout_s=3)  # the argument wins
        assert seen["heartbeat_timeout_seconds"] == 3
    finally:  # initialize chose gloo for the CPU; this process stays alone
        jax.config.update("jax_cpu_collectives_implementation", collectives)


# ---------------------------------------------------------------------------------------------
# The console command: `jaxtune sweep` in two processes


def _jaxtune_command() -> list[str]:
    """The installed ``jaxtune`` console script beside this Python (else ``-m jaxtune.cli``)."""
    script = Path(sys.executable).with_name("jaxtune")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "jaxtune.cli"]


SWEEP_SPACE = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
               "width": 16, "optimizer": "adam"}


def _rows_without_times(directory: Path) -> list[dict]:
    document = json.loads((directory / "results.json").read_text())
    for row in document["rows"]:
        row.pop("wall_time_s")
    return document["rows"]


def test_jaxtune_sweep_in_two_processes_writes_once_what_one_process_computes(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SWEEP_SPACE))
    sweep = ["sweep", "--dataset", "wine", "--space", str(space), "--num-configs", "3",
             "--num-steps", "10", "--steps-per-segment", "5", "--batch-size", "16", "--quiet",
             "--no-plot"]
    port = _free_port()
    one_device = {"JAXTUNE_CPU_DEVICES": "1"}
    launched = [
        # Process 0 from flags, process 1 from the JAXTUNE_* variables.
        (_launch([*sweep, "--out", str(tmp_path / "out0"), "--coordinator-address",
                  f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0"],
                 tmp_path / "p0.log", one_device, _jaxtune_command()), tmp_path / "p0.log"),
        (_launch([*sweep, "--out", str(tmp_path / "out1")], tmp_path / "p1.log",
                 {**one_device, distributed.ENV_COORDINATOR: f"127.0.0.1:{port}",
                  distributed.ENV_NUM_PROCESSES: "2", distributed.ENV_PROCESS_ID: "1"},
                 _jaxtune_command()), tmp_path / "p1.log"),
        # The same sweep in one process with the same global device count.
        (_launch([*sweep, "--out", str(tmp_path / "single")], tmp_path / "single.log",
                 {"JAXTUNE_CPU_DEVICES": "2"}, _jaxtune_command()), tmp_path / "single.log"),
    ]
    # Three JAX processes compile at once on a shared CI machine: a generous deadline, still
    # finite, so a hung peer fails the test instead of hanging it.
    codes, _ = _wait_all([p for p, _ in launched], [log for _, log in launched],
                         deadline_s=300)
    for (_, log), code in zip(launched, codes, strict=True):
        assert code == 0, f"{log.name} failed ({code}):\n{_tail(log)}"
    # Process 0 wrote the files and printed the table; process 1 wrote nothing.
    assert (tmp_path / "out0" / "results.json").is_file()
    assert not (tmp_path / "out1").exists()
    assert "ranked by valid_accuracy" in (tmp_path / "p0.log").read_text()
    assert "process 1 of 2: 3 members trained" in (tmp_path / "p1.log").read_text()
    saved, single = jt.Results.load(tmp_path / "out0"), jt.Results.load(tmp_path / "single")
    assert saved.metadata["num_processes"] == 2 and single.metadata["num_processes"] == 1
    assert saved.metadata["num_devices"] == single.metadata["num_devices"] == 2
    # The same bits as one process on two devices (wall times aside).
    assert _rows_without_times(tmp_path / "out0") == _rows_without_times(tmp_path / "single")
    assert [row.status for row in saved] == ["completed"] * 3


@pytest.mark.parametrize(
    ("flags", "fields"),
    [
        (["--num-processes", "2", "--process-id", "2"], ["--process-id 2", "--num-processes 2"]),
        (["--process-id", "-1"], ["--process-id"]),
        (["--num-processes", "0"], ["--num-processes"]),
        (["--coordinator-address", "10.0.0.1"], ["--coordinator-address", "HOST:PORT"]),
        (["--batch-mode", "shared", "--batch-size", "0"], ["--batch-mode shared",
                                                           "--batch-size"]),
        (["--max-members-per-chunk", "0"], ["--max-members-per-chunk"]),
        (["--members-per-device", "0"], ["--members-per-device"]),
        (["--members-per-device", "2", "--max-members-per-chunk", "4"],
         ["--members-per-device", "--max-members-per-chunk"]),
    ],
)
def test_bad_population_flags_are_one_line_errors(tmp_path, capsys, monkeypatch, flags, fields):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SWEEP_SPACE))
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    status = cli.main(["sweep", "--dataset", "wine", "--space", str(space), "--out",
                       str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("jaxtune: error: "), err
    for field in fields:
        assert field in err[0], (field, err[0])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("strategy", ["halving", "pbt"])
def test_engine_flags_reach_the_engine_on_the_scheduler_path(tmp_path, monkeypatch, strategy):
    """The engine flags are the same on every path: a scheduler's sweep takes them too."""
    from jaxtune import engine

    (tmp_path / "space.json").write_text(json.dumps(SWEEP_SPACE))
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    calls = []
    # Every driver calls the one runner, engine.run(task, configs, split, options, ...).
    monkeypatch.setattr(engine, "run", lambda *a, _run=engine.run, **kw: (
        calls.append(a[3]), _run(*a, **kw))[1])
    extra = ["--min-steps", "1", "--population-size", "2"] if strategy == "halving" else []
    assert cli.main(["sweep", "--dataset", "wine", "--space", str(tmp_path / "space.json"),
                     "--strategy", strategy, "--num-configs", "2", "--num-steps", "2",
                     "--batch-size", "8", "--batch-mode", "shared", "--max-members-per-chunk",
                     "1", "--member-loop", "vmap", "--quiet", "--no-plot", "--out",
                     str(tmp_path / "out"), *extra]) == 0
    assert [(options.batch_mode, options.max_members_per_chunk, options.member_loop)
            for options in calls] == [("shared", 1, "vmap")]
    results = jt.Results.load(tmp_path / "out")
    assert results.metadata["member_loop"] == "vmap" and results.metadata["num_chunks"] >= 2


def test_sweep_flags_reach_the_engine(tmp_path, monkeypatch):
    from jaxtune import engine

    space = tmp_path / "space.json"
    space.write_text(json.dumps(SWEEP_SPACE))
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    seen = []
    real_run = engine.run

    def recording_run(task, configs, split, options, **kwargs):
        # Every driver calls the one runner, engine.run, with one EngineOptions value.
        seen.append((options.batch_mode, options.max_members_per_chunk))
        return real_run(task, configs, split, options, **kwargs)

    monkeypatch.setattr(engine, "run", recording_run)
    status = cli.main(["sweep", "--dataset", "wine", "--space", str(space), "--num-configs",
                       "2", "--num-steps", "2", "--steps-per-segment", "2", "--batch-size", "8",
                       "--batch-mode", "shared", "--max-members-per-chunk", "1", "--quiet",
                       "--no-plot", "--out", str(tmp_path / "out")])
    assert status == 0
    assert seen == [("shared", 1)]
    results = jt.Results.load(tmp_path / "out")
    # 2 members, at most 1 at once: two chunks.
    assert results.metadata["num_chunks"] == 2 and len(results) == 2

    status = cli.main(["sweep", "--dataset", "wine", "--space", str(space), "--num-configs",
                       "3", "--num-steps", "2", "--steps-per-segment", "2", "--batch-size", "8",
                       "--members-per-device", "2", "--quiet", "--no-plot", "--out",
                       str(tmp_path / "pinned")])
    assert status == 0
    pinned = jt.Results.load(tmp_path / "pinned")
    # 3 members, 2 per device on this process's devices: chunks of exactly 2 x devices slots.
    assert pinned.metadata["members_per_device"] == 2 and len(pinned) == 3
    assert pinned.metadata["num_chunks"] == -(-3 // (2 * pinned.metadata["num_devices"]))
    assert pinned.metadata["member_loop"] == "map"  # the CPU default

    status = cli.main(["sweep", "--dataset", "wine", "--space", str(space), "--num-configs",
                       "2", "--num-steps", "2", "--steps-per-segment", "2", "--batch-size", "8",
                       "--member-loop", "vmap", "--quiet", "--no-plot", "--out",
                       str(tmp_path / "batched")])
    assert status == 0
    assert jt.Results.load(tmp_path / "batched").metadata["member_loop"] == "vmap"
