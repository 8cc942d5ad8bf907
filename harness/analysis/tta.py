"""Accuracy over each link's time, and the time to reach an accuracy (DAWNBench's measure).

    python run_bench.py report results/quick/<run>/      # the curves and the table, on the page

The accuracy pass evaluates both exits on the test subset every `measure.curve_every` batches,
off the clock (`curve` in each case's accuracy.json: one training, valid on every link, since
the updates do not depend on it). A case's runtime gives each batch its time on that link:
the batches the timing window measured complete when they completed (the method's final
stage, from the case's first compute or send), the rest at the steady interval from the
full-budget estimate backwards (the last batch ends at `est_full_wall_s`); cloud-only's
cached epochs at their measured cloud step. A curve point at batch n sits at batch n's time.

Time to accuracy for a target: the time of the first curve point at or above it. Its spread
has two parts, both given: the runtime's (`tta_ci_s`: the steady interval's 95% CI over the
extrapolated batches; 0 where measured) and the accuracy's (`tta_early_s` / `tta_late_s`: the
first point whose Wilson 95% interval reaches the target, and the first whose lower bound
does; blank: not reached with that confidence). The resolution is one curve step.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml

from harness.analysis.steady import completion_times
from harness.analysis.summary import wilson_half_width_one
from harness.analysis.style import link_order
from harness.analysis.totals import final_stage, load_events
from harness.catalog import METHODS
from harness.workers.events import COMPUTE, SEND

TTA_FILE = "tta.csv"
EXITS = (("final", "final_acc"), ("edge exit", "edge_exit_acc"))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def targets_of(run_dir: Path) -> tuple[float, ...]:
    """The run's scenario's `accuracy_targets` (its scenario.yaml), or none."""
    try:
        raw = yaml.safe_load((Path(run_dir) / "scenario.yaml").read_text()) or {}
        return tuple(sorted(float(t) for t in raw.get("accuracy_targets") or ()))
    except (OSError, yaml.YAMLError, TypeError, ValueError, AttributeError):
        return ()


def step_times(case_dir: Path, row: pd.Series) -> list[tuple[float, float]]:
    """(seconds, CI) at which batch n = 1..full_steps completes on this case's link."""
    info = _read_json(case_dir / "case_info.json")
    n_full = int(info.get("full_steps") or row.get("full_steps") or 0)
    k = float(info.get("dilation") or 1.0)
    steady = info.get("steady") or {}
    measured: list[float] = []
    df = load_events(case_dir)              # none (an old or copied case): the steady model
    work = df[df["event"].isin([COMPUTE, SEND])]
    last = final_stage(df, row["method"])
    if len(work) and len(last):
        start = float(work["t_start"].min())
        measured = [(t - start) / k for t in completion_times(zip(last["step"], last["t_end"]))]
    est = row.get("est_full_wall_s")
    interval = (steady.get("interval_s") or math.nan) / k
    half = (steady.get("interval_ci_s") or math.nan) / k
    cached, cached_s = int(steady.get("cached_steps") or 0), (steady.get("cached_step_s") or 0) / k
    if est != est or est is None:
        return []
    if interval != interval:                # too few batches for an interval: pro rata
        interval = est / n_full
    out = []
    for n in range(1, n_full + 1):
        if n <= len(measured):
            out.append((measured[n - 1], 0.0))
            continue
        after = n_full - n                  # batches still to come after this one
        back = min(after, cached) * cached_s + max(after - cached, 0) * interval
        beyond = n - max(len(measured), 1)
        t = max(est - back, out[-1][0] if out else 0.0)     # never before the batch ahead
        out.append((t, beyond * half if half == half else math.nan))
    return out


def case_curve(case_dir: Path, row: pd.Series) -> list[dict]:
    """The case's accuracy curve on its link's time: {step, t_s, t_ci_s, exit, acc, acc_ci}."""
    acc = _read_json(case_dir / "accuracy.json")
    curve, n_test = acc.get("curve") or [], acc.get("test_samples") or row.get("test_samples")
    if not curve or not n_test or row.get("status") != "ok":
        return []
    times = step_times(case_dir, row)
    out = []
    for point in curve:
        step = int(point["step"])
        if step > len(times):
            continue
        t, t_ci = (0.0, 0.0) if step == 0 else times[step - 1]
        for name, key in EXITS:
            value = point.get(key)
            if value is not None:
                out.append({"step": step, "t_s": t, "t_ci_s": t_ci, "exit": name, "acc": value,
                            "acc_ci": wilson_half_width_one(value, int(n_test))})
    return out


