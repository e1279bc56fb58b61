"""TensorBoard: a sweep as event files, one run per member, with the HParams tab filled in.

Needs ``tensorboardX`` (``pip install jaxtune[integrations]``); it is imported when
:func:`write_tensorboard` is called. View the result with ``tensorboard --logdir LOGDIR``.

Layout written under ``logdir``::

    logdir/
      events.out.tfevents...        the HParams experiment: every hyperparameter with its domain
                                    (all values seen), and the final metrics as its metrics
      member_00000/events...        scalars: each learning curve at its curve_steps (tag = the
                                    curve's name, e.g. "valid_accuracy"), each final metric
                                    ("final/valid_accuracy" at the last step); the member's
                                    hyperparameters and status (HParams session)
      member_00001/...

The experiment summary is written once, at the root, rather than once per run as
``SummaryWriter.add_hparams`` does: TensorBoard reads a single experiment (the first it finds),
so per-run summaries would hide every value but one run's; and ``add_hparams`` writes the
session into a new time-stamped sub-run instead of beside the member's curves. The session
records themselves are tensorboardX's (``tensorboardX.summary.hparams``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxtune.contracts import SegmentReport
from jaxtune.member_result import MemberResult
from jaxtune.progress import MemberPoint, MemberPoints
from jaxtune.results import Results

__all__ = ["TensorBoardLogger", "write_tensorboard"]

_INSTALL_HINT = "pip install jaxtune[integrations]"
_PLUGIN_NAME = "hparams"
_EXPERIMENT_TAG = "_hparams_/experiment"
_SESSION_END_TAG = "_hparams_/session_end_info"


def _tensorboardx() -> Any:
    """Imports tensorboardX, or says how to install it."""
    try:
        import tensorboardX
    except ImportError as error:
        raise ImportError(
            "jaxtune.integrations.tensorboard needs tensorboardX, which is not installed: "
            f"{_INSTALL_HINT} (or pip install tensorboardX)"
        ) from error
    return tensorboardX


def _hparam_value(value: Any) -> bool | int | float | str:
    """A value the HParams plugin can show: bools, numbers and strings as they are, else JSON."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        value = [_hparam_value(item) for item in value]
    return json.dumps(value, default=repr)


@contextlib.contextmanager
def _quiet_nan_warnings() -> Any:
    """Silences tensorboardX's "NaN or Inf found" log line: a diverged member's NaN is data."""
    logger = logging.getLogger("tensorboardX.x2num")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _schedule_scalars(schedule: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, int, float]]:
    """``(tag, step, value)`` for each numeric value of a PBT schedule (``hparams/<name>``) and
    each copy (``pbt/copied_from``: the donor's member id)."""
    scalars = []
    for entry in schedule or ():
        step = int(entry.get("step", 0))
        values = entry.get("config", {k: v for k, v in entry.items() if k != "step"})
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                scalars.append((f"hparams/{name}", step, float(value)))
        if entry.get("copied_from") is not None:
            scalars.append(("pbt/copied_from", step, float(entry["copied_from"])))
    return scalars


def _run_name(member_id: int) -> str:
    return f"member_{member_id:05d}"


def _summary(tag: str, content: Any) -> Any:
    """A Summary carrying one hparams plugin record (experiment / session start / end)."""
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    metadata = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=_PLUGIN_NAME, content=content.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata)])


def _experiment(
    hparams: Mapping[str, Sequence[bool | int | float | str]], metric_tags: Sequence[str]
) -> Any:
    """The root experiment: each hyperparameter with its domain, and the metric tags."""
    from tensorboardX.proto.api_pb2 import (
        DataType,
        Experiment,
        HParamInfo,
        Interval,
        MetricInfo,
        MetricName,
    )
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    infos = []
    for name, values in hparams.items():
        if all(isinstance(v, bool) for v in values):
            info = HParamInfo(name=name, type=DataType.Value("DATA_TYPE_BOOL"))
            info.domain_discrete.extend(sorted(set(values)))
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            # A domain is needed for the HParams table to sort and filter the column.
            info = HParamInfo(
                name=name,
                type=DataType.Value("DATA_TYPE_FLOAT64"),
                domain_interval=Interval(
                    min_value=float(min(values)), max_value=float(max(values))
                ),
            )
        else:
            info = HParamInfo(name=name, type=DataType.Value("DATA_TYPE_STRING"))
            info.domain_discrete.extend(sorted({str(v) for v in values}))
        infos.append(info)
    metrics = [MetricInfo(name=MetricName(tag=tag)) for tag in metric_tags]
    content = HParamsPluginData(
        experiment=Experiment(hparam_infos=infos, metric_infos=metrics), version=0
    )
    return _summary(_EXPERIMENT_TAG, content)


