"""Tests for jaxtune.cli: one-line errors with exit status 2 for bad input, and end-to-end runs.

Bad input runs ``main([...])`` in-process (every check fails before anything is trained); the
end-to-end sweep runs ``python -m jaxtune.cli`` in a subprocess, as a user would.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxtune import cli
from jaxtune.commands import resume
from jaxtune.results import MemberResult, Results

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
    "width": {"type": "choice", "values": [16, 32]},
    "optimizer": "adam",
}


@pytest.fixture(autouse=True)
def _no_device_split(monkeypatch):
    # main() would split the CPU into devices for the rest of this process; tests keep one.
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def space_file(tmp_path):
    return write(tmp_path / "space.json", json.dumps(SPACE))


def sweep_args(space, out, *extra):
    return ["sweep", "--dataset", "wine", "--space", space, "--out", str(out), "--quiet",
            "--no-plot", *extra]


def assert_one_line_error(capsys, argv, *fields):
    """main(argv) exits 2 with exactly one stderr line naming every one of ``fields``."""
    status = cli.main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2, captured
    assert len(lines) == 1, lines
    assert lines[0].startswith("jaxtune: error: "), lines
    for field in fields:
        assert field in lines[0], (field, lines[0])
    assert "Traceback" not in captured.err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# The space file


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        ({"learning_rate": {"type": "float", "low": 1e-3, "hihg": 1.0}}, ["learning_rate", "hihg"]),
        ({"learning_rate": {"type": "float", "low": "small", "high": 1.0}},
         ["learning_rate", "low"]),
        ({"learning_rate": {"type": "float", "low": 0.1, "high": 0.1}}, ["learning_rate", "low"]),
        ({"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, ["lr", "log"]),
        ({"width": {"type": "choice", "values": []}}, ["width", "values"]),
        ({"width": {"type": "choice", "values": 64}}, ["width", "values"]),
        ({"depth": {"type": "int", "low": 1.5, "high": 3}}, ["depth", "low"]),
        ({"depth": {"type": "integer", "low": 1, "high": 3}}, ["depth", "type"]),
        ({"depth": {"low": 1, "high": 3}}, ["depth", "type"]),
        ({"dropout": {"type": "float", "low": 0.0, "high": 0.5, "static": "yes"}},
         ["dropout", "static"]),
        ({"hidden_sizes": [64, 64]}, ["hidden_sizes"]),
        ({}, ["empty"]),
        ([1, 2], ["mapping"]),
    ],
)
def test_bad_space_spec(tmp_path, capsys, spec, fields):
    space = write(tmp_path / "space.json", json.dumps(spec))
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "space.json", *fields)


def test_malformed_json(tmp_path, capsys):
    space = write(tmp_path / "space.json", '{"learning_rate": {"type": "float", "low": 1e-3,}')
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "space.json", "JSON")


def test_malformed_yaml(tmp_path, capsys):
    pytest.importorskip("yaml")
    space = write(tmp_path / "space.yaml", "learning_rate: {type: float, low: 1e-3\n  high: [\n")
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "space.yaml", "YAML")


def test_yaml_space_error_names_the_field(tmp_path, capsys):
    pytest.importorskip("yaml")
    space = write(tmp_path / "space.yml", "learning_rate:\n  type: float\n  low: 1e-3\n")
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "learning_rate", "high")


def test_space_file_suffix(tmp_path, capsys):
    space = write(tmp_path / "space.txt", json.dumps(SPACE))
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "space.txt", ".json")


def test_missing_space_file(tmp_path, capsys):
    argv = sweep_args(str(tmp_path / "nope.json"), tmp_path / "out")
    assert_one_line_error(capsys, argv, "--space", "nope.json")


def test_space_is_a_directory(tmp_path, capsys):
    assert_one_line_error(capsys, sweep_args(str(tmp_path), tmp_path / "out"), "--space")


def test_unknown_optimizer_in_space(tmp_path, capsys):
    space = write(tmp_path / "space.json", json.dumps({**SPACE, "optimizer": "adamm"}))
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "adamm")


# ---------------------------------------------------------------------------------------------
# Flags


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--num-configs", "0"),
        ("--num-configs", "-3"),
        ("--num-steps", "0"),
        ("--num-steps", "-1"),
        ("--steps-per-segment", "0"),
        ("--population-size", "0"),
        ("--grid-points", "0"),
        ("--batch-size", "-1"),
        ("--top", "-1"),
    ],
)
def test_non_positive_budgets(space_file, tmp_path, capsys, flag, value):
    assert_one_line_error(capsys, sweep_args(space_file, tmp_path / "out", flag, value), flag)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--dataset", "mnist"),
        ("--model", "transformer"),
        ("--strategy", "annealing"),
        ("--num-configs", "many"),
        ("--num-steps", "1.5"),
        ("--format", "jpg"),
    ],
)
def test_unknown_choices_and_wrong_types(space_file, tmp_path, capsys, flag, value):
    argv = sweep_args(space_file, tmp_path / "out")
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    assert_one_line_error(capsys, argv, flag, value)


def test_missing_required_flag(tmp_path, capsys):
    assert_one_line_error(capsys, ["sweep", "--dataset", "wine", "--out", str(tmp_path)],
                          "--space")


@pytest.mark.parametrize("argv", [[], ["train"], ["sweep", "--bogus"]])
def test_usage_errors(capsys, argv):
    assert_one_line_error(capsys, argv, "jaxtune")


def test_unknown_metric(space_file, tmp_path, capsys):
    argv = sweep_args(space_file, tmp_path / "out", "--metric", "valid_f1")
    assert_one_line_error(capsys, argv, "--metric", "valid_f1")


def test_out_is_a_file(space_file, tmp_path, capsys):
    out = write(tmp_path / "file", "")
    assert_one_line_error(capsys, sweep_args(space_file, out), "--out")


@pytest.mark.parametrize("flag", ["--out", "--checkpoint-dir"])
def test_unwritable_output_is_refused_before_training(space_file, tmp_path, capsys, monkeypatch,
                                                      flag):
    """An empty path, a path under a file, or a folder that cannot be written: one line
    before anything is trained (training would fail the test: it is replaced by a bomb)."""
    from jaxtune import tuning

    def bomb(*args, **kwargs):
        raise AssertionError("trained before the output folder was checked")

    monkeypatch.setattr(tuning, "tune", bomb)
    out = tmp_path / "out"

    def argv(path):
        if flag == "--out":
            return sweep_args(space_file, path)
        return sweep_args(space_file, out, "--checkpoint-dir", str(path))

    assert_one_line_error(capsys, argv(""), flag, "empty")
    write(tmp_path / "file", "")
    assert_one_line_error(capsys, argv(tmp_path / "file" / "sub"), flag, "which is a file")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real_mkstemp = __import__("tempfile").mkstemp

    def denied(*args, dir=None, **kwargs):  # what a read-only folder does (root ignores chmod)
        if dir is not None and Path(dir) == read_only:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr("tempfile.mkstemp", denied)
    assert_one_line_error(capsys, argv(read_only), flag, "cannot write", "Permission denied")


def test_results_that_cannot_be_written_are_kept_in_a_named_folder(space_file, tmp_path, capsys,
                                                                   monkeypatch):
    """The disk fills up after training: one line (exit 2) naming where the results are."""
    out = tmp_path / "out"
    real_save = Results.save

    def full_disk(self, directory, **kwargs):
        if Path(directory) == out:
            raise OSError(28, "No space left on device")
        return real_save(self, directory, **kwargs)

    monkeypatch.setattr(Results, "save", full_disk)
    line = assert_one_line_error(
        capsys, sweep_args(space_file, out, "--num-configs", "2", "--num-steps", "10"),
        "--out", "No space left on device", "kept them in",
    )
    fallback = Path(line.rpartition("kept them in ")[2])
    assert len(Results.load(fallback)) == 2


def test_a_second_sweep_into_the_same_out_is_refused(space_file, tmp_path, capsys):
    """While one sweep holds --out (its lock), another is refused in one line before training."""
    from jaxtune import storage

    out = tmp_path / "out"
    with storage.FolderLock(out, "--out"):
        assert_one_line_error(capsys, sweep_args(space_file, out), "--out",
                              "being written by another jaxtune process")
    assert cli.main(sweep_args(space_file, out, "--num-configs", "2", "--num-steps", "10")) == 0
    capsys.readouterr()
    for name in ("results.json", "results.csv"):
        assert (out / name).stat().st_mode & 0o777 == 0o644


def test_grid_too_large(tmp_path, capsys):
    spec = {f"p{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(10)}
    space = write(tmp_path / "space.json", json.dumps(spec))
    argv = sweep_args(space, tmp_path / "out", "--strategy", "grid")
    assert_one_line_error(capsys, argv, "grid")


def test_unavailable_strategy_is_one_line(space_file, tmp_path, capsys, monkeypatch):
    def missing(args):
        return cli._strategy_function("annealing_search", "jaxtune.strategies.annealing")()

    monkeypatch.setitem(cli.STRATEGIES, "annealing", cli.StrategyEntry(missing, "not there"))
    argv = sweep_args(space_file, tmp_path / "out", "--strategy", "annealing")
    assert_one_line_error(capsys, argv, "--strategy", "annealing")


def test_strategy_module_with_missing_dependency(space_file, tmp_path, capsys, monkeypatch):
    def broken(args):
        raise ModuleNotFoundError("No module named 'scipy'", name="scipy")

    monkeypatch.setitem(cli.STRATEGIES, "broken", cli.StrategyEntry(broken, "needs scipy"))
    argv = sweep_args(space_file, tmp_path / "out", "--strategy", "broken")
    assert_one_line_error(capsys, argv, "scipy")


def test_strategy_registry():
    assert {"grid", "random", "sobol", "bayes"} <= set(cli.STRATEGIES)
    for entry in cli.STRATEGIES.values():
        assert callable(entry.factory) and entry.help and entry.default_rounds >= 1
    parser = cli._parser()
    sweep = parser._subparsers._group_actions[0].choices["sweep"]
    strategy = next(a for a in sweep._actions if a.dest == "strategy")
    assert tuple(strategy.choices) == tuple(cli.STRATEGIES)


@pytest.mark.parametrize("name", ["sobol", "bayes"])
def test_lazy_strategies_build_or_fail_in_one_line(space_file, tmp_path, capsys, name):
    """sobol/bayes import their module only when chosen; if it is missing: one line, exit 2."""
    import argparse

    args = argparse.Namespace(grid_points=5)
    try:
        strategy = cli.STRATEGIES[name].factory(args)
    except ImportError:
        argv = sweep_args(space_file, tmp_path / "out", "--strategy", name)
        assert_one_line_error(capsys, argv, "--strategy")
    else:
        assert callable(strategy.init) and callable(strategy.ask) and callable(strategy.tell)


def test_debug_env_reraises(space_file, tmp_path, monkeypatch):
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="--num-configs"):
        cli.main(sweep_args(space_file, tmp_path / "out", "--num-configs", "0"))


def test_bugs_are_not_swallowed(space_file, tmp_path, monkeypatch):
    """Only input errors become one line; anything else keeps its traceback."""

    def buggy(args):
        raise KeyError("a bug")

    monkeypatch.setitem(cli.STRATEGIES, "buggy", cli.StrategyEntry(buggy, "raises KeyError"))
    with pytest.raises(KeyError):
        cli.main(sweep_args(space_file, tmp_path / "out", "--strategy", "buggy"))


# ---------------------------------------------------------------------------------------------
# show / plot on saved results


def small_results():
    rows = []
    for i, lr in enumerate([1e-3, 1e-2, 1e-1]):
        accuracy = 0.8 + 0.05 * i
        rows.append(
            MemberResult(
                member_id=i, config={"learning_rate": lr, "optimizer": "adam"}, seed=0,
                fold=None, static_group="optimizer=adam", status="completed",
                diverged_step=None,
                metrics={"valid_accuracy": accuracy, "valid_loss": 1.0 - accuracy},
                curve_steps=[10, 20],
                curves={"valid_accuracy": [0.5, accuracy], "valid_loss": [0.9, 1 - accuracy]},
                wall_time_s=0.1,
            )
        )
    return Results(rows, {"metric": "valid_accuracy", "mode": "max"})


@pytest.fixture
def saved(tmp_path):
    directory = tmp_path / "sweep"
    small_results().save(directory)
    return directory


def test_show(saved, capsys):
    assert cli.main(["show", str(saved), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "ranked by valid_accuracy (max)" in out
    assert "learning_rate" in out
    assert len(out.strip().splitlines()) == 3 + 2  # caption, header, rule, two rows


def test_show_other_metric_infers_mode(saved, capsys):
    assert cli.main(["show", str(saved), "--metric", "valid_loss"]) == 0
    assert "ranked by valid_loss (min)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["show", "plot"])
def test_missing_results_directory(tmp_path, capsys, command):
    assert_one_line_error(capsys, [command, str(tmp_path / "nowhere")], "directory", "nowhere")


@pytest.mark.parametrize("command", ["show", "plot"])
def test_directory_without_results(tmp_path, capsys, command):
    assert_one_line_error(capsys, [command, str(tmp_path)], "directory", "results.json")


@pytest.mark.parametrize(
    "text",
    ["{not json", '{"format": "something/else"}', '{"format": "jaxtune.results/1", "rows": 3}',
     '{"format": "jaxtune.results/1", "rows": [{"member_id": 0}], "metadata": {}}', "\xff\xfe"],
)
@pytest.mark.parametrize("command", ["show", "plot"])
def test_corrupt_results(tmp_path, capsys, command, text):
    (tmp_path / "results.json").write_text(text, encoding="latin-1")
    assert_one_line_error(capsys, [command, str(tmp_path)], "directory", "results.json")


@pytest.mark.parametrize("command", ["show", "plot"])
def test_unknown_metric_in_saved_results(saved, capsys, command):
    assert_one_line_error(capsys, [command, str(saved), "--metric", "valid_f1"], "--metric")


def test_plot_svg_in_process(saved, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "figures"
    assert cli.main(["plot", str(saved), "--format", "svg", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("summary", "parallel_coordinates", "best_so_far"):
        svg = out / f"{name}.svg"
        assert svg.is_file() and "<svg" in svg.read_text(encoding="utf-8")[:2000]
        assert str(svg) in printed


# ---------------------------------------------------------------------------------------------
# End to end, as a user runs it


def run_jaxtune(*args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop(cli.DEBUG_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "jaxtune.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def e2e_sweep(tmp_path, *extra):
    space = write(tmp_path / "space.json", json.dumps(SPACE))
    out = tmp_path / "runs" / "wine"
    done = run_jaxtune(
        "sweep", "--dataset", "wine", "--space", space, "--num-configs", "4", "--num-steps", "20",
        "--steps-per-segment", "10", "--batch-size", "32", "--out", str(out), *extra,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "results.json").is_file() and (out / "results.csv").is_file()
    results = Results.load(out)
    assert len(results) == 4 and results.metadata["metric"] == "valid_accuracy"
    assert "ranked by valid_accuracy" in done.stdout
    return out, done


@pytest.mark.slow
def test_sweep_show_plot_end_to_end(tmp_path):
    out, _ = e2e_sweep(tmp_path, "--no-plot", "--quiet")
    assert not (out / "summary.png").exists()

    shown = run_jaxtune("show", str(out), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert lines[0].startswith("4 of 4 members, ranked by valid_accuracy (max)")
    assert lines[1].split()[:3] == ["rank", "member", "status"]
    assert len(lines) == 3 + 4

    plotted = run_jaxtune("plot", str(out), "--format", "svg", cwd=tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    assert "<svg" in (out / "summary.svg").read_text(encoding="utf-8")[:2000]


@pytest.mark.slow
def test_sweep_with_plots_end_to_end(tmp_path):
    pytest.importorskip("matplotlib")
    out, done = e2e_sweep(tmp_path, "--progress")
    for name in ("summary", "parallel_coordinates", "best_so_far", "learning_curves"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {out / name}.png" in done.stdout
    assert "member-steps" in done.stderr  # the progress bar, forced on although not a terminal


@pytest.mark.slow
def test_bad_input_through_the_console_command(tmp_path):
    """The real process: status 2, one stderr line, no traceback."""
    done = run_jaxtune("sweep", "--dataset", "wine", "--space", "missing.json", "--out", "o",
                       cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("jaxtune: error: --space")


def test_batch_larger_than_training_set(space_file, tmp_path, capsys):
    argv = sweep_args(space_file, tmp_path / "out", "--batch-size", "500")
    assert_one_line_error(capsys, argv, "--batch-size", "500", "training rows")


class _CrashError(Exception):
    """Stands for a crash mid-sweep."""


def test_resume_from_another_folder_takes_everything_from_the_checkpoint(tmp_path, monkeypatch):
    """--resume uses the checkpoint's absolute paths (``--out=X`` and ``--tensorboard`` too), its
    space (the file may be gone) and its CPU device count (not this machine's)."""
    pytest.importorskip("orbax.checkpoint")
    pytest.importorskip("tensorboardX")
    from jaxtune.checkpoint import MARKER
    from jaxtune.progress import ProgressBar

    first = tmp_path / "first"
    first.mkdir()
    write(first / "space.json", json.dumps(SPACE))
    devices = []
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: devices.append(num_devices))
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "3")
    monkeypatch.chdir(first)
    argv = ["sweep", "--dataset", "wine", "--space", "space.json", "--out=out", "--tensorboard",
            "tb", "--num-configs", "2", "--num-steps", "20", "--steps-per-segment", "10",
            "--quiet", "--no-plot", "--checkpoint-dir", "ckpt", "--checkpoint-every-segments", "1"]
    original = ProgressBar.__call__

    def crash(self, report):
        original(self, report)
        raise _CrashError

    monkeypatch.setattr(ProgressBar, "__call__", crash)
    with pytest.raises(_CrashError):
        cli.main(argv)
    saved = json.loads((first / "ckpt" / MARKER).read_text())["metadata"]["cli"]
    assert saved["cpu_devices"] == 3
    assert f"--out={first / 'out'}" in saved["argv"]
    assert str(first / "tb") in saved["argv"] and str(first / "space.json") in saved["argv"]
    assert saved["space"]["learning_rate"]["log"] is True
    (first / "space.json").unlink()  # the resume must not need it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("JAXTUNE_CPU_DEVICES", "5")  # another machine
    monkeypatch.setattr(ProgressBar, "__call__", original)
    assert cli.main(["sweep", "--resume", str(first / "ckpt"), "--quiet"]) == 0
    assert devices == [3, 3]
    assert len(Results.load(first / "out")) == 2
    assert any((first / "tb").iterdir())
    assert not any(elsewhere.iterdir())  # nothing written relative to the new folder


