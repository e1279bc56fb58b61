"""Several objectives and constraints: the Pareto front, hypervolume, BO proposals for the
front, constrained EI, tune with several metrics, the CLI flags (docs/multiobjective.md)."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxtune as jt
from jaxtune import contracts, objectives, pareto
from jaxtune import tuning as tune_lib
from jaxtune.contracts import Outcomes, Strategy
from jaxtune.results import MemberResult, Results
from jaxtune.strategies.bayes import bayes_search
from jaxtune.strategies.pb2 import pb2
from jaxtune.strategies.stopping import patience_stopping

# The settings tests/test_bayes.py uses: its compiled GP programs are shared.
FAST = dict(num_restarts=64, num_ascent=8, acquisition_steps=20, fit_steps=100, fit_restarts=2)
SPACE2 = jt.Space({"a": jt.Float(0.0, 1.0), "b": jt.Float(0.0, 1.0)})


def row(member_id, metrics, status="completed", extra=None):
    return MemberResult(member_id=member_id, config={"x": member_id}, seed=0, fold=None,
                        static_group="g", status=status,
                        diverged_step=5 if status == "diverged" else None, metrics=metrics,
                        curve_steps=[], curves={}, wall_time_s=0.0, extra=extra or {})


def brute_force_front(values: np.ndarray) -> np.ndarray:
    """Losses [n, k] -> the indices no other finite row dominates, by a double loop."""
    front = []
    for i, p in enumerate(values):
        if not np.all(np.isfinite(p)):
            continue
        dominated = any(
            np.all(np.isfinite(q)) and np.all(q <= p) and np.any(q < p)
            for j, q in enumerate(values) if j != i
        )
        if not dominated:
            front.append(i)
    return np.array(front, int)


# --------------------------------------------------------------------------------------------
# The front and the hypervolume


def test_pareto_front_matches_brute_force_with_ties_nan_and_diverged():
    rng = np.random.default_rng(0)
    accuracy = np.round(rng.uniform(0.5, 1.0, 60), 2)  # rounded: many ties
    loss = np.round(rng.uniform(0.0, 2.0, 60), 1)
    accuracy[[3, 9]] = np.nan
    loss[11] = np.inf
    rows = [row(i, {"valid_accuracy": a, "valid_loss": b})
            for i, (a, b) in enumerate(zip(accuracy, loss, strict=True))]
    # The best point of all, but diverged: never on the front.
    rows.append(row(60, {"valid_accuracy": 1.0, "valid_loss": 0.0}, status="diverged"))
    rows.append(row(61, {"valid_accuracy": 1.0, "valid_loss": 0.0}, extra={"feasible": False}))
    rows.append(row(62, dict(rows[0].metrics)))  # an exact copy of member 0: a tie
    results = Results(rows)
    front = results.pareto_front(["valid_accuracy", "valid_loss"], ["max", "min"])
    values = np.array([[r.score("valid_accuracy"), r.score("valid_loss")] for r in rows[:60]]
                      + [[np.nan, np.nan]] * 2 + [list(rows[0].metrics.values())])
    losses = values * np.array([-1.0, 1.0])
    assert sorted(r.member_id for r in front) == sorted(brute_force_front(losses).tolist())
    assert 60 not in [r.member_id for r in front] and 61 not in [r.member_id for r in front]
    assert (0 in [r.member_id for r in front]) == (62 in [r.member_id for r in front])
    accuracies = [r.metrics["valid_accuracy"] for r in front]
    assert accuracies == sorted(accuracies, reverse=True)  # ordered by the first metric
    assert pareto.non_dominated(losses).tolist() == [
        i in set(brute_force_front(losses)) for i in range(len(losses))]


def test_pareto_front_defaults_and_errors():
    rows = [row(0, {"valid_accuracy": 0.9, "valid_loss": 0.5}),
            row(1, {"valid_accuracy": 0.8, "valid_loss": 0.2}),
            row(2, {"valid_accuracy": 0.7, "valid_loss": 0.6})]
    sweep = Results(rows, {"metrics": ["valid_accuracy", "valid_loss"], "modes": ["max", "min"]})
    assert [r.member_id for r in sweep.pareto_front()] == [0, 1]
    # Modes from the names when not given: accuracy up, loss down.
    assert [r.member_id for r in Results(rows).pareto_front(
        ["valid_accuracy", "valid_loss"])] == [0, 1]
    with pytest.raises(ValueError, match="one objective"):
        Results(rows).pareto_front()
    with pytest.raises(ValueError, match="unknown metric"):
        sweep.pareto_front(["valid_accuracy", "valid_f1"])
    with pytest.raises(ValueError, match="one mode"):
        sweep.pareto_front(["valid_accuracy", "valid_loss"], ["max"])
    # Hand-computed: losses (-0.9, 0.5), (-0.8, 0.2) against reference (0, 1):
    # 0.9 * 0.5 + 0.8 * (0.5 - 0.2) = 0.69.
    assert sweep.hypervolume([0.0, 1.0]) == pytest.approx(0.69, abs=1e-12)


def test_hypervolume_two_d_by_hand():
    points = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [2.5, 2.5], [np.nan, 0.0], [5.0, 0.5]]
    # Staircase: 3*1 + 2*1 + 1*1 (the dominated, the NaN and the out-of-reference rows add 0).
    assert pareto.hypervolume(points, [4.0, 4.0]) == 6.0
    assert pareto.hypervolume(np.zeros((0, 2)), [1.0, 1.0]) == 0.0
    assert pareto.hypervolume([[1.0, 1.0], [1.0, 1.0]], [2.0, 3.0]) == 2.0
    with pytest.raises(ValueError, match="reference"):
        pareto.hypervolume(points, [1.0, 2.0, 3.0])


def union_volume(points: np.ndarray, reference: np.ndarray) -> float:
    """Inclusion-exclusion over every subset of the boxes [p, reference]."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.max(subset, axis=0)
            total += (-1) ** (size + 1) * np.prod(np.clip(reference - corner, 0, None))
    return total


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(dim):
    rng = np.random.default_rng(dim)
    for _ in range(5):
        points = np.round(rng.uniform(0, 1, (7, dim)), 1)
        reference = np.full(dim, 1.1)
        assert pareto.hypervolume(points, reference) == pytest.approx(
            union_volume(points, reference), rel=1e-12, abs=1e-12)