def _session_end(status: str) -> Any:
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo

    code = "STATUS_FAILURE" if status == "diverged" else "STATUS_SUCCESS"
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=Status.Value(code)))
    return _summary(_SESSION_END_TAG, content)


def _member_hparams(row: MemberResult, with_fold: bool) -> dict[str, Any]:
    """The member's HParams session values: its config plus seed, static group, status, fold."""
    hparam_dict = {name: _hparam_value(value) for name, value in row.config.items()}
    hparam_dict.update(seed=row.seed, static_group=row.static_group, status=row.status)
    if with_fold:
        hparam_dict["fold"] = -1 if row.fold is None else row.fold
    return hparam_dict


def _write_members(tensorboardx: Any, logdir: Path, rows: Sequence[MemberResult],
                   curves_from: Callable[[int], int]) -> None:
    """Each member's run: curve points after step ``curves_from(member_id)``, final metrics,
    schedule scalars and HParams session; then the root experiment."""
    from tensorboardX.summary import hparams as hparams_summaries

    with_fold = any(row.fold is not None for row in rows)
    domains: dict[str, list[Any]] = {}
    metric_tags: dict[str, None] = {}
    for row in rows:
        hparam_dict = _member_hparams(row, with_fold)
        for name, value in hparam_dict.items():
            domains.setdefault(name, []).append(value)
        final_step = row.curve_steps[-1] if row.curve_steps else 0
        metric_dict = {f"final/{name}": value for name, value in row.metrics.items()}
        metric_tags.update(dict.fromkeys(metric_dict))
        after = curves_from(row.member_id)
        with (
            tensorboardx.SummaryWriter(logdir=str(logdir / _run_name(row.member_id))) as writer,
            _quiet_nan_warnings(),
        ):
            for name, values in row.curves.items():
                for step, value in zip(row.curve_steps, values, strict=True):
                    if step > after:
                        writer.add_scalar(name, value, global_step=step)
            for tag, value in metric_dict.items():
                writer.add_scalar(tag, value, global_step=final_step)
            if after == 0:  # a live logger wrote the schedule as it changed
                for tag, step, value in _schedule_scalars(row.hp_schedule):
                    writer.add_scalar(tag, value, global_step=step)
            _, session_start, _ = hparams_summaries(hparam_dict, metric_dict)
            writer.file_writer.add_summary(session_start)
            writer.file_writer.add_summary(_session_end(row.status))
    with tensorboardx.SummaryWriter(logdir=str(logdir)) as root:
        root.file_writer.add_summary(_experiment(domains, sorted(metric_tags)))


def _check_results(results: Any) -> None:
    if not isinstance(results, Results):
        raise TypeError(f"results must be jaxtune Results, got {type(results).__name__}")


def write_tensorboard(results: Results, logdir: str | os.PathLike[str]) -> Path:
    """Writes a sweep as TensorBoard event files: one run per member, plus the HParams view.

    For each member (run ``member_<id>``, ids zero-padded to 5 digits): every learning curve as
    scalars at its ``curve_steps`` (tag: the curve's name), every final metric as
    ``"final/<metric>"`` at the last curve step (step 0 without curves), the values a scheduler
    set during training (PBT's ``hp_schedule``) as ``"hparams/<name>"`` at the steps they were
    set, with ``"pbt/copied_from"`` (the donor's member id) at each copy, and an HParams session
    with the member's config plus ``seed``, ``fold`` (when used), ``static_group`` and
    ``status``; a diverged member's session ends with status failure. Non-finite values are
    written as they are (TensorBoard shows NaN as a gap). The root of ``logdir`` gets the
    HParams experiment: every hyperparameter with the values seen, and the ``final/`` metrics.

    Args:
      results: the sweep.
      logdir: the folder (created if needed). Writing twice into one folder adds event files
        beside the old ones; use a fresh folder per sweep.

    Returns:
      ``logdir`` as a ``Path``.

    Raises:
      ImportError: tensorboardX is not installed.
      TypeError: ``results`` is not a :class:`~jaxtune.results.Results`.

    Example:
      >>> write_tensorboard(results, "runs/tb")       # doctest: +SKIP
      >>> # tensorboard --logdir runs/tb
    """
    tensorboardx = _tensorboardx()
    _check_results(results)
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    _write_members(tensorboardx, logdir, list(results), lambda member_id: 0)
    return logdir


