"""The link over time: each method's progress against a time-varying link's capacity.

    python -c "from harness.analysis.linkplot import fig_link_time; help(fig_link_time)"

Drawn for runs whose cases saw a trace-driven link or outages (each such case keeps its
`schedule.json`: the time origin of the link's schedule on the workers' clock, and what the
delay daemons served). One panel per link: batches completed against seconds since the case
started the link's schedule, one line per method (a flat stretch is the method waiting: the
edge's queue full, TCP backing off, the queue draining); on a second axis the capacity each
varying direction offered (frame Mbit/s per `BIN_S`); outages shaded. Times under dilation
are divided by k.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import Patch

from harness.analysis.steady import completion_times
from harness.analysis.style import _methods, link_order, style
from harness.analysis.totals import load_events
from harness.catalog import FINAL_STAGE
from harness.emulation.tracelink import OPPORTUNITY_B, link_of

BIN_S = 0.5                      # capacity drawn per this many (undilated) seconds
DIRECTION_STYLE = {"up": ("tab:purple", "-"), "down": ("tab:olive", "--")}  # no method's colour


def schedules(summary: pd.DataFrame, run_dir: Path) -> dict:
    """link -> {method: (schedule, events)} for the first ok case per method that kept one."""
    out: dict = {}
    ok = summary[summary["status"] == "ok"] if "status" in summary else summary
    for row in ok.sort_values("rep").itertuples() if "rep" in ok else ok.itertuples():
        case_dir = Path(run_dir) / str(row.case)
        path = case_dir / "schedule.json"
        if not path.is_file() or row.method in out.get(row.link, {}):
            continue
        out.setdefault(row.link, {})[row.method] = (json.loads(path.read_text()),
                                                     load_events(case_dir))
    return out


def capacity(spec: dict, seconds: float, scale: float) -> tuple[list[float], list[float]]:
    """(bin starts, Mbit/s) of a daemon link over its first `seconds` (undilated), outages in."""
    link = link_of(spec)
    link.restart(0.0, outages=True)
    starts = [i * BIN_S for i in range(int(seconds / BIN_S) + 1)]
    rates = [link.capacity_b(t * scale, (t + BIN_S) * scale) * 8 / BIN_S / 1e6 for t in starts]
    return starts, rates


def fig_link_time(by_link: dict) -> plt.Figure:
    """One panel per link: batches completed per method, capacity per direction, outages."""
    links = link_order(list(by_link))
    fig, axes = plt.subplots(len(links), 1, figsize=(11, 1.5 + 3.2 * len(links)),
                             layout="constrained", squeeze=False)
    for ax, link in zip(axes[:, 0], links):
        cases, longest, schedule = by_link[link], 1.0, None
        for method in _methods(cases):
            schedule, events = cases[method]
            k = float(schedule.get("scale") or 1.0)
            role, phase = FINAL_STAGE[method]
            spans = events[(events["role"] == role) & (events["event"] == "compute")]
            if phase is not None and "phase" in spans:
                spans = spans[spans["phase"] == phase]
            done = [(t - schedule["origin_monotonic"]) / k
                    for t in completion_times(zip(spans["step"], spans["t_end"]))]
            if done:
                longest = max(longest, done[-1])
                ax.step([0.0, *done], range(len(done) + 1), where="post",
                        color=style(method)["color"], label=style(method)["label"])
        ax.set(title=f"link {link}", xlabel="seconds since the case started the link's schedule",
               ylabel="batches completed")
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        for direction in ("up", "down"):
            spec = schedule.get(direction) if schedule else None
            if spec:
                colour, dash = DIRECTION_STYLE[direction]
                starts, rates = capacity(spec, longest, float(spec["scale"]))
                twin.step(starts, [r * spec["scale"] for r in rates], where="post", color=colour,
                          linestyle=dash, linewidth=0.9, alpha=0.8, label=f"capacity {direction}")
                for start, duration in spec["outages"]:
                    ax.axvspan(start, start + duration, color="tab:red", alpha=0.12)
        twin.set_ylabel(f"capacity (Mbit/s of {OPPORTUNITY_B}-byte frames, per {BIN_S:g} s)")
        twin.set_ylim(bottom=0)
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        if any(s for c in cases.values() for s in c[0].get("outages", [])):
            handles.append(Patch(color="tab:red", alpha=0.12, label="outage"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=8)
    fig.suptitle("The link over time: progress of each method against the capacity it was "
                 "offered\n(flat = waiting: queue full, TCP backing off, queue draining)")
    return fig
