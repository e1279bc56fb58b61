"""TensorBoard: a sweep as event files, one run per member, with the HParams tab filled in.

Needs ``tensorboardX`` (``pip install jaxtune[integrations]``); it is imported when
:func:`write_tensorboard` is called or a :class:`TensorBoardLogger` is made. View the result
with ``tensorboard --logdir LOGDIR``. :func:`write_tensorboard` writes a finished sweep;
:class:`TensorBoardLogger` (an ``on_segment`` callback) writes the same runs while the sweep
trains, flushed after every segment, and completes them with ``finish(results)``.

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
import socket
import struct
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
                   curves_from: Callable[[int], int],
                   open_run: Callable[[Path], Any] | None = None) -> None:
    """Each member's run: curve points after step ``curves_from(member_id)`` (-1: all), final
    metrics, schedule scalars and HParams session; then the root experiment. ``open_run(path)``
    gives a run's writer (default: a ``SummaryWriter``, one new event file per run)."""
    from tensorboardX.summary import hparams as hparams_summaries

    if open_run is None:
        def open_run(path: Path) -> Any:
            return _SummaryRun(tensorboardx.SummaryWriter(logdir=str(path)))
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
        with open_run(logdir / _run_name(row.member_id)) as writer, _quiet_nan_warnings():
            for name, values in row.curves.items():
                for step, value in zip(row.curve_steps, values, strict=True):
                    if step > after:
                        writer.add_scalar(name, value, step)
            for tag, value in metric_dict.items():
                writer.add_scalar(tag, value, final_step)
            if after < 0:  # else a live logger wrote the schedule as it changed
                for tag, step, value in _schedule_scalars(row.hp_schedule):
                    writer.add_scalar(tag, value, step)
            _, session_start, _ = hparams_summaries(hparam_dict, metric_dict)
            writer.add_summary(session_start)
            writer.add_summary(_session_end(row.status))
    with tensorboardx.SummaryWriter(logdir=str(logdir)) as root:
        root.file_writer.add_summary(_experiment(domains, sorted(metric_tags)))


class _SummaryRun(contextlib.AbstractContextManager):
    """A ``SummaryWriter`` seen through the writer interface of :func:`_write_members`."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, global_step=step)

    def add_summary(self, summary: Any) -> None:
        self.writer.file_writer.add_summary(summary)

    def __exit__(self, *exc_info: object) -> None:
        self.writer.close()


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
    _write_members(tensorboardx, logdir, list(results), lambda member_id: -1)
    return logdir


class _AppendRun(contextlib.AbstractContextManager):
    """One run's event file of a live logger, appended to and closed at each use.

    tensorboardX's ``SummaryWriter`` queues events for a background thread and its ``flush``
    does not wait for the queue, so a reader could miss the last segment; here every record
    is framed (TFRecord: length, masked CRC-32C of it, data, masked CRC-32C of it; the CRC is
    tensorboardX's) and written before the file closes, so nothing stays open between segments
    (a large sweep never holds a file per member) and the run keeps one event file from the
    first segment to :meth:`TensorBoardLogger.finish`.
    """

    def __init__(self, path: Path) -> None:
        from tensorboardX.proto.event_pb2 import Event

        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        self._file = path.open("ab")
        if fresh:
            self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: Any) -> None:
        from tensorboardX.record_writer import masked_crc32c

        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data
                         + struct.pack("<I", masked_crc32c(data)))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        self.add_summary(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]),
                         step)

    def add_summary(self, summary: Any, step: int = 0) -> None:
        from tensorboardX.proto.event_pb2 import Event

        self._write(Event(wall_time=time.time(), step=int(step), summary=summary))

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()


class TensorBoardLogger:
    """Event files written *while* a sweep runs: an ``on_segment`` callback.

    After every segment, each member with new values gets them as scalars in its run
    (``member_<id>``, tag = the metric's name, step = its training step; values are attributed
    by :class:`~jaxtune.progress.MemberPoints`, so refilled slots never mix members), and a
    member whose values a scheduler changed gets ``hparams/<name>`` at that step. Each run is
    one event file, appended to and closed at every segment, so ``tensorboard --logdir`` (or
    any reader) sees the sweep as it trains and no file stays open. :meth:`finish` then
    appends what only the end knows, as :func:`write_tensorboard` writes it: final metrics,
    HParams sessions and the experiment (and the curve points no report showed, e.g. of
    members a resume restored).

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
        self._configs: dict[int, dict[str, Any]] = {}
        self._steps: dict[int, int] = {}
        self._changed: set[int] = set()
        self._stamp = f"{int(time.time())}.{socket.gethostname()}.{os.getpid()}.jaxtune"

    def _open(self, run: Path) -> _AppendRun:
        """The run's event file of this logger (one per run), opened to append."""
        return _AppendRun(run / f"events.out.tfevents.{self._stamp}")

    def __call__(self, report: SegmentReport) -> None:
        """Appends the report's new values to each member's event file (closed again after
        the segment: what a reader opens next holds them)."""
        for point in self.points.update(report):
            if not point.metrics and not point.config:
                continue
            with self._open(self.logdir / _run_name(point.member_id)) as writer:
                for name, value in point.metrics.items():
                    writer.add_scalar(name, value, point.step)
                self._log_config(writer, point)

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
        """With ``results``, appends what only the end knows to each member's event file
        (final metrics, curve points no report showed, the HParams session) and writes the
        HParams experiment at the root. Returns ``logdir``.

        Raises:
          TypeError: ``results`` is not a :class:`~jaxtune.results.Results`.
        """
        if results is not None:
            _check_results(results)
            _write_members(self._tensorboardx, self.logdir, list(results),
                           self.points.logged_step, self._open)
        return self.logdir
