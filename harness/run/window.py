"""The measurement window of a timing run: stop once the steady interval is known well enough.

    python -c "from harness.run.window import Window"

While a case runs, the runner polls its workers' JSONL events (only lines added since the last
poll). Once at least `min_batches` batches have completed and either the steady per-batch
interval's 95% CI (harness.analysis.steady) is within `ci_target` of it, or `max_seconds` of
measurement have passed and the interval has a CI at all, it writes STOP (with the reason and
the last step judged: harness.workers.stop) into the case directory; the edge sends no
further batch and the run ends normally. The cap is the case's own batch budget
(`measure.timing_batches`). A run stopped by time or by the cap carries the wider CI it got.
The estimate uses the batches judged here (`judged`), not those completing after STOP, and
the source's batches this window saw (`judged_source`), not those the edge made after.

A method without a source stage (split, cloud-only, edge-only) whose next completion will
certainly stop it (the floor one batch away, the time budget already spent, and a CI certain
to exist: for these its existence depends on the count alone) gets STOP one batch early, with
the batch in progress as the last judged: the same batches judged, without one more that
nobody reads (over 3g, 28 s of ResNet-18 split learning). A pipeline with a source is not
stopped early: its estimate may rest on the source, whose CI depends on values to come.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from harness.analysis.steady import completion_times, steady_state
from harness.catalog import FINAL_STAGE, SOURCE_STAGE
from harness.workers.stop import write_stop


class Window:
    """Reads a running case's events incrementally and decides when to stop it."""

    def __init__(self, case_dir: Path, method: str, min_batches: int, ci_target: float,
                 n_full: int, max_s: float = math.inf):
        self.case_dir, self.min_batches, self.ci_target = case_dir, min_batches, ci_target
        self.max_s = max_s                          # of measurement, once the floor is reached
        self.final = FINAL_STAGE[method]            # the span that completes a batch
        self.n_full = n_full
        self.offsets = {"edge": 0, "cloud": 0}
        self.first = SOURCE_STAGE.get(method)       # the span that starts one, if pipelined
        self.spans: list[tuple[int, float]] = []
        self.source: list[tuple[int, float]] = []
        self.start = math.inf
        self.begun = math.inf                       # the edge's clock sync ended: steps follow
        self.stopped = False
        self.judged: int | None = None              # batches complete when STOP was written
        self.judged_source: int | None = None       # and the source's batches it saw then

    def read(self) -> None:
        """Take in the events written since the last read (poll does too)."""
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
                rec = json.loads(line)                  # a few events per batch: cheap
                if rec.get("event") in ("compute", "send"):
                    self.start = min(self.start, rec["t_start"])
                    self.begun = min(self.begun, rec["t_start"])
                elif rec.get("event") == "clock" and rec.get("phase") == "start":
                    self.begun = min(self.begun, rec["t"])
                stage = (rec["role"], rec.get("phase")) if rec.get("event") == "compute" else None
                if stage == self.final:
                    self.spans.append((rec.get("step"), rec["t_end"]))
                if stage is not None and stage == self.first:
                    self.source.append((rec.get("step"), rec["t_end"]))

    def poll(self) -> bool:
        """Read new events; write STOP when the interval is known to ci_target. True once stopped."""
        if self.stopped:
            return True
        self.read()
        done = completion_times(self.spans)          # final-stage spans: complete batches
        if len(done) >= self.min_batches:
            source = completion_times(self.source) if self.first else None
            s = steady_state(done, self.start, self.n_full, source)
            rel = s["interval_ci_s"] / s["interval_s"] if s["interval_s"] > 0 else math.nan
            # The time budget ends a window only once it has a CI at all (enough steady
            # intervals for MIN_BLOCKS batch means): a stop before leaves no spread.
            timed_out = done[-1] - self.start >= self.max_s and rel == rel
            if rel <= self.ci_target or timed_out:       # NaN (too few blocks) compares False
                why = "time budget reached" if not rel <= self.ci_target else "CI reached"
                self.judged_source = len(source) if source is not None else None
                self._stop(f"{why}: steady interval {s['interval_s']:.4f} s +- {rel:.1%} (95% "
                           f"CI, batch means) after {len(done)} batches", len(done))
                return True
        if self._next_stops(done):
            self._stop(f"time budget reached: {done[-1] - self.start:.1f} s measured after "
                       f"{len(done)} batches; the batch in progress completes the window "
                       f"({len(done) + 1} batches), with a CI", len(done) + 1)
        return self.stopped

    def _next_stops(self, done: list[float]) -> bool:
        """True when the next completion is certain to stop the window on time (see above)."""
        if self.first is not None or len(done) < max(self.min_batches - 1, 2):
            return False
        if done[-1] - self.start < self.max_s:
            return False
        probe = done + [2 * done[-1] - done[-2]]    # the count decides the CI, not the value
        s = steady_state(probe, self.start, self.n_full)
        return s["interval_ci_s"] == s["interval_ci_s"] and s["interval_s"] > 0

    def _stop(self, reason: str, judged: int) -> None:
        write_stop(self.case_dir, reason, judged - 1)
        self.stopped, self.judged = True, judged


class LinkClock:
    """A time-varying link's time zero for one case: when the edge's first step begins (its
    clock sync logged, seen within the runner's POLL_S tick, before the first batch's bytes
    for every method but cloud-only, whose upload starts at once). `write` records the
    schedule with how far after the first step's start its origin fell."""

    def __init__(self, launcher, case_dir: Path, method: str):
        self.launcher, self.reader = launcher, Window(case_dir, method, 0, 0.0, 0)
        self.record: dict | None = None
        self.set = False

    def tick(self) -> None:
        if not self.set:
            self.reader.read()
            if self.reader.begun < math.inf:
                self.record, self.set = self.launcher.restart_schedule(), True

    def write(self, case_dir: Path) -> None:
        if self.record:
            from harness.files import write_json
            self.reader.read()
            first = self.reader.start
            self.record["first_step_monotonic"] = first if first < math.inf else None
            self.record["origin_after_first_step_s"] = (
                self.record["origin_monotonic"] - first if first < math.inf else None)
            write_json(case_dir / "schedule.json", self.record)
