"""Several processes via jax.distributed: two local processes of 2 CPU devices each.

Each test launches ``tests/_distributed_worker.py`` as separate processes (the cluster and the
device count must be fixed before JAX starts), joined through a coordinator on 127.0.0.1 and
gloo collectives. Every launch has a deadline: a hung peer fails the test, it never hangs CI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jaxtune as jt
from jaxtune import distributed

WORKER = Path(__file__).with_name("_distributed_worker.py")
DEADLINE_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(args, log: Path, env=None) -> subprocess.Popen:
    environment = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    with open(log, "w") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=out,
                                stderr=subprocess.STDOUT, env=environment)


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


@pytest.mark.parametrize("hard_exit", [False, True], ids=["sys.exit", "crash"])
def test_a_dead_peer_fails_the_other_quickly(tmp_path, hard_exit):
    port = _free_port()
    early = ["--exit-early", "3", "--timeout-s", "10"] + (["--hard-exit"] if hard_exit else [])
    launched = [_cluster(tmp_path, port, 0, ["--timeout-s", "10"]),
                _cluster(tmp_path, port, 1, early)]
    codes, seconds = _wait_all([p for p, _, _ in launched], [log for _, _, log in launched],
                               deadline_s=90)
    survivor_log = launched[0][2]
    assert codes[0] != 0, f"process 0 should fail when its peer dies:\n{_tail(survivor_log)}"
    assert not launched[0][1].exists(), "process 0 must not report results"
    assert seconds < 60, f"took {seconds:.0f} s to notice the dead peer"
    assert "exiting early" in launched[1][2].read_text()


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
