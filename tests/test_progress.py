"""Tests for jaxtune.progress: what the bar shows, when it shows it, and how it counts."""

from __future__ import annotations

import doctest
import io
import math
import re

import numpy as np
import pytest

import jaxtune as jt
from jaxtune import progress as progress_lib
from jaxtune.engine import SegmentReport
from jaxtune.progress import ProgressBar


class Clock:
    """A clock the test moves by hand, so the ETA is exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def report(step, accuracy, *, group="g", group_index=0, num_groups=1, alive=None,
           diverged=0, num_steps=100, member_steps=None):
    accuracy = np.asarray(accuracy, np.float64)
    members = accuracy.size
    return SegmentReport(
        group=group, group_index=group_index, num_groups=num_groups, step=step,
        num_steps=num_steps, num_members=members,
        num_alive=members - diverged if alive is None else alive, num_diverged=diverged,
        metrics={"valid_accuracy": accuracy},
        member_steps=0 if member_steps is None else member_steps,
    )


def test_forced_bar_shows_steps_members_best_and_eta():
    stream, clock = io.StringIO(), Clock()
    bar = ProgressBar(800, stream=stream, enabled=True, clock=clock)
    clock.now += 10.0
    bar(report(50, [0.5, 0.8, np.nan, 0.6], diverged=1, member_steps=200))
    line = stream.getvalue().splitlines()[-1]
    assert line.startswith("[" + "#" * 7 + "-" * 21 + "]  25.0%")
    assert "200/800 member-steps" in line
    assert "alive 3/4 diverged 1" in line
    assert "best valid_accuracy 0.8 " in line
    assert line.endswith("10s ETA 30s")  # 10 s for a quarter: 30 s to go
    assert bar.eta_s == pytest.approx(30.0)


def test_best_so_far_follows_mode_and_ignores_nan():
    bar = ProgressBar(1000, metric="valid_accuracy", mode="min", stream=io.StringIO(),
                      enabled=False)
    assert math.isnan(bar.best)
    bar(report(10, [np.nan, np.inf]))
    assert math.isnan(bar.best)
    bar(report(20, [0.4, 0.3]))
    bar(report(30, [0.35, 0.5]))
    assert bar.best == pytest.approx(0.3)
    high = ProgressBar(1000, stream=io.StringIO(), enabled=False)
    high(report(10, [0.4, 0.3]))
    high(report(20, [0.2, 0.35]))
    assert high.best == pytest.approx(0.4)


def test_counts_steps_across_chunks_groups_and_rounds():
    """Without member_steps the bar counts (step - previous step) x members, chunk by chunk."""
    bar = ProgressBar(10 * 40, stream=io.StringIO(), enabled=False)
    # group 0, chunk of 4 members, two segments of 20 steps
    bar(report(20, [0.1] * 4))
    bar(report(40, [0.1] * 4, diverged=1))
    assert bar.done == 160
    # the second chunk of the same group starts again at step 20
    bar(report(20, [0.1] * 4, diverged=2))
    assert bar.done == 240 and bar.num_diverged == 3  # 1 from chunk one, 2 now
    bar(report(40, [0.1] * 4, diverged=2))
    # another group, then a new engine call (tune round) of one segment per chunk
    bar(report(40, [0.1] * 2, group="h", group_index=1, num_groups=2, member_steps=80))
    assert bar.done == 400 and bar.fraction == 1.0
    assert bar.num_diverged == 3
    single = ProgressBar(4 * 40, stream=io.StringIO(), enabled=False)
    single(report(40, [0.1, 0.2]))
    single(report(40, [0.3, 0.4]))  # same key, same step: a new chunk, not a repeat
    assert single.done == 160 and single.best == pytest.approx(0.4)


def test_quiet_when_not_a_terminal_unless_forced():
    stream = io.StringIO()
    bar = ProgressBar(100, stream=stream)  # default: only on a terminal
    bar(report(50, [0.5], member_steps=50))
    assert stream.getvalue() == "" and not bar.enabled
    off = ProgressBar(100, stream=FakeTerminal(), enabled=False)
    off(report(50, [0.5], member_steps=50))
    assert off.stream.getvalue() == ""


def test_forced_log_lines_only_at_each_tenth():
    stream = io.StringIO()
    bar = ProgressBar(1000, stream=stream, enabled=True)
    for _ in range(100):
        bar(report(10, [0.5], member_steps=10))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # the first report (1%), then 10%, 20%, ..., 100%
    assert [float(re.search(r"(\d+\.\d)%", line).group(1)) for line in lines] == [
        1.0, *(float(10 * i) for i in range(1, 11))
    ]
    assert "\r" not in stream.getvalue()


def test_terminal_text_renderer_redraws_one_line():
    stream = FakeTerminal()
    bar = ProgressBar(100, stream=stream, renderer="text")
    assert bar.enabled and not bar.use_rich
    bar(report(50, [0.5], member_steps=50))
    bar(report(100, [0.75], member_steps=50))
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "100/100 member-steps" in text.split("\r")[-1]
    assert "best valid_accuracy 0.75" in text


def test_rich_renderer_on_a_terminal(monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "160")  # rich takes a fake terminal's width from COLUMNS
    stream = FakeTerminal()
    with ProgressBar(400, stream=stream, renderer="rich") as bar:
        assert bar.use_rich
        bar(report(50, [0.5, 0.9], diverged=1, member_steps=100))
        shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", stream.getvalue())
        assert "25%" in shown
        assert "100/400 member-steps" in shown
        assert "alive 1/2 diverged 1" in shown
        assert "best valid_accuracy 0.9" in shown
        assert "ETA" in shown
    assert bar._closed


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        ProgressBar(10, mode="up")
    with pytest.raises(ValueError, match="renderer"):
        ProgressBar(10, renderer="tqdm")


def test_format_seconds():
    assert progress_lib._format_seconds(math.nan) == "?"
    assert progress_lib._format_seconds(42.4) == "42s"
    assert progress_lib._format_seconds(185) == "3m05s"
    assert progress_lib._format_seconds(3720) == "1h02m"


def test_module_docstring_example():
    failures, _ = doctest.testmod(progress_lib, optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_counts_a_real_sweep():
    """Fed by the engine: every member-step of the sweep is counted, the best is the results'."""
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1.0, log=True),
                      "optimizer": jt.Fixed("sgd")})
    stream = io.StringIO()
    bar = ProgressBar(6 * 2 * 30, stream=stream, enabled=True)
    results = jt.tune(task, split, space, num_configs=6, seeds=(0, 1), num_steps=30,
                      steps_per_segment=10, batch_size=None, on_segment=bar,
                      engine_options={"max_members_per_chunk": 4})  # three chunks
    assert bar.done == 6 * 2 * 30
    best = max(r.metrics["valid_accuracy"] for r in results if r.status == "completed")
    curves = [max(r.curves["valid_accuracy"]) for r in results if r.status == "completed"]
    assert bar.best == pytest.approx(max(best, *curves), abs=1e-6)
    assert stream.getvalue().splitlines()[-1].startswith("[" + "#" * 28 + "] 100.0%")


