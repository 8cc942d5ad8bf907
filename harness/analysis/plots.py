"""Figures of one run, drawn only from its saved results (summary.csv and the JSONL events).

    python -m harness.analysis.plots RUN_DIR [--partial]

Each figure is a pure function, DataFrame in, Figure out; `make_all` writes them all as PNG and
SVG into RUN_DIR/plots/. Failed cases are gaps marked with a grey "×", never zero-height bars.
Reads files only (no torch, no runner), so it runs on a laptop.
"""
from __future__ import annotations

import sys
from itertools import cycle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window; must precede the pyplot import
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from harness.analysis.style import (BASELINES, DIRECTIONS, DPI, LANES, LINK_MARKERS,  # noqa: E402
                                    MAX_STEPS, MIB, REQUIRED, _first_per_method, _grouped_bars,
                                    ci_table,
                                    _legend, _methods, _panels, _plain_log, _prepare, link_order,
                                    style)
from harness.analysis.totals import load_events, undilated  # noqa: E402
from harness.errors import HarnessError  # noqa: E402

def fig_runtime(summary: pd.DataFrame) -> plt.Figure:
    """Median training runtime per method, grouped by link, one panel per arch."""
    df, ok = _prepare(summary)
    links, methods = link_order(df["link"]), _methods(df["method"])
    extrapolated = bool(ok["extrapolated"].any())
    title = ("Training runtime per method and link\nmedian over repetitions, whiskers = 95% CI; "
             "× = failed")
    if extrapolated:
        title += "\nhatched = estimated for the full run from the measured batches"
    fig, axes = _panels(df, title)
    for name, ax in axes.items():
        groups = ok[ok["panel"] == name].groupby(["link", "method"])
        table = groups["runtime_s"].median().unstack().reindex(index=links, columns=methods)
        hatch = groups["extrapolated"].any().unstack().reindex(index=links, columns=methods)
        errors = ci_table(ok[ok["panel"] == name], "link", "method", "runtime_s",
                          "est_full_wall_ci_s")
        _grouped_bars(ax, table, {m: style(m) for m in methods}, hatch, errors)
        ax.set(title=name, xlabel="link profile", ylabel="training time (s)"
               + (", extrapolated where hatched" if extrapolated else ""))
    _legend(fig, methods)
    return fig


def fig_gain(summary: pd.DataFrame) -> plt.Figure:
    """Runtime gain of hierarchical over split, cloud-only and edge-only, in percent, per link."""
    df, ok = _prepare(summary)
    hier, links = ok[ok["method"] == "hierarchical"], link_order(df["link"])
    fig, axes = _panels(df, "Runtime gain of hierarchical training over each baseline\n"
                            "median over repetitions, whiskers = 95% CI; positive = "
                            "hierarchical faster")
    styles = {b: {**style(b), "label": "vs " + style(b)["label"]} for b in BASELINES}
    for name, ax in axes.items():
        part = hier[hier["panel"] == name]
        table = part.groupby("link")[[f"gain_vs_{b}" for b in BASELINES]].median() * 100
        errors = pd.DataFrame({b: ci_table(part, "link", None, f"gain_vs_{b}", f"gain_vs_{b}_ci", 100)
                               for b in BASELINES}) if len(part) else None
        _grouped_bars(ax, table.set_axis(list(BASELINES), axis=1).reindex(links), styles,
                      errors=errors)
        for bars in ax.containers:
            if isinstance(bars, BarContainer):
                ax.bar_label(bars, fmt="%.0f%%", fontsize=7, padding=2)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.yaxis.set_major_formatter(PercentFormatter())
        ax.margins(y=0.15)
        ax.set(title=name, xlabel="link profile", ylabel="gain = 1 − t_hier / t_baseline (%)")
    _legend(fig, extra=[Patch(color=s["color"], label=s["label"]) for s in styles.values()])
    return fig


