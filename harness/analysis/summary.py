"""summary.csv: one row per case x repetition, built from a run directory's case files.

    python run_bench.py totals results/pair/<UTC>_<commit8>/

Reads files only (no torch): case.json, case_info.json, status.json, totals.json and
accuracy.json of every case directory, as the runner wrote them. A case run under time
dilation k (case.json's compute.dilation) has every time divided by k here, and says so in
its `dilation` and `runtime_source` columns; gains and relative errors are ratios of times
under one k and need nothing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from harness.analysis.steady import ratio_ci
from harness.catalog import BASELINES, COMPUTE_ROLES
from harness.config import ComputeConfig
from harness.errors import HarnessError


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


STAGES = ("edge_compute_s", "uplink_s", "cloud_compute_s", "downlink_s")
GROUP = ["arch", "split", "codec", "link", "rep"]
NUMERIC = ["steps", "wall_s", *STAGES, "bytes_up_total", "bytes_down_total", "raw_bytes_to_cloud",
           "final_acc", "edge_exit_acc", "test_samples", "est_full_wall_s", "est_full_wall_ci_s",
           "fill_s", "interval_s", "interval_ci_s", "full_steps", "predicted_s", "predicted_full_s",
           "predicted_device_full_s", "paced_steps", "pace_overruns", "modelled_steps",
           "modelled_overruns", "modelled_excess_max_s"]
Z95 = 1.959964


def build_summary(run_dir: Path, scenario: str = "") -> pd.DataFrame:
    """summary.csv's rows: one per case x repetition, with gains measured within the run."""
    rows = [_row(case_dir, scenario) for case_dir in sorted(Path(run_dir).iterdir())
            if (case_dir / "case.json").exists()]
    if not rows:
        raise HarnessError(f"no cases in {run_dir}")
    df = pd.DataFrame(rows).reindex(columns=list(dict.fromkeys([*rows[0], *NUMERIC])))
    df[NUMERIC] = df[NUMERIC].apply(pd.to_numeric, errors="coerce")
    df["steady"] = df["steady"].eq(True) if "steady" in df else False
    df.loc[df["status"] != "ok", ["wall_s", "est_full_wall_s", "est_full_wall_ci_s", *STAGES]] = float("nan")
    df["pipeline_eff"] = df[list(STAGES)].max(axis=1) / df["wall_s"]
    df["predicted_err"] = df["predicted_s"] / df["wall_s"] - 1
    df["predicted_full_err"] = df["predicted_full_s"] / df["est_full_wall_s"] - 1
    for col in ("final_acc", "edge_exit_acc"):
        df[f"{col}_ci"] = wilson_half_width(df[col], df["test_samples"])
    return _add_gains(df)


CONVERGED = ("final_acc", "final_acc_ci", "edge_exit_acc", "edge_exit_acc_ci", "gap", "gap_ci",
             "seeds", "source")


def _row(case_dir: Path, scenario: str) -> dict:
    case = json.loads((case_dir / "case.json").read_text())
    info = _read_json(case_dir / "case_info.json") or {}
    status = _read_json(case_dir / "status.json") or {}
    # A case that failed before writing case_info.json still has its repetition in its name.
    named_rep = re.search(r"-r(\d+)$", case_dir.name)
    row = {"scenario": scenario, "case": case_dir.name, "arch": case["model"]["arch"],
           "split": case["model"]["split"], "codec": case["codec"], "link": case.get("link"),
           "method": case["method"], "rep": info.get("rep", int(named_rep[1]) if named_rep else 0),
           "status": status.get("status", "unknown"), "status_reason": status.get("reason", ""),
           "batch_size": case["training"]["batch_size"], "full_steps": info.get("full_steps")}
    totals_ = _read_json(case_dir / "totals.json") or {}
    row.update({k: totals_.get(k) for k in ("steps", "wall_s", *STAGES, "bytes_up_total",
                                            "bytes_down_total", "raw_bytes_to_cloud",
                                            "paced_steps", "pace_overruns", "modelled_steps",
                                            "modelled_overruns", "modelled_excess_max_s")})
    accuracy = _read_json(case_dir / "accuracy.json") or {}
    row.update({k: accuracy.get(k) for k in ("final_acc", "edge_exit_acc", "acc_source",
                                             "test_samples")})
    converged = accuracy.get("converged") or {}     # harness.study.reuse: across seeds
    row.update({f"conv_{k}": converged.get(k) for k in CONVERGED})
    row.update(_estimate(row, info))
    if info.get("reused_from"):       # harness.run.reuse: why, and where from
        row["runtime_source"] += f"; {info.get('reused_why', 'reused')}, in {info['reused_from']}"
    if row.get("paced_steps"):
        row["runtime_source"] += "; compute paced to the runtime model's step times"
    row.update(compute_sources(case))
    modelled = [r for r in ("edge", "cloud") if row[f"{r}_compute"] == "modelled"]
    if modelled:
        row["runtime_source"] += (f"; MODELLED compute on the {' and '.join(modelled)}: no "
                                  f"training there, each step waited the device's modelled "
                                  f"time (FLOPs / sustained rate), messages real on the link")
    row["node"] = (_read_json(case_dir / "node.json") or {}).get("host", "")   # cluster runs
    row["predicted_s"] = info.get("predicted_s")
    row["predicted_full_s"] = info.get("predicted_full_s")
    row["predicted_device_full_s"] = info.get("predicted_device_full_s")
    if row["predicted_device_full_s"] is not None:
        row["runtime_source"] += ("; a device capped at this machine's speed (compute."
                                  "over_ceiling: cap): predicted_device_full_s is the model's "
                                  "runtime for the device as specified")
    return _undilate(row, (case.get("compute") or {}).get("dilation") or 1.0)


