"""Live tracking, and early stopping end to end: segment reports attributed to members,
TensorBoard event files written while the sweep runs (read back by the callback after the
logger), and the MLflow bridge (a local folder store in a tmp dir).

One engine run (early stopping on wine: slots are refilled, so attribution matters) feeds all
three and is also the end-to-end check of :func:`jaxtune.run_early_stopping`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from tensorboardX.proto.event_pb2 import Event

import jaxtune as jt
from jaxtune.contracts import SegmentReport
from jaxtune.integrations import TensorBoardLogger
from jaxtune.progress import MemberPoints, chain


def _scalars(run: Path) -> dict[str, dict[int, float]]:
    """Scalars (tag -> step -> value) of every event file of a run folder (TFRecord records:
    [uint64 length][uint32 crc][data][uint32 crc])."""
    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(run.glob("events.out.tfevents.*")):
        data, position = path.read_bytes(), 0
        while position + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[position:position + 8])
            event = Event.FromString(data[position + 12:position + 12 + length])
            position += 16 + length
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def _report(ids, steps, statuses, loss, group_index=0):
    return SegmentReport("g", group_index, 1, max(steps), 30, len(ids), len(ids), 0,
                         {"valid_loss": np.asarray(loss, np.float32)}, 0, ids,
                         [{"learning_rate": 0.1 * (i + 1)} for i in ids], np.asarray(steps),
                         statuses)


def test_member_points_attribute_refilled_slots():
    points = MemberPoints()
    first = points.update(_report([0, 1], [10, 10], ["running", "running"], [1.0, 2.0]))
    assert [(p.member_id, p.step, p.metrics["valid_loss"]) for p in first] == [(0, 10, 1.0),
                                                                               (1, 10, 2.0)]
    # Slot 1 was refilled with member 2 (member 1 left while running: stopped); member 0's
    # slot has new values.
    second = points.update(_report([0, 2], [20, 10], ["running", "running"], [0.5, 3.0]))
    assert [(p.member_id, p.step, p.status, dict(p.metrics)) for p in second] == [
        (1, 10, "stopped", {}), (0, 20, "running", {"valid_loss": 0.5}),
        (2, 10, "running", {"valid_loss": 3.0})]
    # Member 0 completes; later reports repeat its slot's values: nothing new for it.
    points.update(_report([0, 2], [30, 20], ["completed", "running"], [0.4, 2.0]))
    fourth = points.update(_report([0, 2], [30, 30], ["completed", "completed"], [0.4, 1.0]))
    assert [p.member_id for p in fourth] == [2]
    with pytest.raises(ValueError, match="member_ids"):
        points.update(SegmentReport("g", 0, 1, 10, 30, 1, 1, 0, {"valid_loss": np.ones(1)}))
    with pytest.raises(TypeError, match="callable"):
        chain(print, 3)


WINE_RUN = dict(rule="median", population_size=6, num_configs=12, num_steps=60,
                steps_per_segment=10, grace_steps=10, min_samples=3, batch_size=None,
                metric="valid_loss", seed=0)


def _wine():
    split = jt.standardize(jt.train_valid_test_split(jt.load_dataset("wine"), seed=0))
    task = jt.classification_task("linear", num_classes=3, input_shape=(13,))
    space = jt.Space({"learning_rate": jt.Float(1e-5, 1.0, log=True),
                      "optimizer": jt.Fixed("sgd")})
    return task, split, space


def _mlflow_logger(root, monkeypatch):
    """An MLflowLogger on a folder store under ``root``, or None without MLflow (it is not
    in the dev extra: ``pip install jaxtune[mlflow]``)."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return None
    from jaxtune.integrations.mlflow import MLflowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: folder stores are opt-in
    return MLflowLogger("wine", tracking_uri=(root / "mlruns").as_uri())