def test_absolute_paths_of_both_flag_forms():
    argv = ["sweep", "--out=o", "--space", "s.json", "--tensorboard", "/abs/tb", "--metric",
            "valid_loss", "--checkpoint-dir=c"]
    assert resume.absolute_paths(argv, "/work") == [
        "sweep", "--out=/work/o", "--space", "/work/s.json", "--tensorboard", "/abs/tb",
        "--metric", "valid_loss", "--checkpoint-dir=/work/c"]


# ---------------------------------------------------------------------------------------------
# Input beyond what JAX, XLA or the host hold, and strict space files (issue 11)


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        (["--seed", str(2**70)], ["--seed", str(2**70), "4294967295"]),
        (["--seed", "-1"], ["--seed", "-1"]),
        (["--seeds", "0", str(2**31)], ["--seeds", str(2**31)]),
        (["--num-steps", "2147483652"], ["--num-steps", "2147483652", "int32"]),
        (["--steps-per-segment", str(2**40)], ["--steps-per-segment"]),
        (["--num-configs", str(10**12)], ["--num-configs", str(10**12), "members"]),
    ],
)
def test_values_beyond_the_limits(space_file, tmp_path, capsys, extra, fields):
    assert_one_line_error(capsys, sweep_args(space_file, tmp_path / "out", *extra), *fields)