def test_non_dominated_ranks_and_summary():
    points = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 2.0], [np.inf, 0.0]])
    assert pareto.non_dominated_ranks(points).tolist() == [0, 0, 1, 2, np.inf]
    feasible = np.array([True, False, True, True, True])
    assert pareto.summary_losses(points, feasible).tolist() == [0, np.inf, 1, 2, np.inf]
    assert pareto.summary_losses(points[:, :1], feasible).tolist() == [0, np.inf, 1, 2, np.inf]


# --------------------------------------------------------------------------------------------
# Constraints and the contract's checks


def test_constraints_are_checked_and_evaluated():
    constraints = contracts.check_constraints(
        {"valid_loss": ("<=", 0.5), "valid_accuracy": (">=", 0.8)}, {"loss": "min",
                                                                     "accuracy": "max"})
    assert constraints.violations({"valid_loss": 0.7, "valid_accuracy": 0.9}).tolist() == \
        pytest.approx([0.2, -0.1])
    assert constraints.violations({"valid_loss": math.nan}).tolist() == [np.inf, np.inf]
    predicate = contracts.check_constraints(lambda m: m["valid_loss"] < 1)
    assert predicate.violations({"valid_loss": 0.5}).tolist() == [-0.5]
    assert predicate.violations({"valid_loss": 2.0}).tolist() == [0.5]
    with pytest.raises(ValueError, match="operator"):
        contracts.check_constraints({"valid_loss": ("<", 0.5)})
    with pytest.raises(ValueError, match="finite"):
        contracts.check_constraints({"valid_loss": ("<=", math.inf)})
    with pytest.raises(ValueError, match="test set"):
        contracts.check_constraints({"test_loss": ("<=", 0.5)})
    with pytest.raises(TypeError, match="pair"):
        contracts.check_constraints({"valid_loss": 0.5})
    with pytest.raises(TypeError, match="mapping"):
        contracts.check_constraints(0.5)


def test_selections_one_and_several():
    modes = {"accuracy": "max", "loss": "min"}
    assert contracts.selections(None, None, metric_modes=modes, kind="classification") == (
        ("valid_accuracy",), ("max",))
    assert contracts.selections(["valid_accuracy", "valid_loss"], ["min", None],
                                metric_modes=modes) == (("valid_accuracy", "valid_loss"),
                                                        ("min", "min"))
    with pytest.raises(ValueError, match="1 mode"):
        contracts.selections(["valid_accuracy", "valid_loss"], "max", metric_modes=modes)
    with pytest.raises(ValueError, match="more than once"):
        contracts.selections(["valid_loss", "valid_loss"], metric_modes=modes)
    with pytest.raises(ValueError, match="'max'"):
        contracts.selections(["valid_accuracy", "valid_loss"], ["up", "min"], metric_modes=modes)


