"""The paper-regime table (scenarios/paper_regime.yaml): per model, link and split the run
timed, hierarchical training's full-budget runtime with its CI and the runtime model's beside
it, the baselines' runtimes, and hierarchical's runtime change against each, printed next to
the paper's reported change.

    python run_bench.py paper results/paper_regime/<run>/

A change is T(hierarchical) / T(baseline) - 1 (negative: hierarchical is faster), the summary's
gain with its sign turned, with the summary's delta-method CI: full-budget estimates of one
run, one link, split learning at the same split. The paper's -29% (VGG-16) and -61%
(ResNet-18) are such changes on CIFAR-10 over a low-rate channel, on its own hardware, against
a baseline its abstract does not name; so the table gives the change against every baseline
and says which is which. Rows the runtime model picked for their link (`picked_splits` in the
run's meta.json) are marked.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.analysis.tables import with_ci
from harness.catalog import BASELINES, PAPER_CHANGE
from harness.errors import HarnessError

PICK_MARK = " *"


def picked_splits(run_dir: Path) -> set[tuple[str, str, str]]:
    """(arch, link, split) the runtime model picked (model.split: auto), from meta.json."""
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return set()
    return {tuple(p) for p in meta.get("picked_splits", []) if len(p) == 3}


def paper_table(summary: pd.DataFrame, picked: set[tuple[str, str, str]]) -> pd.DataFrame:
    """One row per hierarchical case that finished (and repetition), strings with CIs."""
    ok = summary[summary["status"] == "ok"]
    hier = ok[ok["method"] == "hierarchical"]
    if hier.empty:
        raise HarnessError("paper: no hierarchical case finished in this run")

    def runtime(rows: pd.DataFrame) -> str:
        if rows.empty:
            return "-"
        r = rows.iloc[0]
        return with_ci(r["est_full_wall_s"], r["est_full_wall_ci_s"], "{:.0f}")

    out = []
    for _, h in hier.iterrows():
        same = ok[(ok["arch"] == h["arch"]) & (ok["link"] == h["link"]) & (ok["rep"] == h["rep"])]
        row = {"arch": h["arch"], "link": h["link"],
               "split": h["split"] + (PICK_MARK if (h["arch"], h["link"], h["split"]) in picked
                                      else ""),
               "hierarchical_s": runtime(same[(same["method"] == "hierarchical")
                                              & (same["split"] == h["split"])]),
               "model_s": f"{h['predicted_full_s']:.0f}" if pd.notna(h.get("predicted_full_s")) else "-",
               "split_s": runtime(same[(same["method"] == "split") & (same["split"] == h["split"])]),
               "cloud_s": runtime(same[same["method"] == "cloud"]),
               "edge_s": runtime(ok[(ok["arch"] == h["arch"]) & (ok["method"] == "edge")])}
        for base in BASELINES:
            gain, ci = h.get(f"gain_vs_{base}"), h.get(f"gain_vs_{base}_ci")
            row[f"vs_{base}"] = "-" if pd.isna(gain) else with_ci(-gain, ci, "{:+.0%}")
        row["paper"] = f"{PAPER_CHANGE[h['arch']]:+.0%}" if h["arch"] in PAPER_CHANGE else "-"
        if summary["rep"].nunique() > 1:
            row["rep"] = int(h["rep"])
        out.append(row)
    order = {"3g": 0, "4g": 1, "wifi": 2}
    table = pd.DataFrame(out)
    return table.sort_values(["arch", "link", "split"], key=lambda c: c.map(
        lambda v: order.get(v, 9) if c.name == "link" else v), kind="stable")


def paper_notes(summary: pd.DataFrame, run_dir: Path) -> list[str]:
    """What the table's figures are, in words: runtimes, changes, the paper's, compute,
    accuracy and the run's wall time."""
    ok = summary[summary["status"] == "ok"]
    full = ok["full_steps"].dropna()
    lines = [f"{PICK_MARK.strip()} the split the runtime model predicts fastest for that link "
             f"(selection by: runtime); the others are the scenario's fixed splits",
             f"runtimes: seconds for the full budget ({int(full.max()) if len(full) else '?'} "
             f"batches), estimated from a measured steady-state window ± 95% CI (batch means); "
             f"model_s: the runtime model's prediction for the same case",
             "vs_*: T(hierarchical) / T(baseline) - 1 with its 95% CI (negative: hierarchical "
             "faster; split learning at the same split); paper: the change the paper reports "
             "on CIFAR-10 over 3G / a low-rate channel, on its own hardware, against a baseline "
             "its abstract does not name: the closest here is split learning (the same split, "
             "the same devices, the gradient sent back); cloud-only uploads every raw image and "
             "edge-only sends nothing"]
    for role in ("edge", "cloud"):
        kinds = sorted(set(ok.get(f"{role}_compute", pd.Series(dtype=str)).dropna()) - {"none"})
        devices = sorted(set(ok.get(f"{role}_device", pd.Series(dtype=str)).dropna()))
        if kinds:
            words = ", ".join(kinds).replace("modelled", "MODELLED (FLOPs / the device's "
                                             "sustained rate, not measured compute)")
            lines.append(f"{role} compute: {words}" + (f" ({', '.join(devices)})" if devices else ""))
    sources = sorted(set(ok["acc_source"].dropna())) if "acc_source" in ok else []
    if sources:
        lines.append("accuracy: " + "; ".join(sources))
    try:
        status = json.loads((run_dir / "run_status.json").read_text())
        history = status.get("history", [])
        if len(history) >= 2:
            start = pd.Timestamp(history[0]["utc"])
            end = pd.Timestamp(history[-1]["utc"])
            lines.append(f"wall time of the run: {(end - start).total_seconds() / 60:.1f} min "
                         f"({status.get('state')}, {status.get('cases_ok')} cases ok)")
    except (OSError, ValueError, KeyError):
        pass
    return lines