def fig_accuracy_vs_time(summary: pd.DataFrame) -> plt.Figure:
    """Final-exit accuracy against runtime per method and link; hollow = the edge exit."""
    df, ok = _prepare(summary)
    links, methods = link_order(df["link"]), _methods(df["method"])
    markers = dict(zip(links, cycle(LINK_MARKERS)))
    cases = (ok.groupby(["panel", "method", "link"], as_index=False)
             [["runtime_s", "final_acc", "edge_exit_acc"]].median())
    fig, axes = _panels(df, "Accuracy vs training time\nmedian over repetitions; "
                            "filled = final exit, hollow = hierarchical's edge exit")
    for name, ax in axes.items():
        for row in cases[cases["panel"] == name].itertuples():
            color, marker = style(row.method)["color"], markers[row.link]
            ax.scatter(row.runtime_s, 100 * row.final_acc, color=color, marker=marker, s=55)
            if np.isfinite(row.edge_exit_acc):
                ax.scatter(row.runtime_s, 100 * row.edge_exit_acc, facecolors="none",
                           edgecolors=color, marker=marker, s=55, linewidths=1.5)
                ax.plot([row.runtime_s] * 2, [100 * row.edge_exit_acc, 100 * row.final_acc],
                        color=color, linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        ax.grid(alpha=0.3)
        extra = ok.loc[ok["panel"] == name, "extrapolated"].any()
        ax.set(title=name, xlabel="training time (s, log scale"
               + ("; extrapolated where the run was cut short)" if extra else ")"),
               ylabel="test accuracy (%)")
    _legend(fig, methods, markers)
    return fig


def _timeline_spans(events: pd.DataFrame, max_steps: int) -> tuple[pd.DataFrame, bool]:
    """Compute/send spans relative to the first of them, cut to the first `max_steps` steps."""
    spans = events[events["event"].isin(["compute", "send"]) & events["t_start"].notna()]
    steps = sorted(spans["step"].dropna().unique())
    if cut := len(steps) > max_steps:
        spans = spans[spans["step"].isin(steps[:max_steps])]
    t0 = spans["t_start"].min()
    return spans.assign(t_start=spans["t_start"] - t0, t_end=spans["t_end"] - t0), cut


def _draw_lanes(ax, spans: pd.DataFrame, color: str) -> None:
    """One row per stage; consecutive steps alternate shade, a backward pass is hatched."""
    backward = spans.get("phase", pd.Series(None, spans.index, object)).eq("backward")
    for lane, (role, event, _) in enumerate(LANES):
        rows = spans[(spans["role"] == role) & (spans["event"] == event)]
        for hatch, part in (("", rows[~backward[rows.index]]), ("///", rows[backward[rows.index]])):
            shade = [to_rgba(color, 0.45 if int(s) % 2 else 1.0) for s in part["step"].fillna(0)]
            ax.barh([lane] * len(part), part["t_end"] - part["t_start"], left=part["t_start"],
                    height=0.6, color=shade, linewidth=0.6, hatch=hatch,
                    edgecolor="black" if hatch else color)  # hatch takes the edge colour
    ax.set_yticks(range(len(LANES)), [label for *_, label in LANES])
    ax.set_ylim(len(LANES) - 0.4, -0.6)
    ax.grid(axis="x", alpha=0.3)


def fig_timeline(events_by_method: dict[str, pd.DataFrame], title: str,
                 max_steps: int = MAX_STEPS) -> plt.Figure:
    """Per-batch Gantt chart of each stage's busy spans (aligned clocks), one panel per method."""
    methods = [m for m in _methods(events_by_method) if not events_by_method[m].empty]
    if not methods:
        return _note_figure(title, "no events to draw")
    fig, axes = plt.subplots(len(methods), 1, figsize=(11, 1.2 + 1.5 * len(methods)),
                             sharex=True, layout="constrained", squeeze=False)
    truncated = False
    for ax, method in zip(axes[:, 0], methods):
        spans, cut = _timeline_spans(events_by_method[method], max_steps)
        truncated |= cut
        _draw_lanes(ax, spans, style(method)["color"])
        ax.set_title(style(method)["label"], loc="left", fontsize=10, color=style(method)["color"])
    fig.suptitle(f"{title}{f', first {max_steps} steps' if truncated else ''}\n"
                 "stacked stages = pipelined overlap; staircase = stop-and-wait")
    axes[-1, 0].set_xlabel("time since the first compute or send (s, edge clock)")
    _legend(fig, extra=[Patch(facecolor="0.3", label="even step"),
                        Patch(facecolor="0.75", label="odd step"),
                        Patch(facecolor="white", edgecolor="0.3", hatch="///",
                              label="backward pass")])
    return fig


def fig_bytes(summary: pd.DataFrame) -> plt.Figure:
    """Bytes per direction and raw input bytes reaching the cloud, per method, for one link."""
    df, ok = _prepare(summary)
    first, methods = _first_per_method(ok), _methods(df["method"])
    moved = first[[col for col, _, _ in DIRECTIONS]].to_numpy(dtype=float)
    moved = moved[moved > 0]
    log = moved.size > 0 and moved.max() > 20 * moved.min()  # else linear reads better
    fig, axes = _panels(df, f"Bytes moved over the run per direction\nlink "
                            f"{', '.join(link_order(first['link']))} (bytes do not depend on it)")
    x = np.arange(len(methods))
    for name, ax in axes.items():
        part = first[first["panel"] == name].set_index("method").reindex(methods)
        for i, (col, _, hatch) in enumerate(DIRECTIONS):
            vals, pos = part[col].to_numpy(dtype=float) / MIB, x + (i - 1) * 0.26
            have = vals > 0
            bars = ax.bar(pos[have], vals[have], 0.26, hatch=hatch, edgecolor="white",
                          color=[style(m)["color"] for m in np.array(methods)[have]])
            ax.bar_label(bars, [f"{v / 1024:.3g} GiB" if v >= 1024 else f"{v:.3g} MiB"
                                for v in vals[have]], fontsize=7, rotation=90, padding=2)
            for p, v in zip(pos[~have], vals[~have]):
                ax.text(p, 0, "0" if v == 0 else "×", ha="center", va="bottom", color="0.4",
                        fontsize=8, transform=ax.get_xaxis_transform())
        ax.set_yscale("log" if log else "linear")
        ax.margins(y=0.3)
        if log:
            _plain_log(ax.yaxis)
        ax.set_xlim(-0.5, len(methods) - 0.5)
        ax.set_xticks(x, [style(m)["label"].replace(" (", "\n(") for m in methods], fontsize=8)
        ax.set(title=name, ylabel="MiB over the run" + (" (log scale)" if log else ""))
    _legend(fig, extra=[Patch(facecolor="0.5", hatch=h, edgecolor="white", label=lab)
                        for _, lab, h in DIRECTIONS])
    return fig


def fig_predicted(summary: pd.DataFrame) -> plt.Figure:
    """Measured against model-predicted wall time, with y = x and a ±10% band."""
    points = _prepare(summary)[1].dropna(subset=["wall_s", "predicted_s"])
    points = points[(points["wall_s"] > 0) & (points["predicted_s"] > 0)]
    title = "Measured vs model-predicted training time"
    if points.empty:
        return _note_figure(title, "no predictions in this run")
    within = int(((points["wall_s"] / points["predicted_s"] - 1).abs() <= 0.10).sum())
    fig, ax = plt.subplots(figsize=(7, 6.2), layout="constrained")
    fig.suptitle(f"{title}\n{within} of {len(points)} runs within ±10%")
    links, methods = link_order(points["link"]), _methods(points["method"])
    markers = dict(zip(links, cycle(LINK_MARKERS)))
    for (method, link), g in points.groupby(["method", "link"]):
        ax.scatter(g["predicted_s"], g["wall_s"], color=style(method)["color"],
                   marker=markers[link], s=40, zorder=3)
    vals = points[["wall_s", "predicted_s"]].to_numpy()
    line = np.geomspace(vals.min() / 1.3, vals.max() * 1.3, 50)
    ax.plot(line, line, color="black", linewidth=0.8)
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="0.6", alpha=0.3)
    ax.set(xscale="log", yscale="log", xlim=(line[0], line[-1]), ylim=(line[0], line[-1]),
           xlabel="predicted wall time (s)", ylabel="measured wall time (s)")
    for axis in (ax.xaxis, ax.yaxis):
        _plain_log(axis)
    _legend(fig, methods, markers, [Patch(color="0.6", alpha=0.3, label="±10% band"),
                                    Line2D([], [], color="black", label="measured = predicted")])
    return fig


