"""The measurement window of a timing run: stop once the steady interval is known well enough.

    python -c "from harness.run.window import Window"

While a case runs, the runner polls its workers' JSONL events (only lines added since the last
poll). Once at least `min_batches` batches have completed and the steady per-batch interval's
95% CI (harness.analysis.steady) is within `ci_target` of it, it writes STOP into the case
directory; the edge sends no further batch and the run ends normally. The cap is the case's
own batch budget (`measure.timing_batches`): a run that reaches it stops there, and its
estimate carries the wider CI it got.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from harness.analysis.steady import completion_times, steady_state
from harness.workers.common import STOP_FILE


class Window:
    """Reads a running case's events incrementally and decides when to stop it."""

    def __init__(self, case_dir: Path, min_batches: int, ci_target: float, n_full: int):
        self.case_dir, self.min_batches, self.ci_target = case_dir, min_batches, ci_target
        self.n_full = n_full
        self.offsets = {"edge": 0, "cloud": 0}
        self.spans: list[tuple[int, float]] = []
        self.start = math.inf
        self.stopped = False

    def _read_new(self) -> None:
        for role in self.offsets:
            path = self.case_dir / f"{role}.jsonl"
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offsets[role])
                    chunk = fh.read()
            except OSError:
                continue
            complete = chunk[:chunk.rfind(b"\n") + 1]       # a line being written waits
            self.offsets[role] += len(complete)
            for line in complete.splitlines():
                if b'"event":"compute"' in line or b'"event":"send"' in line:
                    rec = json.loads(line)
                    self.start = min(self.start, rec["t_start"])
                    if rec["event"] == "compute":
                        self.spans.append((rec.get("step"), rec["t_end"]))

    def poll(self) -> bool:
        """Read new events; write STOP when the interval is known to ci_target. True once stopped."""
        if self.stopped:
            return True
        self._read_new()
        done = completion_times(self.spans)[:-1]     # the newest step may still be running
        if len(done) < self.min_batches:
            return False
        s = steady_state(done, self.start, self.n_full)
        rel = s["interval_ci_s"] / s["interval_s"] if s["interval_s"] > 0 else math.nan
        if rel <= self.ci_target:                    # NaN (too few blocks) compares False
            (self.case_dir / STOP_FILE).write_text(
                f"steady interval {s['interval_s']:.4f} s +- {rel:.1%} (95% CI, batch means) "
                f"after {len(done)} batches\n")
            self.stopped = True
        return self.stopped
