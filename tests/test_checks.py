"""Checks before compiling: names nothing reads, a Space's ranges, seeds, arguments, task errors."""

import contextlib
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import checks, cli, engine
from jaxtune.cv import cross_validate, select_model
from jaxtune.scheduled import run_halving, run_pbt
from jaxtune.strategies import bayes_search

STEPS = dict(num_steps=4, steps_per_segment=2, batch_size=16)


@pytest.fixture(scope="module")
def split():
    return jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))


@pytest.fixture(scope="module")
def mlp():
    return jt.classification_task("mlp", num_classes=3, input_shape=(13,))


@contextlib.contextmanager
def no_compilation():
    """Fails if anything is compiled inside the block."""
    compiled = []

    def watch(event, duration_s, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(watch)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(watch)
        assert compiled == [], f"{len(compiled)} compilations before the error"


# --------------------------------------------------------------------------- names nothing reads


@pytest.mark.parametrize(("config", "typo", "suggestion"), [
    ({"momentun": 0.9}, "momentun", "momentum"),
    ({"optimizer": "adam", "wieght_decay": 1e-3}, "wieght_decay", "weight_decay"),
    ({"lerning_rate_decay": 1e-3}, "lerning_rate_decay", "lr_decay"),
    ({"dropuot": 0.1}, "dropuot", "dropout"),
])
def test_a_name_nothing_reads_is_refused_with_a_suggestion(split, mlp, config, typo, suggestion):
    configs = [{"learning_rate": 0.1, "width": 8, **config}]
    with no_compilation(), pytest.raises(ValueError) as error:
        engine.train(mlp, configs, split, **STEPS)
    message = str(error.value)
    assert f"configs[0][{typo!r}]: nothing reads" in message
    assert f"did you mean {suggestion!r}" in message
    assert "allow_unused_hparams=True" in message and "--allow-unused-hparams" in message


def test_allow_unused_hparams_warns_and_trains(split, mlp):
    configs = [{"learning_rate": 0.1, "width": 8, "momentun": 0.9}]
    with pytest.warns(UserWarning, match=r"'momentun'.*did you mean 'momentum'"):
        results = engine.train(mlp, configs, split, allow_unused_hparams=True, **STEPS)
    assert results[0].status == "completed"


def test_a_model_size_the_model_does_not_read_is_refused(split):
    linear = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    with pytest.raises(ValueError, match=r"\['width'\]: nothing reads.*not this group's"):
        engine.train(linear, [{"learning_rate": 0.1, "width": 8}], split, **STEPS)


def _scaled_task(extra=()):
    """A user's own task that reads `scale` (a name of its own) from hp, undeclared."""

    def init(key, hp):
        return {"w": jnp.zeros((13, 3))}

    def loss(params, batch, key, hp):
        logits = batch["x"] @ params["w"] * hp["scale"]
        labels = jax.nn.one_hot(batch["y"], 3)
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * labels, -1)), {}

    def evaluate(params, data, hp):
        return {"accuracy": jnp.mean(jnp.argmax(data["x"] @ params["w"], -1) == data["y"])}

    return jt.Task(init, loss, evaluate, name="scaled", extra_hparams=extra,
                   metric_modes={"accuracy": "max"})


def test_names_a_users_task_reads_are_found_by_tracing_it(split):
    task = _scaled_task()
    results = engine.train(task, [{"learning_rate": 0.1, "scale": 2.0}], split, **STEPS)
    assert results[0].status == "completed"
    with pytest.raises(ValueError, match=r"'scael'\]: nothing reads.*did you mean 'scale'"):
        engine.train(task, [{"learning_rate": 0.1, "scale": 2.0, "scael": 1.0}], split, **STEPS)
    # A name the task declares it reads (on a path the trace does not take) is accepted.
    declared = _scaled_task(extra=("temperature",))
    engine.train(declared, [{"learning_rate": 0.1, "scale": 2.0, "temperature": 1.0}], split,
                 **STEPS)