def test_infeasible_members_are_marked_never_best_and_shown(tmp_path):
    rows = [row(0, {"valid_accuracy": 0.95, "valid_loss": 0.9}),
            row(1, {"valid_accuracy": 0.90, "valid_loss": 0.3}),
            row(2, {"valid_accuracy": 0.80, "valid_loss": 0.2}),
            row(3, {"valid_accuracy": 0.99, "valid_loss": 0.1}, status="diverged")]
    marked = tune_lib.mark_feasible(Results(rows), contracts.check_constraints(
        {"valid_loss": ("<=", 0.5)}))
    assert [r.extra["feasible"] for r in marked] == [False, True, True, False]
    assert marked.best("valid_accuracy", "max").member_id == 1
    assert marked.best_config("valid_accuracy", "max")["members"] == [1]
    assert [r.member_id for r in marked.top(5, "valid_accuracy", "max")] == [1, 2]
    lines = marked.table(metric="valid_accuracy", mode="max").splitlines()
    assert "infeasible rank '-'" in lines[0] and "feasible" in lines[1]
    assert lines[-2].split()[:4] == ["-", "0", "completed", "False"]
    header = (marked.save(tmp_path) / "results.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("wall_time_s") + 1] == "feasible"
    assert Results.load(tmp_path) == marked  # the marks round-trip
    # Without constraints nothing changes: no column, the same caption.
    plain = Results(rows)
    assert "feasible" not in plain.table(metric="valid_accuracy").splitlines()[1]
    assert "infeasible" not in plain.table(metric="valid_accuracy").splitlines()[0]


# --------------------------------------------------------------------------------------------
# Bayesian optimization for the front and under constraints (direct ask/tell)


def zdt1_2d(config) -> list[float]:
    x, y = config["a"], config["b"]
    g = 1.0 + 9.0 * y
    return [x, g * (1.0 - math.sqrt(x / g))]


def drive(strategy, objective, constraint, seed, rounds, batch=4, initial=8):
    """Ask/tell ``rounds`` batches after ``initial`` points; the told objectives per round."""
    state = strategy.init(SPACE2, jax.random.PRNGKey(seed))
    told = []
    for index in range(rounds + 1):
        configs, state = strategy.ask(state, initial if index == 0 else batch)
        objectives = np.array([objective(c) for c in configs])
        violations = np.array([[constraint(c)] for c in configs]) if constraint else \
            np.zeros((len(configs), 0))
        state = strategy.tell(state, configs, Outcomes(objectives, violations))
        told.append((configs, objectives))
    return told


def feasible_hypervolume(configs, objectives, reference=(1.1, 11.0)) -> float:
    kept = [f for c, f in zip(configs, objectives, strict=True) if c["a"] + c["b"] <= 0.6]
    return pareto.hypervolume(np.reshape(kept, (len(kept), 2)), reference)


def test_bayes_proposes_for_the_constrained_front():
    # ZDT1 in two dimensions (front: b = 0, f2 = 1 - sqrt(f1)), feasible only where
    # a + b <= 0.6: 18% of the square, and 60% of the front.
    def violation(c):
        return c["a"] + c["b"] - 0.6

    told = drive(bayes_search(num_initial=8, **FAST), zdt1_2d, violation, seed=0, rounds=3)
    configs = [c for batch, _ in told for c in batch]
    objectives = np.concatenate([f for _, f in told])
    initial = feasible_hypervolume(told[0][0], told[0][1])
    gain_bo = feasible_hypervolume(configs, objectives) - initial
    # Twelve BO proposals (three batches of four, each point its own scalarization, weighed
    # by its probability of feasibility) add more feasible hypervolume than twelve random
    # points do, in each of ten draws.
    gains_random, feasible_random = [], []
    for draw in range(10):
        extra = SPACE2.sample(jax.random.PRNGKey(100 + draw), 12)
        points = np.concatenate([told[0][1], [zdt1_2d(c) for c in extra]])
        gains_random.append(feasible_hypervolume(told[0][0] + extra, points) - initial)
        feasible_random += [violation(c) <= 0 for c in extra]
    assert gain_bo > max(gains_random), (gain_bo, gains_random)
    # Random points land in the feasible 18%; BO's later proposals mostly avoid the rest.
    late = [c for batch, _ in told[2:] for c in batch]
    feasible_bo = np.mean([violation(c) <= 0.0 for c in late])
    assert np.mean(feasible_random) < 0.3
    assert feasible_bo > max(0.5, 2 * np.mean(feasible_random)), feasible_bo


def test_constrained_proposer_traces_without_constraints_and_with_one_objective():
    # The other two shapes of the one device program, traced (not compiled: the test above
    # compiles the multi-objective, constrained one; benchmarks/multiobjective.py runs the
    # unconstrained one, and so does test_bayes_proposes_for_the_unconstrained_front below;
    # the tune test the plumbing).
    from jaxtune.strategies import acquisitions, gp

    rows, dim, batch = 32, 2, 4
    search = acquisitions.AcquisitionSearch(jnp.asarray(4.0), jnp.asarray(0.02),
                                            jnp.zeros((dim, 8)), jnp.zeros(dim, bool))
    settings = acquisitions.ProposalSettings("ei", batch, 16, 2, 2)

    def params(count):
        return gp.GPParams(jnp.zeros((count, dim)), jnp.zeros((count,)), jnp.zeros((count,)))

    with gp.gp_precision(rows):
        for targets, constraints in ((batch, 0), (1, 2)):
            inputs = acquisitions.ProposalInputs(
                params(targets), jnp.zeros((rows, dim)), jnp.zeros((targets, rows)),
                jnp.zeros(rows), jnp.asarray(8), jnp.asarray(3), jax.random.PRNGKey(0),
                jnp.asarray(1e-8), search)
            limits = acquisitions.ConstraintInputs(
                params(constraints), jnp.zeros((constraints, rows)), jnp.zeros(constraints))
            shape = jax.eval_shape(
                lambda i, c: acquisitions.propose_constrained(i, c, settings), inputs, limits)
            assert shape.shape == (batch, dim)


def test_bayes_refuses_mixing_scores_and_outcomes():
    strategy = bayes_search(num_initial=2, **FAST)
    state = strategy.init(SPACE2, jax.random.PRNGKey(0))
    configs, state = strategy.ask(state, 2)
    state = strategy.tell(state, configs, Outcomes(np.ones((2, 2)), np.zeros((2, 0))))
    with pytest.raises(ValueError, match="Outcomes"):
        strategy.tell(state, configs, [1.0, 2.0])
    with pytest.raises(ValueError, match="3 objectives"):
        strategy.tell(state, configs, Outcomes(np.ones((2, 3)), np.zeros((2, 0))))


# --------------------------------------------------------------------------------------------
# tune with several metrics and constraints, end to end


@pytest.fixture(scope="module")
def wine():
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    return jt.classification_task("linear", num_classes=3, input_shape=(13,)), split


TUNE_SPACE = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True),
                       "optimizer": jt.Fixed("adam")})


