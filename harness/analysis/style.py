"""One style table for every figure (method colours and labels, link order and markers), and
the drawing helpers the figures share.

    python -c "from harness.analysis.style import METHOD_STYLE; print(METHOD_STYLE)"
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window; must precede the pyplot import
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from harness.analysis.steady import mean_ci  # noqa: E402
from harness.catalog import BASELINES  # noqa: E402

METHOD_STYLE = {
    "hierarchical": {"color": "#d62728", "label": "hierarchical (early exit)"},
    "split": {"color": "#1f77b4", "label": "split learning"},
    "cloud": {"color": "#7f7f7f", "label": "cloud-only"},
    "edge": {"color": "#2ca02c", "label": "edge-only"},
}
LINK_ORDER = ("3g", "4g", "wifi")
LINK_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LANES = (("edge", "compute", "edge compute"), ("edge", "send", "uplink"),
         ("cloud", "compute", "cloud compute"), ("cloud", "send", "downlink"))
DIRECTIONS = (("bytes_up_total", "up (edge → cloud)", ""),
              ("bytes_down_total", "down (cloud → edge)", "//"),
              ("raw_bytes_to_cloud", "raw input to cloud", ".."))
REQUIRED = ("case", "arch", "link", "method", "rep", "status", "wall_s")
OPTIONAL = ("runtime_source", "est_full_wall_s", "final_acc", "edge_exit_acc", "predicted_s",
            *(col for col, _, _ in DIRECTIONS), *(f"gain_vs_{b}" for b in BASELINES))
MAX_STEPS, MIB, DPI = 12, 2 ** 20, 120


def style(method: str) -> dict:
    """Colour and label of a method; an unknown method gets black and its own name."""
    return METHOD_STYLE.get(method, {"color": "black", "label": str(method)})


def link_order(links) -> list[str]:
    """Links present: 3g, 4g, wifi first, in that order, then the rest alphabetically."""
    present = {str(link) for link in links}
    return [k for k in LINK_ORDER if k in present] + sorted(present - set(LINK_ORDER))


def _prepare(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(all rows, ok rows), with text `link`, a `panel` (arch; split/codec if they vary) and
    `runtime_s` (the extrapolated full-run time where the summary says so)."""
    df = summary.copy()
    for col in (c for c in OPTIONAL if c not in df):
        df[col] = np.nan
    df["link"] = df["link"].astype("string").fillna("-").astype(str)  # a local run has none
    df["panel"] = df["arch"].astype(str)
    for col in ("split", "codec"):
        if col in df and df.groupby("arch")[col].nunique().max() > 1:
            df["panel"] = df["panel"] + " / " + df[col].astype(str)
    source = df["runtime_source"].astype(str)  # NaN becomes "nan": not extrapolated
    df["extrapolated"] = (source.str.contains("extrapolat|estimated")
                          & df["est_full_wall_s"].notna())
    df["runtime_s"] = df["wall_s"].where(~df["extrapolated"], df["est_full_wall_s"])
    return df, df[df["status"] == "ok"]


def _methods(names) -> list[str]:
    present = set(names)
    return [m for m in METHOD_STYLE if m in present] + sorted(present - set(METHOD_STYLE))


def _first_per_method(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per (panel, method): the first link in order, lowest repetition."""
    ranked = ok.assign(link_rank=pd.Categorical(ok["link"], link_order(ok["link"])))
    return ranked.sort_values(["link_rank", "rep"]).drop_duplicates(["panel", "method"])


def _panels(df: pd.DataFrame, title: str):
    """One subplot per panel name, side by side."""
    names = sorted(df["panel"].unique()) or ["(no cases)"]
    fig, axes = plt.subplots(1, len(names), figsize=(max(5.6 * len(names), 8.5), 4.8),
                             layout="constrained", squeeze=False)
    fig.suptitle(title)
    return fig, dict(zip(names, axes[0]))


def _legend(fig, methods=(), markers: dict | None = None, extra: tuple = ()) -> None:
    """One legend below the panels: method colours, then link markers, then extra handles."""
    handles = [Patch(color=style(m)["color"], label=style(m)["label"]) for m in methods]
    handles += [Line2D([], [], color="0.3", marker=v, linestyle="", label=f"link {k}")
                for k, v in (markers or {}).items()] + list(extra)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4),
               frameon=False)


def _plain_log(axis) -> None:
    """Log ticks written as plain numbers, as many per decade as the drawn range has room for."""
    lo, hi = axis.get_view_interval()
    decades = np.log10(hi / lo) if lo > 0 else 9.0
    axis.set_major_locator(LogLocator(subs=(1, 2, 3, 5) if decades < 1.5 else
                                      (1, 2, 5) if decades < 2.5 else (1,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def ci_of(group: pd.DataFrame, col: str, ci_col: str) -> float:
    """95% CI half-width of a group's median: over repetitions (t) when there are 3 or more,
    else the run's own CI for that figure (the widest of the group's)."""
    values = group[col].dropna()
    if len(values) >= 3 and values.nunique() > 1:
        return mean_ci(list(values))[1]
    return float(group[ci_col].max()) if ci_col in group and group[ci_col].notna().any() else np.nan


def ci_table(ok: pd.DataFrame, index: str, columns: str | None, col: str, ci_col: str,
             scale: float = 1.0) -> pd.DataFrame:
    """ci_of per (index, columns) cell, as a table shaped like the medians it goes with."""
    keys = [index] + ([columns] if columns else [])
    cis = ok.groupby(keys).apply(lambda g: ci_of(g, col, ci_col), include_groups=False) * scale
    return cis.unstack() if columns else cis


def _grouped_bars(ax, table: pd.DataFrame, styles: dict, hatch: pd.DataFrame | None = None,
                  errors: pd.DataFrame | None = None):
    """Bars of each column grouped by the index; a NaN cell is a grey '×' at the axis, no bar;
    `errors` (same shape) draws 95% CI whiskers where known."""
    width, x = 0.8 / max(len(table.columns), 1), np.arange(len(table.index))
    for i, series in enumerate(table.columns):
        pos = x + (i - (len(table.columns) - 1) / 2) * width
        vals = table[series].to_numpy(dtype=float)
        have = np.isfinite(vals)
        marked = hatch[series].eq(True).to_numpy() if hatch is not None else np.zeros_like(have)
        ax.bar(pos[have], vals[have], width, color=styles[series]["color"],
               label=styles[series]["label"], hatch=["//" if m else "" for m in marked[have]],
               edgecolor="white", linewidth=0.5)
        if errors is not None and series in errors:
            err = errors[series].reindex(table.index).to_numpy(dtype=float)
            show = have & np.isfinite(err)
            if show.any():
                ax.errorbar(pos[show], vals[show], yerr=err[show], fmt="none",
                            ecolor="black", elinewidth=0.8, capsize=2)
        for p in pos[~have]:
            ax.text(p, 0, "×", ha="center", va="bottom", color="0.5",
                    transform=ax.get_xaxis_transform())
    ax.set_xticks(x, table.index)
