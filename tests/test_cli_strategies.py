"""Tests for ``jaxtune sweep --strategy {grid,random,sobol,bayes,halving,hyperband,pbt}``.

Bad scheduler flags fail before anything is trained (one line, exit 2). Each strategy's sweep
runs in-process on digits with tiny budgets, and its saved results are compared with the
library call the CLI stands for (the same computation, so the same numbers).
"""

import argparse
import json
import math

import numpy as np
import pytest

import jaxtune as jt
from jaxtune import cli
from jaxtune.commands import request
from jaxtune.results import Results

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
    "optimizer": "adam",
    "width": 16,
}
NUM_CONFIGS, NUM_STEPS = 4, 20


@pytest.fixture(autouse=True)
def _no_device_split(monkeypatch):
    # main() would split the CPU into devices for the rest of this process; tests keep one.
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def digits():
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))
    task = jt.classification_task("mlp", num_classes=10, input_shape=(64,))
    return task, split, jt.Space.from_dict(SPACE)


def sweep(space, out, strategy, *extra):
    return ["sweep", "--dataset", "digits", "--space", space, "--out", str(out), "--quiet",
            "--no-plot", "--strategy", strategy, "--num-configs", str(NUM_CONFIGS),
            "--num-steps", str(NUM_STEPS), "--batch-size", "32", *extra]


def error_line(capsys, argv):
    status = cli.main(argv)
    lines = capsys.readouterr().err.splitlines()
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("jaxtune: error: ")
    return lines[0]


# --------------------------------------------------------------------------------------------
# Flags refused before training


@pytest.mark.parametrize(
    ("strategy", "extra", "expected"),
    [
        ("random", ["--eta", "3"], ("--eta", "halving/hyperband", "random")),
        ("bayes", ["--min-steps", "5"], ("--min-steps", "halving/hyperband")),
        ("pbt", ["--max-member-steps", "100"], ("--max-member-steps", "pbt")),
        ("halving", ["--pbt-interval", "2"], ("--pbt-interval", "pbt", "halving")),
        ("hyperband", ["--eta", "1"], ("--eta", ">= 2", "1")),
        ("halving", ["--min-steps", "20"], ("--min-steps 20", "--num-steps 20")),
        ("hyperband", ["--min-steps", "0"], ("--min-steps", "positive", "0")),
        ("halving", ["--max-member-steps", "4", "--min-steps", "5"],
         ("--max-member-steps 4", "--min-steps 5")),
        ("halving", ["--max-member-steps", "-1"], ("--max-member-steps", "positive")),
        ("pbt", ["--pbt-interval", "0"], ("--pbt-interval", "positive")),
        ("pbt", ["--population-size", "2"], ("--population-size", "--num-configs")),
        ("pbt", ["--seeds", "0", "1"], ("--seeds", "one seed", "got 2")),
        ("hyperband", ["--seeds", "0", "1", "2"], ("--seeds", "got 3")),
    ],
)
def test_bad_scheduler_flags_are_one_line(space_file, tmp_path, capsys, strategy, extra,
                                          expected):
    line = error_line(capsys, sweep(space_file, tmp_path / "out", strategy, *extra))
    for text in expected:
        assert text in line, (text, line)
    assert not (tmp_path / "out").exists()  # nothing ran


def test_pbt_needs_two_members(space_file, tmp_path, capsys):
    argv = sweep(space_file, tmp_path / "out", "pbt")
    argv[argv.index("--num-configs") + 1] = "1"
    line = error_line(capsys, argv)
    assert "--num-configs" in line and ">= 2" in line


def test_registry_has_every_strategy():
    assert set(cli.STRATEGIES) >= {"grid", "random", "sobol", "bayes", "halving", "hyperband",
                                   "pbt"}
    for name in ("grid", "random", "sobol", "bayes"):
        assert cli.STRATEGIES[name].run is None  # the ask/tell loop of tune()
    for name in ("halving", "hyperband", "pbt"):
        assert callable(cli.STRATEGIES[name].run)
    parser = cli._parser()
    args = parser.parse_args(["sweep", "--dataset", "digits", "--space", "s", "--out", "o",
                              "--strategy", "hyperband"])
    assert args.eta is None and args.min_steps is None and args.steps_per_segment is None


def test_scheduler_defaults():
    args = argparse.Namespace(min_steps=None, eta=None, num_steps=270, num_configs=8,
                              max_member_steps=None)
    assert request._min_steps(args) == 10  # 270 // 3**3
    assert request._scheduler_budget(args) == 8 * 270  # random search's budget
    args.eta, args.num_steps = 2, 7
    assert request._min_steps(args) == 1  # never below one step
    args.min_steps, args.max_member_steps = 3, 99
    assert request._min_steps(args) == 3 and request._scheduler_budget(args) == 99


# --------------------------------------------------------------------------------------------
# Sweeps: the CLI against the library call it stands for


