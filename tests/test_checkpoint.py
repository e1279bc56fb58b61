"""Checkpoint and resume: interrupted sweeps end with the Results of an uninterrupted run.

Every engine run here trains the same shapes (wine, a width-8 MLP, 40 steps in segments of 10,
populations of 3), so the compiled programs are shared between tests. "Identical" means every
field of every row except ``wall_time_s`` (a clock reading), and the metadata except the
compile counts (a resumed process compiles again; a warm one does not).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import checkpoint as checkpoint_lib
from jaxtune import cli, storage
from jaxtune.checkpoint import Checkpointer
from jaxtune.results import Results
from jaxtune.strategies.bayes import bayes_search
from jaxtune.strategies.halving import successive_halving
from jaxtune.strategies.pbt import pbt

TRAIN = dict(num_steps=40, steps_per_segment=10, batch_size=32)
NOT_COMPARED = ("num_compilations", "num_segment_compilations")


class SimulatedCrashError(Exception):
    """Stands for a crash: raised from ``on_segment`` after a chosen number of segments."""


def interrupt_after(num_segments):
    count = [0]

    def on_segment(report):
        count[0] += 1
        if count[0] == num_segments:
            raise SimulatedCrashError

    return on_segment


def counter():
    count = [0]

    def on_segment(report):
        count[0] += 1

    return on_segment, count


def rows(results):
    return [{k: v for k, v in row.to_dict().items() if k != "wall_time_s"} for row in results]


def metadata(results):
    return {k: v for k, v in results.metadata.items() if k not in NOT_COMPARED}


def assert_same_results(resumed, reference):
    assert len(resumed) == len(reference)
    for got, want in zip(rows(resumed), rows(reference), strict=True):
        assert got == want, got["member_id"]
    assert metadata(resumed) == metadata(reference)


def assert_same_params(resumed, reference):
    assert len(resumed) == len(reference)
    for got, want in zip(resumed, reference, strict=True):
        jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)


@pytest.fixture(scope="module")
def split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))


@pytest.fixture(scope="module")
def task(split):
    return jt.classification_task("mlp", num_classes=3, input_shape=split.x_train.shape[1:])


@pytest.fixture(scope="module")
def space():
    return jt.Space({
        "learning_rate": jt.Float(1e-3, 1e-1, log=True),
        "optimizer": jt.Fixed("adam"),
        "width": jt.Fixed(8),
    })


@pytest.fixture(scope="module")
def configs():
    # Two static groups (optimizer), each run in chunks of 3: four chunks.
    return [{"learning_rate": lr, "optimizer": opt, "width": 8}
            for opt in ("adam", "sgd") for lr in (3e-3, 1e-2, 3e-2, 1e-1, 2e-1)]


@pytest.fixture(scope="module")
def reference(task, configs, split):
    return jt.train(task, configs, split, max_members_per_chunk=3, return_params=True, **TRAIN)


# --------------------------------------------------------------------------- train


def test_train_resumes_to_the_uninterrupted_results(task, configs, split, reference, tmp_path):
    options = dict(max_members_per_chunk=3, return_params=True, **TRAIN)
    directory = tmp_path / "ckpt"
    # 4 chunks x 4 segments: interrupted inside chunk 1, then inside chunk 3.
    with pytest.raises(SimulatedCrashError):
        jt.train(task, configs, split, checkpoint=directory, on_segment=interrupt_after(6),
                 **options)
    with pytest.raises(SimulatedCrashError):
        jt.train(task, configs, split, checkpoint=directory, resume=True,
                 on_segment=interrupt_after(8), **options)
    on_segment, count = counter()
    results, params = jt.train(task, configs, split, checkpoint=directory, resume=True,
                               on_segment=on_segment, **options)
    # Two finished chunks were skipped and the third continued from its last saved segment,
    # with the programs compiled before: the restored population has the same layout.
    assert count[0] < 16 - 8
    assert results.metadata["num_segment_compilations"] == 0
    assert_same_results(results, reference[0])
    assert_same_params(params, reference[1])
    # A finished sweep resumes instantly to the same Results (nothing runs).
    on_segment, count = counter()
    again = jt.train(task, configs, split, checkpoint=directory, resume=True,
                     on_segment=on_segment, **options)
    assert count[0] == 0
    assert_same_results(again[0], reference[0])


def test_resume_on_an_empty_directory_starts_afresh(task, configs, split, reference, tmp_path):
    results = jt.train(task, configs[:3], split, checkpoint=tmp_path / "new", resume=True,
                       max_members_per_chunk=3, **TRAIN)
    assert rows(results) == rows(reference[0][:3])


def test_a_save_killed_half_way_is_ignored(task, configs, split, reference, tmp_path):
    directory = tmp_path / "ckpt"
    step = _interrupted(task, configs, split, directory)
    # What a process killed while saving leaves: Orbax's temporary folder of the next step.
    partial = directory / f"{int(step.name) + 1}.orbax-checkpoint-tmp"
    (partial / "arrays").mkdir(parents=True)
    (partial / "arrays" / "half-written").write_bytes(b"\x00" * 10)
    results = jt.train(task, configs[:3], split, checkpoint=directory, resume=True,
                       max_members_per_chunk=3, **TRAIN)
    assert rows(results) == rows(reference[0][:3])
    assert not partial.exists()


@pytest.mark.parametrize("kind", ["pbt", "halving"])
def test_scheduler_is_replayed_on_resume(task, space, split, tmp_path, kind):
    key = jax.random.PRNGKey(0)
    if kind == "pbt":
        scheduler = pbt(space, fraction=0.34, key=key, metric="valid_accuracy", mode="max")
    else:
        scheduler = successive_halving(space, min_steps=10, eta=2, key=key,
                                       metric="valid_accuracy", mode="max")
    configs = space.sample(jax.random.PRNGKey(1), 3)
    options = dict(static_names=space.static_names, scheduler=scheduler, return_params=True,
                   **TRAIN)
    reference, reference_params = jt.train(task, configs, split, **options)
    assert any(row.hp_schedule for row in reference) or len(reference) > 3  # it acted
    directory = tmp_path / kind
    for num_segments in (3, 2):
        with pytest.raises(SimulatedCrashError):
            jt.train(task, configs, split, checkpoint=directory, resume=True,
                     on_segment=interrupt_after(num_segments), **options)
    results, params = jt.train(task, configs, split, checkpoint=directory, resume=True,
                               **options)
    assert_same_results(results, reference)
    assert_same_params(params, reference_params)


def test_checkpoint_policy(task, configs, split, tmp_path, monkeypatch):
    saves = []
    original = checkpoint_lib.Store.save
    monkeypatch.setattr(checkpoint_lib.Store, "save",
                        lambda self, *a: (saves.append(1), original(self, *a)))
    options = dict(max_members_per_chunk=3, **TRAIN)
    # One chunk of 4 segments, saved every 2: after segment 2 and at the end of the call.
    jt.train(task, configs[:3], split, checkpoint=Checkpointer(tmp_path / "a", every_segments=2),
             **options)
    assert len(saves) == 2
    # Time-based only, never due within this short run: the final save alone.
    saves.clear()
    jt.train(task, configs[:3], split,
             checkpoint=Checkpointer(tmp_path / "b", every_segments=None, every_s=3600.0),
             **options)
    assert len(saves) == 1
    kept = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert kept == ["0", "1", checkpoint_lib.MARKER]


# --------------------------------------------------------------------------- tune


def test_tune_resumes_rounds_and_the_interrupted_round(task, space, split, tmp_path):
    options = dict(num_configs=6, population_size=3, **TRAIN)
    reference = jt.tune(task, split, space, **options)
    directory = tmp_path / "tune"
    # 2 rounds x 4 segments: interrupted in round 2, then in round 2 again.
    for num_segments in (6, 1):
        with pytest.raises(SimulatedCrashError):
            jt.tune(task, split, space, checkpoint=directory, resume=True,
                    on_segment=interrupt_after(num_segments), **options)
    on_segment, count = counter()
    results = jt.tune(task, split, space, checkpoint=directory, resume=True,
                      on_segment=on_segment, **options)
    assert count[0] < 4  # round 1 replayed from its results, round 2 from a saved segment
    assert_same_results(results, reference)
    # Another strategy proposes other configurations: the replay says so.
    with pytest.raises(ValueError, match="round 0 stored results for other configurations"):
        jt.tune(task, split, space, jt.grid_search(num_float_points=6), checkpoint=directory,
                resume=True, **options)


# --------------------------------------------------------------------------- errors


def test_foreign_and_mismatched_checkpoints(task, configs, split, space, tmp_path):
    options = dict(max_members_per_chunk=3, **TRAIN)
    directory = tmp_path / "ckpt"
    jt.train(task, configs[:3], split, checkpoint=directory, **options)
    with pytest.raises(ValueError, match="already holds a checkpoint; pass resume=True"):
        jt.train(task, configs[:3], split, checkpoint=directory, **options)
    with pytest.raises(ValueError, match=r"another sweep: its arguments differ in \['configs'"):
        jt.train(task, configs[1:4], split, checkpoint=directory, resume=True, **options)
    with pytest.raises(ValueError, match=r"differ in \['seed'\]"):
        jt.train(task, configs[:3], split, checkpoint=directory, resume=True, seed=1, **options)
    with pytest.raises(ValueError, match=r"written by jaxtune.train\(\), not jaxtune.tune\(\)"):
        jt.tune(task, split, space, num_configs=3, checkpoint=directory, resume=True, **TRAIN)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a jaxtune checkpoint directory"):
        jt.train(task, configs[:3], split, checkpoint=foreign, resume=True, **options)
    (directory / checkpoint_lib.MARKER).write_text('{"format": "other/1"}')
    with pytest.raises(ValueError, match="has format 'other/1'"):
        jt.train(task, configs[:3], split, checkpoint=directory, resume=True, **options)
    (directory / checkpoint_lib.MARKER).write_text("{garbage")
    with pytest.raises(ValueError, match="is damaged"):
        jt.train(task, configs[:3], split, checkpoint=directory, resume=True, **options)


def _interrupted(task, configs, split, directory):
    with pytest.raises(SimulatedCrashError):
        jt.train(task, configs[:3], split, checkpoint=directory, max_members_per_chunk=3,
                 on_segment=interrupt_after(3), **TRAIN)
    return directory / max((p.name for p in directory.iterdir() if p.name.isdigit()), key=int)


def test_damaged_checkpoints_are_clear_errors(task, configs, split, tmp_path):
    options = dict(max_members_per_chunk=3, **TRAIN)
    # Truncated array data files (TensorStore's OCDBT data under ``d/``).
    step = _interrupted(task, configs, split, tmp_path / "truncated")
    files = [f for f in (step / "arrays").rglob("*") if f.is_file() and f.parent.name == "d"]
    assert files
    for data_file in files:
        with open(data_file, "r+b") as file:
            file.truncate(data_file.stat().st_size // 2)
    with pytest.raises(ValueError, match="is damaged"):
        jt.train(task, configs[:3], split, checkpoint=tmp_path / "truncated", resume=True,
                 **options)
    # Garbage in the document.
    step = _interrupted(task, configs, split, tmp_path / "garbage")
    documents = [f for f in (step / "document").rglob("*") if f.is_file()]
    assert documents
    for document in documents:
        document.write_bytes(b"\x00garbage{")
    with pytest.raises(ValueError, match="is damaged"):
        jt.train(task, configs[:3], split, checkpoint=tmp_path / "garbage", resume=True,
                 **options)


def test_argument_errors(task, configs, split, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        jt.train(task, configs, split, resume=True, **TRAIN)
    with pytest.raises(ValueError, match="every_segments must be a positive integer"):
        Checkpointer(tmp_path, every_segments=0)
    with pytest.raises(ValueError, match="give every_segments or every_s"):
        Checkpointer(tmp_path, every_segments=None)
    with pytest.raises(TypeError, match="checkpoint must be a directory path or a Checkpointer"):
        jt.train(task, configs[:3], split, checkpoint=3, **TRAIN)
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)
    with pytest.raises(ImportError, match=r"jaxtune\[checkpoint\]"):
        jt.train(task, configs[:3], split, checkpoint=tmp_path / "x", **TRAIN)


# --------------------------------------------------------------------------- processes


SPACE = {"learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
         "optimizer": {"type": "fixed", "value": "adam"}, "width": {"type": "fixed", "value": 8}}


def _steps(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _start(argv, env):
    return subprocess.Popen([sys.executable, "-m", "jaxtune.cli", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(tmp_path, monkeypatch):
    """``jaxtune sweep`` killed (SIGKILL) three times at random moments of the whole run,
    start-up and compilation included, then resumed: the same Results as an uninterrupted run,
    and the last resume trains fewer segments than a whole run (it did not start again).

    The kill times come from a seed printed at the start (shown when the test fails); set
    ``JAXTUNE_KILL_SEED`` to replay them.
    """
    from jaxtune.progress import ProgressBar

    seed = int(os.environ.get("JAXTUNE_KILL_SEED") or random.SystemRandom().randrange(2**31))
    print(f"kill times drawn with JAXTUNE_KILL_SEED={seed}")
    rng = random.Random(seed)
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    # 2 rounds x 15 segments; every run below checkpoints at every segment boundary.
    argv = ["sweep", "--dataset", "wine", "--space", str(space_file), "--num-configs", "4",
            "--population-size", "2", "--num-steps", "150", "--steps-per-segment", "10",
            "--batch-size", "16", "--quiet", "--no-plot", "--checkpoint-every-segments", "1"]
    whole_run_segments = 2 * 15
    env = {**os.environ, "JAXTUNE_CPU_DEVICES": "1", "JAX_PLATFORMS": "cpu"}
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "1")
    # The uninterrupted run, timed: kill times are drawn over its whole wall time.
    started = time.monotonic()
    reference = subprocess.run(
        [sys.executable, "-m", "jaxtune.cli", *argv, "--out", str(tmp_path / "reference"),
         "--checkpoint-dir", str(tmp_path / "reference-ckpt")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert reference.returncode == 0, reference.stderr[-2000:]
    whole_run_s = time.monotonic() - started
    directory = tmp_path / "ckpt"
    first = [*argv, "--out", str(tmp_path / "out"), "--checkpoint-dir", str(directory)]
    kills = []
    for _ in range(3):
        marker = directory / checkpoint_lib.MARKER
        # Killed before its marker was written, a sweep has nothing to resume: start it again.
        command = ["sweep", "--resume", str(directory)] if marker.is_file() else first
        delay_s = rng.uniform(0.0, whole_run_s)
        process = _start(command, env)
        try:
            process.wait(timeout=delay_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate()
        kills.append((round(delay_s, 2), process.returncode, _steps(directory)[-1:]))
        assert process.returncode in (0, -signal.SIGKILL), (seed, kills, stderr.decode()[-2000:])
        if not marker.is_file() and directory.exists():
            shutil.rmtree(directory)  # the kill came while the marker was being written
    if not _steps(directory):
        # Every kill came before the first checkpoint: one more, once one is saved, so that the
        # resume below always has progress to continue from.
        command = ["sweep", "--resume", str(directory)] if (
            directory / checkpoint_lib.MARKER).is_file() else first
        process = _start(command, env)
        deadline = time.monotonic() + 300
        while not _steps(directory) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        kills.append(("after the first checkpoint", process.returncode, _steps(directory)[-1:]))
    assert _steps(directory), (seed, kills)
    calls = [0]
    original = ProgressBar.__call__

    def counting(self, report):
        original(self, report)
        calls[0] += 1

    monkeypatch.setattr(ProgressBar, "__call__", counting)
    assert cli.main(["sweep", "--resume", str(directory)]) == 0, (seed, kills)
    # It continued from the saved progress; a resume that started over would train them all.
    assert calls[0] < whole_run_segments, (seed, kills, calls[0])
    resumed = Results.load(tmp_path / "out")
    assert len(resumed) == 4
    assert_same_results(resumed, Results.load(tmp_path / "reference"))


@pytest.mark.parametrize("strategy", ["pbt", "halving"])
def test_cli_scheduler_sweep_resumes(tmp_path, monkeypatch, strategy):
    """PBT and halving sweeps checkpoint through the CLI too: crash twice, resume, same rows."""
    from jaxtune.progress import ProgressBar

    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "1")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    argv = ["sweep", "--dataset", "wine", "--space", str(space_file), "--strategy", strategy,
            "--num-configs", "4", "--num-steps", "40", "--steps-per-segment", "10",
            "--batch-size", "16", "--quiet", "--no-plot"]
    if strategy == "halving":
        argv += ["--min-steps", "10", "--eta", "2"]
    original = ProgressBar.__call__
    calls = [0]

    def counting(self, report):
        original(self, report)
        calls[0] += 1

    monkeypatch.setattr(ProgressBar, "__call__", counting)
    assert cli.main([*argv, "--out", str(tmp_path / "reference")]) == 0
    uninterrupted_segments, calls[0] = calls[0], 0
    directory = tmp_path / "ckpt"
    for attempt, crash_at in enumerate((2, 3)):
        seen = [0]

        def crashing(self, report, seen=seen, crash_at=crash_at):
            original(self, report)
            seen[0] += 1
            if seen[0] == crash_at:
                raise SimulatedCrashError

        monkeypatch.setattr(ProgressBar, "__call__", crashing)
        command = (
            [*argv, "--out", str(tmp_path / "out"), "--checkpoint-dir", str(directory),
             "--checkpoint-every-segments", "1"]
            if attempt == 0 else ["sweep", "--resume", str(directory)]
        )
        with pytest.raises(SimulatedCrashError):
            cli.main(command)
    monkeypatch.setattr(ProgressBar, "__call__", counting)
    assert cli.main(["sweep", "--resume", str(directory)]) == 0
    assert 0 < calls[0] < uninterrupted_segments  # it continued; it did not start again
    assert_same_results(Results.load(tmp_path / "out"), Results.load(tmp_path / "reference"))


def test_cli_resume_errors(tmp_path, capsys):
    def one_line(argv, *words):
        assert cli.main(argv) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("jaxtune: error: "), lines
        for word in words:
            assert word in lines[0], (word, lines[0])

    one_line(["sweep", "--resume", str(tmp_path / "missing")], "--resume", "does not exist")
    one_line(["sweep", "--resume", str(tmp_path)], "not a jaxtune checkpoint directory")
    one_line(["sweep", "--resume"], "--resume needs the checkpoint directory")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    base = ["sweep", "--dataset", "wine", "--space", str(space_file), "--out",
            str(tmp_path / "o"), "--quiet", "--no-plot"]
    one_line([*base, "--checkpoint-every-s", "5"], "--checkpoint-every-s needs --checkpoint-dir")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    one_line([*base, "--checkpoint-dir", str(busy)], "--checkpoint-dir", "not empty")
    one_line([*base, "--strategy", "pbt", "--checkpoint-every-segments", "2"],
             "--checkpoint-every-segments needs --checkpoint-dir")


def test_results_save_survives_sigkill_mid_write(tmp_path):
    # A writer saves growing Results in a loop; killed at random moments, the folder always
    # holds one complete version (write to a temporary file, then rename).
    script = (
        "import sys\n"
        "from jaxtune.results import MemberResult, Results\n"
        "def version(n):\n"
        "    rows = [MemberResult(member_id=i, config={'lr': 0.1}, seed=0, fold=None,\n"
        "            static_group='g', status='completed', diverged_step=None,\n"
        "            metrics={'valid_loss': float(n)}, curve_steps=list(range(200)),\n"
        "            curves={'valid_loss': [float(n)] * 200}, wall_time_s=0.0)\n"
        "            for i in range(200)]\n"
        "    return Results(rows, {'version': n})\n"
        "n = 0\n"
        "while True:\n"
        "    version(n).save(sys.argv[1]); n += 1\n"
        "    if n == 1: print('saved', flush=True)\n"
    )
    rng = random.Random()
    for _ in range(2):
        process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                                   stdout=subprocess.PIPE)
        assert process.stdout.readline().strip() == b"saved"
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        loaded = Results.load(tmp_path)
        version = loaded.metadata["version"]
        assert len(loaded) == 200
        assert all(row.metrics["valid_loss"] == version for row in loaded)


@pytest.mark.slow
def test_tune_resumes_a_bayes_search(task, space, split, tmp_path):
    """Bayesian search is replayed too: its proposals after the resume are the same."""
    options = dict(num_configs=6, population_size=2, **TRAIN)
    reference = jt.tune(task, split, space, bayes_search(), **options)
    directory = tmp_path / "bayes"
    with pytest.raises(SimulatedCrashError):  # 3 rounds x 4 segments: crash in round 3
        jt.tune(task, split, space, bayes_search(), checkpoint=directory, resume=True,
                on_segment=interrupt_after(10), **options)
    on_segment, count = counter()
    results = jt.tune(task, split, space, bayes_search(), checkpoint=directory, resume=True,
                      on_segment=on_segment, **options)
    assert 0 < count[0] < 4  # rounds 1-2 replayed, round 3 from a saved segment
    assert_same_results(results, reference)


# --------------------------------------------------------------------------- files (issue 11)


def test_edited_checkpoint_documents_are_refused(task, configs, split, tmp_path):
    """A checkpoint's JSON (its marker, a step's document) is covered by a checksum: an edited
    metric or status is refused on resume, naming the damaged file."""
    options = dict(max_members_per_chunk=3, **TRAIN)
    step = _interrupted(task, configs, split, tmp_path / "document")
    document = step / "document" / "metadata"
    text = document.read_text()
    edited = text.replace('"status": "running"', '"status": "stopped"', 1)
    assert edited != text
    document.write_text(edited)
    with pytest.raises(ValueError, match=r"document'? is damaged: its content does not match"):
        jt.train(task, configs[:3], split, checkpoint=tmp_path / "document", resume=True,
                 **options)
    _interrupted(task, configs, split, tmp_path / "marker")
    marker = tmp_path / "marker" / checkpoint_lib.MARKER
    marker.write_text(marker.read_text().replace('"seed": 0', '"seed": 1', 1))
    with pytest.raises(ValueError, match=f"{checkpoint_lib.MARKER} is damaged"):
        jt.train(task, configs[:3], split, checkpoint=tmp_path / "marker", resume=True,
                 **options)


def test_a_checkpoint_of_31_bit_keys_is_refused_with_the_reason(tmp_path, capsys):
    directory = tmp_path / "old"
    directory.mkdir()
    (directory / checkpoint_lib.MARKER).write_text(json.dumps(
        {"format": "jaxtune.checkpoint/1", "kind": "tune", "arguments": {}, "fingerprint": "x",
         "metadata": {"cli": {"argv": ["sweep"]}}}))
    assert cli.main(["sweep", "--resume", str(directory)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "31 bits" in lines[0] and "new directory" in lines[0], lines


def test_killed_while_writing_the_marker(tmp_path, capsys):
    """Only ``.jaxtune_checkpoint.json.<random>`` left: --resume says there is nothing to
    resume (one line), a fresh run removes the temporary file and starts."""
    directory = tmp_path / "ckpt"
    directory.mkdir()
    stale = directory / f".{checkpoint_lib.MARKER}.k2j4_x"
    stale.write_text('{"format": "jaxt')
    assert cli.main(["sweep", "--resume", str(directory)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "holds no checkpoint yet" in lines[0], lines
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    argv = ["sweep", "--dataset", "wine", "--space", str(space_file), "--num-configs", "2",
            "--num-steps", "10", "--batch-size", "16", "--quiet", "--no-plot",
            "--out", str(tmp_path / "out"), "--checkpoint-dir", str(directory)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert not stale.exists() and (directory / checkpoint_lib.MARKER).is_file()
    assert len(Results.load(tmp_path / "out")) == 2


def test_a_failed_save_leaves_no_orbax_temporary_folder(task, configs, split, tmp_path,
                                                         monkeypatch, capsys):
    """A save that fails half-way (a full disk: the arrays cannot be written) removes Orbax's
    ``*.orbax-checkpoint-tmp`` folder and raises one line saying what is kept."""
    import orbax.checkpoint as ocp

    original = ocp.args.PyTreeSave

    class FullDiskError(OSError):
        pass

    def failing(item, *args, **kwargs):
        def explode(*a, **k):
            raise FullDiskError(28, "No space left on device")

        monkeypatch.setattr(ocp.PyTreeCheckpointHandler, "async_save", explode)
        return original(item, *args, **kwargs)

    monkeypatch.setattr(ocp.args, "PyTreeSave", failing)
    directory = tmp_path / "ckpt"
    with pytest.raises(storage.WriteError, match=r"could not save step 0 .*\(No space left"):
        jt.train(task, configs[:3], split, checkpoint=directory, max_members_per_chunk=3,
                 **TRAIN)
    assert not [p for p in directory.iterdir() if "orbax-checkpoint-tmp" in p.name]
    # The command line says it in one line, exit status 2.
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    argv = ["sweep", "--dataset", "wine", "--space", str(space_file), "--num-configs", "2",
            "--num-steps", "10", "--batch-size", "16", "--quiet", "--no-plot",
            "--out", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "cli")]
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "could not save step 0" in lines[0], lines
    assert not [p for p in (tmp_path / "cli").iterdir() if "orbax-checkpoint-tmp" in p.name]


@pytest.mark.parametrize("strategy", ["random", "hyperband", "pbt"])
def test_resuming_a_finished_sweep_rewrites_the_same_results(tmp_path, monkeypatch, strategy):
    """``--resume`` of a sweep that had finished writes the same results.json, byte for byte
    (it once wrote a Hyperband sweep's ``member_steps`` as 0, and compile counts as 0)."""
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "1")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    argv = ["sweep", "--dataset", "wine", "--space", str(space_file), "--strategy", strategy,
            "--num-configs", "4", "--num-steps", "40", "--steps-per-segment", "10",
            "--batch-size", "16", "--quiet", "--no-plot", "--out", str(tmp_path / "out"),
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    if strategy == "hyperband":
        argv += ["--min-steps", "10", "--eta", "2"]
    assert cli.main(argv) == 0
    first = (tmp_path / "out" / "results.json").read_bytes()
    (tmp_path / "out" / "results.json").unlink()
    assert cli.main(["sweep", "--resume", str(tmp_path / "ckpt")]) == 0
    assert (tmp_path / "out" / "results.json").read_bytes() == first
    if strategy == "hyperband":
        assert Results.load(tmp_path / "out").metadata["member_steps"] > 0


#: Keys not sorted: the draws must not depend on their order (the marker stores them sorted).
UNSORTED_SPACE = {
    "width": {"type": "fixed", "value": 8},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "learning_rate": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
    "optimizer": {"type": "fixed", "value": "adam"},
}

#: Runs ``jaxtune sweep`` and SIGKILLs itself at a stage: right after the checkpoint's marker is
#: written ("marker"), after the third segment ("training"), or instead of writing the results
#: ("results").
_KILL_AT_STAGE = """
import os, signal, sys
from jaxtune import checkpoint, cli
from jaxtune.progress import ProgressBar
from jaxtune.results import Results

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

stage, argv = sys.argv[1], sys.argv[2:]
if stage == "marker":
    opened = checkpoint.Store.__init__
    def open_then_die(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        die()
    checkpoint.Store.__init__ = open_then_die
elif stage == "training":
    reported, seen = ProgressBar.__call__, [0]
    def report_then_die(self, report):
        reported(self, report)
        seen[0] += 1
        if seen[0] == 3:
            die()
    ProgressBar.__call__ = report_then_die
else:
    Results.save = die
sys.exit(cli.main(argv))
"""


@pytest.mark.slow
@pytest.mark.parametrize("stages", [("marker",), ("training", "results")])
def test_unsorted_space_file_killed_at_each_stage_resumes_to_the_same_rows(
        tmp_path, monkeypatch, stages):
    """A sweep from a space file whose keys are not sorted, SIGKILLed after its marker is
    written, mid-training (round 2 of 2) or just before writing its results, then resumed: the
    rows of an uninterrupted run (before canonical order, the resumed sweep drew other configs,
    or refused to resume)."""
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "1")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(UNSORTED_SPACE))
    argv = ["sweep", "--dataset", "wine", "--space", str(space_file), "--num-configs", "4",
            "--population-size", "2", "--num-steps", "20", "--steps-per-segment", "10",
            "--batch-size", "16", "--quiet", "--no-plot"]
    assert cli.main([*argv, "--out", str(tmp_path / "reference")]) == 0
    directory = tmp_path / "ckpt"
    env = {**os.environ, "JAXTUNE_CPU_DEVICES": "1", "JAX_PLATFORMS": "cpu"}
    command = [*argv, "--out", str(tmp_path / "out"), "--checkpoint-dir", str(directory),
               "--checkpoint-every-segments", "1"]
    for stage in stages:
        killed = subprocess.run([sys.executable, "-c", _KILL_AT_STAGE, stage, *command],
                                env=env, capture_output=True, text=True, timeout=300)
        assert killed.returncode == -signal.SIGKILL, (stage, killed.stderr[-2000:])
        assert (directory / checkpoint_lib.MARKER).is_file(), stage
        assert not (tmp_path / "out" / "results.json").exists(), stage
        command = ["sweep", "--resume", str(directory)]
    assert cli.main(["sweep", "--resume", str(directory)]) == 0
    assert_same_results(Results.load(tmp_path / "out"), Results.load(tmp_path / "reference"))
