"""Accuracy against each link's time: one panel per model and link, one curve per method.

    python run_bench.py plot results/quick/<run>/       # plots/accuracy_curve.png

Drawn from `harness.analysis.tta.curves`: the accuracy pass's evaluations (every
`measure.curve_every` batches, off the clock) placed at the time each batch completed on that
link (measured, then the steady interval; tta.py says how). Solid: the final exit;
hierarchical's edge exit dashed. The band is the accuracy's 95% Wilson interval (test-set
sampling only); the scenario's `accuracy_targets` are dotted lines.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from harness.analysis.style import _methods, link_order, style
from harness.analysis.tta import curves, targets_of

EXIT_DASH = {"final": "-", "edge exit": "--"}


def fig_accuracy_curves(curve: pd.DataFrame, targets: tuple[float, ...]) -> plt.Figure:
    """Panels: rows = models, columns = links; repetition 0's curves (the accuracy is one
    training; repetitions differ only in their runtimes)."""
    curve = curve[curve["rep"] == curve["rep"].min()]
    archs = list(dict.fromkeys(curve["arch"]))
    links = link_order(curve["link"].dropna().unique())
    fig, axes = plt.subplots(len(archs), len(links), figsize=(4.2 * len(links) + 1.5,
                             3.4 * len(archs) + 1.2), layout="constrained", squeeze=False,
                             sharey=True)
    methods = _methods(curve["method"].unique())
    for (i, arch), (j, link) in ((a, b) for a in enumerate(archs) for b in enumerate(links)):
        ax = axes[i, j]
        here = curve[(curve["arch"] == arch) & (curve["link"] == link)]
        for (method, exit_), points in here.groupby(["method", "exit"], sort=False):
            points = points.sort_values("step")
            colour = style(method)["color"]
            ax.plot(points["t_s"], points["acc"], EXIT_DASH.get(exit_, ":"), color=colour,
                    marker=".", markersize=4, linewidth=1.4)
            ax.fill_between(points["t_s"], points["acc"] - points["acc_ci"],
                            points["acc"] + points["acc_ci"], color=colour, alpha=0.15,
                            linewidth=0)
        for target in targets:
            ax.axhline(target, color="black", linestyle=":", linewidth=0.8)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.set_title(f"{arch}, link {link}", fontsize=10)
        if i == len(archs) - 1:
            ax.set_xlabel("seconds of training on this link")
        if j == 0:
            ax.set_ylabel("test accuracy")
    handles = [Line2D([], [], color=style(m)["color"], label=style(m)["label"]) for m in methods]
    handles += [Line2D([], [], color="black", linestyle="--", label="edge exit (hierarchical)"),
                Line2D([], [], color="black", linestyle=":", linewidth=0.8,
                       label="accuracy target")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    fig.suptitle("Accuracy over training time on each link (evaluated off the clock; "
                 "band = 95% CI of the test-set accuracy)")
    return fig


def extra_figures(summary: pd.DataFrame, run_dir: Path) -> dict:
    """Figures only some runs have: the link over time (time-varying links) and the accuracy
    curves (an accuracy pass that recorded them); name -> maker(summary)."""
    from harness.analysis.linkplot import fig_link_time, schedules
    makers = {}
    if by_link := schedules(summary, run_dir):
        makers["link_time"] = lambda s: fig_link_time(by_link)
    if not (curve := curves(run_dir, summary)).empty:
        makers["accuracy_curve"] = lambda s: fig_accuracy_curves(curve, targets_of(run_dir))
    return makers
