"""The report's answer: per link, the fastest method that keeps raw data on the device, with
its accuracy; cloud-only beside it as the reference that uploads every raw input.

    python -c "from harness.analysis.answer import answer"

Cloud-only is often fastest (Fashion-MNIST's raw image is 784 bytes, a middle split's
activations more), but it ships every raw input to the cloud, which is what the method under
test exists to avoid (DESIGN.md section 10): the answer ranks hierarchical, split and
edge-only, and states cloud-only's runtime as a reference, labelled.
"""
from __future__ import annotations

from html import escape

import pandas as pd

from harness.analysis.tables import with_ci
from harness.catalog import BASELINES, KEEPS_DATA


def esc(value) -> str:
    """Text made safe for the page."""
    return escape(str(value), quote=True)


def _accuracy_text(row: pd.Series) -> str:
    """A method's accuracy as the answer states it: converged across seeds with hierarchical
    training's paired gap where this machine's study covers it, else the short-budget figure,
    named as such."""
    conv = row.get("conv_final_acc")
    if conv is not None and conv == conv:
        text = (f"converged accuracy {with_ci(conv, row.get('conv_final_acc_ci'), '{:.3f}')} "
                f"across {int(row.get('conv_seeds'))} seeds")
        gap = row.get("conv_gap")
        if row.get("method") == "hierarchical" and gap is not None and gap == gap:
            text += (f", {with_ci(100 * gap, 100 * row.get('conv_gap_ci', float('nan')), '{:+.2f}')}"
                     f" points against end-to-end training (paired by seed)")
        return text
    acc = row.get("final_acc")
    if acc is None or acc != acc:
        return "accuracy not measured"
    return f"short-budget accuracy {acc:.3f} (one seed, not converged)"


def answer(summary: pd.DataFrame) -> list[str]:
    """Per link (and model): the fastest method that keeps raw data on the device, its runtime
    with CI and its accuracy (converged where this machine's study covers it, paired gap to
    end-to-end); cloud-only as the reference that uploads every raw input."""
    ok = summary[summary["status"] == "ok"]
    col = "est_full_wall_s" if "est_full_wall_s" in ok else "wall_s"
    lines = []
    for (arch, link), group in ok.groupby(["arch", "link"], sort=False, dropna=False):
        runtimes = group.groupby("method")[col].median().dropna()
        private = runtimes[runtimes.index.isin(KEEPS_DATA)]
        if private.empty:
            continue
        best = private.idxmin()
        row = group[group["method"] == best].iloc[0]
        text = (f"<b>{esc(link)}</b> ({esc(arch)}, split {esc(row.get('split'))}): fastest "
                f"method that keeps raw data on the device is <b>{esc(best)}</b>, "
                f"{with_ci(runtimes[best], row.get('est_full_wall_ci_s'), '{:.1f}')} s, "
                f"{esc(_accuracy_text(row))}")
        hier = group[group["method"] == "hierarchical"]
        if not hier.empty:
            h = hier.iloc[0]
            gains = [f"{b}: {with_ci(h.get(f'gain_vs_{b}'), h.get(f'gain_vs_{b}_ci'), '{:+.0%}')}"
                     for b in BASELINES if f"gain_vs_{b}" in h and h.get(f"gain_vs_{b}") == h.get(f"gain_vs_{b}")]
            if gains:
                text += f". Hierarchical training's runtime gain: {esc(', '.join(gains))}"
        if "cloud" in runtimes:
            c = group[group["method"] == "cloud"].iloc[0]
            text += (f". Reference, <b>cloud-only uploads every raw input to the cloud</b>: "
                     f"{with_ci(runtimes['cloud'], c.get('est_full_wall_ci_s'), '{:.1f}')} s "
                     f"({runtimes['cloud'] / runtimes[best] - 1:+.0%} against {esc(best)})")
        lines.append(text + ".")
    return lines


