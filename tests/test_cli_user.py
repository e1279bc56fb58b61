"""``jaxtune sweep --task MODULE:ATTR --data FILE``: a researcher's own Task and data.

A user module is written to ``tmp_path`` (the current directory of the test, as a user runs the
command from their project); the sweeps run in-process through :func:`jaxtune.cli.main` and
their saved results are compared with the Python API on the same task, data and space (the same
computation on the same devices: equal bit for bit). Every bad input is one ``jaxtune: error:``
line naming the flag and the field, exit status 2, before anything compiles.
"""

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxtune as jt
from jaxtune import cli, userdata
from jaxtune.results import Results
from jaxtune.scheduled import run_halving, run_pbt

SPACE = {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
         "optimizer": "adam"}
NUM_CONFIGS, NUM_STEPS = 4, 20

#: A hand-written softmax regression: the factory takes the data's description by name.
USER_MODULE = '''
import jax
import jax.numpy as jnp
import jaxtune as jt


def _loss(params, batch, key, hp):
    logits = batch["x"] @ params["w"] + params["b"]
    picked = jnp.take_along_axis(logits, batch["y"][:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked), {}


def make_task(input_shape, num_classes):
    def init(key, hp):
        return {"w": 0.01 * jax.random.normal(key, (input_shape[0], num_classes)),
                "b": jnp.zeros(num_classes)}

    def evaluate(params, data, hp):
        logits = data["x"] @ params["w"] + params["b"]
        return {"accuracy": jnp.mean(jnp.argmax(logits, -1) == data["y"]),
                "loss": _loss(params, data, None, hp)[0]}

    return jt.Task(init, _loss, evaluate, name="softmax",
                   metric_modes={"accuracy": "max", "loss": "min"},
                   input_shape=tuple(input_shape), num_classes=num_classes,
                   kind="classification")


def make_task_bare():
    return make_task((4,), 3)


TASK = make_task((4,), 3)
NARROW = make_task((3,), 3)
NOT_A_TASK = 3
#: The same task as a Step: its own step through the same engine path.
STEP = jt.step.from_task(TASK)
#: A data-free Step: nothing for the CLI to train it on.
LOOP = jt.training_function(lambda key, hp: jnp.zeros(()),
                            lambda carry, key, hp: (carry, {"loss": carry}),
                            metric_modes={"loss": "min"})


def raises():
    raise ValueError("no GPU here\\nsecond line")


def returns_int():
    return 5


def needs(foo):
    return foo
'''


@pytest.fixture(autouse=True)
def _user_project(tmp_path, monkeypatch):
    """``tmp_path`` as the current directory holding ``usermod.py``; imports undone after."""
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "usermod.py").write_text(USER_MODULE, encoding="utf-8")
    (tmp_path / "space.json").write_text(json.dumps(SPACE), encoding="utf-8")
    yield
    for name in ("usermod", "brokenmod", "syntaxmod", "eagermod"):
        sys.modules.pop(name, None)