def test_num_configs_beyond_host_memory(space_file, tmp_path, capsys, monkeypatch):
    from jaxtune import limits

    monkeypatch.setattr(limits, "host_memory_bytes", lambda: 2**20)
    argv = sweep_args(space_file, tmp_path / "out", "--num-configs", "5000", "--seeds", "0", "1")
    assert_one_line_error(capsys, argv, "--num-configs", "10000 members", "host memory")


def test_duplicate_keys_in_space_files(tmp_path, capsys):
    text = '{"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}, "width": 16, ' \
           '"optimizer": "adam", "width": 32}'
    space = write(tmp_path / "space.json", text)
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "'width'", "twice")
    pytest.importorskip("yaml")
    space = write(tmp_path / "space.yaml", "width: 16\noptimizer: adam\nwidth: 32\n")
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "'width'", "twice")


def test_yaml_alias_bomb_is_one_line_and_quick(tmp_path, capsys):
    pytest.importorskip("yaml")
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    space = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    started = time.perf_counter()
    assert_one_line_error(capsys, sweep_args(space, tmp_path / "out"), "bomb.yaml", "aliases")
    assert time.perf_counter() - started < 1.0


def test_float_width_is_refused_before_training(tmp_path, capsys):
    spec = {**SPACE, "width": {"type": "choice", "values": [8, 8.5]}}
    space = write(tmp_path / "space.json", json.dumps(spec))
    argv = sweep_args(space, tmp_path / "out", "--strategy", "grid", "--grid-points", "1")
    assert_one_line_error(capsys, argv, "'width'", "8.5", "built as an integer")
    # (--out itself is created and write-checked before training; nothing is written in it.)
    assert not (tmp_path / "out" / "results.json").exists()


def test_show_damaged_results(saved, capsys):
    path = saved / "results.json"
    text = path.read_text()
    path.write_text(text.replace('"metadata": {', '"metadata": {"x": ' + "[" * 100_000
                                 + "]" * 100_000 + ", ", 1))
    assert_one_line_error(capsys, ["show", str(saved)], "directory")
    huge = re.sub(r'"valid_loss": [0-9.e-]+', '"valid_loss": 1' + "0" * 400, text, count=1)
    assert huge != text
    path.write_text(huge)
    assert_one_line_error(capsys, ["show", str(saved)], "directory")


def test_show_huge_integer_config(tmp_path, capsys):
    rows = small_results()
    huge = Results([dataclasses.replace(rows[0], config={"learning_rate": 10**400}),
                    *list(rows)[1:]], rows.metadata)
    huge.save(tmp_path / "huge")
    assert cli.main(["show", str(tmp_path / "huge")]) == 0
    assert "1000000000" in capsys.readouterr().out