def test_recorder_records_lookups_and_iteration():
    read = set()
    hp = checks.ReadRecorder({"a": 1, "b": 2, "c": 3}, read)
    assert hp["a"] == 1 and hp.get("z") is None and "b" in hp
    assert read == {"a", "z", "b"}
    assert {**hp} == {"a": 1, "b": 2, "c": 3} and read >= {"c"}


def test_a_space_mixing_schedules_is_not_refused_in_any_round(split, mlp):
    # decay_rate is read by the exponential group only; rounds drawing only constant-schedule
    # configs must not refuse it (the names of every schedule of the Space count).
    space = jt.Space({
        "learning_rate": jt.Float(1e-3, 1e-1, log=True),
        "schedule": jt.Choice(["constant", "exponential"]),
        "transition_steps": jt.Fixed(2),
        "decay_rate": jt.Float(0.5, 0.9),
        "width": jt.Fixed(8),
    })
    results = jt.tune(mlp, split, space, num_configs=6, population_size=1, **STEPS)
    assert len(results) == 6 and {r.config["schedule"] for r in results} == {"constant",
                                                                               "exponential"}


TYPO_SPACE = {"learning_rate": jt.Float(1e-3, 1e-1, log=True), "width": jt.Fixed(8),
              "momentun": jt.Float(0.5, 0.9)}


def _drivers(task, split, space):
    configs = [{"learning_rate": 0.1, "width": 8, "momentun": 0.9}]
    return {
        "tune": lambda: jt.tune(task, split, space, num_configs=4, population_size=2, **STEPS),
        "halving": lambda: run_halving(task, split, space, population_size=4, num_steps=4,
                                       min_steps=2, batch_size=16),
        "pbt": lambda: run_pbt(task, split, space, population_size=2, num_steps=4,
                               steps_per_segment=2, batch_size=16),
        "cv": lambda: cross_validate(task, split, configs, num_folds=2, num_steps=4,
                                     batch_size=16),
        "select_model": lambda: select_model(task, split, {"a": configs}, num_folds=2,
                                             num_steps=4, batch_size=16),
    }


@pytest.mark.parametrize("driver", ["tune", "halving", "pbt", "cv", "select_model"])
def test_every_driver_refuses_an_unread_name_before_compiling(split, mlp, driver):
    run = _drivers(mlp, split, jt.Space(TYPO_SPACE))[driver]
    with no_compilation(), pytest.raises(ValueError, match=r"'momentun'.*'momentum'"):
        run()


# --------------------------------------------------------------------------- Space ranges


BAD_RANGES = [
    ({"dropout": jt.Float(0.0, 1.05)}, "dropout"),
    ({"learning_rate": jt.Float(-0.1, 0.1)}, "learning_rate"),
    ({"optimizer": jt.Fixed("adam"), "b1": jt.Float(0.5, 1.0)}, "b1"),
    ({"width": jt.Int(0, 16)}, "width"),
]


@pytest.mark.parametrize(("params", "name"), BAD_RANGES)
def test_a_multi_round_tune_refuses_a_bad_range_before_round_one(split, mlp, params, name):
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True), "width": jt.Fixed(8),
                      **params})
    rounds = []
    with no_compilation(), pytest.raises(ValueError, match=rf"space\['{name}'\] = .*outside"):
        jt.tune(mlp, split, space, bayes_search(), num_configs=8, population_size=2,
                on_round=rounds.append, **STEPS)
    assert rounds == []


@pytest.mark.parametrize("driver", ["halving", "pbt"])
def test_schedulers_refuse_a_bad_range_before_training(split, mlp, driver):
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True), "width": jt.Fixed(8),
                      "dropout": jt.Float(0.0, 1.05)})
    with no_compilation(), pytest.raises(ValueError, match=r"space\['dropout'\]"):
        _drivers(mlp, split, space)[driver]()