def test_restored_work_counts_as_done_but_not_in_the_rate():
    stream, clock = io.StringIO(), Clock()
    bar = ProgressBar(1000, stream=stream, enabled=True, clock=clock)
    bar.restored(600)  # a resume: 600 member-steps came from the checkpoint
    assert bar.done == 600 and bar.fraction == pytest.approx(0.6)
    assert math.isnan(bar.eta_s)  # nothing done by this run yet: no rate
    clock.now += 10.0
    bar(report(20, [0.5, 0.7], member_steps=100))
    assert bar.done == 700
    # 100 member-steps in 10 s: the 300 left take 30 s (not 10 x 300 / 700).
    assert bar.eta_s == pytest.approx(30.0)
    assert stream.getvalue().splitlines()[-1].endswith("10s ETA 30s")
    with pytest.raises(ValueError, match="member_steps=-1"):
        bar.restored(-1)


def _counting_bar(total):
    """A ProgressBar, an on_segment callback that feeds it (with its ``restored``) and the
    member-steps the segment reports carried (``reported[0]``)."""
    bar = ProgressBar(total, stream=io.StringIO(), enabled=True)
    reported = [0]

    def counting(report):
        reported[0] += report.member_steps
        bar(report)

    counting.restored = bar.restored
    return bar, counting, reported