def recording(accepts_outcomes: bool) -> tuple[Strategy, list]:
    """Random search that records what it is told."""
    told: list = []
    inner = jt.random_search()

    def tell(state, configs, scores):
        told.append(scores)
        return state

    return Strategy(inner.init, inner.ask, tell, accepts_outcomes=accepts_outcomes), told


def test_tune_with_two_metrics_and_a_constraint(wine):
    task, split = wine
    strategy, told = recording(accepts_outcomes=True)
    kwargs = dict(num_configs=6, population_size=3, num_steps=10, batch_size=16,
                  steps_per_segment=10, seeds=(0,), seed=1)
    results = jt.tune(task, split, TUNE_SPACE, strategy, metric=["valid_accuracy", "valid_loss"],
                      constraints={"valid_loss": ("<=", 0.9)}, **kwargs)
    assert results.metadata["metrics"] == ("valid_accuracy", "valid_loss")
    assert results.metadata["modes"] == ("max", "min")
    assert results.metadata["constraints"] == {"valid_loss": ("<=", 0.9)}
    assert results.metadata["metric"] == "valid_accuracy"
    assert len(told) == 2 and all(isinstance(t, Outcomes) for t in told)
    objectives = np.concatenate([t.objectives for t in told])
    np.testing.assert_allclose(objectives[:, 0], [-r.metrics["valid_accuracy"] for r in results])
    np.testing.assert_allclose(objectives[:, 1], [r.metrics["valid_loss"] for r in results])
    feasible = [r.metrics["valid_loss"] <= 0.9 for r in results]
    assert [r.extra["feasible"] for r in results] == feasible
    np.testing.assert_array_equal(np.concatenate([t.feasible for t in told]), feasible)
    front = results.pareto_front()
    losses = np.array([[-r.metrics["valid_accuracy"], r.metrics["valid_loss"]]
                       if r.extra["feasible"] else [np.nan, np.nan] for r in results])
    assert sorted(r.member_id for r in front) == brute_force_front(losses).tolist()
    # A strategy without outcomes is told one loss per config: the rank within the round.
    ranks = tune_lib.summary_scores(told[0])
    round_front = brute_force_front(np.where(told[0].feasible[:, None], told[0].objectives,
                                             np.nan))
    assert np.flatnonzero(ranks == 0).tolist() == round_front.tolist()
    assert np.all(np.isinf(ranks[~told[0].feasible]))


