"""The tables a run prints: every runtime, gain and accuracy with its 95% CI.

    python run_bench.py run scenarios/quick.yaml        # prints these at the end

Per case x repetition, the CIs come from within the run: the full-budget runtime's from the
steady interval's batch means (harness.analysis.steady), a gain's from both of its runtimes
(delta method), an accuracy's from the test set's size (Wilson). Across repetitions (when a
scenario has 3 or more), each figure is the median of the repetitions and its CI is Student's
t over the repetitions' values, which also covers run-to-run spread.
"""
from __future__ import annotations

import math

import pandas as pd

from harness.analysis.steady import mean_ci
from harness.catalog import BASELINES

CASE_KEYS = ["arch", "split", "codec", "link", "method"]
FIGURES = {"est_full_wall_s": ("est_full_s", "est_full_wall_ci_s", "{:.1f}"),
           "final_acc": ("final_acc", "final_acc_ci", "{:.3f}"),
           "edge_exit_acc": ("edge_exit_acc", "edge_exit_acc_ci", "{:.3f}"),
           **{f"gain_vs_{b}": (f"gain_vs_{b}", f"gain_vs_{b}_ci", "{:+.0%}") for b in BASELINES}}
MIN_REPS_FOR_CI = 3


def with_ci(value: float, ci: float, fmt: str) -> str:
    """'81.4 ± 2.5' ('-' for a missing value, '± n/a' for a missing CI)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = fmt.format(value)
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return text + " ± n/a"
    return text + " ± " + fmt.format(ci).lstrip("+")


def per_case(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per case x repetition, figures as 'value ± CI' strings."""
    out = summary[[c for c in CASE_KEYS + ["rep", "status", "steps", "wall_s"] if c in summary]].copy()
    for col, (name, ci, fmt) in FIGURES.items():
        if col in summary and summary[col].notna().any():
            cis = summary[ci] if ci in summary else pd.Series(math.nan, index=summary.index)
            out[name] = [with_ci(v, c, fmt) for v, c in zip(summary[col], cis)]
    for col in ("pipeline_eff", "predicted_full_s", "predicted_full_err"):
        if col in summary and summary[col].notna().any():
            out[col] = summary[col]
    return out


def across_repetitions(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per case: median over repetitions, 95% CI over them (t), n repetitions."""
    rows = []
    ok = summary[summary["status"] == "ok"].assign(link=summary["link"].fillna("-"))
    for key, group in ok.groupby(CASE_KEYS, sort=False, dropna=False):
        row = dict(zip(CASE_KEYS, key), reps=len(group))
        for col, (name, ci_col, fmt) in FIGURES.items():
            values = [v for v in group.get(col, pd.Series(dtype=float)) if v == v]
            if values:
                ci = mean_ci(values)[1] if len(values) >= MIN_REPS_FOR_CI else math.nan
                if len(set(values)) == 1 and ci_col in group:      # measured once, repeated
                    ci = float(group[ci_col].max())
                row[name] = with_ci(float(pd.Series(values).median()), ci, fmt)
        rows.append(row)
    return pd.DataFrame(rows)


def run_notes(summary: pd.DataFrame) -> list[str]:
    """What the figures are: where runtimes and accuracies come from, paced overruns, what ±
    means, how gains are taken (one line each, every kind of source said once)."""
    ok = summary[summary["status"] == "ok"]
    sources = ok["runtime_source"].dropna().str.replace(
        r"from \d+ measured", "from M measured", regex=True)
    clauses = list(dict.fromkeys(c for s in sources for c in s.split("; ")))
    by_source = ok.dropna(subset=["acc_source"]).groupby("acc_source", sort=False)["method"]
    lines = [f"runtime: {'; '.join(clauses)} (M per case: the 'steps' column)",
             "accuracy: " + "; ".join(f"{', '.join(dict.fromkeys(methods))}: {source}"
                                      for source, methods in by_source)]
    if "paced_steps" in ok and ok["paced_steps"].sum() > 0:
        lines.append(f"paced compute: {int(ok['pace_overruns'].sum())} of "
                     f"{int(ok['paced_steps'].sum())} steps overran their target (their real "
                     f"compute took longer; the step then lasted its real time)")
    if "modelled_steps" in ok and ok["modelled_steps"].sum() > 0:
        over = int(ok["modelled_overruns"].sum())
        lines.append(f"modelled compute: {int(ok['modelled_steps'].sum())} steps waited their "
                     f"modelled time" + (f"; {over} lasted longer, by at most "
                     f"{1e3 * ok['modelled_excess_max_s'].max():.3f} ms (the harness's own "
                     f"bookkeeping of a step, beyond a modelled step that short)" if over else ""))
    return lines + converged_notes(ok) + [
        "± is a 95% CI: runtime from the steady interval's batch means, gain from both "
        "runtimes (delta method), accuracy from the test-set size (Wilson)",
        "gains: 1 - T(hierarchical)/T(baseline) on full-budget estimates, same run, same link "
        "(gain_vs_*_window in summary.csv: measured windows)"]


def converged_notes(ok: pd.DataFrame) -> list[str]:
    """One line per model: the converged accuracy this machine's accuracy study measured for
    the run's methods (median ± 95% CI across seeds; hierarchical's gap paired by seed)."""
    if "conv_final_acc" not in ok or ok["conv_final_acc"].isna().all():
        return []
    lines = []
    for (arch, split), group in ok.dropna(subset=["conv_final_acc"]).groupby(["arch", "split"],
                                                                              sort=False):
        first = group.drop_duplicates("method")
        parts = []
        for r in first.itertuples():
            text = f"{r.method} {with_ci(r.conv_final_acc, r.conv_final_acc_ci, '{:.3f}')}"
            if r.method == "hierarchical" and pd.notna(r.conv_gap):
                text += (f" (gap {with_ci(100 * r.conv_gap, 100 * r.conv_gap_ci, '{:+.2f}')} "
                         f"points, paired by seed)")
            parts.append(text)
        lines.append(f"converged accuracy, {arch} at {split} "
                     f"({int(first['conv_seeds'].iloc[0])} seeds, this machine's accuracy "
                     f"study): {'; '.join(parts)}")
    sources = ok["conv_source"].dropna().unique() if "conv_source" in ok else []
    return lines + [f"converged accuracy from: {source}" for source in sources]


def part_label(r: dict) -> str:
    """' (whole network)' for a probe round of the whole network (with the split it was
    measured at when another split's round is reused), '' for a part."""
    if r["part"] != "full":
        return ""
    return (f" (whole network, measured with {r['measured_with']})" if "measured_with" in r
            else " (whole network)")


def factor_lines(factors: dict) -> list[str]:
    """'compute under the CPU shares, vgg16@conv7, both at once: edge 300 ms/batch measured,
    216 modelled (x1.39), cloud ...' per (model, split) and round."""
    return [f"compute under the CPU shares, {pair}, {name}: " + ", ".join(
                f"{role}{part_label(r)} "
                f"{r['measured_s'] * 1e3:.4g} ms/batch measured, {r['model_s'] * 1e3:.4g} "
                f"modelled (x{r['factor']:.2f})" for role, r in roles.items())
            for pair, rounds in factors.items() for name, roles in rounds.items()]
