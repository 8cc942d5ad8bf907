"""A trace-driven link inside the delay daemon: Mahimahi's queue served at the trace's times.

    python -c "from harness.emulation.tracelink import TraceLink, constant_times; \
l = TraceLink(constant_times(1.1), 12000); print([l.depart(0.0, 1514) for _ in range(3)])"

Mechanism (issue: time-varying links). The receiving host's delay daemon, which already holds
every packet of one direction, also decides when each packet leaves the *link*: each delivery
opportunity of the trace (one line of a Mahimahi file) carries `OPPORTUNITY_B` bytes of
Ethernet frame, i.e. one MTU-sized IP packet with its header, as in Mahimahi (1500-byte IP
packets per opportunity); a packet takes the bytes left in the opportunity in use and, if it
needs more, the following ones, and leaves at the time of the last one it uses. Opportunities
that pass while the queue is empty are lost (Mahimahi does the same). At most
`queue_packets` packets wait for the link; an arrival beyond that is dropped (drop-tail, as the
fixed-rate links' pfifo). The one-way delay is added after the link.

Granularity: the trace's 1 ms, and the daemon's wake-up (it learns select()'s ~0.2 ms lateness
and wakes early by it). Time dilation multiplies every trace time by k (`scale`).

Outages: windows [start, end) in seconds from the time origin, during which no opportunity
exists; packets queue (and beyond the limit are dropped) and leave once it ends. The time
origin is reset (`restart`) when a case starts (SIGUSR1 to the daemon), so every case sees the
same capacity over its own time, and when a calibration measures the link (SIGUSR2: the trace
without the outages); packets already queued keep their departure times.
"""
from __future__ import annotations

import bisect
import collections
import functools
import math

OPPORTUNITY_B = 1514          # Ethernet frame bytes per delivery opportunity (1500-byte IP + 14)
TIME_EPS_S = 1e-9             # two opportunity times this close are one time
CONSTANT_PERIOD_MS = 12_000   # a fixed rate as a trace: its opportunities over this period


def constant_times(mbps: float, period_ms: int = CONSTANT_PERIOD_MS) -> list[int]:
    """Opportunity times (ms) of a fixed-rate link over `period_ms`, spread evenly: how a
    fixed-rate profile with outages becomes a trace."""
    if mbps <= 0:
        raise ValueError(f"rate must be > 0 Mbit/s, got {mbps}")
    count = max(1, round(mbps * 1e6 / 8 * period_ms / 1000 / OPPORTUNITY_B))
    return [max(1, math.ceil((i + 1) * period_ms / count)) for i in range(count)]


