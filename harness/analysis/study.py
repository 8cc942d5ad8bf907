"""An accuracy study's tables: accuracy per split and exit head across seeds, and the gap to
end-to-end training paired by seed (no torch: a study directory is analysed anywhere).

    python run_bench.py study-table results/accuracy/<run>

Every figure is the median over seeds with a 95% CI of the mean across seeds (Student's t,
n - 1 degrees of freedom): training's seed-to-seed spread, not the test set's. The gap of a
hierarchical training is its final-exit (or edge-exit) accuracy minus the end-to-end accuracy
of the same seed (same initial weights of the shared layers, same batches, same augmentation
draws), so the spread of the difference is what its CI shows.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd

from harness.analysis.steady import mean_ci
from harness.analysis.tables import with_ci

STUDY_GROUP = ["arch", "split", "exit_head"]


def trainings_table(run_dir: Path) -> pd.DataFrame:
    """One row per training of the study (trainings/*.json)."""
    rows = []
    for path in sorted((Path(run_dir) / "trainings").glob("*.json")):
        doc = json.loads(path.read_text())
        key, result = doc["key"], doc["result"]
        rows.append({"label": doc["label"], "kind": doc["kind"], "arch": key["arch"],
                     "split": key["split"] or "-", "exit_head": key["exit_head"] or "-",
                     "seed": key["seed"], "epochs": key["recipe"]["epochs"],
                     "final_acc": result["final_acc"], "edge_exit_acc": result["edge_exit_acc"],
                     "train_wall_s": result["train_wall_s"], "how": doc["how"],
                     "source": doc["source"]})
    return pd.DataFrame(rows)


def spread(values) -> tuple[float, float, int]:
    """(median, 95% CI half-width of the mean, n) of the non-missing values."""
    vals = [float(v) for v in values if v is not None and not pd.isna(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.median(vals), mean_ci(vals)[1], len(vals)


def study_summary(trainings: pd.DataFrame) -> pd.DataFrame:
    """Per model (end-to-end) and per model, split and head (hierarchical): accuracy across
    seeds and the paired gap to end-to-end."""
    e2e = trainings[trainings["kind"] == "end-to-end"]
    ref = {(r.arch, r.seed): r.final_acc for r in e2e.itertuples()}
    rows = []
    for arch, group in e2e.groupby("arch", sort=False):
        med, ci, n = spread(group["final_acc"])
        rows.append({"arch": arch, "kind": "end-to-end", "split": "-", "exit_head": "-",
                     "seeds": n, "final_acc": med, "final_acc_ci": ci})
    hier = trainings[trainings["kind"] == "hierarchical"]
    for (arch, split, head), group in hier.groupby(STUDY_GROUP, sort=False):
        row = {"arch": arch, "kind": "hierarchical", "split": split, "exit_head": head}
        med, ci, n = spread(group["final_acc"])
        row.update(seeds=n, final_acc=med, final_acc_ci=ci)
        row["edge_exit_acc"], row["edge_exit_acc_ci"], _ = spread(group["edge_exit_acc"])
        for col in ("final_acc", "edge_exit_acc"):
            diffs = [getattr(r, col) - ref[(arch, r.seed)] for r in group.itertuples()
                     if (arch, r.seed) in ref]
            gap, gap_ci, paired = spread(diffs)
            name = "gap" if col == "final_acc" else "edge_gap"
            row.update({name: gap, f"{name}_ci": gap_ci, f"{name}_pairs": paired})
        rows.append(row)
    return pd.DataFrame(rows)


def summary_text(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as printed: accuracies and gaps in points, each with its CI."""
    def pts(v, ci):
        return with_ci(v * 100 if pd.notna(v) else v, ci * 100 if pd.notna(ci) else ci,
                       "{:+.2f}")
    out = []
    for r in summary.to_dict("records"):
        out.append({"model": r["arch"], "training": r["kind"], "split": r["split"],
                    "exit head": r["exit_head"], "seeds": r["seeds"],
                    "final acc %": with_ci(r["final_acc"] * 100, r["final_acc_ci"] * 100,
                                           "{:.2f}"),
                    "edge-exit acc %": "-" if r["kind"] == "end-to-end" else with_ci(
                        r["edge_exit_acc"] * 100, r["edge_exit_acc_ci"] * 100, "{:.2f}"),
                    "gap to e2e (pts, paired)": "-" if r["kind"] == "end-to-end" else
                    pts(r["gap"], r["gap_ci"])})
    return pd.DataFrame(out)


def write_tables(run_dir: Path, echo=print) -> pd.DataFrame:
    """study.csv (per training) and study_summary.csv; the summary printed."""
    run_dir = Path(run_dir)
    table = trainings_table(run_dir)
    table.to_csv(run_dir / "study.csv", index=False)
    summary = study_summary(table)
    summary.to_csv(run_dir / "study_summary.csv", index=False)
    echo("accuracy across seeds: median ± 95% CI of the mean; gap = hierarchical - "
         "end-to-end, paired by seed")
    echo(summary_text(summary).to_string(index=False))
    return summary


def tta_table(run_dir: Path, targets=(0.85, 0.90)) -> pd.DataFrame:
    """Time to each target accuracy (final exit) per model, link, method and split: the first
    evaluated step at or above it in each seed's curve, placed on the MODELLED runtime of that
    method on that link (study_runtime.csv, pro rata over the steps), median and 95% CI across
    seeds (none unless every seed reached it); resolution one evaluation interval
    (measure.curve_every batches)."""
    run_dir = Path(run_dir)
    runtimes = pd.read_csv(run_dir / "study_runtime.csv")
    curves = {}
    for path in sorted((run_dir / "trainings").glob("*.json")):
        doc = json.loads(path.read_text())
        key, curve = doc["key"], doc["result"]["curve"]
        if curve:                      # the last point is the end of training
            curves.setdefault((key["arch"], key["kind"], key["split"], key["exit_head"]),
                              []).append((curve, curve[-1]["step"]))
    rows = []
    first = {a: runtimes[runtimes["arch"] == a]["split"].iloc[0] for a in runtimes["arch"].unique()}
    for r in runtimes.itertuples():
        if r.method in ("cloud", "edge") and r.split != first[r.arch]:
            continue                   # split-independent: once per model and link
        kind = "hierarchical" if r.method == "hierarchical" else "end-to-end"
        key = (r.arch, kind, r.split if kind == "hierarchical" else None,
               r.exit_head if kind == "hierarchical" else None)
        for target in targets:
            times = []
            for curve, steps in curves.get(key, []):
                hit = next((p["step"] for p in curve if p["final_acc"] >= target), None)
                times.append(math.nan if hit is None else r.predicted_s * hit / steps)
            reached = [t for t in times if t == t]
            med, ci, n = spread(reached) if len(reached) == len(times) else (
                math.nan, math.nan, len(reached))     # a seed that never got there: no time
            rows.append({"arch": r.arch, "link": r.link, "method": r.method, "split": r.split,
                         "exit_head": r.exit_head, "target": target, "seeds": len(times),
                         "reached": n, "tta_s": med, "tta_ci_s": ci,
                         "source": "modelled runtime; accuracy measured (per seed)"})
    return pd.DataFrame(rows)
