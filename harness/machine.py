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
