"""Warm starts: strategies told earlier results, tune(history=...), extending a sweep, the CLI."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import cli, warmstart
from jaxtune.commands.build import SweepPlan
from jaxtune.commands.drivers import seeded_strategy
from jaxtune.scheduled import initial_population
from jaxtune.space import Choice, Fixed, Float, Int, Space
from jaxtune.strategies import bayes_search, grid_search, random_search, sobol_search
from jaxtune.strategies.warm import MAX_REPEATED_ASKS, warm_started

KEY = jax.random.PRNGKey(0)
# As tests/test_bayes.py (a 2-D space, these settings): the GP programs are shared.
FAST = dict(num_restarts=64, num_ascent=8, acquisition_steps=20, fit_steps=100, fit_restarts=2)
SQUARE = Space({"a": Float(0.0, 1.0), "b": Float(0.0, 1.0)})
OPTIMUM = np.array([0.3, 0.7])


def distance(configs):
    return np.linalg.norm(SQUARE.encode(configs) - OPTIMUM, axis=1)


def key_of(config):
    return json.dumps(config, sort_keys=True)


def test_bayes_exploits_a_history_near_the_optimum_from_its_first_proposals():
    # A coarse look at the whole square, and most points close to the optimum.
    rng = np.random.default_rng(0)
    coarse = np.stack(np.meshgrid([0.0, 0.5, 1.0], [0.0, 0.5, 1.0]), -1).reshape(-1, 2)
    near = np.clip(OPTIMUM + rng.normal(0.0, 0.06, (12, 2)), 0.0, 1.0)
    history = SQUARE.decode(np.concatenate([coarse, near]))
    losses = distance(history) ** 2
    cold = bayes_search(num_initial=8, **FAST)
    cold_configs, _ = cold.ask(cold.init(SQUARE, KEY), 4)
    warm = warm_started(bayes_search(num_initial=8, **FAST), history, losses)
    warm_configs, _ = warm.ask(warm.init(SQUARE, KEY), 4)
    # Cold: the Sobol design, spread over the square. Warm: the GP, fitted on the history
    # (21 >= num_initial told configs: no design left), proposes next to its best.
    assert np.median(distance(cold_configs)) > 0.25
    assert np.median(distance(warm_configs)) < 0.1
    assert not {key_of(c) for c in warm_configs} & {key_of(c) for c in history}


def test_a_short_history_counts_towards_the_design():
    strategy = bayes_search(num_initial=8, **FAST)
    history = SQUARE.sample(1, 3)
    state = strategy.tell(strategy.init(SQUARE, KEY), history, np.ones(3))
    cold_state = strategy.init(SQUARE, KEY)
    configs, state = strategy.ask(state, 5)  # the 5 design points left, as a cold start's
    assert configs == strategy.ask(cold_state, 5)[0]
    assert state.num_initial_asked == 5


def test_grid_continues_with_the_untried_cells():
    space = Space({"x": Choice([1, 2, 3]), "y": Choice(["p", "q"])})
    grid = space.grid()
    tried = [grid[1], grid[4]]
    strategy = warm_started(grid_search(), tried, [0.5, 0.7])
    state = strategy.init(space, KEY)
    first, state = strategy.ask(state, 3)
    rest, state = strategy.ask(state, 10)
    assert first + rest == [c for c in grid if c not in tried]
    assert strategy.ask(state, 1)[0] == []


def test_sobol_and_random_skip_what_was_evaluated():
    space = Space({"x": Float(0.0, 1.0), "n": Int(1, 4)})
    sobol = sobol_search()
    earlier, _ = sobol.ask(sobol.init(space, KEY), 4)
    reference, _ = sobol.ask(sobol.init(space, KEY), 8)
    warm = warm_started(sobol, earlier, np.arange(4.0))
    # The same key: the first four points are the history's, skipped; the sequence goes on.
    assert warm.ask(warm.init(space, KEY), 4)[0] == reference[4:]
    earlier, _ = random_search().ask(random_search().init(space, KEY), 4)
    warm = warm_started(random_search(), earlier, np.arange(4.0))
    configs, _ = warm.ask(warm.init(space, KEY), 4)
    assert len(configs) == 4
    assert not {key_of(c) for c in configs} & {key_of(c) for c in earlier}


def test_a_covered_discrete_space_gives_nothing_new():
    space = Space({"x": Choice([1, 2])})
    calls = []
    inner = random_search()

    def ask(state, num):
        calls.append(num)
        return inner.ask(state, num)

    strategy = warm_started(jt.Strategy(inner.init, ask, inner.tell), [{"x": 1}, {"x": 2}],
                            [1.0, 2.0])
    assert strategy.ask(strategy.init(space, KEY), 2)[0] == []
    assert len(calls) == MAX_REPEATED_ASKS


def test_reuse_best_hands_out_the_best_first():
    space = Space({"x": Float(0.0, 1.0)})
    history = [{"x": 0.1}, {"x": 0.2}, {"x": 0.3}, {"x": 0.4}]
    strategy = warm_started(random_search(), history, [3.0, np.nan, 1.0, 2.0], reuse_best=2)
    configs, state = strategy.ask(strategy.init(space, KEY), 3)
    assert configs[:2] == [{"x": 0.3}, {"x": 0.4}]
    assert configs[2] not in history
    assert all(c not in history for c in strategy.ask(state, 4)[0])


def test_a_scheduled_sweep_starts_from_the_history_best_half():
    # What `jaxtune sweep --strategy pbt|halving --warm-start DIR` gives run_pbt/run_halving.
    space = Space({"x": Float(0.0, 1.0)})
    earlier = jt.Results([row(i, {"x": x}, accuracy)
                          for i, (x, accuracy) in enumerate([(0.1, 0.5), (0.2, 0.9),
                                                             (0.3, 0.7), (0.4, 0.8)])])
    plan = SweepPlan(None, None, space, random_search(), "valid_accuracy", "max", 8, 4, None,
                     None, 1, history=earlier)
    configs = initial_population(seeded_strategy(plan), space, 0, 4)
    assert configs[:2] == [{"x": 0.2}, {"x": 0.4}]  # the best half of 4, best first
    assert all(c not in [r.config for r in earlier] for c in configs[2:])
    assert seeded_strategy(plan._replace(history=None)) is plan.strategy


def row(member_id, config, accuracy, status="completed", seed=0):
    return jt.MemberResult(member_id, config, seed, None, "g", status, None,
                           {"valid_accuracy": accuracy}, [10], {}, 0.0)


def test_history_losses_from_results_and_pairs():
    space = Space({"lr": Float(0.01, 0.1), "opt": Fixed("adam")})
    a, b, c = ({"lr": 0.02, "opt": "adam"}, {"lr": 0.05, "opt": "adam"},
               {"lr": 0.08, "opt": "adam"})
    results = jt.Results([row(0, a, 0.8), row(1, a, 0.6, seed=1), row(2, b, 0.9),
                          row(3, b, 0.95, "diverged", seed=1), row(4, c, 0.7)])
    configs, losses = warmstart.history_losses(results, space, "valid_accuracy", "max")
    assert configs == [a, b, c]  # one per config, mean over its seeds, negated (max)
    np.testing.assert_allclose(losses, [-0.7, np.inf, -0.7])
    configs, losses = warmstart.history_losses([(a, 0.3), (c, float("nan"))], space,
                                               "valid_loss", "min")
    np.testing.assert_allclose(losses, [0.3, np.inf])
    summary = warmstart.history_summary([a, c], np.array([-0.7, -0.6]), "max")
    assert summary == {"num_configs": 2, "best_config": a, "best_score": 0.7}


@pytest.mark.parametrize("config, message", [
    ({"lr": 0.02}, r"missing \['opt'\]"),
    ({"lr": 0.02, "opt": "adam", "wd": 0.1}, r"\['wd'\] that are not in the space"),
    ({"lr": 0.5, "opt": "adam"}, r"config\['lr'\] = 0.5 is outside"),
])
def test_an_incompatible_history_is_refused_naming_the_row_and_name(config, message):
    space = Space({"lr": Float(0.01, 0.1), "opt": Fixed("adam")})
    with pytest.raises(ValueError, match=r"history\[1\] does not fit.*" + message):
        warmstart.history_losses([({"lr": 0.02, "opt": "adam"}, 0.1), (config, 0.2)], space,
                                 "valid_loss", "min")
    with pytest.raises(ValueError, match=r"history row 0 \(member 7\) has no metric 'valid_loss'"):
        warmstart.history_losses(jt.Results([row(7, {"lr": 0.02, "opt": "adam"}, 0.5)]),
                                 space, "valid_loss", "min")
    with pytest.raises(TypeError, match="history must be a Results"):
        warmstart.history_losses({"lr": 0.02}, space, "valid_loss", "min")


# --------------------------------------------------------------------------------------------
# Through tune and the CLI: one static group, few steps.

LR = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32]
TINY = Space({"learning_rate": Choice(LR, static=False), "optimizer": Fixed("sgd"),
              "depth": Fixed(1), "width": Fixed(4)})
RUN = dict(num_steps=2, batch_size=8, steps_per_segment=2)


@pytest.fixture(scope="module")
def wine():
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    return split, jt.classification_task("mlp", num_classes=3, input_shape=(13,))


def test_tune_with_history_and_extending_a_sweep(wine, tmp_path):
    split, task = wine
    directory = tmp_path / "checkpoint"
    first = jt.tune(task, split, TINY, grid_search(), num_configs=2, checkpoint=directory,
                    **RUN)
    assert [r.config["learning_rate"] for r in first] == LR[:2]
    # Extending the finished sweep: its round is replayed, only the new configs train.
    rounds = []
    extended = jt.tune(task, split, TINY, grid_search(), num_configs=4, checkpoint=directory,
                       resume=True, on_round=rounds.append, **RUN)
    assert [len(r) for r in rounds] == [2]
    assert [r.config["learning_rate"] for r in extended] == LR[:4]
    assert [r.metrics for r in extended][:2] == [r.metrics for r in first]
    again = []
    jt.tune(task, split, TINY, grid_search(), num_configs=4, checkpoint=directory,
            resume=True, on_round=again.append, **RUN)
    assert again == []  # nothing left to train
    # A warm start from the earlier results: the grid's untried cells only.
    warm = jt.tune(task, split, TINY, grid_search(), num_configs=3, history=extended, **RUN)
    assert [r.config["learning_rate"] for r in warm] == LR[4:]
    metadata = warm.metadata["warm_start"]
    assert metadata["num_configs"] == 4
    assert metadata["best_score"] == max(r.metrics["valid_accuracy"] for r in extended)
    assert jt.Results.load(warm.save(tmp_path / "out")).metadata["warm_start"] == metadata


class CrashError(Exception):
    """Stands for a crash within a round."""


def test_an_interrupted_round_is_finished_before_an_extension(wine, tmp_path):
    split, task = wine
    run = {**RUN, "num_steps": 4}  # two segments per member: a save within the round

    reports = []

    def crash(report):  # after the round's second segment: its first one is saved
        reports.append(report)
        if len(reports) == 2:
            raise CrashError

    with pytest.raises(CrashError):
        jt.tune(task, split, TINY, grid_search(), num_configs=2, checkpoint=tmp_path,
                on_segment=crash, **run)
    with pytest.raises(ValueError, match="interrupted within a round of num_configs=2; resume "
                                         "it with num_configs=2"):
        jt.tune(task, split, TINY, grid_search(), num_configs=3, checkpoint=tmp_path,
                resume=True, **run)
    finished = jt.tune(task, split, TINY, grid_search(), num_configs=2, checkpoint=tmp_path,
                       resume=True, **run)
    extended = jt.tune(task, split, TINY, grid_search(), num_configs=4, checkpoint=tmp_path,
                       resume=True, **run)
    assert [r.config for r in extended][:2] == [r.config for r in finished]
    assert len(extended) == 4


def test_cli_warm_start(wine, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    space = tmp_path / "space.json"
    space.write_text(json.dumps(TINY.to_dict()))
    base = ["sweep", "--dataset", "wine", "--space", str(space), "--quiet", "--no-plot",
            "--strategy", "grid", "--num-steps", "2", "--batch-size", "8",
            "--steps-per-segment", "2"]
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--num-configs", "2"]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--num-configs", "2",
                     "--warm-start", str(tmp_path / "a")]) == 0
    second = jt.Results.load(tmp_path / "b")
    assert [r.config["learning_rate"] for r in second] == LR[2:4]
    capsys.readouterr()
    assert cli.main([*base, "--out", str(tmp_path / "c"), "--warm-start",
                     str(tmp_path / "none")]) == 2
    assert "--warm-start: no such folder" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY.to_dict(), "width": 8}))
    assert cli.main([*base[:4], str(other), *base[5:], "--out", str(tmp_path / "d"),
                     "--warm-start", str(tmp_path / "a")]) == 2
    assert "config['width'] = 4 differs from the Fixed value 8" in capsys.readouterr().err