def test_tune_refuses_bad_objectives_before_training(wine):
    task, split = wine
    kwargs = dict(num_configs=2, num_steps=5, batch_size=16)
    with pytest.raises(ValueError, match="mode"):
        jt.tune(task, split, TUNE_SPACE, metric=["valid_accuracy", "valid_loss"],
                mode=["max"], **kwargs)
    with pytest.raises(ValueError, match="test set"):
        jt.tune(task, split, TUNE_SPACE, constraints={"test_loss": ("<=", 1.0)}, **kwargs)
    with pytest.raises(ValueError, match="does not report"):
        jt.tune(task, split, TUNE_SPACE, metric=["valid_accuracy", "valid_f1"], **kwargs)


# --------------------------------------------------------------------------------------------
# The Pareto plot and the command line


def test_pareto_plot_draws_members_infeasible_and_front():
    pytest.importorskip("matplotlib")
    from jaxtune import plot

    rows = [row(0, {"valid_accuracy": 0.9, "valid_loss": 0.5}),
            row(1, {"valid_accuracy": 0.8, "valid_loss": 0.2}),
            row(2, {"valid_accuracy": 0.7, "valid_loss": 0.6}),
            row(3, {"valid_accuracy": 0.95, "valid_loss": 0.1}, extra={"feasible": False})]
    results = Results(rows, {"metrics": ["valid_accuracy", "valid_loss"],
                             "modes": ["max", "min"]})
    ax = plot.pareto_plot(results)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["member", "infeasible", "Pareto front (2)"]
    front = ax.collections[-1].get_offsets()
    np.testing.assert_allclose(front, [[0.9, 0.5], [0.8, 0.2]])
    with pytest.raises(ValueError, match="exactly two"):
        plot.pareto_plot(Results([row(0, {"valid_a": 1.0, "valid_b": 2.0, "valid_c": 3.0})]),
                         ["valid_a", "valid_b", "valid_c"])


def cli_args(tmp_path, *extra):
    space = tmp_path / "space.json"
    space.write_text('{"learning_rate": {"type": "float", "low": 0.001, "high": 0.1}, '
                     '"optimizer": "adam"}', encoding="utf-8")
    return ["sweep", "--dataset", "wine", "--space", str(space), "--out", str(tmp_path / "out"),
            "--quiet", "--no-plot", "--num-configs", "2", "--num-steps", "2", *extra]


@pytest.fixture
def cli(monkeypatch):
    from jaxtune import cli

    monkeypatch.setattr(cli, "use_cpu_cores", lambda num_devices=None: None)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    return cli


@pytest.mark.parametrize("extra, named", [
    (["--metric", "valid_accuracy", "--metric", "valid_loss", "--direction", "max"],
     ["--direction", "1 time(s) for 2 --metric"]),
    (["--direction", "max"], ["--direction", "0 --metric"]),
    (["--metric", "valid_loss", "--direction", "down"], ["--direction", "down"]),
    (["--constraint", "valid_loss<0.5"], ["--constraint", "METRIC<=BOUND"]),
    (["--constraint", "valid_loss<=big"], ["--constraint", "finite"]),
    (["--constraint", "test_loss<=0.5"], ["--constraint", "test set"]),
    (["--constraint", "valid_loss<=0.5", "--constraint", "valid_loss>=0.1"],
     ["--constraint", "more than once"]),
    (["--metric", "valid_accuracy", "--metric", "valid_f1"], ["--metric", "valid_f1"]),
])
def test_cli_objective_flags_error_in_one_line(cli, tmp_path, capsys, extra, named):
    status = cli.main(cli_args(tmp_path, *extra))
    lines = capsys.readouterr().err.splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("jaxtune: error: "), lines
    for text in named:
        assert text in lines[0], (text, lines[0])


def test_cli_passes_metrics_directions_and_constraints_to_tune(cli, tmp_path, capsys,
                                                                monkeypatch):
    from jaxtune import tuning

    seen = {}

    def fake_tune(*args, **kwargs):
        seen.update(kwargs)
        rows = [row(0, {"valid_accuracy": 0.9, "valid_loss": 0.5}),
                row(1, {"valid_accuracy": 0.8, "valid_loss": 0.2}),
                row(2, {"valid_accuracy": 0.7, "valid_loss": 0.6})]
        return Results(rows, {"metric": "valid_accuracy", "mode": "min",
                              "metrics": ["valid_accuracy", "valid_loss"],
                              "modes": ["min", "max"]})

    monkeypatch.setattr(tuning, "tune", fake_tune)
    status = cli.main(cli_args(tmp_path, "--metric", "valid_accuracy", "--direction", "min",
                               "--metric", "valid_loss", "--direction", "max",
                               "--constraint", "valid_loss<=0.55"))
    out = capsys.readouterr().out
    assert status == 0, out
    assert seen["metric"] == ["valid_accuracy", "valid_loss"]
    assert seen["mode"] == ["min", "max"]
    assert seen["constraints"].bounds == (("valid_loss", "<=", 0.55),)
    assert "Pareto front over valid_accuracy (min), valid_loss (max):" in out
    front_lines = out.split("Pareto front over")[1].splitlines()
    assert "2 of 3 members" not in front_lines[1] and "of 1 members" in front_lines[1]



