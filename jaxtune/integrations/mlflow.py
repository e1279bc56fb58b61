"""MLflow: one MLflow run per member, logged while the sweep runs or afterwards.

Needs MLflow's client (``pip install jaxtune[mlflow]``, which installs ``mlflow-skinny``: the
tracking client without the server and its database layer); it is imported when an
:class:`MLflowLogger` is made. Any tracking URI the client accepts works: a tracking server
(``http://...``), a database (``sqlite:///mlflow.db``, needs the full ``mlflow`` package), or
a local folder (``file:///path/mlruns``; MLflow 3 refuses new folder stores unless the
environment sets ``MLFLOW_ALLOW_FILE_STORE=true``).

What a member's run holds:

* its name ``member_<id>`` (5 digits) and tags ``jaxtune.member_id``, ``jaxtune.static_group``,
  ``jaxtune.status`` (``running``, ``completed``, ``diverged``, ``stopped``), and, after
  :meth:`MLflowLogger.finish`, ``jaxtune.seed`` (and ``jaxtune.fold`` with cross-validation);
* its config as params (values as text, MLflow's only param type);
* every segment's metrics at ``step`` = the training step (MLflow's metric history), values a
  scheduler set later (PBT) as ``hparams/<name>`` metrics at the step they were set (params
  cannot change in MLflow), and the final metrics as ``final/<name>``;
* its status: ``FINISHED`` (completed), ``FAILED`` (diverged) or ``KILLED`` (stopped by a
  scheduler), set when the member leaves training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from jaxtune import jsonio
from jaxtune.contracts import SegmentReport
from jaxtune.member_result import MemberResult
from jaxtune.progress import MemberPoint, MemberPoints
from jaxtune.results import Results

__all__ = ["MLFLOW_STATUS", "MLflowLogger", "log_results_to_mlflow"]

_INSTALL_HINT = "pip install jaxtune[mlflow] (or pip install mlflow-skinny)"

#: A member's status -> the MLflow run status it ends with.
MLFLOW_STATUS = {"completed": "FINISHED", "diverged": "FAILED", "stopped": "KILLED"}

#: MLflow's longest param value (older servers accept 500 characters; 6000 since 2.x).
_MAX_PARAM = 6000


def _mlflow() -> Any:
    """Imports MLflow's client, or says how to install it."""
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError as error:
        raise ImportError(
            f"jaxtune.integrations.mlflow needs MLflow, which is not installed: {_INSTALL_HINT}"
        ) from error
    return mlflow, MlflowClient