def arrays(num_rows=150, seed=0):
    """Three classes, four features (float32 values that a CSV holds exactly)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_rows, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return x, y


@pytest.fixture
def npz_file(tmp_path):
    x, y = arrays()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return "data.npz"


def write_csv(path, x, y, columns=("a", "b", "label", "c", "d")):
    """``x`` and ``y`` as a CSV whose target ``label`` sits between the features."""
    table = np.concatenate([x[:, :2], y[:, None].astype(np.float64), x[:, 2:]], axis=1)
    lines = [",".join(columns)] + [",".join(repr(float(v)) for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path.name


def sweep(*extra):
    return ["sweep", "--space", "space.json", "--out", "out", "--quiet", "--no-plot",
            "--num-configs", str(NUM_CONFIGS), "--num-steps", str(NUM_STEPS),
            "--batch-size", "32", *extra]


def python_task_and_split(x, y, seed=0):
    """What the CLI trains, made with the Python API."""
    task = importlib.import_module("usermod").make_task((4,), 3)
    dataset = jt.Dataset(x, y, "classification", 3, "data")
    return task, jt.standardize(jt.train_valid_test_split(dataset, seed=seed))


def assert_same_rows(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert (a.config, a.status, a.static_group) == (b.config, b.status, b.static_group)
        assert a.metrics == b.metrics  # bit for bit: the same computation, the same devices
        assert a.curves == b.curves


# ---------------------------------------------------------------------------------------------
# End to end: the user's task and data through every kind of strategy


def test_npz_sweep_with_a_task_factory_matches_tune(npz_file):
    argv = sweep("--task", "usermod:make_task", "--data", npz_file, "--steps-per-segment", "10")
    assert cli.main(argv) == 0
    got = Results.load("out")
    task, split = python_task_and_split(*arrays())
    want = jt.tune(task, split, jt.Space.from_dict(SPACE), jt.random_search(),
                   num_configs=NUM_CONFIGS, num_steps=NUM_STEPS, batch_size=32,
                   steps_per_segment=10, seed=0)
    assert_same_rows(got, want)
    assert got.metadata["metric"] == "valid_accuracy"
    # The task as a Step (jt.step.from_task): the same sweep, the same programs, the same rows.
    assert cli.main([*argv[:argv.index("--task") + 1], "usermod:STEP",
                     *argv[argv.index("--task") + 2:], "--out", "out_step"]) == 0
    assert_same_rows(Results.load("out_step"), want)


def test_csv_halving_with_a_task_object_matches_run_halving(tmp_path):
    x, y = arrays()
    csv = write_csv(tmp_path / "data.csv", x, y)
    loaded = userdata.load_data_file(csv, target="label")
    np.testing.assert_array_equal(loaded.dataset.x, x)
    np.testing.assert_array_equal(loaded.dataset.y, y)
    assert (loaded.dataset.kind, loaded.dataset.num_classes) == ("classification", 3)
    np.savetxt(tmp_path / "last.csv", np.column_stack([x, y]), delimiter=",",
               header="a,b,c,d,label", comments="")
    last = userdata.load_data_file(tmp_path / "last.csv").dataset  # the target: the last column
    np.testing.assert_array_equal(last.y, y)
    np.testing.assert_allclose(last.x, x, rtol=1e-6)
    argv = sweep("--task", "usermod:TASK", "--data", csv, "--target", "label",
                 "--strategy", "halving", "--min-steps", "5", "--eta", "4")
    assert cli.main(argv) == 0
    got = Results.load("out")
    task, split = python_task_and_split(x, y)
    want = run_halving(task, split, jt.Space.from_dict(SPACE),
                       population_size=math.ceil(NUM_CONFIGS / 4), num_steps=NUM_STEPS,
                       min_steps=5, eta=4, max_member_steps=NUM_CONFIGS * NUM_STEPS,
                       num_brackets=1, batch_size=32, steps_per_segment=5, seed=0)
    assert_same_rows(got, want)
    assert got.metadata["scheduler"]["kind"] == "successive_halving"
    assert len(got.filter(status="stopped")) >= 1  # members did stop at a rung


def test_pbt_with_a_bare_factory_and_engine_flags(npz_file):
    argv = sweep("--task", "usermod:make_task_bare", "--data", npz_file, "--strategy", "pbt",
                 "--batch-mode", "shared", "--member-loop", "vmap", "--seed", "1",
                 "--steps-per-segment", "10")
    assert cli.main(argv) == 0
    got = Results.load("out")
    task, split = python_task_and_split(*arrays(), seed=1)
    want = run_pbt(task, split, jt.Space.from_dict(SPACE), population_size=NUM_CONFIGS,
                   num_steps=NUM_STEPS, batch_size=32, steps_per_segment=10, seed=1,
                   engine_options={"batch_mode": "shared", "member_loop": "vmap"})
    assert_same_rows(got, want)


def test_data_with_a_ready_made_model_and_given_parts(tmp_path):
    """--data alone trains --model; the valid/test arrays of the file are kept as given."""
    x, y = arrays()
    xv, yv = arrays(30, seed=1)
    xt, yt = arrays(20, seed=2)
    np.savez(tmp_path / "parts.npz", x=x, y=y, x_valid=xv, y_valid=yv, x_test=xt, y_test=yt)
    split = userdata.split_data_file(userdata.load_data_file("parts.npz"), seed=0)
    for part, (want_x, want_y) in {"train": (x, y), "valid": (xv, yv), "test": (xt, yt)}.items():
        np.testing.assert_array_equal(getattr(split, f"x_{part}"), want_x)
        np.testing.assert_array_equal(getattr(split, f"y_{part}"), want_y)
    argv = sweep("--data", "parts.npz", "--model", "linear", "--num-configs", "2",
                 "--steps-per-segment", "10")
    assert cli.main(argv) == 0
    got = Results.load("out")
    want = jt.tune(jt.classification_task("linear", num_classes=3, input_shape=(4,)),
                   jt.standardize(split), jt.Space.from_dict(SPACE), jt.random_search(),
                   num_configs=2, num_steps=NUM_STEPS, batch_size=32, steps_per_segment=10)
    assert_same_rows(got, want)


def test_regression_csv_is_inferred_and_kind_overrides(tmp_path):
    x, _ = arrays()
    target = x @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32) + 0.25
    csv = write_csv(tmp_path / "reg.csv", x, target.astype(np.float32))
    assert userdata.load_data_file(csv, target="label").dataset.kind == "regression"
    whole = write_csv(tmp_path / "whole.csv", x, np.abs(np.round(target)))
    assert userdata.load_data_file(whole, target="label").dataset.kind == "classification"
    signed = write_csv(tmp_path / "signed.csv", x, np.round(target))  # negative: no labels
    assert np.round(target).min() < 0
    assert userdata.load_data_file(signed, target="label").dataset.kind == "regression"
    loaded = userdata.load_data_file(whole, target="label", kind="regression").dataset
    assert loaded.kind == "regression" and loaded.y.dtype == np.float32


def test_help_still_loads_no_jax():
    code = ("import sys\nfrom jaxtune import cli\ntry:\n    cli.main(['sweep', '--help'])\n"
            "except SystemExit:\n    pass\nassert 'jax' not in sys.modules, 'jax imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "--task MODULE:ATTR" in done.stdout and "--data FILE" in done.stdout


# ---------------------------------------------------------------------------------------------
# One line per bad input, naming the field


def error_line(capsys, argv, *fields):
    status = cli.main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2 and len(lines) == 1, captured
    assert lines[0].startswith("jaxtune: error: ") and "Traceback" not in captured.err
    for field in fields:
        assert field in lines[0], (field, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("task", "fields"),
    [
        ("nosuchmod:make_task", ["--task", "no module named 'nosuchmod'"]),
        ("brokenmod:make_task", ["--task", "'brokenmod'", "ModuleNotFoundError",
                                 "not_installed_xyz"]),
        ("syntaxmod:make_task", ["--task", "'syntaxmod'", "SyntaxError"]),
        ("usermod:make_tsk", ["--task", "'make_tsk'", "did you mean make_task"]),
        ("usermod:NOT_A_TASK", ["--task", "usermod:NOT_A_TASK", "type int", "not a jaxtune Task"]),
        ("usermod:LOOP", ["--task", "training function", "jt.tune(step, None, space)"]),
        ("usermod:raises", ["--task", "usermod:raises()", "ValueError: no GPU here"]),
        ("usermod:returns_int", ["--task", "returned", "type int"]),
        ("usermod:needs", ["--task", "'foo'", "input_shape, num_classes, kind"]),
        ("usermod", ["--task", "MODULE:ATTR"]),
        ("usermod:NARROW", ["--data data.npz does not fit --task usermod:NARROW",
                            "input_shape=(3,)", "(4,)"]),
    ],
)
def test_task_errors(tmp_path, capsys, npz_file, task, fields):
    (tmp_path / "brokenmod.py").write_text("import not_installed_xyz\n", encoding="utf-8")
    (tmp_path / "syntaxmod.py").write_text("x = 1 +\n", encoding="utf-8")
    line = error_line(capsys, sweep("--task", task, "--data", npz_file), *fields)
    assert "second line" not in line


def npz(path, **arrays_):
    np.savez(path, **arrays_)
    return path.name


def test_data_errors(tmp_path, capsys, npz_file):
    x, y = arrays()
    (tmp_path / "data.txt").write_text("a,b\n1,2\n", encoding="utf-8")
    bad_x = x.astype(np.float64)
    bad_x[[3, 7], 1] = np.nan
    bad_y = y.astype(np.float64)
    bad_y[5] = np.inf
    cases = [
        (["--data", "missing.npz"], ["--data", "no such file 'missing.npz'"]),
        (["--data", "data.txt"], ["--data", ".npz or .csv", ".txt"]),
        (["--data", npz(tmp_path / "k.npz", x=x, labels=y)],
         ["--data", "labels", "found: labels, x"]),
        (["--data", npz(tmp_path / "m.npz", x=x)], ["--data", "no array y", "found: x"]),
        (["--data", npz(tmp_path / "p.npz", x=x, y=y, x_valid=x)],
         ["--data", "no array y_valid"]),
        (["--data", npz(tmp_path / "n.npz", x=bad_x, y=y)],
         ["--data", "'n.npz'", "x holds NaN", "row(s) 3, 7"]),
        (["--data", npz(tmp_path / "t.npz", x=x, y=bad_y)],
         ["--data", "y holds NaN", "row(s) 5"]),
        (["--data", npz(tmp_path / "s.npz", x=np.array(["a"] * 150), y=y)],
         ["--data", "x has dtype", "not a real number"]),
        (["--data", npz(tmp_path / "v.npz", x=x, y=y, x_valid=x[:, :3], y_valid=y)],
         ["--data", "x_valid", "(3,)", "(4,)"]),
        (["--data", npz(tmp_path / "r.npz", x=x, y=y + 0.5)],
         ["--data r.npz does not fit", "classification task", "--kind classification"]),
        (["--data", "r.npz", "--kind", "classification"],
         ["--data", "y[0] = ", "not a whole number"]),
        (["--data", npz_file, "--target", "y"], ["--data", "target column", ".csv"]),
    ]
    for extra, fields in cases:
        error_line(capsys, sweep("--task", "usermod:make_task", *extra), *fields)


def test_csv_errors(tmp_path, capsys):
    x, y = arrays()
    name = write_csv(tmp_path / "ok.csv", x, y)
    text = (tmp_path / "ok.csv").read_text(encoding="utf-8").splitlines()
    broken = [text[0], text[1], text[2].replace(text[2].split(",")[3], "red", 1), *text[3:]]
    (tmp_path / "word.csv").write_text("\n".join(broken) + "\n", encoding="utf-8")
    fields = text[4].split(",")
    gap = [*text[:4], ",".join([*fields[:2], "nan", *fields[3:]]), *text[5:]]
    (tmp_path / "nan.csv").write_text("\n".join(gap) + "\n", encoding="utf-8")
    (tmp_path / "noheader.csv").write_text("\n".join(text[1:]) + "\n", encoding="utf-8")
    (tmp_path / "ragged.csv").write_text("\n".join([*text[:3], "1,2"]) + "\n", encoding="utf-8")
    cases = [
        (["--data", name, "--target", "lbl"], ["--data", "no column 'lbl'",
                                               "columns: a, b, label, c, d"]),
        (["--data", "word.csv", "--target", "label"],
         ["--data", "column 'c'", "row 1 (line 3)", "'red' is not a number"]),
        (["--data", "nan.csv", "--target", "label"],
         ["--data", "column 'label'", "NaN", "row(s) 3"]),
        (["--data", "noheader.csv"], ["--data", "no header line"]),
        (["--data", "ragged.csv"], ["--data", "row 2 (line 4)", "2 values", "5 columns"]),
        # The default target is the last column, whose values are no labels.
        (["--data", name], ["--data", "'ok.csv'", "y[0]", "not a whole number"]),
    ]
    for extra, fields in cases:
        error_line(capsys, sweep("--task", "usermod:TASK", *extra), *fields)


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        (["--dataset", "wine", "--data", "data.npz"], ["--dataset", "--data", "not both"]),
        ([], ["--dataset", "--data"]),
        (["--dataset", "wine", "--task", "usermod:TASK", "--model", "mlp"], ["--model", "--task"]),
        (["--dataset", "wine", "--kind", "regression"], ["--kind", "--data"]),
        (["--dataset", "wine", "--target", "y"], ["--target", "--data"]),
        (["--dataset", "wine", "--task", "usermod:TASK"],
         ["--dataset wine does not fit --task usermod:TASK", "(13,)"]),
        (["--data", "data.npz", "--task", "usermod:TASK", "--kind", "regression"],
         ["does not fit", "--kind classification"]),
    ],
)
def test_flag_combinations(capsys, npz_file, extra, fields):
    error_line(capsys, sweep(*extra), *fields)


def test_cpu_is_split_before_the_task_module_is_imported(tmp_path, monkeypatch, npz_file):
    """A --task module may run JAX when imported: the devices are made before that."""
    (tmp_path / "eagermod.py").write_text(
        "from pathlib import Path\nPath('imported').touch()\nfrom usermod import make_task\n",
        encoding="utf-8")
    calls = []
    monkeypatch.setattr(cli, "use_cpu_cores",
                        lambda num_devices=None: calls.append(Path("imported").exists()))
    argv = sweep("--task", "eagermod:make_task", "--data", npz_file, "--batch-size", "1000")
    assert cli.main(argv) == 2  # refused after the import: the devices came first
    assert calls == [False] and Path("imported").exists()


def test_resume_imports_the_task_from_the_first_runs_folder(tmp_path, monkeypatch, npz_file):
    argv = sweep("--task", "usermod:make_task", "--data", npz_file, "--steps-per-segment", "10",
                 "--num-configs", "2", "--checkpoint-dir", "ckpt")
    assert cli.main(argv) == 0
    first = Results.load("out")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "usermod")
    (tmp_path / "out" / "results.json").unlink()
    assert cli.main(["sweep", "--resume", str(tmp_path / "ckpt")]) == 0
    assert_same_rows(Results.load(tmp_path / "out"), first)