def test_one_early_stopping_sweep_tracked_live(tmp_path, monkeypatch):
    """One engine run (one test, so pytest-xdist never runs it twice) feeds the TensorBoard
    logger, a probe that reads the event files back after every segment, and the MLflow
    logger when installed; then a crashed-and-resumed copy of it must end the same."""
    task, split, space = _wine()
    tensorboard, reports, read_back = TensorBoardLogger(tmp_path / "tb"), [], []

    def probe(report):
        # Runs after the TensorBoard logger for the same report: what it wrote is on disk.
        reports.append(report)
        read_back.append({
            member: _scalars(tmp_path / "tb" / f"member_{member:05d}").get(
                "valid_loss", {}).get(int(report.member_step[slot]))
            for slot, member in enumerate(report.member_ids)})

    mlflow_logger = _mlflow_logger(tmp_path, monkeypatch)
    results = jt.run_early_stopping(task, split, space, **WINE_RUN,
                                    on_segment=chain(tensorboard, probe, mlflow_logger))
    tensorboard.finish(results)
    _check_stopping(results)
    _check_reports(results, reports)
    _check_tensorboard(results, reports, read_back, tmp_path / "tb")
    if mlflow_logger is not None:
        _check_mlflow(results, mlflow_logger, mlflow_logger.finish(results))
    _check_resume(results, task, split, space, tmp_path / "ckpt")


def _check_stopping(results):
    """Early stopping end to end: bad learning rates stop early."""
    rows = list(results)
    assert len(rows) == 12 and results.metadata["scheduler"]["kind"] == "median"
    stopped = results.filter(status="stopped")
    kept = [r for r in rows if r.status == "completed"]
    assert len(stopped) > 0 and len(kept) > 0
    assert all(r.curve_steps[-1] < 60 for r in stopped)
    assert all(r.curve_steps[-1] == 60 for r in kept)
    # Plain SGD on wine: learning rates >= 0.05 train fast and are never stopped; those below
    # 1e-3 barely move and spend far fewer steps (one may survive: a member's random start
    # counts, and after the first refills fewer than min_samples others reach its step).
    lrs = np.array([r.config["learning_rate"] for r in rows])
    steps = np.array([r.curve_steps[-1] for r in rows])
    assert np.any(lrs >= 0.05) and all(r.status == "completed" for r in rows
                                       if r.config["learning_rate"] >= 0.05)
    assert steps[lrs < 1e-3].mean() < 0.5 * steps[lrs >= 0.05].mean()
    assert all(r.config["learning_rate"] < 0.05 for r in stopped)
    assert results.metadata["member_steps"] == sum(r.curve_steps[-1] for r in rows) < 12 * 60
    assert results.metadata["num_segment_compilations"] <= 1  # refills never recompile
    best = results.filter(status="completed").best("valid_loss", "min")
    assert "test_loss" in best.metrics  # the best completed member kept its slot


def _check_reports(results, reports):
    """Every report's values belong to the member its slot held (exactly the curve value)."""
    rows = {row.member_id: row for row in results}
    checked = 0
    for report in reports:
        assert len(report.member_ids) == len(report.configs) == report.num_members
        for slot, member in enumerate(report.member_ids):
            row, step = rows[member], int(report.member_step[slot])
            assert report.configs[slot] == row.config
            if step in row.curve_steps:
                value = row.curves["valid_loss"][row.curve_steps.index(step)]
                assert float(report.metrics["valid_loss"][slot]) == value
                checked += 1
    # Refilled slots: every member of the results was reported, more members than slots.
    assert {m for r in reports for m in r.member_ids} == set(rows) and len(rows) == 12
    assert checked >= sum(len(row.curve_steps) for row in results)


def _check_tensorboard(results, reports, read_back, logdir):
    # Each report's values were on disk when the callback after the logger read them.
    for report, seen in zip(reports, read_back, strict=True):
        for slot, member in enumerate(report.member_ids):
            assert seen[member] == pytest.approx(float(report.metrics["valid_loss"][slot]))
    # After finish: every member's run is one event file holding exactly its curve (each
    # point once) and its final metrics.
    for row in results:
        run = logdir / f"member_{row.member_id:05d}"
        assert len(list(run.glob("events.out.tfevents.*"))) == 1
        scalars = _scalars(run)
        assert scalars["valid_loss"] == pytest.approx(
            dict(zip(row.curve_steps, row.curves["valid_loss"], strict=True)))
        assert set(scalars["final/valid_loss"]) == {row.curve_steps[-1]}