def _note_figure(title: str, note: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    fig.suptitle(title)
    ax.axis("off")
    ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    return fig


def timeline_inputs(summary: pd.DataFrame, run_dir: Path) -> tuple[dict, str]:
    """Aligned events of one ok case per method: same arch/split, first link, rep 0 preferred."""
    ok = _prepare(summary)[1]
    if ok.empty:
        return {}, "Per-batch timeline"
    panel = ok.groupby("panel")["method"].nunique().idxmax()  # the arch with most methods ok
    picks = _first_per_method(ok[ok["panel"] == panel])
    events = {row.method: undilated(load_events(Path(run_dir) / str(row.case)),
                                     getattr(row, "dilation", 1.0)) for row in picks.itertuples()}
    ks = sorted({float(k) for k in picks.get("dilation", pd.Series([1.0])).fillna(1.0)} - {1.0})
    dilated = f" (dilated x{', x'.join(f'{k:g}' for k in ks)}: times / k)" if ks else ""
    return events, f"Per-batch timeline: {panel}, link {', '.join(link_order(picks['link']))}{dilated}"


def read_summary(run_dir: Path) -> pd.DataFrame:
    """RUN_DIR/summary.csv, or a HarnessError naming the file and what is wrong with it."""
    path = Path(run_dir) / "summary.csv"
    if not path.is_file():
        raise HarnessError(f"no results to plot: {path} does not exist")
    try:
        summary = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise HarnessError(f"{path} is empty") from None
    if missing := [c for c in REQUIRED if c not in summary]:
        raise HarnessError(f"{path} lacks column(s): {', '.join(missing)}")
    return summary


def figures(summary: pd.DataFrame, run_dir: str | Path, partial: bool = False):
    """Yield (name, Figure) for every figure of a run; the caller closes each one."""
    makers = {"runtime": fig_runtime, "gain": fig_gain, "accuracy_vs_time": fig_accuracy_vs_time,
              "timeline": lambda s: fig_timeline(*timeline_inputs(s, Path(run_dir))),
              "bytes": fig_bytes, "predicted": fig_predicted}
    from harness.analysis.curveplot import extra_figures    # varying links, accuracy curves
    makers.update(extra_figures(summary, Path(run_dir)))
    if summary.get("final_acc", pd.Series([0.0])).isna().all():   # none measured: no figure
        del makers["accuracy_vs_time"]
    for name, make in makers.items():
        fig = make(summary)
        if partial:  # on the headline, before any explanatory lines
            headline, *rest = fig.get_suptitle().split("\n")
            fig.suptitle("\n".join([headline + " (partial run)", *rest]))
        yield name, fig


def make_all(run_dir: str | Path, out_dir: str | Path | None = None,
             partial: bool = False) -> list[Path]:
    """Write every figure as PNG and SVG (default RUN_DIR/plots/); return the paths written."""
    summary = read_summary(Path(run_dir))
    out = Path(out_dir) if out_dir else Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures(summary, run_dir, partial):
        try:
            for ext in ("png", "svg"):
                paths.append(out / f"{name}.{ext}")
                fig.savefig(paths[-1], dpi=DPI)
        finally:
            plt.close(fig)
    return paths


if __name__ == "__main__":
    try:  # one-line errors, like the CLI
        written = make_all(sys.argv[1], partial="--partial" in sys.argv[2:])
    except (HarnessError, IndexError) as err:
        sys.exit(f"error: {err}" if isinstance(err, HarnessError)
                 else "usage: python -m harness.analysis.plots RUN_DIR [--partial]")
    print(f"wrote {len(written)} files to {written[0].parent}")
