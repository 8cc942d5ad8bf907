"""Run directories and what describes them; tables of per-case totals.

    python run_bench.py totals results/pair/<UTC>_<commit8>/

`results/<scenario>/<UTC>_<commit8>[-dirty]/`, never overwritten; `meta.json` says what code,
machine and versions produced it. Reads files only (no torch), except `versions()` which asks
installed packages for their version strings.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parent.parent


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
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "mininet", "pandas", "NetfilterQueue"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def new_run_dir(scenario: str, root: Path | None = None, extra_meta: dict | None = None) -> Path:
    """Create results/<scenario>/<UTC>_<commit8>[-dirty]/ (never an existing one) with meta.json."""
    commit, dirty = git_state()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = (root or Path(os.environ.get("HIERBENCH_RESULTS", REPO / "results"))) / scenario
    name = f"{stamp}_{commit[:8]}{'-dirty' if dirty else ''}"
    run_dir, n = base / name, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{name}.{n}"
    run_dir.mkdir(parents=True)
    meta = {"schema_version": SCHEMA_VERSION, "git_commit": commit, "git_dirty": dirty,
            "created_utc": stamp, "host": platform.node(), "kernel": platform.release(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "versions": versions(),
            "argv": sys.argv, **(extra_meta or {})}
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return run_dir


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


STAGES = ("edge_compute_s", "uplink_s", "cloud_compute_s", "downlink_s")
BASELINES = ("split", "cloud", "edge")
GROUP = ["arch", "split", "codec", "link", "rep"]


def build_summary(run_dir: Path, scenario: str = "") -> pd.DataFrame:
    """summary.csv's rows: one per case x repetition, with gains measured within the run."""
    rows = []
    for case_dir in sorted(p for p in Path(run_dir).iterdir() if (p / "case.json").exists()):
        case = json.loads((case_dir / "case.json").read_text())
        info = _read_json(case_dir / "case_info.json") or {}
        status = (_read_json(case_dir / "status.json") or {}).get("status", "unknown")
        row = {"scenario": scenario, "case": case_dir.name, "arch": case["model"]["arch"],
               "split": case["model"]["split"], "codec": case["codec"], "link": case.get("link"),
               "method": case["method"], "rep": info.get("rep", 0), "status": status,
               "batch_size": case["training"]["batch_size"]}
        totals_ = _read_json(case_dir / "totals.json") or {}
        row.update({k: totals_.get(k) for k in ("steps", "wall_s", *STAGES, "bytes_up_total",
                                                "bytes_down_total", "raw_bytes_to_cloud")})
        accuracy = _read_json(case_dir / "accuracy.json") or {}
        row.update({k: accuracy.get(k) for k in ("final_acc", "edge_exit_acc", "acc_source")})
        row.update(_extrapolate(row, info))
        row["predicted_s"] = info.get("predicted_s")
        rows.append(row)
    if not rows:
        raise HarnessError(f"no cases in {run_dir}")
    df = pd.DataFrame(rows)
    numeric = ["steps", "wall_s", *STAGES, "bytes_up_total", "bytes_down_total",
               "raw_bytes_to_cloud", "final_acc", "edge_exit_acc", "est_full_wall_s", "predicted_s"]
    df[numeric] = df[numeric].apply(pd.to_numeric, errors="coerce")
    df.loc[df["status"] != "ok", ["wall_s", "est_full_wall_s", *STAGES]] = float("nan")
    df["pipeline_eff"] = df[list(STAGES)].max(axis=1) / df["wall_s"]
    df["predicted_err"] = df["predicted_s"] / df["wall_s"] - 1
    return _add_gains(df)


def _extrapolate(row: dict, info: dict) -> dict:
    measured, full = row.get("steps"), info.get("full_steps")
    wall = row.get("wall_s")
    if wall is None or not measured:
        return {"est_full_wall_s": None, "runtime_source": "not measured"}
    if not full or full == measured:
        return {"est_full_wall_s": wall, "runtime_source": "measured"}
    return {"est_full_wall_s": wall * full / measured,
            "runtime_source": f"extrapolated linearly from {measured} measured batches to {full}"}


def _add_gains(df: pd.DataFrame) -> pd.DataFrame:
    """gain_vs_X = 1 - wall(hierarchical) / wall(X), same arch/split/codec/link/repetition."""
    for base in BASELINES:
        df[f"gain_vs_{base}"] = float("nan")
    keyed = df.assign(link=df["link"].fillna("-"))
    walls = keyed.pivot_table(index=GROUP, columns="method", values="wall_s", aggfunc="first")
    for idx, row in keyed[keyed["method"] == "hierarchical"].iterrows():
        key = tuple(row[g] for g in GROUP)
        if key not in walls.index:
            continue
        for base in BASELINES:
            if base in walls.columns:
                df.loc[idx, f"gain_vs_{base}"] = 1 - row["wall_s"] / walls.loc[key, base]
    return df
