"""Mahimahi-format link traces: read, check, summarise, and turn into a rate schedule.

    .venv/bin/python -m harness.emulation.traces FILE [--grid-ms 100]

Mahimahi's format (Netravali et al., USENIX ATC 2015, `mm-link`): a text file, one line per
delivery opportunity, each line the time in milliseconds at which one MTU-sized packet
(1500 bytes) may leave; several lines with one time are several packets in that millisecond;
times never decrease; when the last line's time has passed the trace starts again from the
top, shifted by that time (so the trace's period is its last timestamp, which must be > 0).

This module reads, checks and summarises traces; a run applies them through the delay
daemon, which serves each opportunity itself (harness.emulation.tracelink). `schedule` cuts a
trace into bins of `grid_ms` with each bin's rate (the summary's per-bin minimum and maximum;
`max_backlog_error_b` is how far a bin-wise smooth rate would stray from the trace, in bytes).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

MTU_B = 1500                  # bytes per delivery opportunity (Mahimahi's MTU)
MAX_LINES = 10_000_000        # a 1 Gbit/s trace of 2 minutes; more is refused, not read whole
MAX_PERIOD_MS = 86_400_000    # one day


@dataclass(frozen=True)
class Trace:
    name: str
    times_ms: tuple[int, ...]       # delivery opportunities, non-decreasing
    period_ms: int                  # the trace repeats after this (its last timestamp)

    @property
    def mean_mbps(self) -> float:
        """Mean rate over one period, Mbit/s."""
        return len(self.times_ms) * MTU_B * 8 / (self.period_ms / 1000) / 1e6

    def bytes_between(self, t0_ms: float, t1_ms: float) -> int:
        """Bytes the trace can deliver in [t0, t1), counting its repetitions."""
        if t1_ms <= t0_ms:
            return 0
        return (self._count_before(t1_ms) - self._count_before(t0_ms)) * MTU_B

    def _count_before(self, t_ms: float) -> int:
        """Opportunities at times < t_ms since time 0: lap k holds times_ms + k x period."""
        laps, rest = divmod(t_ms, self.period_ms)
        count = int(laps) * len(self.times_ms) + _bisect_left(self.times_ms, rest)
        if laps and rest == 0:       # the previous lap's last ones fall exactly at t: not < t
            count -= len(self.times_ms) - _bisect_left(self.times_ms, self.period_ms)
        return count

    def mean_over(self, start_s: float, seconds: float) -> float:
        """Mean rate, Mbit/s, over [start, start + seconds) (what a calibration window saw)."""
        if seconds <= 0:
            raise HarnessError(f"trace {self.name}: a window must last > 0 s, got {seconds}")
        return self.bytes_between(start_s * 1000, (start_s + seconds) * 1000) * 8 / seconds / 1e6


def _bisect_left(values: tuple[int, ...], x: float) -> int:
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def parse_trace(text: str, name: str) -> Trace:
    """A Trace from Mahimahi text; a bad line is refused with its number and what is wrong."""
    times: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        field = line.strip()
        if not field:
            continue
        if not field.isdigit():
            raise HarnessError(f"{name}: line {number}: expected a whole number of "
                               f"milliseconds, got {field[:40]!r}")
        t = int(field)
        if times and t < times[-1]:
            raise HarnessError(f"{name}: line {number}: {t} ms is before the previous line's "
                               f"{times[-1]} ms (times must not decrease)")
        if t > MAX_PERIOD_MS:
            raise HarnessError(f"{name}: line {number}: {t} ms is past one day")
        times.append(t)
        if len(times) > MAX_LINES:
            raise HarnessError(f"{name}: more than {MAX_LINES} lines")
    if not times:
        raise HarnessError(f"{name}: no delivery opportunities (an empty trace)")
    if times[-1] <= 0:
        raise HarnessError(f"{name}: the last time is {times[-1]} ms; a trace must last > 0 ms")
    return Trace(name, tuple(times), times[-1])


def load_trace(path: str | Path) -> Trace:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read the trace ({exc.__class__.__name__})") from None
    return parse_trace(text, str(path))


def schedule(trace: Trace, grid_ms: int) -> list[tuple[int, float]]:
    """(start ms, rate Mbit/s) per bin of `grid_ms` over one period (the last bin may be
    shorter); a bin without opportunities has rate 0 (an outage). The schedule repeats with
    the trace, so an opportunity at the period's end belongs to the first bin (time P is the
    next lap's time 0): every period carries all of the trace's packets."""
    if grid_ms < 1:
        raise HarnessError(f"grid_ms: must be >= 1, got {grid_ms}")
    period = trace.period_ms
    counts = [0] * math.ceil(period / grid_ms)
    for t in trace.times_ms:
        counts[(t % period) // grid_ms] += 1
    return [(i * grid_ms, n * MTU_B * 8 / ((min((i + 1) * grid_ms, period) - i * grid_ms) / 1000)
             / 1e6) for i, n in enumerate(counts)]


def max_backlog_error_b(trace: Trace, grid_ms: int) -> int:
    """The largest gap, in bytes, between what the trace and its schedule have delivered by
    any millisecond of one period (from time 0, schedule repeated): the schedule's error."""
    per_ms = [r * 1e6 / 8 / 1000 for _, r in schedule(trace, grid_ms)]     # bytes per ms
    worst, before = 0.0, [0.0]
    for rate in per_ms:                          # bytes delivered before each bin starts
        before.append(before[-1] + rate * grid_ms)
    for t in range(trace.period_ms + 1):
        i, within = divmod(t, grid_ms)
        done = before[i] + (per_ms[i] * within if i < len(per_ms) else 0.0)
        worst = max(worst, abs(trace.bytes_between(0, t + 1) - done))
    return math.ceil(worst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Summarise a Mahimahi-format trace")
    ap.add_argument("trace")
    ap.add_argument("--grid-ms", type=int, default=100)
    args = ap.parse_args(argv)
    try:
        t = load_trace(args.trace)
        rates = [r for _, r in schedule(t, args.grid_ms)]
        print(f"{t.name}: {len(t.times_ms)} opportunities over {t.period_ms / 1000:g} s, "
              f"mean {t.mean_mbps:.3f} Mbit/s; per {args.grid_ms} ms: min {min(rates):.3f}, "
              f"max {max(rates):.3f} Mbit/s, {sum(r == 0 for r in rates)} empty bin(s); "
              f"schedule error at most {max_backlog_error_b(t, args.grid_ms)} bytes")
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
