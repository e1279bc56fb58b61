"""Progress reporting at segment boundaries (host side, never inside traced code).

:class:`ProgressBar` is an ``on_segment`` callback: the engine hands it a
:class:`~jaxtune.contracts.SegmentReport` after every segment, and it shows

* member-steps done out of the sweep's total, as a bar and a percentage;
* the members of the running chunk still alive, and all members diverged so far;
* the best value of the selection metric so far (diverged members never count);
* elapsed time and an ETA (elapsed x remaining / done); on a resume, the work restored from the
  checkpoint (:meth:`ProgressBar.restored`) counts as done but not in the rate.

Where it shows it:

* on a terminal (the stream's ``isatty()``) one live line is redrawn, drawn by
  `rich <https://github.com/Textualize/rich>`_ when it is installed and by a built-in text
  renderer otherwise;
* elsewhere (CI logs, files, pipes) it is **quiet** unless asked (``enabled=True``, or
  ``jaxtune sweep --progress``); then it prints one plain line at each tenth of the work, so a
  log stays short.

Live trackers (:mod:`jaxtune.integrations.tensorboard`, :mod:`jaxtune.integrations.mlflow`)
read the same reports through :class:`MemberPoints`, which turns each report's slots into
*members*' new points (slots are refilled and a completed member's slot repeats its values);
:func:`chain` hands one report to several callbacks.

Example:
  >>> import io
  >>> from jaxtune.contracts import SegmentReport
  >>> stream = io.StringIO()
  >>> bar = ProgressBar(400, stream=stream, enabled=True)
  >>> bar(SegmentReport("width=64", 0, 1, 50, 100, 4, 3, 1, {"valid_accuracy": [0.5, 0.7]}))
  >>> print(stream.getvalue().strip())  # doctest: +ELLIPSIS
  [##############--------------]  50.0% 200/400 member-steps | alive 3/4 diverged 1 | ...
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TextIO

import numpy as np

from jaxtune import contracts
from jaxtune.contracts import SegmentReport

__all__ = ["MemberPoint", "MemberPoints", "ProgressBar", "chain"]

RENDERERS = ("auto", "rich", "text")


def _format_seconds(seconds: float) -> str:
    """``"42s"``, ``"3m05s"``, ``"1h02m"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressBar:
    """A progress bar fed with :class:`~jaxtune.contracts.SegmentReport` values (``on_segment``).

    Args:
      total_member_steps: the work of the whole sweep, in member-steps (configs x seeds x folds
        x steps). An estimate is fine: the bar stops at 100%.
      metric: the metric whose best value is shown (e.g. ``"valid_accuracy"``).
      mode: ``"max"`` or ``"min"``: which way is better for ``metric`` (default from its
        name: ``"min"`` for loss/error-like names, :func:`jaxtune.contracts.mode_from_name`).
      stream: where to write (default ``sys.stderr``).
      enabled: ``None`` (default): only when ``stream`` is a terminal; ``True``: always (plain
        lines at each tenth of the work when ``stream`` is not a terminal); ``False``: never.
      width: characters of the text bar.
      renderer: ``"auto"`` (rich when installed, for terminals), ``"rich"`` or ``"text"``.
      interactive: treat ``stream`` as a terminal (live redraws) or not; default
        ``stream.isatty()``.
      clock: seconds, monotonic (default ``time.perf_counter``); the ETA is computed from it.

    Raises:
      ValueError: a bad ``mode`` or ``renderer``, or ``"rich"`` when rich is not installed.

    Use it as a context manager (or call :meth:`close`) so that the live line is finished
    even when the sweep ends short of the estimated total::

        with jt.ProgressBar(num_configs * num_steps, metric="valid_accuracy") as bar:
            results = jt.tune(..., on_segment=bar)
    """

    def __init__(
        self,
        total_member_steps: int,
        metric: str = "valid_accuracy",
        mode: str | None = None,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 28,
        renderer: str = "auto",
        interactive: bool | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if mode is not None and mode not in contracts.MODES:
            raise ValueError(f"ProgressBar(mode={mode!r}): mode must be 'max' or 'min'.")
        mode = contracts.resolve_mode(metric, mode)
        if renderer not in RENDERERS:
            raise ValueError(f"ProgressBar(renderer={renderer!r}): use one of {RENDERERS}.")
        has_rich = importlib.util.find_spec("rich") is not None
        if renderer == "rich" and not has_rich:
            raise ValueError(
                "ProgressBar(renderer='rich'): rich is not installed; `pip install rich` or use "
                "renderer='text'."
            )
        self.total = max(int(total_member_steps), 1)
        self.metric = metric
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty()) if callable(isatty) else False
        self.interactive = interactive
        self.enabled = interactive if enabled is None else bool(enabled)
        self.use_rich = interactive and (renderer == "rich" or (renderer == "auto" and has_rich))
        self.width = width
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.restored_member_steps = 0  # done before this run (a resume): not in the rate
        self.best = math.nan
        self.num_alive = 0
        self.num_members = 0
        self.num_diverged = 0  # all chunks so far
        self.group_index = 0
        self.num_groups = 1
        self._finished_diverged = 0  # members of earlier chunks that diverged
        self._chunk: tuple[str, int] | None = None
        self._chunk_step = 0
        self._last_decile = -1
        self._rich: Any = None
        self._closed = False

    # ---------------------------------------------------------------------------- updates

    def __call__(self, report: SegmentReport) -> None:
        """Records one segment's report and redraws."""
        key = (report.group, report.group_index)
        # A new chunk (or a new engine call) starts when the key changes or the step goes back.
        new_chunk = key != self._chunk or report.step <= self._chunk_step
        previous_step = 0 if new_chunk else self._chunk_step
        if new_chunk:
            self._finished_diverged = self.num_diverged
            self._chunk = key
        self._chunk_step = report.step
        if report.member_steps > 0:
            self.done += int(report.member_steps)
        else:  # reports without a member-step count: the chunk's steps times its members
            self.done += (report.step - previous_step) * report.num_members
        self.num_alive = report.num_alive
        self.num_members = report.num_members
        self.num_diverged = self._finished_diverged + report.num_diverged
        self.group_index = report.group_index
        self.num_groups = report.num_groups
        values = np.asarray(report.metrics.get(self.metric, []), np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if values.size:
            candidate = float(values.max() if self.mode == "max" else values.min())
            better = candidate > self.best if self.mode == "max" else candidate < self.best
            if math.isnan(self.best) or better:
                self.best = candidate
        self._draw()

    def restored(self, member_steps: int) -> None:
        """Records work restored from a checkpoint (a resume) and redraws.

        It counts as done, so the bar ends at 100%, but not in the rate the ETA is taken from:
        it did not take this run's time. ``jaxtune.tune`` calls it on a resume.

        Args:
          member_steps: the member-steps done before the checkpoint was written (>= 0).

        Raises:
          ValueError: ``member_steps`` is negative.
        """
        member_steps = int(member_steps)
        if member_steps < 0:
            raise ValueError(
                f"ProgressBar.restored(member_steps={member_steps}): must be >= 0"
            )
        self.done += member_steps
        self.restored_member_steps += member_steps
        self._draw()

    @property
    def fraction(self) -> float:
        """Share of the estimated work done, in ``[0, 1]``."""
        return min(self.done / self.total, 1.0)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the bar was made."""
        return self.clock() - self.start

    @property
    def eta_s(self) -> float:
        """Estimated seconds left: elapsed x remaining / done in this run (restored work not
        counted as done in this run); NaN before any work of this run."""
        done_here = self.done - self.restored_member_steps
        if done_here <= 0:
            return math.nan
        remaining = max(self.total - self.done, 0)
        return self.elapsed_s * remaining / done_here

    def status(self) -> str:
        """The fields after the bar: steps, members, best metric, time (one line of text)."""
        best = "-" if math.isnan(self.best) else f"{self.best:.4g}"
        groups = f" group {self.group_index + 1}/{self.num_groups}" if self.num_groups > 1 else ""
        return (
            f"{self.done}/{self.total} member-steps |{groups} alive {self.num_alive}/"
            f"{self.num_members} diverged {self.num_diverged} | best {self.metric} {best} | "
            f"{_format_seconds(self.elapsed_s)} ETA {_format_seconds(self.eta_s)}"
        )

    def line(self) -> str:
        """The whole line of the text renderer."""
        filled = round(self.width * self.fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"[{bar}] {100 * self.fraction:5.1f}% {self.status()}"

    # ---------------------------------------------------------------------------- drawing

    def _draw(self) -> None:
        if not self.enabled or self._closed:
            return
        if self.use_rich:
            self._draw_rich()
        elif self.interactive:
            self.stream.write("\r" + self.line())
            self.stream.flush()
        else:
            decile = int(self.fraction * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(self.line() + "\n")
            self.stream.flush()
        if self.fraction >= 1.0:
            self.close()

    def _draw_rich(self) -> None:
        if self._rich is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            console = Console(file=self.stream, force_terminal=True)
            progress = Progress(
                BarColumn(bar_width=self.width),
                TaskProgressColumn(),
                TextColumn("{task.fields[status]}"),
                console=console,
                auto_refresh=False,  # redrawn at segment boundaries only: no thread
            )
            task = progress.add_task("sweep", total=self.total, status=self.status())
            self._rich = (progress, task)
        progress, task = self._rich
        progress.update(task, completed=min(self.done, self.total), status=self.status())
        if not progress.live.is_started:
            progress.start()
            console = progress.console
            console.show_cursor(True)  # a bar never closed must not leave the cursor hidden
        progress.refresh()

    def close(self) -> None:
        """Finishes the live line (a newline on terminals). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._rich is not None:
            self._rich[0].stop()
        elif self.enabled and self.interactive and self.done > 0:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemberPoint(NamedTuple):
    """What one segment report says about one member (see :meth:`MemberPoints.update`).

    Attributes:
      member_id: the member.
      step: its step after the segment.
      config: its config during the segment.
      metrics: ``{name: value}`` measured at ``step``; empty when the report brings no new
        values for it (only a new status).
      status: ``"running"``, ``"completed"``, ``"diverged"`` or ``"stopped"``.
      group: the static group's label.
    """

    member_id: int
    step: int
    config: Mapping[str, Any]
    metrics: Mapping[str, float]
    status: str
    group: str


class MemberPoints:
    """Turns segment reports into members' new points: what a live tracker logs.

    A slot's values belong to ``report.member_ids[slot]``; they are new when the member's step
    grew since its last point (a completed or stopped member's slot repeats its last values). A
    member that leaves its slot while running (a scheduler refilled it) gets a last point with
    status ``"stopped"``; one stopped without a refill shows ``"stopped"`` in the next report.
    """

    def __init__(self) -> None:
        self._step: dict[int, int] = {}
        self._status: dict[int, str] = {}
        self._slots: dict[int, tuple[int, ...]] = {}

    def update(self, report: SegmentReport) -> list[MemberPoint]:
        """The points of ``report``: new values, new statuses, members that left.

        Raises:
          ValueError: the report carries no ``member_ids`` (an engine older than the field).
        """
        if len(report.member_ids) != report.num_members or report.member_step is None:
            raise ValueError(
                "this SegmentReport carries no member_ids/member_step, so values cannot be "
                "attributed to members; it comes from an engine that does not fill them."
            )
        ids = tuple(int(i) for i in report.member_ids)
        points = []
        for member in self._slots.get(report.group_index, ()):
            if member not in ids and self._status.get(member) == "running":
                self._status[member] = "stopped"
                points.append(MemberPoint(member, self._step[member], {}, {}, "stopped",
                                          report.group))
        self._slots[report.group_index] = ids
        for slot, member in enumerate(ids):
            step, status = int(report.member_step[slot]), str(report.statuses[slot])
            new = step > self._step.get(member, 0)
            if not new and status == self._status.get(member):
                continue
            values = {name: float(np.asarray(v)[slot]) for name, v in report.metrics.items()}
            points.append(MemberPoint(member, step, dict(report.configs[slot]),
                                      values if new else {}, status, report.group))
            self._step[member], self._status[member] = step, status
        return points

    def logged_step(self, member_id: int) -> int:
        """The last step with values seen for ``member_id`` (-1 before any)."""
        return self._step.get(member_id, -1)


class _Chain:
    """Several ``on_segment`` callbacks as one; ``restored`` reaches those that have it."""

    def __init__(self, callbacks: tuple[Callable[[SegmentReport], None], ...]) -> None:
        self.callbacks = callbacks

    def __call__(self, report: SegmentReport) -> None:
        for callback in self.callbacks:
            callback(report)

    def restored(self, member_steps: int) -> None:
        for callback in self.callbacks:
            restored = getattr(callback, "restored", None)
            if callable(restored):
                restored(member_steps)


def chain(*callbacks: Callable[[SegmentReport], None] | None) -> Callable[[SegmentReport], None]:
    """One ``on_segment`` callback calling each of ``callbacks`` in order (``None`` skipped),
    e.g. ``on_segment=chain(ProgressBar(total), TensorBoardLogger("runs/tb"))``; a resume's
    ``restored(member_steps)`` is forwarded to those that have the method.

    Raises:
      TypeError: a callback that is not callable.
    """
    kept = tuple(c for c in callbacks if c is not None)
    for callback in kept:
        if not callable(callback):
            raise TypeError(f"chain: {callback!r} is not callable (an on_segment callback).")
    return _Chain(kept)
