"""``time_budget=`` / ``--time-budget``: stop proposing, finish the running segment, save, and
resume to the rows of an uninterrupted run.

The clock is fake: it advances by one "second" per segment report, so a budget of ``k + 0.5``
seconds runs exactly ``k + 1`` segments (the deadline is looked at after each one). The shapes
are those of tests/test_multiobjective.py's runs (wine, a linear model, batches of 16,
segments of 10 steps, populations of 3), so the compiled programs are shared.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import jaxtune as jt
from jaxtune import cli
from jaxtune.results import Results
from jaxtune.timebudget import STOPPED_BY, TimeBudget, check_time_budget

TRAIN = dict(num_steps=20, steps_per_segment=10, batch_size=16)
SPACE = {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
         "optimizer": {"type": "fixed", "value": "adam"}}


class FakeClock:
    """One second per segment: ``on_segment`` advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.segments = 0

    def __call__(self) -> float:
        return self.now

    def on_segment(self, report) -> None:
        self.now += 1.0
        self.segments += 1

    def budget(self, seconds: float) -> TimeBudget:
        return TimeBudget(seconds, self)


def rows(results):
    return [{k: v for k, v in row.to_dict().items() if k != "wall_time_s"} for row in results]


@pytest.fixture(scope="module")
def split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))


@pytest.fixture(scope="module")
def task(split):
    return jt.classification_task("linear", num_classes=3, input_shape=(13,))


@pytest.fixture(scope="module")
def space():
    return jt.Space.from_dict(SPACE)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "10", True])
def test_bad_budgets_are_refused_before_anything_compiles(task, split, space, bad):
    error = TypeError if isinstance(bad, str | bool) else ValueError
    with pytest.raises(error, match="time_budget"):
        check_time_budget(bad)
    with pytest.raises(error, match="time_budget"):
        jt.tune(task, split, space, num_configs=2, time_budget=bad, **TRAIN)
    with pytest.raises(error, match="time_budget"):
        jt.run_halving(task, split, space, population_size=2, min_steps=10, time_budget=bad,
                       **TRAIN)


def test_tune_stops_between_chunks_and_mid_round_then_resumes_to_the_same_rows(
        task, split, space, tmp_path):
    # Round 1: 6 configs in two chunks of 3 (2 segments each); round 2: 3 configs, 1 chunk.
    options = dict(num_configs=9, population_size=6, engine_options={"max_members_per_chunk": 3},
                   **TRAIN)
    reference = jt.tune(task, split, space, **options)
    directory = tmp_path / "ckpt"
    clock = FakeClock()
    # 1.5 s: chunk 1 ends at 2 s; the deadline stops the run before chunk 2 starts.
    first = jt.tune(task, split, space, checkpoint=directory, on_segment=clock.on_segment,
                    time_budget=clock.budget(1.5), **options)
    assert clock.segments == 2
    assert [row.status for row in first] == ["completed"] * 3
    assert first.metadata["stopped_by"] == STOPPED_BY
    assert first.metadata["members_not_started"] == 3
    assert first.metadata["configs_not_asked"] == 3
    assert rows(first) == rows(reference[:3])  # finished members are final
    # 2.5 s more: chunk 2 (2 segments) ends round 1, round 2 is stopped after 1 segment.
    second = jt.tune(task, split, space, checkpoint=directory, resume=True,
                     on_segment=clock.on_segment, time_budget=clock.budget(2.5), **options)
    assert clock.segments == 5
    assert rows(second[:6]) == rows(reference[:6])
    stopped = second[6:]
    assert [row.status for row in stopped] == ["stopped"] * 3
    assert all(row.extra["stopped_by"] == STOPPED_BY for row in stopped)
    for got, want in zip(stopped, reference[6:], strict=True):  # partial curves are real
        assert got.curve_steps == [10]
        assert got.curves == {k: v[:1] for k, v in want.curves.items()}
    # Without a budget, the resume ends where the uninterrupted sweep did, bit for bit.
    resumed = jt.tune(task, split, space, checkpoint=directory, resume=True, **options)
    assert rows(resumed) == rows(reference)
    assert "stopped_by" not in resumed.metadata


def test_a_scheduler_sweep_stopped_by_its_budget_resumes_to_the_same_rows(
        task, split, space, tmp_path):
    options = dict(population_size=3, min_steps=10, eta=2, max_member_steps=120, **TRAIN)
    reference = jt.run_halving(task, split, space, **options)
    clock = FakeClock()
    directory = tmp_path / "halving"
    stopped = jt.run_halving(task, split, space, checkpoint=directory, resume=True,
                             on_segment=clock.on_segment, time_budget=clock.budget(1.5),
                             **options)
    assert clock.segments == 2
    assert stopped.metadata["stopped_by"] == STOPPED_BY
    assert any(row.extra.get("stopped_by") == STOPPED_BY for row in stopped)
    resumed = jt.run_halving(task, split, space, checkpoint=directory, resume=True, **options)
    assert rows(resumed) == rows(reference)


def test_cli_time_budget_prints_the_resume_command_and_refuses_bad_values(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "1")
    space_file = tmp_path / "space.json"
    space_file.write_text(json.dumps(SPACE))
    argv = ["sweep", "--dataset", "wine", "--space", str(space_file), "--num-configs", "3",
            "--num-steps", "20", "--steps-per-segment", "10", "--batch-size", "16",
            "--model", "linear", "--quiet", "--no-plot"]
    for bad, words in (("0", "positive"), ("-5", "positive"), ("nan", "positive"),
                       ("soon", "invalid float")):
        assert cli.main([*argv, "--out", str(tmp_path / "bad"), "--time-budget", bad]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and "--time-budget" in err[0] and words in err[0], err
    directory = tmp_path / "ckpt"
    # Far less than one segment: the first segment runs (every call makes progress), then
    # the sweep stops, writes --out and says how to continue.
    assert cli.main([*argv, "--out", str(tmp_path / "out"), "--checkpoint-dir", str(directory),
                     "--time-budget", "1e-9"]) == 0
    out = capsys.readouterr().out
    assert f"jaxtune sweep --resume {directory}" in out
    partial = Results.load(tmp_path / "out")
    assert [row.status for row in partial] == ["stopped"] * 3
    assert [row.curve_steps for row in partial] == [[10]] * 3
    # A new budget on --resume replaces the saved one; the resumed sweep finishes.
    assert cli.main(["sweep", "--resume", str(directory), "--time-budget", "3600"]) == 0
    assert "--resume" not in capsys.readouterr().out
    finished = Results.load(tmp_path / "out")
    assert [row.status for row in finished] == ["completed"] * 3
    assert [row.curve_steps for row in finished] == [[10, 20]] * 3


def test_several_processes_stop_on_process_zeros_clock(monkeypatch):
    """Every process must stop after the same segment: process 0's clock decides (one
    broadcast), whatever this process's own clock says."""
    from jax.experimental import multihost_utils

    from jaxtune.engine import chunk
    from jaxtune.timebudget import Deadline

    broadcast = []
    monkeypatch.setattr(chunk.jax, "process_count", lambda: 2)
    monkeypatch.setattr(multihost_utils, "broadcast_one_to_all",
                        lambda value: broadcast.append(bool(value)) or np.asarray(False))
    assert not chunk.deadline_passed(Deadline(0.0, lambda: 1.0))  # here: passed; process 0: not
    assert broadcast == [True]
    assert not chunk.deadline_passed(None)
