"""An accuracy study's figures: accuracy against the separation point, and runtime against
accuracy per link with the Pareto front (pure functions of the study's tables).

    python run_bench.py plot results/accuracy/<run>
"""
from __future__ import annotations

import math

import pandas as pd

from harness.analysis.style import DPI, link_order, plt, style
from harness.catalog import KEEPS_DATA, SPLIT_POINTS

HEAD_MARKERS = {"dgl": "o", "linear": "s", "mlp": "^"}


def _order(arch: str, splits) -> list[str]:
    known = list(SPLIT_POINTS.get(arch, ()))
    return sorted(set(splits), key=lambda s: known.index(s) if s in known else len(known))


def fig_accuracy_vs_split(summary: pd.DataFrame) -> plt.Figure:
    """Final-exit (solid) and edge-exit (dashed) accuracy per split point and exit head, one
    panel per model; the end-to-end accuracy as a band (median ± 95% CI across seeds)."""
    archs = list(dict.fromkeys(summary["arch"]))
    fig, axes = plt.subplots(1, len(archs), figsize=(5.5 * len(archs), 4.2), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        rows = summary[summary["arch"] == arch]
        hier = rows[rows["kind"] == "hierarchical"]
        order = _order(arch, hier["split"])
        e2e = rows[rows["kind"] == "end-to-end"]
        if not e2e.empty:
            r = e2e.iloc[0]
            ci = 0.0 if pd.isna(r["final_acc_ci"]) else r["final_acc_ci"]
            ax.axhspan(100 * (r["final_acc"] - ci), 100 * (r["final_acc"] + ci),
                       color="0.85", label=f"end-to-end {100 * r['final_acc']:.2f}%")
            ax.axhline(100 * r["final_acc"], color="0.4", lw=1)
        for head, group in hier.groupby("exit_head", sort=False):
            g = group.set_index("split").reindex(order)
            x = range(len(order))
            marker = HEAD_MARKERS.get(head, "D")
            line = ax.errorbar(x, 100 * g["final_acc"], yerr=100 * g["final_acc_ci"].fillna(0),
                               marker=marker, capsize=3, label=f"{head} head: final exit")
            ax.errorbar(x, 100 * g["edge_exit_acc"], yerr=100 * g["edge_exit_acc_ci"].fillna(0),
                        marker=marker, capsize=3, ls="--", mfc="none",
                        color=line[0].get_color(), label=f"{head} head: edge exit")
        ax.set_xticks(range(len(order)), order, rotation=30)
        ax.set_xlabel("separation point (last block on the edge)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{arch}: hierarchical training, median ± 95% CI over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.set_dpi(DPI)
    return fig


def pareto(points: pd.DataFrame) -> pd.DataFrame:
    """The points no other point beats on both runtime (lower) and accuracy (higher)."""
    pts = points.sort_values(["runtime_s", "acc"], ascending=[True, False])
    front, best = [], -math.inf
    for _, p in pts.iterrows():
        if p["acc"] > best:
            front.append(p)
            best = p["acc"]
    return pd.DataFrame(front)


def tradeoff_points(summary: pd.DataFrame, runtimes: pd.DataFrame) -> pd.DataFrame:
    """(arch, link, method, split, head, runtime_s, acc): hierarchical at its own accuracy,
    the end-to-end methods at the end-to-end accuracy (the same weights at every split)."""
    rows = []
    e2e = {r.arch: r.final_acc for r in summary[summary["kind"] == "end-to-end"].itertuples()}
    hier = {(r.arch, r.split, r.exit_head): r.final_acc
            for r in summary[summary["kind"] == "hierarchical"].itertuples()}
    for r in runtimes.itertuples():
        if r.method == "hierarchical":
            acc = hier.get((r.arch, r.split, r.exit_head))
        else:
            acc = e2e.get(r.arch)
        if acc is None or pd.isna(acc):
            continue
        rows.append({"arch": r.arch, "link": r.link, "method": r.method, "split": r.split,
                     "exit_head": r.exit_head, "runtime_s": r.predicted_s, "acc": acc})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    one = df["method"].isin(["cloud", "edge"])       # split-independent: one point each
    return pd.concat([df[~one], df[one].drop_duplicates(["arch", "link", "method"])])


def fig_runtime_accuracy(summary: pd.DataFrame, runtimes: pd.DataFrame) -> plt.Figure:
    """Per model and link: final accuracy against MODELLED runtime, one point per method and
    split; the Pareto front of the methods that keep raw data on the device."""
    points = tradeoff_points(summary, runtimes)
    archs = list(dict.fromkeys(points["arch"])) if not points.empty else []
    links = link_order(points["link"]) if not points.empty else []
    fig, axes = plt.subplots(max(1, len(archs)), max(1, len(links)),
                             figsize=(4.6 * max(1, len(links)), 3.9 * max(1, len(archs))),
                             squeeze=False)
    for i, arch in enumerate(archs):
        for j, link in enumerate(links):
            ax = axes[i][j]
            pts = points[(points["arch"] == arch) & (points["link"] == link)]
            for method, group in pts.groupby("method", sort=False):
                st = style(method)
                label = st["label"] + (" (uploads raw data)" if method == "cloud" else "")
                ax.scatter(group["runtime_s"], 100 * group["acc"], color=st["color"],
                           label=label, s=22, zorder=3,
                           marker="x" if method == "cloud" else "o")
                if method in ("hierarchical", "split"):
                    for _, p in group.iterrows():
                        tag = p["split"] + ("" if method == "split" else f"/{p['exit_head']}")
                        ax.annotate(tag, (p["runtime_s"], 100 * p["acc"]), fontsize=5,
                                    xytext=(2, 2), textcoords="offset points")
            front = pareto(pts[pts["method"].isin(KEEPS_DATA)])
            if not front.empty:
                ax.step(front["runtime_s"], 100 * front["acc"], where="post", color="black",
                        lw=1, marker="o", mfc="none", ms=9,
                        label="Pareto front (raw data stays on the device)")
            ax.set_xscale("log")
            ax.set_xlabel("runtime, s (MODELLED, not emulated)")
            ax.set_ylabel("final test accuracy (%)")
            ax.set_title(f"{arch} over {link}", fontsize=9)
            ax.grid(alpha=0.3)
    if archs and links:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7,
                   frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.set_dpi(DPI)
    return fig