def assert_same_rows(got: Results, want: Results):
    assert [r.member_id for r in got] == [r.member_id for r in want]
    assert [r.status for r in got] == [r.status for r in want]
    for a, b in zip(got, want, strict=True):
        for name, value in a.config.items():
            other = b.config[name]
            if isinstance(value, float):
                assert value == pytest.approx(other, rel=1e-12, abs=0)
            else:
                assert value == other
        # Same program, same process: the same numbers up to float32 JSON round trips.
        for name, value in b.metrics.items():
            np.testing.assert_allclose(a.metrics[name], value, rtol=1e-6, atol=1e-7)


def test_halving_sweep_matches_run_halving(space_file, tmp_path, digits):
    from jaxtune.scheduled import run_halving

    task, split, space = digits
    out = tmp_path / "halving"
    # eta 4: with the 64-bit member keys, eta 2's first member completes and spends the
    # budget with only 3 members; with eta 4 four members stop early before one completes.
    status = cli.main(sweep(space_file, out, "halving", "--min-steps", "5", "--eta", "4"))
    assert status == 0
    got = Results.load(out)
    want = run_halving(task, split, space, population_size=math.ceil(NUM_CONFIGS / 4),
                       num_steps=NUM_STEPS, min_steps=5, eta=4,
                       max_member_steps=NUM_CONFIGS * NUM_STEPS, num_brackets=1,
                       batch_size=32, seed=0)
    assert_same_rows(got, want)
    assert got.metadata["scheduler"]["kind"] == "successive_halving"
    # Random search's budget, never exceeded; early stopping started more configs than that.
    assert got.metadata["member_steps"] <= NUM_CONFIGS * NUM_STEPS
    assert len(got) > NUM_CONFIGS
    assert len(got.filter(status="completed")) >= 1
    assert (out / "results.csv").is_file()


def test_hyperband_sweep_spends_its_budget(space_file, tmp_path, capsys, digits):
    from jaxtune.scheduled import run_halving

    task, split, space = digits
    out = tmp_path / "hyperband"
    argv = sweep(space_file, out, "hyperband", "--min-steps", "5", "--population-size", "1",
                 "--max-member-steps", "100")
    argv[argv.index("--quiet")] = "--progress"  # the bar, even though stderr is not a terminal
    assert cli.main(argv) == 0
    printed = capsys.readouterr()
    assert "stopped early" in printed.out and "ranked by valid_accuracy" in printed.out
    assert "/100 member-steps" in printed.err  # the progress bar counts the scheduler's budget
    got = Results.load(out)
    want = run_halving(task, split, space, population_size=1, num_steps=NUM_STEPS, min_steps=5,
                       max_member_steps=100, num_brackets=None, batch_size=32, seed=0)
    assert_same_rows(got, want)
    assert got.metadata["scheduler"]["kind"] == "hyperband"
    assert 0 < got.metadata["member_steps"] <= 100


def test_pbt_sweep_matches_run_pbt(space_file, tmp_path, digits):
    from jaxtune.scheduled import run_pbt

    task, _, space = digits
    # --seed also draws the train/valid/test split.
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=1))
    out = tmp_path / "pbt"
    argv = sweep(space_file, out, "pbt", "--steps-per-segment", "5", "--pbt-interval", "2",
                 "--seed", "1")
    assert cli.main(argv) == 0
    got = Results.load(out)
    want = run_pbt(task, split, space, population_size=NUM_CONFIGS, num_steps=NUM_STEPS,
                   interval_segments=2, batch_size=32, steps_per_segment=5, seed=1)
    assert_same_rows(got, want)
    assert got.metadata["pbt"]["interval_segments"] == 2
    assert len(got) == NUM_CONFIGS
    assert all(row.status == "completed" for row in got)
    assert any(row.hp_schedule for row in got)  # the worst members copied the best


@pytest.mark.parametrize("strategy", ["grid", "random", "sobol", "bayes"])
def test_ask_tell_sweeps_match_tune(space_file, tmp_path, digits, strategy):
    task, split, space = digits
    args = cli._parser().parse_args(sweep(space_file, tmp_path / "o", strategy))
    try:
        chosen = cli.STRATEGIES[strategy].factory(args)
    except ImportError:
        pytest.skip(f"{strategy} is not available in this installation")
    out = tmp_path / strategy
    assert cli.main(sweep(space_file, out, strategy, "--steps-per-segment", "5")) == 0
    got = Results.load(out)
    num_configs = min(NUM_CONFIGS, len(space.grid(5))) if strategy == "grid" else NUM_CONFIGS
    rounds = cli.STRATEGIES[strategy].default_rounds
    want = jt.tune(task, split, space, chosen, num_configs=num_configs, num_steps=NUM_STEPS,
                   population_size=math.ceil(num_configs / rounds) if rounds > 1 else None,
                   batch_size=32, steps_per_segment=5, seed=0)
    assert_same_rows(got, want)
    assert len(got) == num_configs


def test_scheduler_without_a_completed_member(space_file, tmp_path, capsys):
    """A budget too small to finish anyone still saves every member and says why."""
    out = tmp_path / "o"
    argv = sweep(space_file, out, "halving", "--min-steps", "5", "--max-member-steps", "5")
    assert cli.main(argv) == 0
    assert "none completed --num-steps" in capsys.readouterr().out
    results = Results.load(out)
    assert len(results) == 1 and not results.filter(status="completed")
    assert results.metadata["member_steps"] == 5  # one member to the first rung