def _check_mlflow(results, logger, run_ids):
    client = logger.client
    assert set(run_ids) == {row.member_id for row in results}
    expected_status = {"completed": "FINISHED", "stopped": "KILLED", "diverged": "FAILED"}
    for row in results:
        run = client.get_run(run_ids[row.member_id])
        assert run.info.run_name == f"member_{row.member_id:05d}"
        assert float(run.data.params["learning_rate"]) == row.config["learning_rate"]
        assert run.data.params["optimizer"] == "sgd"
        assert run.data.tags["jaxtune.status"] == row.status
        assert run.info.status == expected_status[row.status]
        history = client.get_metric_history(run.info.run_id, "valid_loss")
        assert [m.step for m in history] == row.curve_steps
        assert [m.value for m in history] == pytest.approx(row.curves["valid_loss"])
        assert run.data.metrics["final/valid_loss"] == pytest.approx(row.metrics["valid_loss"])
    assert {row.status for row in results} == {"completed", "stopped"}


class _CrashError(Exception):
    pass


def _check_resume(results, task, split, space, directory):
    """A crash after 4 segments (checkpoints at every boundary), then a resume: the scheduler's
    state is rebuilt by replaying the saved views, so the results are the uninterrupted ones."""
    count = [0]

    def crash(report):
        count[0] += 1
        if count[0] == 4:
            raise _CrashError

    with pytest.raises(_CrashError):
        jt.run_early_stopping(task, split, space, **WINE_RUN, on_segment=crash,
                              checkpoint=directory)
    resumed = jt.run_early_stopping(task, split, space, **WINE_RUN, checkpoint=directory,
                                    resume=True)

    def rows(of):
        return [{k: v for k, v in row.to_dict().items() if k != "wall_time_s"} for row in of]

    assert rows(resumed) == rows(results)
    assert resumed.metadata["member_steps"] == results.metadata["member_steps"]


def test_mlflow_logger_statuses_and_changed_values(tmp_path, monkeypatch):
    # Hand-made reports (no engine): a refilled member ends KILLED, a diverged one FAILED, a
    # completed one FINISHED; a value a scheduler changed is logged at the step it was set.
    pytest.importorskip("mlflow", reason="MLflow is not in the dev extra: jaxtune[mlflow]")
    logger = _mlflow_logger(tmp_path, monkeypatch)

    def report(ids, steps, statuses, loss, rates):
        return SegmentReport("g", 0, 1, max(steps), 30, 2, 2, 0,
                             {"valid_loss": np.asarray(loss, np.float32)}, 0, ids,
                             [{"learning_rate": r} for r in rates], np.asarray(steps), statuses)

    logger(report([0, 1], [10, 10], ["running"] * 2, [1.0, 2.0], [0.1, 0.2]))
    logger(report([0, 2], [20, 10], ["running"] * 2, [0.8, 3.0], [0.15, 0.3]))
    logger(report([0, 2], [30, 20], ["completed", "diverged"], [0.5, np.nan], [0.15, 0.3]))
    client = logger.client
    status = {m: client.get_run(r).info.status for m, r in logger.run_ids.items()}
    assert status == {0: "FINISHED", 1: "KILLED", 2: "FAILED"}
    first = logger.run_ids[0]
    assert [(m.step, m.value) for m in client.get_metric_history(first, "valid_loss")] == [
        (10, 1.0), (20, pytest.approx(0.8)), (30, 0.5)]
    changed = client.get_metric_history(first, "hparams/learning_rate")
    assert [(m.step, m.value) for m in changed] == [(10, 0.15)]
    assert client.get_run(first).data.params["learning_rate"] == "0.1"  # params never change
    assert client.get_run(logger.run_ids[1]).data.tags["jaxtune.status"] == "stopped"
