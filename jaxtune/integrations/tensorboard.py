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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxtune.results import Results

__all__ = ["write_tensorboard"]

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
    from tensorboardX.summary import hparams as hparams_summaries

    if not isinstance(results, Results):
        raise TypeError(f"results must be jaxtune Results, got {type(results).__name__}")
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    with_fold = any(row.fold is not None for row in results)
    domains: dict[str, list[Any]] = {}
    metric_tags: dict[str, None] = {}
    for row in results:
        hparam_dict = {name: _hparam_value(value) for name, value in row.config.items()}
        hparam_dict.update(seed=row.seed, static_group=row.static_group, status=row.status)
        if with_fold:
            hparam_dict["fold"] = -1 if row.fold is None else row.fold
        for name, value in hparam_dict.items():
            domains.setdefault(name, []).append(value)
        final_step = row.curve_steps[-1] if row.curve_steps else 0
        metric_dict = {f"final/{name}": value for name, value in row.metrics.items()}
        metric_tags.update(dict.fromkeys(metric_dict))
        with (
            tensorboardx.SummaryWriter(logdir=str(logdir / _run_name(row.member_id))) as writer,
            _quiet_nan_warnings(),
        ):
            for name, values in row.curves.items():
                for step, value in zip(row.curve_steps, values, strict=True):
                    writer.add_scalar(name, value, global_step=step)
            for tag, value in metric_dict.items():
                writer.add_scalar(tag, value, global_step=final_step)
            for tag, step, value in _schedule_scalars(row.hp_schedule):
                writer.add_scalar(tag, value, global_step=step)
            _, session_start, _ = hparams_summaries(hparam_dict, metric_dict)
            writer.file_writer.add_summary(session_start)
            writer.file_writer.add_summary(_session_end(row.status))
    with tensorboardx.SummaryWriter(logdir=str(logdir)) as root:
        root.file_writer.add_summary(_experiment(domains, sorted(metric_tags)))
    return logdir