def test_resumed_tune_reaches_100_percent(tmp_path):
    """A resumed sweep tells the bar the rounds and segments it restored: done == total, and
    restored + reported == total (nothing counted twice)."""
    pytest.importorskip("orbax.checkpoint")
    from jaxtune.checkpoint import Checkpointer

    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1.0, log=True),
                      "optimizer": jt.Fixed("sgd")})
    options = dict(num_configs=6, population_size=3, seeds=(0, 1), num_steps=30,
                   steps_per_segment=10, batch_size=None,
                   engine_options={"max_members_per_chunk": 4})
    total = 6 * 2 * 30  # 2 rounds of 6 members in chunks of 4 and 2, 3 segments each
    segments = [0]

    class CrashError(Exception):
        pass

    def crash(report):
        segments[0] += 1
        if segments[0] == 11:  # round 2, second chunk, after its first segment (saved)
            raise CrashError

    directory = tmp_path / "ckpt"
    with pytest.raises(CrashError):
        jt.tune(task, split, space, checkpoint=Checkpointer(directory, every_segments=1),
                on_segment=crash, **options)
    bar, counting, reported = _counting_bar(total)
    jt.tune(task, split, space, checkpoint=directory, resume=True, on_segment=counting,
            **options)
    assert bar.restored_member_steps == 6 * 30 + 4 * 30 + 2 * 10
    assert reported[0] == 2 * 20  # the second chunk's last two segments
    assert bar.done == total and bar.fraction == 1.0


def test_cli_progress_flags():
    """`--quiet` silences the bar, `--progress` forces it, neither: only on a terminal."""
    import argparse

    from jaxtune import cli

    def enabled(**flags):
        return cli._progress_enabled(argparse.Namespace(**flags))

    assert enabled(quiet=True, progress=True) is False
    assert enabled(quiet=False, progress=True) is True
    assert enabled(quiet=False, progress=False) is None
    assert enabled(quiet=False) is None  # arguments saved by a sweep before --progress existed
    args = cli._parser().parse_args(["sweep", "--dataset", "wine", "--space", "s.json",
                                     "--out", "o", "--progress"])
    assert args.progress and not args.quiet


@pytest.mark.parametrize("kind", ["halving", "pbt"])
def test_resumed_scheduler_run_reaches_what_an_uninterrupted_one_reports(tmp_path, kind):
    """A scheduler run (one engine.train call) resumed mid-way tells the bar what its
    checkpoint restored: restored + reported == what an uninterrupted run reports."""
    pytest.importorskip("orbax.checkpoint")
    from jaxtune.checkpoint import Checkpointer
    from jaxtune.scheduled import run_halving, run_pbt

    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1.0, log=True),
                      "optimizer": jt.Fixed("sgd")})

    def run(on_segment, **engine_options):
        options = {"on_segment": on_segment, **engine_options}
        if kind == "halving":
            return run_halving(task, split, space, population_size=6, num_steps=27,
                               min_steps=3, eta=3, max_member_steps=300, batch_size=None,
                               engine_options=options)
        return run_pbt(task, split, space, population_size=4, num_steps=30,
                       steps_per_segment=5, batch_size=None, engine_options=options)

    uninterrupted = [0]
    run(lambda report: uninterrupted.__setitem__(0, uninterrupted[0] + report.member_steps))
    segments = [0]

    class CrashError(Exception):
        pass

    def crash(report):
        segments[0] += 1
        if segments[0] == 3:
            raise CrashError

    directory = tmp_path / "ckpt"
    with pytest.raises(CrashError):
        run(crash, checkpoint=Checkpointer(directory, every_segments=1))
    bar, counting, reported = _counting_bar(uninterrupted[0])
    run(counting, checkpoint=directory, resume=True)
    assert bar.restored_member_steps > 0
    assert bar.restored_member_steps + reported[0] == uninterrupted[0]