# --------------------------------------------------------------------------------------------
# Several metrics in the schedulers: one order (jaxtune.objectives), NSGA-II's


def brute_force_order(points: np.ndarray, totals: np.ndarray) -> list[int]:
    """The rule of docs/multiobjective.md written out with loops: feasible first; fronts peeled
    by pairwise dominance; within a front, larger crowding distance first (extremes infinite);
    infeasible by total violation; ties by index."""
    n, k = points.shape
    feasible = [i for i in range(n) if totals[i] <= 0]
    finite = [i for i in feasible if all(math.isfinite(v) for v in points[i])]
    rank = {i: math.inf for i in feasible}
    remaining, level = list(finite), 0
    while remaining:
        front = [i for i in remaining if not any(
            all(points[j][m] <= points[i][m] for m in range(k))
            and any(points[j][m] < points[i][m] for m in range(k)) for j in remaining)]
        for i in front:
            rank[i] = level
        remaining = [i for i in remaining if i not in front]
        level += 1
    crowd = {i: 0.0 for i in range(n)}
    for level in {rank[i] for i in finite}:
        front = [i for i in finite if rank[i] == level]
        for m in range(k):
            values = sorted((points[i][m], i) for i in front)
            low, high = values[0][0], values[-1][0]
            if high == low:
                continue
            for position, (value, i) in enumerate(values):
                if value in (low, high):
                    crowd[i] = math.inf
                elif crowd[i] != math.inf:
                    crowd[i] += (values[position + 1][0] - values[position - 1][0]) / (high - low)
    key = {i: (0, rank[i], -crowd[i]) if totals[i] <= 0 else (1, totals[i], 0.0)
           for i in range(n)}
    return sorted(range(n), key=lambda i: (key[i], i))


def test_scheduler_order_by_hand():
    points = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [0, 0], [4, 4], [np.inf, np.inf]], float)
    violation = np.array([0, 0, 0, 0, 2.0, 0.5, 0])
    # Front {0, 1, 2}: 0 and 2 are extremes (inf), 1 has 4/4 + 4/4 = 2; then 3 (rank 1), the
    # failed member 6 (rank inf), the infeasible ones by violation: 5 (0.5), 4 (2.0).
    assert objectives.best_first(points, violation).tolist() == [0, 2, 1, 3, 6, 5, 4]
    assert objectives.num_ahead(points, violation).tolist() == [0, 2, 0, 3, 6, 5, 4]
    np.testing.assert_allclose(
        objectives.crowding_distances([[0, 4], [1, 2], [3, 1], [4, 0]]), [np.inf, 1.5, 1.25,
                                                                         np.inf])


@pytest.mark.parametrize("num_metrics", [2, 3])
def test_scheduler_order_matches_brute_force(num_metrics):
    rng = np.random.default_rng(num_metrics)
    for _ in range(40):
        n = int(rng.integers(1, 12))
        points = rng.integers(0, 4, (n, num_metrics)).astype(float)  # small ints: many ties
        points[rng.random(n) < 0.1] = np.inf
        totals = np.where(rng.random(n) < 0.25, rng.integers(1, 3, n).astype(float), 0.0)
        want = brute_force_order(points, totals)
        assert objectives.best_first(points, totals).tolist() == want, (points, totals)
        keys = objectives.order_keys(points, totals)
        ahead = [sum(tuple(keys[j]) < tuple(keys[i]) for j in range(n)) for i in range(n)]
        assert objectives.num_ahead(points, totals).tolist() == ahead


def test_one_metric_orders_by_its_values_as_before():
    rng = np.random.default_rng(0)
    values = np.round(rng.uniform(0, 1, 50), 1)
    values[[4, 7]] = np.inf
    assert objectives.best_first(values[:, None]).tolist() == np.argsort(
        values, kind="stable").tolist()
    assert objectives.num_ahead(values[:, None]).tolist() == [
        int(np.sum(values < v)) for v in values]


TWO = ["valid_accuracy", "valid_loss"]


