"""Run directories: `results/<scenario>/<UTC>_<commit8>[-dirty]/`, never overwritten.

    python -c "from harness.run.rundir import new_run_dir"

`meta.json` says what code, machine and versions produced a run (schema version, git commit
and dirty flag, host, kernel, CPU, package versions, argv, the emulation).
"""
from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from harness.machine import cpu_model, git_state, versions
from harness.paths import results_dir
from harness.workers.events import SCHEMA_VERSION


def new_run_dir(scenario: str, root: Path | None = None, extra_meta: dict | None = None) -> Path:
    """Create results/<scenario>/<UTC>_<commit8>[-dirty]/ (never an existing one) with meta.json."""
    commit, dirty = git_state()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = (root or results_dir()) / scenario
    name = f"{stamp}_{commit[:8]}{'-dirty' if dirty else ''}"
    run_dir, n = base / name, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{name}.{n}"
    run_dir.mkdir(parents=True)
    meta = {"schema_version": SCHEMA_VERSION, "git_commit": commit, "git_dirty": dirty,
            "created_utc": stamp, "host": platform.node(), "kernel": platform.release(),
            "machine": platform.machine(), "cpu_model": cpu_model(), "cpus": os.cpu_count(),
            "versions": versions(),
            "argv": sys.argv, **(extra_meta or {})}
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return run_dir
