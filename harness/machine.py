"""What produced a result: this machine's CPU, the package versions, the git commit.

    python -c "from harness.machine import cpu_model, git_state; print(cpu_model(), git_state())"
"""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from harness.paths import REPO


def git_state() -> tuple[str, bool]:
    """(commit, dirty) of the checkout, or ('unknown', True) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=REPO, capture_output=True, text=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True


def versions() -> dict:
    """Python and the versions of the packages a result depends on (None: not installed)."""
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "mininet", "pandas", "NetfilterQueue"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, all) clock ticks of the whole machine so far, from /proc/stat; None elsewhere.

    Steal is time a virtual machine's CPUs were ready to run but the hypervisor ran something
    else: while it is high, shaped rates and timings on this machine are not to be trusted."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_pct(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """Share of CPU time stolen between two `cpu_ticks()` readings, percent."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return round(100.0 * (end[0] - start[0]) / (end[1] - start[1]), 2)