class _LiveWriter:
    """One run's event file, written synchronously: tensorboardX's ``SummaryWriter`` queues
    events for a background thread and its ``flush`` does not wait for the queue, so a reader
    could miss the last segment; this writes each record before returning. Its file name ends
    in ``.live`` (a later ``SummaryWriter`` in the same folder and second never collides)."""

    def __init__(self, run: Path) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        self._events = EventsWriter(str(run / "events"), filename_suffix=".live")

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._events.write_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def flush(self) -> None:
        self._events.flush()

    def close(self) -> None:
        self._events.close()


class TensorBoardLogger:
    """Event files written *while* a sweep runs: an ``on_segment`` callback.

    After every segment, each member with new values gets them as scalars in its run
    (``member_<id>``, tag = the metric's name, step = its training step; values are attributed
    by :class:`~jaxtune.progress.MemberPoints`, so refilled slots never mix members), a member
    whose values a scheduler changed gets ``hparams/<name>`` at that step, and every writer it
    touched is flushed, so ``tensorboard --logdir`` shows the sweep as it trains. A member's
    writer is closed when it leaves training. :meth:`finish` then writes what only the end
    knows, as :func:`write_tensorboard` does: final metrics, HParams sessions and experiment
    (and the curves of members no report showed, e.g. restored by a resume).

    Args:
      logdir: the folder (created if needed); use a fresh one per sweep.

    Raises:
      ImportError: tensorboardX is not installed.

    Example:
      >>> logger = TensorBoardLogger("runs/live")                       # doctest: +SKIP
      >>> results = jt.tune(task, split, space, ..., on_segment=logger)  # doctest: +SKIP
      >>> logger.finish(results)                                         # doctest: +SKIP
    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        self._tensorboardx = _tensorboardx()
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.points = MemberPoints()
        self._writers: dict[int, _LiveWriter] = {}
        self._configs: dict[int, dict[str, Any]] = {}
        self._steps: dict[int, int] = {}
        self._changed: set[int] = set()

    def _writer(self, member_id: int) -> _LiveWriter:
        if member_id not in self._writers:
            run = self.logdir / _run_name(member_id)
            run.mkdir(parents=True, exist_ok=True)
            self._writers[member_id] = _LiveWriter(run)
        return self._writers[member_id]

    def __call__(self, report: SegmentReport) -> None:
        """Writes the report's new values and flushes them to disk."""
        touched = set()
        for point in self.points.update(report):
            if point.metrics or point.config:
                writer = self._writer(point.member_id)
                touched.add(point.member_id)
                for name, value in point.metrics.items():
                    writer.add_scalar(name, value, point.step)
                self._log_config(writer, point)
            if point.status != "running" and point.member_id in self._writers:
                self._writers.pop(point.member_id).close()
                touched.discard(point.member_id)
        for member_id in touched:
            self._writers[member_id].flush()

    def _log_config(self, writer: Any, point: MemberPoint) -> None:
        """``hparams/<name>`` where a member's values changed (PBT): the change comes in the
        first report after it, so it is logged at the member's previous step; the first change
        also logs the first values at step 0 (as :func:`write_tensorboard` does)."""
        before, since = self._configs.get(point.member_id), self._steps.get(point.member_id, 0)
        if point.metrics:
            self._steps[point.member_id] = point.step
        if not point.config or before == point.config:
            return
        self._configs[point.member_id] = dict(point.config)
        if before is None:
            return
        changes = [{"step": since, "config": point.config}]
        if point.member_id not in self._changed:
            self._changed.add(point.member_id)
            changes.insert(0, {"step": 0, "config": before})
        for tag, step, value in _schedule_scalars(changes):
            writer.add_scalar(tag, value, step)

    def finish(self, results: Results | None = None) -> Path:
        """Closes every writer; with ``results``, writes final metrics, HParams sessions and the
        experiment (curve points past what the reports showed, too). Returns ``logdir``.

        Raises:
          TypeError: ``results`` is not a :class:`~jaxtune.results.Results`.
        """
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if results is not None:
            _check_results(results)
            _write_members(self._tensorboardx, self.logdir, list(results),
                           self.points.logged_step)
        return self.logdir
