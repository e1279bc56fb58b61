"""Progress reporting at segment boundaries (host side, never inside traced code)."""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

import numpy as np

from jaxtune.engine import SegmentReport


class ProgressBar:
    """A text progress bar fed with :class:`~jaxtune.engine.SegmentReport` values.

    On a terminal it redraws one line; elsewhere (CI logs, files) it prints a line at every
    tenth of the work, so logs stay short. It shows member-steps done, members alive and
    diverged, the best metric so far and an ETA.

    Args:
      total_member_steps: the work of the whole sweep, in member-steps.
      metric: the metric whose best value is shown (e.g. ``"valid_accuracy"``).
      mode: ``"max"`` or ``"min"``.
      stream: where to write (default ``sys.stderr``).
      enabled: ``False`` silences it; ``None`` means "only on a terminal".
      width: characters of the bar.
    """

    def __init__(
        self,
        total_member_steps: int,
        metric: str = "valid_accuracy",
        mode: str = "max",
        stream: TextIO | None = None,
        enabled: bool | None = True,
        width: int = 28,
    ) -> None:
        self.total = max(int(total_member_steps), 1)
        self.metric = metric
        self.mode = mode
        self.stream = stream if stream is not None else sys.stderr
        interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = interactive if enabled is None else enabled
        self.interactive = interactive
        self.width = width
        self.done = 0
        self.best = math.nan
        self.start = time.perf_counter()
        self._last_decile = -1
        self._group_step: dict[tuple[str, int], int] = {}
        self._diverged_by_group: dict[tuple[str, int], int] = {}

    def __call__(self, report: SegmentReport) -> None:
        """Records one segment's report and redraws."""
        key = (report.group, report.group_index)
        previous = self._group_step.get(key, 0)
        if report.step < previous:  # a new chunk of the same group starts from step 0
            previous = 0
        self.done += (report.step - previous) * report.num_members
        self._group_step[key] = report.step
        values = np.asarray(report.metrics.get(self.metric, []), np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            candidate = values.max() if self.mode == "max" else values.min()
            if math.isnan(self.best) or (
                candidate > self.best if self.mode == "max" else candidate < self.best
            ):
                self.best = float(candidate)
        self._diverged_by_group[key] = report.num_diverged
        self._draw(report)

    def _draw(self, report: SegmentReport) -> None:
        if not self.enabled:
            return
        fraction = min(self.done / self.total, 1.0)
        elapsed = time.perf_counter() - self.start
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else math.nan
        filled = round(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"[{bar}] {100 * fraction:5.1f}% {self.done}/{self.total} member-steps | "
            f"group {report.group_index + 1}/{report.num_groups} alive {report.num_alive}/"
            f"{report.num_members} diverged {sum(self._diverged_by_group.values())} | "
            f"best {self.metric} {self.best:.4g} | {elapsed:5.1f}s ETA {eta:5.1f}s"
        )
        if self.interactive:
            self.stream.write("\r" + line)
            if fraction >= 1.0:
                self.stream.write("\n")
        else:
            decile = int(fraction * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()