def _param_text(value: Any) -> str:
    """A config value as MLflow param text: strings as they are, anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(jsonio.plain(value), default=repr)
    return text[:_MAX_PARAM]


class MLflowLogger:
    """One MLflow run per member, logged live: an ``on_segment`` callback.

    Each report's new values (attributed by :class:`~jaxtune.progress.MemberPoints`: slots are
    refilled, so values go to the member that made them) are logged to their member's run at
    the training step; a member's run is created the first time it reports and terminated
    when it leaves training. :meth:`finish` adds what only the end knows (final and test
    metrics, seed, the status of members a scheduler stopped last) and terminates every run.

    Args:
      experiment_name: the MLflow experiment (created if missing).
      tracking_uri: where to log (default: MLflow's own default, ``MLFLOW_TRACKING_URI``).
      tags: extra tags on every run.

    Raises:
      ImportError: MLflow is not installed.
      TypeError: ``experiment_name`` is not a non-empty string.

    Example:
      >>> logger = MLflowLogger("wine", tracking_uri="sqlite:///mlflow.db")   # doctest: +SKIP
      >>> results = jt.tune(task, split, space, ..., on_segment=logger)        # doctest: +SKIP
      >>> logger.finish(results)                                               # doctest: +SKIP
    """

    def __init__(self, experiment_name: str = "jaxtune", *, tracking_uri: str | None = None,
                 tags: Mapping[str, str] | None = None) -> None:
        if not isinstance(experiment_name, str) or not experiment_name:
            raise TypeError(f"experiment_name must be a non-empty str, got {experiment_name!r}.")
        self._mlflow, client_type = _mlflow()
        self.client = client_type(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment_name)
        self.experiment_id = (found.experiment_id if found is not None
                              else self.client.create_experiment(experiment_name))
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.points = MemberPoints()
        self.run_ids: dict[int, str] = {}
        self._configs: dict[int, dict[str, Any]] = {}
        self._steps: dict[int, int] = {}
        self._ended: set[int] = set()

    def _run(self, member_id: int, config: Mapping[str, Any], group: str) -> str:
        """The member's run id, creating the run (name, tags, params) the first time."""
        if member_id not in self.run_ids:
            tags = {**self.tags, "jaxtune.member_id": str(member_id),
                    "jaxtune.static_group": group, "jaxtune.status": "running"}
            run = self.client.create_run(self.experiment_id, run_name=f"member_{member_id:05d}",
                                         tags=tags)
            self.run_ids[member_id] = run.info.run_id
            self._configs[member_id] = dict(config)
            params = [self._mlflow.entities.Param(str(k), _param_text(v))
                      for k, v in config.items()]
            if params:
                self.client.log_batch(run.info.run_id, params=params)
        return self.run_ids[member_id]

    def _metrics(self, values: Mapping[str, float], step: int) -> list[Any]:
        stamp = int(time.time() * 1000)
        return [self._mlflow.entities.Metric(str(k), float(v), stamp, int(step))
                for k, v in values.items()]

    def __call__(self, report: SegmentReport) -> None:
        """Logs the report's new values and statuses."""
        for point in self.points.update(report):
            if point.member_id in self._ended:
                continue
            run_id = self._run(point.member_id, point.config, point.group)
            metrics = self._metrics(point.metrics, point.step) + self._changes(point)
            if metrics:
                self.client.log_batch(run_id, metrics=metrics)
            if point.metrics:
                self._steps[point.member_id] = point.step
            if point.status != "running":
                self._end(point.member_id, point.status)

    def _changes(self, point: MemberPoint) -> list[Any]:
        """``hparams/<name>`` metrics for values a scheduler changed (at the previous step)."""
        before = self._configs.get(point.member_id)
        if not point.config or before is None or before == point.config:
            return []
        self._configs[point.member_id] = dict(point.config)
        changed = {f"hparams/{k}": v for k, v in point.config.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)
                   and before.get(k) != v}
        return self._metrics(changed, self._steps.get(point.member_id, 0))

    def _end(self, member_id: int, status: str) -> None:
        run_id = self.run_ids[member_id]
        self.client.set_tag(run_id, "jaxtune.status", status)
        self.client.set_terminated(run_id, MLFLOW_STATUS.get(status, "FINISHED"))
        self._ended.add(member_id)

    def _schedule(self, schedule: Sequence[Mapping[str, Any]] | None) -> list[Any]:
        """A recorded PBT schedule as ``hparams/<name>`` metrics at the steps values were set."""
        metrics = []
        for entry in schedule or ():
            values = {f"hparams/{k}": v for k, v in entry.get("config", {}).items()
                      if isinstance(v, int | float) and not isinstance(v, bool)}
            metrics += self._metrics(values, int(entry.get("step", 0)))
        return metrics

    def finish(self, results: Results) -> dict[int, str]:
        """Completes every member's run from ``results`` and terminates it.

        Members no report showed (restored by a resume, or ``results`` of an earlier sweep)
        get a run with their whole curves; others get the curve points past their last report.
        Every run gets ``final/<metric>`` for each final metric (test metrics included), the
        tags ``jaxtune.seed`` (and ``jaxtune.fold``) and its final status.

        Returns:
          ``{member_id: run_id}``.

        Raises:
          TypeError: ``results`` is not a :class:`~jaxtune.results.Results`.
        """
        if not isinstance(results, Results):
            raise TypeError(f"results must be jaxtune Results, got {type(results).__name__}")
        for row in results:
            self._finish_member(row)
        return dict(self.run_ids)

    def _finish_member(self, row: MemberResult) -> None:
        run_id = self._run(row.member_id, row.config, row.static_group)
        after = self.points.logged_step(row.member_id)
        metrics = []
        for index, step in enumerate(row.curve_steps):
            if step > after:
                metrics += self._metrics({k: v[index] for k, v in row.curves.items()}, step)
        final_step = row.curve_steps[-1] if row.curve_steps else 0
        metrics += self._metrics({f"final/{k}": v for k, v in row.metrics.items()}, final_step)
        if after < 0:  # else the reports brought the schedule's changes
            metrics += self._schedule(row.hp_schedule)
        for start in range(0, len(metrics), 1000):  # MLflow's largest batch
            self.client.log_batch(run_id, metrics=metrics[start:start + 1000])
        self.client.set_tag(run_id, "jaxtune.seed", str(row.seed))
        if row.fold is not None:
            self.client.set_tag(run_id, "jaxtune.fold", str(row.fold))
        self.client.set_tag(run_id, "jaxtune.status", row.status)
        self.client.set_terminated(run_id, MLFLOW_STATUS.get(row.status, "FINISHED"))
        self._ended.add(row.member_id)


def log_results_to_mlflow(results: Results, experiment_name: str = "jaxtune", *,
                          tracking_uri: str | None = None,
                          tags: Mapping[str, str] | None = None) -> dict[int, str]:
    """Logs a finished sweep to MLflow, one run per member (curves, params, final metrics,
    status): :meth:`MLflowLogger.finish` of a logger that saw no report.

    Returns:
      ``{member_id: run_id}``.
    """
    return MLflowLogger(experiment_name, tracking_uri=tracking_uri, tags=tags).finish(results)
