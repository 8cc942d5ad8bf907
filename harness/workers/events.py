"""Append-only JSONL events, written by each worker as it trains (the primary record of a run).

    python -c "from harness.workers.events import EventLog"

One object per line, flushed as written, so events survive a crash: `v` (schema version),
`role`, `event`, then either a point in time `t` or a span `step, t_start, t_end`, and numbers
with units in their names (`bytes_payload`, `offset_s`). Times are seconds of the worker's
CLOCK_MONOTONIC. Imports neither torch nor pandas: `harness.analysis` reads these files.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 1                     # of events and of run directories' meta.json
COMPUTE, SEND, RECV, WAIT = "compute", "send", "recv", "wait"
# The last part of a paced wait is spun, not slept: a sleep wakes late by the kernel's timer
# slack and scheduling (measured here: median 75 us for 1 ms, 104 us for 10 ms), 7-10% of a
# GPU-class step of about a millisecond (harness.workers.modelled).
SPIN_S = 0.0005


class EventLog:
    """Thread-safe JSONL writer for one worker."""

    def __init__(self, path: Path, role: str):
        self.role = role
        self._file = open(path, "a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: str, **fields) -> None:
        record = {"v": SCHEMA_VERSION, "role": self.role, "event": event, **fields}
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def point(self, event: str, **fields) -> None:
        self.write(event, t=time.monotonic(), **fields)

    @contextmanager
    def span(self, event: str, step: int | None = None, pace_s: float | None = None, **fields):
        """Time the body; extra numbers may be added to the yielded dict before it ends.

        `pace_s` (paced compute, harness.run.pacing): the span lasts at least this long; the
        body runs first, then the rest is waited out. `busy_s` records the body's own time,
        and a body longer than `pace_s` is recorded as an overrun (it is not shortened).
        """
        extra: dict = {}
        start = time.monotonic()
        yield extra
        end = time.monotonic()
        if pace_s is not None:
            extra.update(busy_s=end - start, pace_s=pace_s, overrun=end - start > pace_s)
            while end < start + pace_s:          # sleep() may wake early on a signal
                left = start + pace_s - end
                if left > SPIN_S:
                    time.sleep(left - SPIN_S)
                end = time.monotonic()
        self.write(event, step=step, t_start=start, t_end=end, **fields, **extra)

    def close(self) -> None:
        with self._lock:
            self._file.close()