def test_cross_validation_refuses_a_bad_range_of_its_space(split, mlp):
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True), "width": jt.Fixed(8),
                      "dropout": jt.Choice([0.0, 1.0], static=False)})
    configs = [{"learning_rate": 0.1, "width": 8, "dropout": 0.0}]
    with no_compilation(), pytest.raises(ValueError, match=r"space\['dropout'\].*1\.0"):
        cross_validate(mlp, split, configs, space=space, num_folds=2, num_steps=4)
    with no_compilation(), pytest.raises(ValueError, match=r"space\['dropout'\]"):
        select_model(mlp, split, {"a": configs}, space=space, num_folds=2, num_steps=4)


def test_a_range_only_another_optimizer_reads_is_checked_too():
    # momentum is read by sgd; b1 by adam only: Float(0, 2) for b1 is fine in an sgd-only space.
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    checks.check_space_ranges(jt.Space({"b1": jt.Float(0.0, 2.0)}), task)
    with pytest.raises(ValueError, match=r"space\['b1'\].*2\.0"):
        checks.check_space_ranges(
            jt.Space({"optimizer": jt.Choice(["sgd", "adam"]), "b1": jt.Float(0.0, 2.0)}), task)


def test_cli_refuses_a_bad_range_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"learning_rate": {"type": "float", "low": 0.01, "high": 0.1},
                                 "dropout": {"type": "float", "low": 0.0, "high": 1.05},
                                 "width": 8}))
    argv = ["sweep", "--dataset", "wine", "--space", str(space), "--out", str(tmp_path / "o"),
            "--quiet", "--no-plot", "--num-configs", "4", "--num-steps", "4",
            "--strategy", "bayes"]
    with no_compilation():
        status = cli.main(argv)
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and len(err) == 1 and "space['dropout']" in err[0], err


def test_cli_allow_unused_hparams_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"learning_rate": {"type": "float", "low": 0.01, "high": 0.1},
                                 "momentun": 0.9, "width": 8}))
    argv = ["sweep", "--dataset", "wine", "--space", str(space), "--quiet", "--no-plot",
            "--num-configs", "2", "--num-steps", "4", "--batch-size", "16"]
    status = cli.main([*argv, "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and len(err) == 1 and "did you mean 'momentum'" in err[0], err
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = cli.main([*argv, "--out", str(tmp_path / "b"), "--allow-unused-hparams"])
    assert status == 0
    assert any("momentun" in str(w.message) for w in caught)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("config", "name"), [
    ({"width": 0}, "width"), ({"hidden_sizes": [16, 0]}, "hidden_sizes"),
    ({"depth": -1}, "depth"), ({"width": -4}, "width"),
])
def test_non_positive_layer_sizes_are_refused_before_compiling(split, mlp, config, name):
    with no_compilation(), pytest.raises(ValueError, match=rf"\['{name}'\] = .*outside"):
        engine.train(mlp, [{"learning_rate": 0.1, **config}], split, **STEPS)


def test_non_positive_channels_are_refused(split):
    cnn = jt.classification_task("cnn", num_classes=10, input_shape=(64,))
    digits = jt.standardize(jt.train_valid_test_split(jt.load_dataset("digits"), seed=0))
    with no_compilation(), pytest.raises(ValueError, match=r"\['channels'\] = 0"):
        engine.train(cnn, [{"learning_rate": 0.1, "channels": 0}], digits, **STEPS)


def test_missing_task_or_split_is_a_type_error_naming_it(split, mlp):
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True)})
    configs = [{"learning_rate": 0.1}]
    with pytest.raises(TypeError, match="task: expected a jaxtune Task"):
        engine.train(None, configs, split, num_steps=4)
    with pytest.raises(TypeError, match="split: expected the data"):
        engine.train(mlp, configs, None, num_steps=4)
    with pytest.raises(TypeError, match="task: expected"):
        jt.tune(None, split, space, num_configs=2, num_steps=4)
    with pytest.raises(TypeError, match="split: expected"):
        jt.tune(mlp, None, space, num_configs=2, num_steps=4)
    with pytest.raises(TypeError, match="task: expected"):
        cross_validate(None, split, configs, num_steps=4)
    with pytest.raises(TypeError, match="data: expected"):
        cross_validate(mlp, None, configs, num_steps=4)