def scheduler_view(accuracy, loss, *, segment=1, step=10, num_steps=40, configs=None):
    num = len(accuracy)
    return jt.SlotView(
        segment=segment, step=np.full(num, step), alive=np.ones(num, bool),
        finished=np.full(num, step >= num_steps),
        metrics={"valid_accuracy": np.asarray(accuracy, float),
                 "valid_loss": np.asarray(loss, float)},
        configs=configs or [{"learning_rate": 0.01 * (i + 1)} for i in range(num)],
        member_ids=list(range(num)), num_steps=num_steps, steps_per_segment=10)


# Six members at the first rung. Losses (-accuracy, loss): front {0, 1, 2} (0 and 2 its
# extremes), 3 and 4 rank 1, 5 rank 2; with valid_loss <= 0.5, member 0 is infeasible.
ACCURACY = [0.9, 0.8, 0.5, 0.7, 0.4, 0.3]
LOSS = [0.6, 0.3, 0.2, 0.4, 0.5, 0.9]


def test_halving_promotes_by_the_order():
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True)})
    key = jax.random.PRNGKey(0)
    for constraints, promoted in ((None, {0, 2}), ({"valid_loss": ("<=", 0.5)}, {1, 2})):
        scheduler = jt.successive_halving(space, min_steps=10, eta=3, metric=TWO,
                                          constraints=constraints, key=key)
        view = scheduler_view(ACCURACY, LOSS)
        decision, _ = scheduler.update(scheduler.init(view), view)
        # floor(6 / 3) = 2 promoted: those with fewer than 2 records ahead of them.
        assert set(range(6)) - set(decision.refill) == promoted


def test_pbt_and_pb2_exploit_by_the_order():
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True)})
    key = jax.random.PRNGKey(0)
    view = scheduler_view(ACCURACY, LOSS)
    order = objectives.best_first(np.stack([-np.array(ACCURACY), LOSS], axis=1)).tolist()
    assert order == [0, 2, 1, 3, 4, 5]
    for make in (jt.pbt, pb2):
        scheduler = make(space, fraction=0.34, metric=TWO, key=key)
        decision, _ = scheduler.update(scheduler.init(view), view)
        assert set(decision.exploit) == {4, 5} and set(decision.exploit.values()) <= {0, 2}
    # Member 0 infeasible: it ranks last and copies; it is never copied.
    scheduler = jt.pbt(space, fraction=0.34, metric=TWO, key=key,
                       constraints={"valid_loss": ("<=", 0.5)})
    decision, _ = scheduler.update(scheduler.init(view), view)
    assert set(decision.exploit) == {5, 0} and set(decision.exploit.values()) <= {2, 1}


def test_patience_with_two_metrics_stops_only_when_neither_improves():
    space = jt.Space({"learning_rate": jt.Float(1e-3, 1e-1, log=True)})
    scheduler = patience_stopping(space, patience=1, metric=TWO, key=jax.random.PRNGKey(0))
    first = scheduler_view([0.5, 0.5, 0.5], [1.0, 1.0, 1.0], segment=1, step=10)
    state = scheduler.init(first)
    _, state = scheduler.update(state, first)
    # Member 0 improves accuracy only, member 1 loss only, member 2 neither.
    second = scheduler_view([0.6, 0.5, 0.5], [1.0, 0.9, 1.0], segment=2, step=20)
    decision, _ = scheduler.update(state, second)
    assert decision.stop == [2]


def first_evaluation(row) -> tuple[float, float]:
    return (-row.curves["valid_accuracy"][0], row.curves["valid_loss"][0])


def test_halving_with_two_metrics_end_to_end(wine):
    task, split = wine
    # Population 3, 10-step segments, batch 16: the shapes of the tune test above.
    results = jt.run_halving(
        task, split, TUNE_SPACE, population_size=3, num_steps=30, min_steps=10, eta=3,
        max_member_steps=90, metric=TWO, constraints={"valid_loss": ("<=", 1.0)},
        batch_size=16, seed=3)
    assert results.metadata["metrics"] == ("valid_accuracy", "valid_loss")
    assert all("feasible" in row.extra for row in results)
    # The first wave (the 3 initial members, all at rung 10 together) is one round of
    # synchronous halving: the one with nobody of the 3 ahead of it goes on.
    first = [row for row in results if row.member_id < 3]
    points = np.array([first_evaluation(row) for row in first])
    totals = np.array([max(row.curves["valid_loss"][0] - 1.0, 0.0) for row in first])
    expected = {row.member_id for row, ahead in zip(
        first, objectives.num_ahead(points, totals), strict=True) if ahead < 1}
    assert {row.member_id for row in first if row.curve_steps[-1] > 10} == expected


