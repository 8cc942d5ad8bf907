"""A compute probe inside an emulated host, and the CPU share (CFS quota) that host gets.

    python -c "from harness.run.computeprobe import cfs_quota; print(cfs_quota(0.05))"

The probe (harness.train.steptime) imports torch outside the host's cgroup, is moved into it,
and times one part's training step per round on request; compute calibration
(harness.run.computecheck) and the model's compute factors (harness.run.factors) both drive it.
"""
from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
from pathlib import Path

from harness.emulation.plan import CFS_PERIOD_US
from harness.errors import HarnessError
from harness.paths import REPO
from harness.run.launchers import MininetLauncher

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
MIN_QUOTA_US = 1000            # CFS: less than 1 ms of quota per period starves the group
PROBE_BATCHES = 8              # timed batches per round (their median is the figure)
PROBE_START_S = 180            # building the model before READY, at full speed
PROBE_ROUND_S = 600            # one round, at the slowest share


def cfs_quota(cores: float) -> tuple[int, int]:
    """(period, quota) in microseconds for `cores` cores: the usual period, longer when the
    quota would be under 1 ms (0.05 core: 20 ms periods of 1 ms)."""
    period = max(CFS_PERIOD_US, math.ceil(MIN_QUOTA_US / cores))
    return period, max(MIN_QUOTA_US, round(cores * period))


def set_share(role: str, cores: float) -> dict:
    """Give the host's CPU cgroup `cores` cores (quota/period), with >= 1 ms of quota."""
    period, quota = cfs_quota(cores)
    base = CGROUP_CPU / role
    (base / "cpu.cfs_period_us").write_text(str(period))
    (base / "cpu.cfs_quota_us").write_text(str(quota))
    return {"cores": quota / period, "period_us": period, "quota_us": quota}


class Probe:
    """A probe process in a host: built at full speed, then moved into the host's cgroup."""

    def __init__(self, link, role: str, scenario, arch: str, split: str, threads: int):
        self.link, self.role, self.lines = link, role, queue.Queue()
        part = "edge" if role == "edge" else "cloud"
        argv = [sys.executable, "-m", "harness.train.steptime", "--arch", arch, "--width",
                f"{scenario.model.width:g}", "--dataset", scenario.dataset.name, "--batch",
                str(scenario.training.batch_size), "--split", split, "--part", part,
                "--threads", str(threads), "--serve"]
        self.proc = link.popen(role, argv, cgroup=False, stdin=subprocess.PIPE, text=True,
                               cwd=str(REPO))
        threading.Thread(target=self._read, daemon=True).start()
        if self._line(PROBE_START_S) != "READY":
            raise HarnessError(f"compute probe in {role} did not start: {self._stderr()}")
        MininetLauncher.join(role, self.proc.pid)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _line(self, timeout_s: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise HarnessError(f"compute probe in {self.role}: no answer within "
                               f"{timeout_s:.0f} s") from None

    def _stderr(self) -> str:
        self.link.kill(self.proc)
        return (self.proc.stderr.read() or "").strip()[-300:] or "no output"

    def measure(self, batches: int = PROBE_BATCHES, part: str | None = None) -> float:
        """Median seconds per batch of one round under the current share (of the probe's own
        part, or of `part`)."""
        self.start_round(batches, part)
        return self.result()

    def start_round(self, batches: int, part: str | None = None) -> None:
        self.proc.stdin.write(f"measure {batches}" + (f" {part}" if part else "") + "\n")
        self.proc.stdin.flush()

    def result(self) -> float:
        line = self._line(PROBE_ROUND_S)
        if line is None:
            raise HarnessError(f"compute probe in {self.role} died: {self._stderr()}")
        return json.loads(line)["median_s"]

    def close(self) -> None:
        self.link.kill(self.proc)