def curves(run_dir: Path, summary: pd.DataFrame) -> pd.DataFrame:
    """Every case's curve, keyed like summary.csv (arch, split, codec, link, method, rep)."""
    rows = []
    for _, row in summary.iterrows():
        for point in case_curve(Path(run_dir) / str(row["case"]), row):
            rows.append({k: row[k] for k in ("arch", "split", "codec", "link", "method", "rep")}
                        | point)
    return pd.DataFrame(rows)


def _first(points: pd.DataFrame, mask: pd.Series) -> pd.Series | None:
    hit = points[mask]
    return None if hit.empty else hit.iloc[0]


def tta_table(curve: pd.DataFrame, targets: tuple[float, ...]) -> pd.DataFrame:
    """Per case, exit and target: batches and seconds to the target, with both spreads."""
    rows = []
    if curve.empty or not targets:
        return pd.DataFrame(rows)
    keys = ["arch", "split", "codec", "link", "method", "rep", "exit"]
    for key, points in curve.sort_values("step").groupby(keys, sort=False, dropna=False):
        for target in targets:
            hit = _first(points, points["acc"] >= target)
            early = _first(points, points["acc"] + points["acc_ci"] >= target)
            late = _first(points, points["acc"] - points["acc_ci"] >= target)
            rows.append(dict(zip(keys, key)) | {
                "target": target,
                "steps_to_target": None if hit is None else int(hit["step"]),
                "tta_s": math.nan if hit is None else hit["t_s"],
                "tta_ci_s": math.nan if hit is None else hit["t_ci_s"],
                "tta_early_s": math.nan if early is None else early["t_s"],
                "tta_late_s": math.nan if late is None else late["t_s"]})
    return pd.DataFrame(rows)


def write_tta(run_dir: Path, summary: pd.DataFrame) -> Path | None:
    """RUN_DIR/tta.csv for the scenario's targets (nothing when it names none)."""
    table = tta_table(curves(run_dir, summary), targets_of(run_dir))
    if table.empty:
        return None
    table.to_csv(Path(run_dir) / TTA_FILE, index=False)
    return Path(run_dir) / TTA_FILE


def tta_text(table: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: per link, method and exit a column per target holding
    'seconds ± runtime CI [early, late]' ('not reached' past the budget)."""
    if table.empty:
        return table

    def cell(r) -> str:
        if r["tta_s"] != r["tta_s"]:
            return "not reached"
        ci = f" ± {r['tta_ci_s']:.1f}" if r["tta_ci_s"] == r["tta_ci_s"] and r["tta_ci_s"] else ""
        late = "-" if r["tta_late_s"] != r["tta_late_s"] else f"{r['tta_late_s']:.1f}"
        return f"{r['tta_s']:.1f}{ci} [{r['tta_early_s']:.1f}, {late}]"
    shown = table.assign(cell=table.apply(cell, axis=1),
                         method=table["method"] + table["exit"].map(
                             lambda e: "" if e == "final" else f" ({e})"))
    wide = shown.pivot_table(index=["arch", "link", "method", "rep"], columns="target",
                             values="cell", aggfunc="first", sort=False)
    wide.columns = [f"to {t:.0%} (s)" for t in wide.columns]
    wide = wide.reset_index()
    links = {link: i for i, link in enumerate(link_order(wide["link"].unique()))}
    methods = {m: i for i, m in enumerate(METHODS)}
    order = wide.assign(_l=wide["link"].map(links), _m=wide["method"].map(
        lambda m: (methods.get(m.split(" (")[0], len(methods)), m)))
    return order.sort_values(["arch", "_l", "_m", "rep"]).drop(columns=["_l", "_m"]).reset_index(drop=True)