@pytest.mark.parametrize(("kwargs", "error", "field"), [
    ({"seed": "x"}, TypeError, "seed"),
    ({"seed": 1.0}, TypeError, "seed"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seeds": [0.5]}, TypeError, r"seeds\[0\]"),
    ({"seeds": [0, "1"]}, TypeError, r"seeds\[1\]"),
    ({"seeds": 3}, TypeError, "seeds"),
])
def test_bad_seeds_are_refused_naming_them(split, mlp, kwargs, error, field):
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True), "width": jt.Fixed(8)})
    with no_compilation(), pytest.raises(error, match=rf"^{field}: got"):
        jt.tune(mlp, split, space, num_configs=2, **STEPS, **kwargs)


def _task(loss_body):
    def init(key, hp):
        return {"w": jnp.zeros((13, 3))}

    def loss(params, batch, key, hp):
        return loss_body(params, batch, hp), {}

    def evaluate(params, data, hp):
        return {"accuracy": jnp.mean(data["x"] @ params["w"])}

    return jt.Task(init, loss, evaluate, name="mine")


def test_a_bug_in_the_users_task_is_reported_as_the_users_own_exception(split):
    def name_error(params, batch, hp):
        return jnp.mean(batch["x"] @ params["w"]) + undefined_name  # noqa: F821

    def wrong_key(params, batch, hp):
        return jnp.mean(batch["features"] @ params["w"])

    def wrong_hp(params, batch, hp):
        return jnp.mean(batch["x"] @ params["w"]) * hp["lr"]

    def type_bug(params, batch, hp):
        return jnp.mean(batch["x"] @ params["w"]) + len(3)

    configs = [{"learning_rate": 0.1}]
    cases = [(name_error, NameError, "undefined_name"), (wrong_key, KeyError, "features"),
             (wrong_hp, KeyError, "lr"), (type_bug, TypeError, "len()")]
    for body, kind, text in cases:
        with no_compilation(), pytest.raises(kind, match=text) as error:
            engine.train(_task(body), configs, split, **STEPS)
        assert type(error.value) is kind  # itself, not the data-shape ValueError
        notes = "\n".join(getattr(error.value, "__notes__", []))
        assert "raised by task 'mine''s own loss function" in notes, notes
        assert "does not fit the data" not in str(error.value)
    with pytest.raises(KeyError) as error:
        engine.train(_task(wrong_hp), configs, split, **STEPS)
    assert "did you mean 'learning_rate'" in "\n".join(error.value.__notes__)


def test_a_genuine_shape_mismatch_still_gets_the_data_message(split):
    def init(key, hp):
        return {"w": jnp.zeros((7, 3))}  # the data has 13 features

    task = jt.Task(init, lambda p, b, k, hp: (jnp.mean(b["x"] @ p["w"]), {}),
                   lambda p, d, hp: {"accuracy": jnp.mean(d["x"] @ p["w"])}, name="shapes")
    with no_compilation(), pytest.raises(ValueError, match=r"does not fit the data.*task\.loss"):
        engine.train(task, [{"learning_rate": 0.1}], split, **STEPS)


def test_standardize_refuses_nan_naming_the_column():
    split = jt.train_valid_test_split(jt.load_dataset("wine"), seed=0)
    x_train = np.array(split.x_train)
    x_train[5, 3] = np.nan
    with pytest.raises(ValueError, match=r"split\.x_train.*column\(s\) 3 .*row 5"):
        jt.standardize(split._replace(x_train=x_train))
    x_test = np.array(split.x_test)
    x_test[0, 7] = np.inf
    with pytest.raises(ValueError, match=r"split\.x_test.*column\(s\) 7"):
        jt.standardize(split._replace(x_test=x_test))
