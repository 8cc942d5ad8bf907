"""Process supervision shared by the runner and the emulation: one READY reader, one killer.

    python -c "from harness.procs import StdoutReader, kill_groups"

Every long-lived helper (edge and cloud workers, delay daemons) follows one contract: it prints
`READY [address]` on stdout once it can serve, and runs in its own process group. The parent
waits for READY with a timeout (never sleeps and hopes) and ends the whole group in `finally`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

from harness.errors import HarnessError


class StdoutReader(threading.Thread):
    """Reads a child's stdout lines: `READY [address]`, and `JOIN <pid>` (cgroup requests)."""

    def __init__(self, name: str, proc: subprocess.Popen, on_join=None):
        super().__init__(name=f"{name}-stdout", daemon=True)
        self.role, self.proc, self.on_join = name, proc, on_join
        self.ready: str | None = None
        self.error: str | None = None
        self.event = threading.Event()
        self.start()

    def run(self) -> None:
        for raw in self.proc.stdout:
            line = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw).strip()
            if line == "READY" or line.startswith("READY "):
                self.ready = line[len("READY"):].strip()
                self.event.set()
            elif line.startswith("JOIN ") and self.on_join is not None:
                try:
                    self.on_join(self.role, int(line.split()[1]))
                except (OSError, ValueError) as exc:
                    self.error = f"could not move {self.role} into its cgroup: {exc}"
        self.event.set()

    def wait_ready(self, timeout_s: float) -> str:
        """The text after READY (a worker's host:port; empty for a daemon); errors name why not."""
        if not self.event.wait(timeout_s):
            raise HarnessError(f"{self.role} did not print READY within {timeout_s:g} s")
        if self.ready is None:
            raise HarnessError(f"{self.role} exited before READY ({self._exit_detail()})")
        return self.ready

    def _exit_detail(self) -> str:
        code = self.proc.wait()
        err = ""
        if self.proc.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                err = self.proc.stderr.read()
                err = (err.decode(errors="replace") if isinstance(err, bytes) else err).strip()
        return exit_text(code) + (f": {tail(err, 1)}" if err else "")


def exit_text(code: int | None) -> str:
    """'exit 1', 'killed by SIGKILL' (Popen's negative codes), or 'still running'."""
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


def tail(text: str, lines: int = 3, width: int = 300) -> str:
    """The last non-empty lines of a process's output, joined on one line, at most `width`."""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-width:]


def wait_ready(proc: subprocess.Popen, timeout_s: float, name: str = "cloud") -> str:
    """Wait for a child's `READY` line; returns what follows READY (host:port for a cloud)."""
    return StdoutReader(name, proc).wait_ready(timeout_s)


def kill_groups(procs: list[subprocess.Popen], grace_s: float = 3.0) -> None:
    """SIGTERM each Popen's process group, wait up to grace_s in all, then SIGKILL; close pipes."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def kill_group(proc: subprocess.Popen, grace_s: float = 2.0) -> None:
    """SIGTERM one process group, then SIGKILL what is left after `grace_s`."""
    kill_groups([proc], grace_s)