def test_pbt_with_two_metrics_end_to_end(wine):
    task, split = wine
    results = jt.run_pbt(task, split, TUNE_SPACE, population_size=3, num_steps=20,
                         steps_per_segment=10, fraction=0.34, metric=TWO, batch_size=16,
                         seed=1)
    assert results.metadata["metrics"] == ("valid_accuracy", "valid_loss")
    # After segment 1 the last member in the order copies the first.
    order = objectives.best_first(np.array([first_evaluation(row) for row in results]))
    copies = {row.member_id: entry["copied_from"] for row in results
              for entry in row.hp_schedule or () if "copied_from" in entry}
    assert copies == {results[int(order[-1])].member_id: results[int(order[0])].member_id}


def test_patience_with_two_metrics_end_to_end(wine):
    task, split = wine
    delta = 0.05
    results = jt.run_early_stopping(task, split, TUNE_SPACE, rule="patience", patience=1,
                                    min_delta=delta, population_size=3, num_configs=5,
                                    num_steps=30, steps_per_segment=10, metric=TWO,
                                    batch_size=16, seed=2)
    assert len(results) == 5 and results.metadata["modes"] == ("max", "min")
    num_stopped = 0
    for row in results:
        accuracy, loss = row.curves["valid_accuracy"], row.curves["valid_loss"]
        best, stop = [accuracy[0], loss[0]], None
        for t in range(1, len(row.curve_steps)):
            if row.curve_steps[t] >= 30:  # the evaluation at num_steps completes it
                break
            better = [accuracy[t] > best[0] + delta, loss[t] < best[1] - delta]
            if not any(better):
                stop = t
                break
            best = [accuracy[t] if better[0] else best[0], loss[t] if better[1] else best[1]]
        # Stopped at the first evaluation improving neither metric by delta, else ran on.
        if stop is None:
            assert row.status == "completed", row.member_id
        else:
            assert row.status == "stopped" and len(row.curve_steps) == stop + 1, row.member_id
            num_stopped += 1
    assert num_stopped >= 1


@pytest.mark.parametrize("strategy", ["halving", "pbt"])
def test_cli_passes_several_metrics_and_constraints_to_schedulers(cli, tmp_path, capsys,
                                                                   monkeypatch, strategy):
    from jaxtune.commands import drivers

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        rows = [row(0, {"valid_accuracy": 0.9, "valid_loss": 0.5}),
                row(1, {"valid_accuracy": 0.8, "valid_loss": 0.2})]
        return Results(rows, {"metric": "valid_accuracy", "mode": "max",
                              "metrics": TWO, "modes": ["max", "min"]})

    monkeypatch.setattr(drivers, "run_halving" if strategy == "halving" else "run_pbt", fake)
    status = cli.main(cli_args(tmp_path, "--strategy", strategy, "--metric", "valid_accuracy",
                               "--metric", "valid_loss", "--constraint", "valid_loss<=0.55"))
    out = capsys.readouterr().out
    assert status == 0, out
    assert seen["metric"] == TWO and seen["mode"] == ["max", "min"]
    assert seen["constraints"].bounds == (("valid_loss", "<=", 0.55),)
    assert "Pareto front over valid_accuracy (max), valid_loss (min):" in out


def test_bayes_proposes_for_the_unconstrained_front():
    # The unconstrained multi-objective program, compiled and run (the constrained test above
    # shares its GP fits). ZDT1 in two dimensions: the Pareto set is b = 0, for every a.
    told = drive(bayes_search(num_initial=8, **FAST), zdt1_2d, None, seed=1, rounds=1)
    later = [c for batch, _ in told[1:] for c in batch]
    points = np.array([[c["a"], c["b"]] for c in later])
    assert np.all((points >= 0.0) & (points <= 1.0))  # inside the cube
    assert len({(round(a, 9), round(b, 9)) for a, b in points}) == len(points)  # distinct
    # Distance to the Pareto set (|b|): four BO proposals against four random points, in
    # each of ten draws (random's expectation is 0.5).
    random_means = [np.mean([c["b"] for c in SPACE2.sample(jax.random.PRNGKey(200 + d), 4)])
                    for d in range(10)]
    assert np.mean(points[:, 1]) < min(random_means), (points[:, 1], random_means)


def test_schedulers_refuse_bad_objectives_before_training(wine):
    task, split = wine
    common = dict(population_size=3, num_steps=20, batch_size=16)
    with pytest.raises(ValueError, match="more than once"):
        jt.run_halving(task, split, TUNE_SPACE, min_steps=10, metric=[*TWO, "valid_loss"],
                       **common)
    with pytest.raises(ValueError, match="mode"):
        jt.run_pbt(task, split, TUNE_SPACE, metric=TWO, mode=["max"], **common)
    with pytest.raises(ValueError, match="test set"):
        jt.run_early_stopping(task, split, TUNE_SPACE, num_configs=3, metric=TWO,
                              constraints={"test_loss": ("<=", 1.0)}, **common)