class TraceLink:
    """When each packet leaves a link whose capacity is a repeating list of opportunities."""

    def __init__(self, times_ms: list[int], period_ms: int, *, scale: float = 1.0,
                 queue_packets: int = 100, outages: list[tuple[float, float]] = (),
                 origin: float = 0.0):
        if not times_ms or period_ms <= 0 or scale <= 0 or queue_packets < 1:
            raise ValueError("a trace link needs opportunities, a period > 0, scale > 0 and a "
                             "queue of at least one packet")
        self.times = [t / 1000 * scale for t in times_ms]         # seconds within one lap
        self.period = period_ms / 1000 * scale
        self.queue_packets = queue_packets
        self.scheduled = sorted((s * scale, (s + d) * scale) for s, d in outages)
        self.outages = self.scheduled
        self.waiting = collections.deque()     # departure times of packets still queued
        self.dropped = 0
        self.restart(origin)

    def restart(self, origin: float, outages: bool = True) -> None:
        """Time zero of the trace and the outages is now `origin` (monotonic seconds); without
        `outages` (a calibration) the scheduled outages are left out until the next restart."""
        self.origin = origin
        self.outages = self.scheduled if outages else []
        self.at = -math.inf        # time of the opportunity in use
        self.credit = 0            # bytes left in it
        self.lap, self.index = 0, 0

    def depart(self, now: float, size_b: int) -> float | None:
        """The time a packet of `size_b` frame bytes arriving at `now` leaves the link, or
        None when the queue is full (the packet is dropped)."""
        waiting = self.waiting
        while waiting and waiting[0] <= now:
            waiting.popleft()
        if len(waiting) >= self.queue_packets:
            self.dropped += 1
            return None
        if self.at < now:                      # idle: opportunities before `now` were lost
            self._seek(now)
            self.credit = OPPORTUNITY_B
        need = size_b
        while need > self.credit:
            need -= self.credit
            self._next()
            self.credit = OPPORTUNITY_B
        self.credit -= need
        waiting.append(self.at)
        return self.at

    def capacity_b(self, t0: float, t1: float) -> int:
        """Frame bytes the link can carry in [t0, t1) (monotonic seconds): a window's mean,
        counted (laps and bisection, as traces.Trace.bytes_between), outages taken out."""
        a, b = (max(t - self.origin, 0.0) for t in (t0, t1))
        count = self._count_before(b) - self._count_before(a)
        for start, end in self.outages:
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                count -= self._count_before(hi) - self._count_before(lo)
        return max(count, 0) * OPPORTUNITY_B

    def _count_before(self, rel: float) -> int:
        """Opportunities at times < `rel` seconds from the origin (outages not removed); one
        within TIME_EPS_S of `rel` is at it, not before (times are floats of ms x scale)."""
        if rel - TIME_EPS_S < 0:
            return 0
        laps, rest = divmod(rel - TIME_EPS_S, self.period)
        return int(laps) * len(self.times) + bisect.bisect_right(self.times, rest)

    def _seek(self, t: float) -> None:
        """Move to the first opportunity at or after `t` that no outage removes."""
        self._seek_rel(max(t - self.origin, 0.0))
        self._settle()

    def _next(self) -> None:
        self.index += 1
        if self.index == len(self.times):
            self.lap, self.index = self.lap + 1, 0
        self._settle()

    def _settle(self) -> None:
        """Set `at` to the current opportunity's time; skip past any outage covering it."""
        while True:
            rel = self.lap * self.period + self.times[self.index]
            end = next((e for s, e in self.outages if s <= rel < e), None)
            if end is None:
                self.at = self.origin + rel
                return
            self._seek_rel(end)

    def _seek_rel(self, rel: float) -> None:
        """Point at the first opportunity at or after `rel` seconds from the origin."""
        lap, rest = divmod(rel, self.period)
        self.lap, self.index = int(lap), bisect.bisect_left(self.times, rest - TIME_EPS_S)
        if self.index == len(self.times):
            self.lap, self.index = self.lap + 1, 0


def link_of(spec: dict, origin: float = 0.0) -> TraceLink:
    """The TraceLink a daemon link spec describes (`harness.emulation.links`' "link" entry)."""
    if spec["trace"]:
        times, period = _trace_file(spec["trace"])
    elif spec.get("steps"):
        times, period = step_times(spec["steps"])
    else:
        times, period = constant_times(spec["rate_mbps"]), CONSTANT_PERIOD_MS
    return TraceLink(times, period, scale=spec["scale"], queue_packets=spec["queue_packets"],
                     outages=spec["outages"], origin=origin)


@functools.lru_cache(maxsize=16)
def _trace_file(path: str) -> tuple[list[int], int]:
    """A trace file's opportunities and period, read once per process (the model and the
    plots ask for the same traces many times)."""
    from harness.emulation.traces import load_trace
    trace = load_trace(path)
    return list(trace.times_ms), trace.period_ms


@functools.lru_cache(maxsize=16)
def step_times(steps: str) -> tuple[list[int], int]:
    """Rate steps 'MBPS:SECONDS,...' as a trace's opportunities and period: what
    `tracegen --steps` writes to a file (each second's packets spread over its milliseconds)."""
    from harness.emulation.tracegen import opportunities, step_rates
    per_second = step_rates(steps)
    return opportunities(per_second), 1000 * len(per_second)


def window_mbps(spec: dict, start_s: float, seconds: float, outages: bool = False) -> float:
    """Mean frame rate, Mbit/s, the link offers over [start, start + seconds) of its time."""
    link = link_of(spec)
    link.restart(0.0, outages)
    return link.capacity_b(start_s, start_s + seconds) * 8 / seconds / 1e6


def trace_mean_mbps(path: str) -> float:
    """A trace's mean rate in frame Mbit/s (what `up_mbps` means for a fixed-rate link)."""
    times, period_ms = _trace_file(path)
    return len(times) * OPPORTUNITY_B * 8 / (period_ms / 1000) / 1e6


def steps_mean_mbps(steps: str) -> float:
    """Rate steps' mean in frame Mbit/s, from the opportunities they become (as a trace's)."""
    times, period_ms = step_times(steps)
    return len(times) * OPPORTUNITY_B * 8 / (period_ms / 1000) / 1e6