def compute_sources(case: dict) -> dict:
    """{edge_compute, cloud_compute, edge_device, cloud_device} of a case.json: how each
    side's step times arose (config.ComputeConfig.source: paced, modelled, real-gpu, shares;
    none where the method computes nothing there) and its device profile, if any."""
    compute = ComputeConfig(**(case.get("compute") or {}))
    out = {}
    for role in ("edge", "cloud"):
        used = role in COMPUTE_ROLES.get(case["method"], ())
        out[f"{role}_compute"] = compute.source(role) if used else "none"
        out[f"{role}_device"] = getattr(compute, f"{role}_device") or ""
    return out


DILATED = ("wall_s", *STAGES, "est_full_wall_s", "est_full_wall_ci_s", "fill_s", "interval_s",
           "interval_ci_s", "predicted_s", "predicted_full_s", "predicted_device_full_s")


def _undilate(row: dict, k: float) -> dict:
    """Times of a case run under time dilation k, divided by k (the virtual world's seconds)."""
    row["dilation"] = k
    if k != 1:
        for key in DILATED:
            if isinstance(row.get(key), (int, float)):
                row[key] = row[key] / k
        row["runtime_source"] = f"{row.get('runtime_source', '')}; dilated x{k:g}, times / {k:g}"
    return row


def _estimate(row: dict, info: dict) -> dict:
    """The full-budget runtime: steady-state estimate where the run recorded one; runs of
    earlier releases (no `steady` in case_info.json) keep their linear extrapolation."""
    measured, full = row.get("steps"), info.get("full_steps")
    wall = row.get("wall_s")
    if wall is None or not measured:
        return {"est_full_wall_s": None, "runtime_source": "not measured"}
    steady = info.get("steady") or {}
    if steady.get("est_s") is not None:
        out = {k: steady.get(k) for k in ("fill_s", "interval_s", "interval_ci_s")}
        out.update(est_full_wall_s=steady["est_s"], est_full_wall_ci_s=steady.get("est_ci_s"),
                   steady=True)
        if not full or full == measured:
            out["runtime_source"] = f"measured: all {measured} batches"
        else:
            out["runtime_source"] = (f"estimated: fill + ({full}-1) x steady interval, from "
                                     f"{measured} measured batches (CI: batch means)")
        return out
    if not full or full == measured:
        return {"est_full_wall_s": wall, "runtime_source": "measured"}
    return {"est_full_wall_s": wall * full / measured,
            "runtime_source": f"extrapolated linearly from {measured} measured batches to {full}"}


def wilson_half_width(p: pd.Series, n: pd.Series) -> pd.Series:
    """95% CI half-width of an accuracy measured on n test samples (Wilson score interval).

    It covers the sampling of the test set only, not the run-to-run spread of training.
    """
    p, n = pd.to_numeric(p, errors="coerce"), pd.to_numeric(n, errors="coerce")
    z2 = Z95 ** 2
    return Z95 * ((p * (1 - p) / n + z2 / (4 * n ** 2)) ** 0.5) / (1 + z2 / n)


def wilson_half_width_one(p: float, n: int) -> float:
    """wilson_half_width for one accuracy."""
    return float(wilson_half_width(pd.Series([p]), pd.Series([n])).iloc[0])


def _add_gains(df: pd.DataFrame) -> pd.DataFrame:
    """gain_vs_X = 1 - T(hierarchical) / T(X), same arch/split/codec/link/repetition, where T
    is the full-budget estimate when both cases have a steady-state one (CI from both, delta
    method), else the measured wall time of both (runs of earlier releases).
    `gain_vs_X_window` is always the ratio of the measured windows."""
    keyed = df.assign(link=df["link"].fillna("-"))
    tables = {col: keyed.pivot_table(index=GROUP, columns="method", values=col, aggfunc="first",
                                     dropna=False)
              for col in ("est_full_wall_s", "est_full_wall_ci_s", "wall_s", "steady", "node")}
    for base in BASELINES:
        for suffix in ("", "_ci", "_window"):
            df[f"gain_vs_{base}{suffix}"] = float("nan")
    df["gain_nodes"] = ""       # a gain whose two sides ran on different cluster nodes: named
    for idx, row in keyed[keyed["method"] == "hierarchical"].iterrows():
        key = tuple(row[g] for g in GROUP)
        if key not in tables["wall_s"].index:
            continue
        for base in (b for b in BASELINES if b in tables["wall_s"].columns):
            other_node = tables["node"].loc[key, base]
            if isinstance(other_node, str) and other_node and other_node != row["node"]:
                df.loc[idx, "gain_nodes"] += f"vs {base}: {row['node']} / {other_node}; "
            window = 1 - row["wall_s"] / tables["wall_s"].loc[key, base]
            df.loc[idx, f"gain_vs_{base}_window"] = window
            if not (row["steady"] and tables["steady"].loc[key, base] == 1):
                df.loc[idx, f"gain_vs_{base}"] = window        # both sides as measured
                continue
            other = tables["est_full_wall_s"].loc[key, base]
            df.loc[idx, f"gain_vs_{base}"] = 1 - row["est_full_wall_s"] / other
            df.loc[idx, f"gain_vs_{base}_ci"] = ratio_ci(
                row["est_full_wall_s"], row["est_full_wall_ci_s"], other,
                tables["est_full_wall_ci_s"].loc[key, base])
    return df
