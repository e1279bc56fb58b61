"""Tests for jaxtune.integrations: TensorBoard event files and the Optuna bridge.

The TensorBoard files are read back byte by byte (TFRecord framing, tensorboardX's bundled
protobufs), so the test needs neither TensorBoard nor TensorFlow. The Optuna study is written to
SQLite in ``tmp_path`` and reloaded with ``optuna.load_study``, as optuna-dashboard would.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("optuna")
pytest.importorskip("tensorboardX")

import optuna
from tensorboardX.proto.api_pb2 import Status
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

import jaxtune as jt
from jaxtune.integrations import export_to_optuna, optuna_strategy, write_tensorboard
from jaxtune.results import MemberResult, Results

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = jt.Space(
    {
        "learning_rate": jt.Float(1e-4, 1.0, log=True),
        "dropout": jt.Float(0.0, 0.5),
        "depth": jt.Int(1, 8, log=True),
        "hidden_sizes": jt.Choice([(16,), (32, 32)]),
        "optimizer": jt.Fixed("adam"),
    }
)
STEPS = [0, 10, 20, 30]


def make_results() -> Results:
    """Five members: three completed, one diverged (NaN metrics), one stopped by a scheduler."""
    rows = []
    for i in range(5):
        status = {3: "diverged", 4: "stopped"}.get(i, "completed")
        accuracy = 0.5 + 0.1 * i
        curve = [0.1 + (accuracy - 0.1) * s / STEPS[-1] for s in STEPS]
        if status == "diverged":
            accuracy, curve = math.nan, [*curve[:2], math.nan, math.nan]
        steps = STEPS[:3] if status == "stopped" else STEPS
        curve = curve[: len(steps)]
        rows.append(
            MemberResult(
                member_id=10 + i,
                config={
                    "learning_rate": 10.0 ** (-4 + i),
                    "dropout": 0.1 * i,
                    "depth": [1, 2, 4, 8, 3][i],
                    "hidden_sizes": (16,) if i % 2 else (32, 32),
                    "optimizer": "adam",
                },
                seed=i % 2,
                fold=None,
                static_group=f"group{i % 2}",
                status=status,
                diverged_step=20 if status == "diverged" else None,
                metrics={"valid_accuracy": accuracy, "valid_loss": 1.0 - accuracy},
                curve_steps=steps,
                curves={"valid_accuracy": curve, "valid_loss": [1.0 - v for v in curve]},
                wall_time_s=0.25 * i,
            )
        )
    metadata = {"space": SPACE.to_dict(), "metric": "valid_accuracy", "mode": "max"}
    return Results(rows, metadata)


# --------------------------------------------------------------------------------------------
# TensorBoard


def read_events(path: Path) -> list[Event]:
    """Every Event of a TFRecord file: [uint64 length][uint32 crc][data][uint32 crc] records."""
    data, events, position = path.read_bytes(), [], 0
    while position < len(data):
        (length,) = struct.unpack("<Q", data[position : position + 8])
        position += 12
        events.append(Event.FromString(data[position : position + length]))
        position += length + 4
    assert position == len(data)
    return events


def read_run(run: Path) -> tuple[dict[str, dict[int, float]], dict[str, HParamsPluginData]]:
    """Scalars (tag -> step -> value) and hparams plugin records (tag -> data) of one run."""
    files = sorted(run.glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    scalars: dict[str, dict[int, float]] = {}
    plugins: dict[str, HParamsPluginData] = {}
    for event in read_events(files[0]):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                plugins[value.tag] = HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                )
            elif value.WhichOneof("value") == "simple_value":
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars, plugins


def hparam_values(session) -> dict[str, object]:
    out = {}
    for name, value in session.session_start_info.hparams.items():
        out[name] = getattr(value, value.WhichOneof("kind"))
    return out


def test_tensorboard_one_run_per_member_with_curves_metrics_and_hparams(tmp_path):
    results = make_results()
    logdir = write_tensorboard(results, tmp_path / "tb")
    assert logdir == tmp_path / "tb"
    runs = sorted(p.name for p in logdir.iterdir() if p.is_dir())
    assert runs == [f"member_{row.member_id:05d}" for row in results]
    for row in results:
        scalars, plugins = read_run(logdir / f"member_{row.member_id:05d}")
        for name, curve in row.curves.items():
            assert sorted(scalars[name]) == row.curve_steps
            np.testing.assert_allclose(
                [scalars[name][s] for s in row.curve_steps], curve, rtol=1e-6, equal_nan=True
            )
        for name, value in row.metrics.items():
            # final metrics at the member's last curve step, float32 precision
            assert list(scalars[f"final/{name}"]) == [row.curve_steps[-1]]
            np.testing.assert_allclose(
                scalars[f"final/{name}"][row.curve_steps[-1]], value, rtol=1e-6, equal_nan=True
            )
        hparams = hparam_values(plugins["_hparams_/session_start_info"])
        assert hparams["learning_rate"] == pytest.approx(row.config["learning_rate"])
        assert hparams["dropout"] == pytest.approx(row.config["dropout"])
        assert hparams["depth"] == row.config["depth"]
        assert hparams["hidden_sizes"] == str(list(row.config["hidden_sizes"]))
        assert hparams["optimizer"] == "adam"
        assert hparams["seed"] == row.seed
        assert hparams["status"] == row.status
        assert hparams["static_group"] == row.static_group
        assert "fold" not in hparams  # no member has a fold
        end = plugins["_hparams_/session_end_info"].session_end_info.status
        expected = "STATUS_FAILURE" if row.status == "diverged" else "STATUS_SUCCESS"
        assert end == Status.Value(expected)


def test_tensorboard_root_experiment_lists_domains_and_final_metrics(tmp_path):
    results = make_results()
    logdir = write_tensorboard(results, tmp_path)
    _, plugins = read_run(logdir)
    experiment = plugins["_hparams_/experiment"].experiment
    infos = {info.name: info for info in experiment.hparam_infos}
    assert set(infos) == {*SPACE.names, "seed", "static_group", "status"}
    lr = infos["learning_rate"].domain_interval
    assert (lr.min_value, lr.max_value) == pytest.approx((1e-4, 1.0))
    assert (infos["depth"].domain_interval.min_value, infos["depth"].domain_interval.max_value) == (
        1.0,
        8.0,
    )
    statuses = sorted(v.string_value for v in infos["status"].domain_discrete.values)
    assert statuses == ["completed", "diverged", "stopped"]
    shapes = sorted(v.string_value for v in infos["hidden_sizes"].domain_discrete.values)
    assert shapes == ["[16]", "[32, 32]"]
    tags = sorted(m.name.tag for m in experiment.metric_infos)
    assert tags == ["final/valid_accuracy", "final/valid_loss"]


def test_tensorboard_fold_is_an_hparam_when_used(tmp_path):
    rows = [dataclasses.replace(row, fold=row.member_id % 2) for row in make_results()]
    logdir = write_tensorboard(Results(rows), tmp_path)
    _, plugins = read_run(logdir / "member_00011")
    assert hparam_values(plugins["_hparams_/session_start_info"])["fold"] == 1


def test_tensorboard_pbt_schedule_as_scalars(tmp_path):
    schedule = [
        {"step": 0, "config": {"learning_rate": 0.1, "optimizer": "sgd"}},
        {"step": 20, "copied_from": 11, "config": {"learning_rate": 0.12, "optimizer": "sgd"}},
        {"step": 30, "config": {"learning_rate": 0.096, "optimizer": "sgd"}},
    ]
    row = dataclasses.replace(make_results()[0], hp_schedule=schedule)
    logdir = write_tensorboard(Results([row]), tmp_path)
    scalars, _ = read_run(logdir / f"member_{row.member_id:05d}")
    assert scalars["hparams/learning_rate"] == pytest.approx({0: 0.1, 20: 0.12, 30: 0.096})
    assert scalars["pbt/copied_from"] == {20: 11.0}
    assert "hparams/optimizer" not in scalars  # strings are in the HParams session only


def test_tensorboard_rejects_non_results(tmp_path):
    with pytest.raises(TypeError, match="Results"):
        write_tensorboard([1, 2], tmp_path)


# --------------------------------------------------------------------------------------------
# Optuna export


def test_export_to_sqlite_reloads_trials_params_values_and_states(tmp_path):
    results = make_results()
    storage = f"sqlite:///{tmp_path / 'sweep.db'}"
    export_to_optuna(results, storage=storage, study_name="sweep")
    study = optuna.load_study(study_name="sweep", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.user_attrs["jaxtune.metric"] == "valid_accuracy"
    assert study.user_attrs["jaxtune.space"] == SPACE.to_dict()
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == len(results)
    states = [t.state for t in trials]
    TrialState = optuna.trial.TrialState
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.FAIL, TrialState.PRUNED]
    for trial, row in zip(trials, results, strict=True):
        dists = trial.distributions
        assert dists["learning_rate"] == optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
        assert dists["dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5)
        assert dists["depth"] == optuna.distributions.IntDistribution(1, 8, log=True)
        assert dists["hidden_sizes"] == optuna.distributions.CategoricalDistribution(
            ["[16]", "[32, 32]"]
        )
        assert "optimizer" not in trial.params
        assert trial.user_attrs["fixed.optimizer"] == "adam"
        assert trial.params["learning_rate"] == row.config["learning_rate"]
        assert trial.params["depth"] == row.config["depth"]
        assert trial.params["hidden_sizes"] == str(list(row.config["hidden_sizes"]))
        assert trial.user_attrs["member_id"] == row.member_id
        assert trial.user_attrs["status"] == row.status
        if row.status == "diverged":
            assert trial.value is None
            assert trial.user_attrs["metrics.valid_accuracy"] is None
            assert trial.user_attrs["diverged_step"] == 20
        else:
            assert trial.value == pytest.approx(row.metrics["valid_accuracy"])
            expected = dict(zip(row.curve_steps, row.curves["valid_accuracy"], strict=True))
            assert trial.intermediate_values == pytest.approx(expected)
    assert study.best_trial.user_attrs["member_id"] == 12  # best completed member


def test_export_metric_direction_and_errors(tmp_path):
    results = make_results()
    study = export_to_optuna(results, metric="valid_loss", direction="min")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.best_trial.user_attrs["member_id"] == 12
    with pytest.raises(ValueError, match="metric 'valid_nope'"):
        export_to_optuna(results, metric="valid_nope")
    with pytest.raises(ValueError, match="direction"):
        export_to_optuna(results, direction="up")
    with pytest.raises(TypeError, match="Results"):
        export_to_optuna(list(results))
    storage = f"sqlite:///{tmp_path / 'one.db'}"
    export_to_optuna(results, storage=storage, study_name="one")
    with pytest.raises(ValueError, match="another study_name"):  # would mix min and max
        export_to_optuna(results, storage=storage, study_name="one", metric="valid_loss",
                         load_if_exists=True)
    assert len(export_to_optuna(results, storage=storage, study_name="one",
                                load_if_exists=True).trials) == 2 * len(results)


def test_export_without_saved_space_infers_distributions():
    results = Results(list(make_results()))  # no metadata
    study = export_to_optuna(results)
    trial = study.trials[0]
    lr = trial.distributions["learning_rate"]
    assert (lr.low, lr.high, lr.log) == (1e-4, 1.0, True)  # spread >= 100x: log
    depth = trial.distributions["depth"]
    assert (depth.low, depth.high) == (1, 8)
    assert "optimizer" not in trial.distributions  # one value seen: fixed
    assert trial.user_attrs["fixed.optimizer"] == "adam"


# --------------------------------------------------------------------------------------------
# Optuna samplers as strategies


def quadratic(config) -> float:
    return (config["x"] - 0.5) ** 2 + (config["y"] + 0.3) ** 2


@pytest.mark.parametrize("kind", ["tpe", "cmaes"])
def test_strategy_ask_tell_minimizes_a_quadratic(kind):
    if kind == "cmaes":
        pytest.importorskip("cmaes")
    space = jt.Space({"x": jt.Float(-2.0, 2.0), "y": jt.Float(-2.0, 2.0), "c": jt.Fixed(1)})

    def sampler(seed):
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=6)
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=0, popsize=6)

    strategy = optuna_strategy(sampler)
    state = strategy.init(space, jax.random.PRNGKey(0))
    best_by_round = []
    for _ in range(8):
        configs, state = strategy.ask(state, 6)
        assert len(state.pending) == 6
        for config in configs:
            space.validate_config(config)
            assert config["c"] == 1
        scores = [quadratic(c) for c in configs]
        state = strategy.tell(state, configs, scores)
        assert state.pending == ()
        best_by_round.append(min(scores))
    trials = state.study.trials
    assert len(trials) == state.num_asked == 48
    assert [t.value for t in trials[-6:]] == pytest.approx(scores)
    # Learning from the scores: the last rounds beat the random first round.
    assert min(best_by_round[-3:]) < best_by_round[0]
    assert min(best_by_round) < 0.05
    if kind == "cmaes":  # proposals after the first told batch come from CMA-ES itself
        assert all("cma:generation" in t.system_attrs for t in trials[6:])


def test_strategy_same_seed_same_proposals_and_fail_for_inf():
    space = jt.Space({"x": jt.Float(-2.0, 2.0), "y": jt.Float(-2.0, 2.0)})
    strategy = optuna_strategy(None)  # default TPE, seeded from the init key
    runs = []
    for _ in range(2):
        state = strategy.init(space, jax.random.PRNGKey(3))
        configs, state = strategy.ask(state, 3)
        state = strategy.tell(state, configs, [1.0, math.inf, math.nan])
        runs.append(configs)
    assert runs[0] == runs[1]
    states = [t.state for t in state.study.trials]
    TrialState = optuna.trial.TrialState
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]


def test_strategy_tell_checks_order_and_count():
    space = jt.Space({"x": jt.Float(-2.0, 2.0)})
    strategy = optuna_strategy(optuna.samplers.RandomSampler(seed=0))
    state = strategy.init(space, jax.random.PRNGKey(0))
    configs, state = strategy.ask(state, 2)
    with pytest.raises(ValueError, match="order"):
        strategy.tell(state, configs[::-1], [0.0, 1.0])
    with pytest.raises(ValueError, match="pending"):
        strategy.tell(state, [*configs, configs[0]], [0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match="sampler"):
        optuna_strategy("tpe").init(space, jax.random.PRNGKey(0))


def test_choice_of_tuples_and_mixed_bools_travel_as_labels():
    space = jt.Space(
        {"hidden_sizes": jt.Choice([(16,), (32, 32)]), "flag": jt.Choice([True, 1, "x"])}
    )
    strategy = optuna_strategy(optuna.samplers.RandomSampler(seed=0))
    state = strategy.init(space, jax.random.PRNGKey(0))
    configs, state = strategy.ask(state, 24)
    seen = {(c["hidden_sizes"], repr(c["flag"])) for c in configs}
    for config in configs:
        space.validate_config(config)
    assert {h for h, _ in seen} == {(16,), (32, 32)}
    assert {f for _, f in seen} == {"True", "1", "'x'"}


def _assert_trials_match(optuna, trials, results):
    """One stored trial per member, in order: its learning rate, and its value (maximized
    accuracy stored negated) or FAIL state."""
    assert len(trials) == len(results) == 12
    for trial, row in zip(trials, results, strict=True):
        assert trial.params["learning_rate"] == row.config["learning_rate"]
        if row.status == "completed":
            assert trial.value == pytest.approx(-row.metrics["valid_accuracy"])
        else:
            assert trial.state == optuna.trial.TrialState.FAIL


@pytest.mark.parametrize("kind", ["tpe", "cmaes"])
def test_optuna_sampler_drives_jaxtune_tune(tmp_path, kind):
    """A few rounds of a real (tiny) sweep; the study's values are the members' scores."""
    if kind == "cmaes":
        pytest.importorskip("cmaes")
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space(
        {
            "learning_rate": jt.Float(1e-3, 1.0, log=True),
            "momentum": jt.Float(0.0, 0.9),
            "optimizer": jt.Fixed("momentum"),
        }
    )

    def sampler(seed):
        if kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=0)

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    strategy = optuna_strategy(sampler, storage=storage, study_name="live")
    results = jt.tune(task, split, space, strategy, num_configs=12, population_size=4,
                      num_steps=20, steps_per_segment=10, batch_size=None, seed=0)
    assert len(results) == 12
    for row in results:
        space.validate_config(row.config)
        assert 1e-3 <= row.config["learning_rate"] <= 1.0
        assert 0.0 <= row.config["momentum"] <= 0.9
    study = optuna.load_study(study_name="live", storage=storage)
    _assert_trials_match(optuna, study.get_trials(deepcopy=False), results)
    assert study.best_value == pytest.approx(-max(
        r.metrics["valid_accuracy"] for r in results if r.status == "completed"
    ))


# --------------------------------------------------------------------------------------------
# Command line: sweep --tensorboard, export-optuna


class _CrashError(Exception):
    """Stands for a crash mid-sweep (raised from ``on_segment``)."""


def test_optuna_strategy_with_storage_resumes_into_its_study(tmp_path):
    """A sweep crashed mid-round and resumed from its checkpoint continues the stored study:
    the same rows as an uninterrupted sweep, every trial stored once and told once."""
    pytest.importorskip("orbax.checkpoint")
    from jaxtune.checkpoint import Checkpointer

    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1.0, log=True),
                      "momentum": jt.Float(0.0, 0.9), "optimizer": jt.Fixed("momentum")})

    def sampler(seed):
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)

    options = dict(num_configs=12, population_size=4, num_steps=20, steps_per_segment=10,
                   batch_size=None, seed=0)
    reference = jt.tune(task, split, space, optuna_strategy(sampler), **options)
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    directory = tmp_path / "ckpt"
    segments = [0]

    def crash_in_round_2(report):
        segments[0] += 1
        if segments[0] == 3:  # 2 segments per round: the first segment of round 2
            raise _CrashError

    with pytest.raises(_CrashError):
        jt.tune(task, split, space, optuna_strategy(sampler, storage=storage, study_name="run"),
                checkpoint=Checkpointer(directory, every_segments=1),
                on_segment=crash_in_round_2, **options)
    trials = optuna.load_study(study_name="run", storage=storage).trials
    assert [t.state.is_finished() for t in trials] == [True] * 4 + [False] * 4
    results = jt.tune(task, split, space,
                      optuna_strategy(sampler, storage=storage, study_name="run"),
                      checkpoint=directory, resume=True, **options)
    strip = [{k: v for k, v in r.to_dict().items() if k != "wall_time_s"} for r in results]
    want = [{k: v for k, v in r.to_dict().items() if k != "wall_time_s"} for r in reference]
    assert strip == want
    _assert_trials_match(optuna, optuna.load_study(study_name="run", storage=storage).trials,
                         results)
    # Another sweep (another seed) into the same study is refused, not mixed in, before any
    # training: the study records which sweep wrote it.
    watch = []
    with pytest.raises(ValueError, match="another sweep: use another study_name"):
        jt.tune(task, split, space, optuna_strategy(sampler, storage=storage, study_name="run"),
                on_segment=watch.append, **{**options, "seed": 1})
    assert watch == []
    # The same seed and space but other training (not a resume): the first replayed trial
    # scores differently from the stored one, and the run stops there. (40 steps: with the
    # 64-bit member keys, trial 0's accuracy on wine's 36 validation rows is the same after 10
    # steps as after 20, 0.667, so 10 steps would stop at trial 1.)
    stored = [t.value for t in optuna.load_study(study_name="run", storage=storage).trials]
    with pytest.raises(ValueError, match=r"trial 0 with value .* another sweep"):
        jt.tune(task, split, space, optuna_strategy(sampler, storage=storage, study_name="run"),
                **{**options, "num_steps": 40})
    after = [t.value for t in optuna.load_study(study_name="run", storage=storage).trials]
    assert after == stored  # nothing overwritten


def test_optuna_strategy_refuses_a_study_it_did_not_write(tmp_path):
    storage = f"sqlite:///{tmp_path / 'foreign.db'}"
    foreign = optuna.create_study(storage=storage, study_name="theirs")
    foreign.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    strategy = optuna_strategy(optuna.samplers.RandomSampler(seed=0), storage=storage,
                               study_name="theirs")
    with pytest.raises(ValueError, match="trials that no jaxtune sweep wrote"):
        strategy.init(SPACE, jax.random.PRNGKey(0))


def test_optuna_strategy_refuses_a_maximizing_stored_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'max.db'}"
    optuna.create_study(storage=storage, study_name="up", direction="maximize")
    strategy = optuna_strategy(optuna.samplers.RandomSampler(seed=0), storage=storage,
                               study_name="up")
    with pytest.raises(ValueError, match="maximizes; jaxtune tells losses to minimize"):
        strategy.init(SPACE, jax.random.PRNGKey(0))


@pytest.fixture
def cli_sweep(tmp_path, monkeypatch):
    """A tiny `jaxtune sweep --tensorboard` run in-process; returns (results dir, tb dir)."""
    from jaxtune import cli

    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    space = tmp_path / "space.json"
    space.write_text('{"learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "log": true},'
                     ' "optimizer": "sgd"}')
    out, tb = tmp_path / "run", tmp_path / "tb"
    status = cli.main(["sweep", "--dataset", "wine", "--model", "linear", "--space", str(space),
                       "--num-configs", "3", "--num-steps", "20", "--steps-per-segment", "10",
                       "--batch-size", "0", "--out", str(out), "--no-plot", "--quiet",
                       "--tensorboard", str(tb)])
    assert status == 0
    return out, tb


def test_cli_sweep_tensorboard_and_export_optuna(cli_sweep, capsys, tmp_path):
    from jaxtune import cli

    out, tb = cli_sweep
    results = Results.load(out)
    assert sorted(p.name for p in tb.iterdir() if p.is_dir()) == [
        f"member_{row.member_id:05d}" for row in results
    ]
    scalars, _ = read_run(tb / "member_00000")
    np.testing.assert_allclose(
        [scalars["valid_accuracy"][s] for s in results[0].curve_steps],
        results[0].curves["valid_accuracy"], rtol=1e-6,
    )
    storage = f"sqlite:///{tmp_path / 'cli.db'}"
    capsys.readouterr()
    assert cli.main(["export-optuna", str(out), "--storage", storage]) == 0
    assert "exported 3 members" in capsys.readouterr().out
    study = optuna.load_study(study_name="run", storage=storage)  # named after the folder
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert [t.value for t in study.trials] == pytest.approx(
        [row.metrics["valid_accuracy"] for row in results]
    )
    # the same name again: one line, exit 2, with the way out
    assert cli.main(["export-optuna", str(out), "--storage", storage]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--load-if-exists" in err[0]
    assert cli.main(["export-optuna", str(out), "--storage", storage, "--load-if-exists",
                     "--metric", "valid_loss"]) == 2  # a minimized metric cannot join it
    assert "valid_loss" in capsys.readouterr().err
    assert cli.main(["export-optuna", str(out), "--storage", storage, "--load-if-exists"]) == 0
    assert len(optuna.load_study(study_name="run", storage=storage).trials) == 6


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["export-optuna", "DIR", "--storage", "sweep.db"], ["--storage", "sqlite:///"]),
        (["export-optuna", "DIR", "--storage", "sqlite:///x.db", "--metric", "valid_nope"],
         ["--metric", "valid_nope"]),
        (["export-optuna", "missing", "--storage", "sqlite:///x.db"], ["directory"]),
    ],
)
def test_cli_export_optuna_errors(cli_sweep, capsys, argv, words):
    from jaxtune import cli

    out, _ = cli_sweep
    argv = [str(out) if a == "DIR" else a for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxtune: error:"), err
    for word in words:
        assert word in err[0]


@pytest.mark.parametrize("name", ["optuna-tpe", "optuna-cmaes"])
def test_cli_optuna_strategies(tmp_path, monkeypatch, capsys, name):
    from jaxtune import cli

    if name == "optuna-cmaes":
        pytest.importorskip("cmaes")
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    space = tmp_path / "space.json"
    space.write_text('{"learning_rate": {"type": "float", "low": 0.001, "high": 1.0, "log": true},'
                     ' "momentum": {"type": "float", "low": 0.0, "high": 0.9},'
                     ' "optimizer": "momentum"}')
    out = tmp_path / "run"
    status = cli.main(["sweep", "--dataset", "wine", "--model", "linear", "--space", str(space),
                       "--strategy", name, "--num-configs", "8", "--num-steps", "20",
                       "--steps-per-segment", "10", "--batch-size", "0", "--out", str(out),
                       "--no-plot", "--quiet"])
    assert status == 0, capsys.readouterr().err
    results = Results.load(out)
    assert len(results) == 8
    checker = jt.Space.from_file(space)
    for row in results:
        checker.validate_config(row.config)
    assert len({row.config["learning_rate"] for row in results}) == 8


@pytest.mark.parametrize("module", ["optuna", "tensorboardX"])
def test_missing_package_says_how_to_install_it(module, cli_sweep, tmp_path, monkeypatch,
                                                capsys):
    """With the package hidden, each function raises an ImportError naming the install
    command, and each CLI entry fails in one line with exit status 2."""
    from jaxtune import cli

    out, _ = cli_sweep
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, module, None)
    hint = r"pip install jaxtune\[integrations\]"
    results = make_results()
    if module == "optuna":
        calls = [
            lambda: export_to_optuna(results, storage=None, study_name="x"),
            lambda: optuna_strategy(None).init(SPACE, jax.random.PRNGKey(0)),
        ]
        commands = [
            ["export-optuna", str(out), "--storage", f"sqlite:///{tmp_path / 'x.db'}"],
            ["sweep", "--dataset", "wine", "--space", str(tmp_path / "space.json"), "--out",
             str(tmp_path / "o"), "--strategy", "optuna-tpe", "--quiet", "--no-plot"],
        ]
    else:
        calls = [lambda: write_tensorboard(results, tmp_path / "tb2")]
        commands = [["sweep", "--dataset", "wine", "--space", str(tmp_path / "space.json"),
                     "--out", str(tmp_path / "o"), "--tensorboard", str(tmp_path / "tb3"),
                     "--quiet", "--no-plot"]]
    for call in calls:
        with pytest.raises(ImportError, match=hint):
            call()
    for argv in commands:
        assert cli.main(argv) == 2, argv
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("jaxtune: error: "), lines
        assert "pip install jaxtune[integrations]" in lines[0], lines[0]
        assert module.lower() in lines[0].lower(), lines[0]
    assert not (tmp_path / "o").exists()  # refused before anything ran


# --------------------------------------------------------------------------------------------
# Conditional spaces with Optuna: define-by-run, active names only

CONDITIONAL = jt.Space({
    "optimizer": jt.Choice(["adam", "sgd", "momentum"]),
    "learning_rate": jt.Float(1e-4, 1e-1, log=True),
    "momentum": jt.Float(0.5, 0.99, when={"optimizer": "momentum"}),
    "depth": jt.Int(1, 3),
    "width_2": jt.Choice([16, 32], when={"depth": {">=": 2}}),
    "width_3": jt.Choice([16, 32, 64], when={"depth": {">=": 3}}),
    "activation": jt.Fixed("relu", when={"depth": {">=": 2}}),
})


def check_conditional(config):
    CONDITIONAL.validate_config(config)  # exactly the active names, values in range
    assert ("momentum" in config) == (config["optimizer"] == "momentum"), config
    assert ("width_2" in config) == (config["depth"] >= 2), config
    assert ("width_3" in config) == (config["depth"] >= 3), config
    assert ("activation" in config) == (config["depth"] >= 2), config
    assert 1e-4 <= config["learning_rate"] <= 1e-1
    assert 0.5 <= config.get("momentum", 0.5) <= 0.99
    assert config.get("width_3", 16) in (16, 32, 64)


def test_tpe_on_a_conditional_space_suggests_only_active_parameters():
    strategy = optuna_strategy(
        lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=6))
    state = strategy.init(CONDITIONAL, jax.random.PRNGKey(0))
    every = []
    for _ in range(6):  # the model-based rounds ask on trials of mixed names
        configs, state = strategy.ask(state, 5)
        for config in configs:
            check_conditional(config)
        # Best: momentum near 0.9, the deepest net; sgd and adam worse.
        losses = [abs(c.get("momentum", 0.0) - 0.9) + (3 - c["depth"]) for c in configs]
        state = strategy.tell(state, configs, losses)
        every += configs
    trials = state.study.get_trials(deepcopy=False)
    for trial, config in zip(trials, every, strict=True):  # Optuna saw the active names only
        assert set(trial.params) == {n for n in config if n != "activation"}
    assert {c["optimizer"] for c in every} == {"adam", "sgd", "momentum"}
    assert {c["depth"] for c in every} == {1, 2, 3}


def test_export_of_a_conditional_sweep_writes_only_active_parameters():
    strategy = optuna_strategy(optuna.samplers.RandomSampler(seed=1))
    configs, _ = strategy.ask(strategy.init(CONDITIONAL, jax.random.PRNGKey(1)), 12)
    rows = [MemberResult(member_id=i, config=c, seed=0, fold=None, static_group="g",
                         status="completed", diverged_step=None,
                         metrics={"valid_loss": 0.1 * i}, curve_steps=[10],
                         curves={"valid_loss": [0.1 * i]}, wall_time_s=0.0)
            for i, c in enumerate(configs)]
    results = Results(rows, {"metric": "valid_loss", "mode": "min",
                             "space": CONDITIONAL.to_dict()})
    study = export_to_optuna(results)
    for trial, config in zip(study.get_trials(deepcopy=False), configs, strict=True):
        searched = {n for n in config if n != "activation"}
        assert set(trial.params) == searched and set(trial.distributions) == searched
        assert {k: v for k, v in trial.params.items()} == {n: config[n] for n in searched}
        if "momentum" in config:  # the declared range, not one inferred from the values
            assert trial.distributions["momentum"] == optuna.distributions.FloatDistribution(
                0.5, 0.99)
        if "width_3" in config:
            assert trial.distributions["width_3"] == (
                optuna.distributions.CategoricalDistribution([16, 32, 64]))
        assert ("fixed.activation" in trial.user_attrs) == ("activation" in config)
