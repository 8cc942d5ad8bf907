"""summary.csv: one row per case x repetition, built from a run directory's case files.

    python run_bench.py totals results/pair/<UTC>_<commit8>/

Reads files only (no torch): case.json, case_info.json, status.json, totals.json and
accuracy.json of every case directory, as the runner wrote them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.catalog import BASELINES
from harness.errors import HarnessError


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


STAGES = ("edge_compute_s", "uplink_s", "cloud_compute_s", "downlink_s")
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
