"""Plots from a synthetic run: every file written, and the drawn numbers match the summary."""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis import plots
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parent.parent
LINKS = ("3g", "4g", "wifi")
# median wall seconds per (arch, method) on 3g, 4g, wifi; rep 1 is 2% slower for every method
WALL_S = {
    "vgg16": {"hierarchical": (60, 30, 12), "split": (140, 70, 25), "cloud": (200, 90, 30),
              "edge": (80, 80, 80)},
    "resnet18": {"hierarchical": (40, 22, 10), "split": (90, 45, 18), "cloud": (200, 90, 30),
                 "edge": (50, 50, 50)},
}
FAILED = {("resnet18", "split", "wifi", 0), ("resnet18", "split", "wifi", 1),
          ("vgg16", "cloud", "3g", 1)}
ACC = {"hierarchical": 0.71, "split": 0.73, "cloud": 0.74, "edge": 0.70}
STEPS, ACT_BYTES, RAW_BYTES = 100, 524_800, 393_216  # per batch: activations, raw images
C, U, CC, D = 0.10, 0.15, 0.05, 0.10  # seconds: edge compute, uplink, cloud compute, downlink
OFFSET_S = 5.0  # cloud clock - edge clock


def _row(arch, method, link, rep):
    failed = (arch, method, link, rep) in FAILED
    wall = np.nan if failed else WALL_S[arch][method][LINKS.index(link)] * (1 + 0.02 * rep)
    extrapolated = arch == "resnet18"
    up = {"hierarchical": ACT_BYTES, "split": ACT_BYTES, "cloud": RAW_BYTES, "edge": 0}[method]
    return {
        "scenario": "synthetic", "case": f"{arch}-{method}-{link}", "arch": arch,
        "split": "conv4" if arch == "vgg16" else "layer2.1", "codec": "fp32", "link": link,
        "method": method, "rep": rep, "status": "failed" if failed else "ok", "steps": STEPS,
        "batch_size": 64, "wall_s": wall, "est_full_wall_s": wall * 10 if extrapolated else wall,
        "runtime_source": "extrapolated linearly from 10 measured batches to 100"
        if extrapolated else "measured",
        "bytes_up_total": np.nan if failed else STEPS * up,
        "bytes_down_total": np.nan if failed else STEPS * (ACT_BYTES if method == "split" else 0),
        "raw_bytes_to_cloud": np.nan if failed else STEPS * (RAW_BYTES if method == "cloud" else 0),
        "final_acc": np.nan if failed or (method, link) == ("edge", "4g") else ACC[method],
        "edge_exit_acc": 0.62 if method == "hierarchical" and not failed else np.nan,
        "acc_source": "test set", "predicted_s": np.nan if failed else wall * 0.95,
    }


def make_summary() -> pd.DataFrame:
    """2 archs x 3 links x 4 methods x 2 reps, with gains computed like harness.analysis.summary."""
    df = pd.DataFrame([_row(a, m, k, r)
                       for a in WALL_S for k in LINKS for m in ACC for r in (0, 1)])
    walls = df.set_index(["arch", "link", "rep", "method"])["wall_s"]
    hier = df["method"] == "hierarchical"
    for base in plots.BASELINES:
        df[f"gain_vs_{base}"] = np.nan
        keys = zip(df.loc[hier, "arch"], df.loc[hier, "link"], df.loc[hier, "rep"])
        df.loc[hier, f"gain_vs_{base}"] = 1 - df.loc[hier, "wall_s"].to_numpy() / np.array(
            [walls[(a, k, r, base)] for a, k, r in keys])
    return df


def _spans(method: str, steps: int):
    """(role, event, step, t_start, t_end, extra) on each worker's own clock."""
    out, edge_free, up_free, cloud_free = [], 0.0, 0.0, 0.0
    for i in range(steps):
        if method == "split":  # stop and wait: forward, up, cloud, down, backward
            t = edge_free
            out += [("edge", "compute", i, t, t + C / 2, {"phase": "forward"}),
                    ("edge", "send", i, t + C / 2, t + C / 2 + U, {"kind": "batch"}),
                    ("cloud", "compute", i, t + C / 2 + U, t + C / 2 + U + CC, {}),
                    ("cloud", "send", i, t + C / 2 + U + CC, t + C / 2 + U + CC + D,
                     {"kind": "grad"}),
                    ("edge", "compute", i, t + C / 2 + U + CC + D, t + C + U + CC + D,
                     {"phase": "backward"})]
            edge_free = t + C + U + CC + D
        elif method == "edge":
            out.append(("edge", "compute", i, i * 2 * C, (i + 1) * 2 * C, {}))
        else:  # hierarchical and cloud-only are pipelined: the edge never waits for the cloud
            compute = C if method == "hierarchical" else 0.0
            if compute:
                out.append(("edge", "compute", i, i * C, (i + 1) * C, {}))
            up_free = max(up_free, (i + 1) * compute) + U
            out.append(("edge", "send", i, up_free - U, up_free, {"kind": "batch"}))
            cloud_free = max(cloud_free, up_free) + CC
            out.append(("cloud", "compute", i, cloud_free - CC, cloud_free, {}))
    return out


def write_events(case_dir: Path, method: str, steps: int = 20) -> None:
    """edge.jsonl and (unless edge-only) cloud.jsonl; cloud times are shifted by OFFSET_S."""
    case_dir.mkdir(parents=True, exist_ok=True)
    lines = {"edge": [{"v": 1, "role": "edge", "event": "start", "t": -1.0, "method": method}],
             "cloud": []}
    if method != "edge":
        lines["edge"].append({"v": 1, "role": "edge", "event": "clock", "t": -0.5,
                              "offset_s": OFFSET_S})
    for role, event, step, t0, t1, extra in _spans(method, steps):
        shift = OFFSET_S if role == "cloud" else 0.0
        lines[role].append({"v": 1, "role": role, "event": event, "step": step,
                            "t_start": t0 + shift, "t_end": t1 + shift, **extra})
    for role, records in lines.items():
        if records:
            (case_dir / f"{role}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def run_dir(tmp_path):
    summary = make_summary()
    summary.to_csv(tmp_path / "summary.csv", index=False)
    for case, method in summary[["case", "method"]].drop_duplicates().itertuples(index=False):
        write_events(tmp_path / case, method)
    return tmp_path


def _bars(ax):
    """The bars drawn (error-bar containers are whiskers, not bars)."""
    from matplotlib.container import BarContainer
    return [bar for container in ax.containers if isinstance(container, BarContainer)
            for bar in container]


def test_make_all_writes_valid_png_and_svg(run_dir):
    paths = plots.make_all(run_dir)
    names = ("runtime", "gain", "accuracy_vs_time", "timeline", "bytes", "predicted")
    assert sorted(p.name for p in paths) == sorted(f"{n}.{e}" for n in names
                                                   for e in ("png", "svg"))
    for path in paths:
        assert path.parent == run_dir / "plots" and path.stat().st_size > 1000, path
        head = path.read_bytes()[:200]
        assert head.startswith(b"\x89PNG\r\n\x1a\n") if path.suffix == ".png" else b"<svg" in head


def test_runtime_draws_one_bar_per_ok_case_and_no_zero_bars():
    summary = make_summary()
    fig = plots.fig_runtime(summary)
    ok = summary[summary["status"] == "ok"]
    for ax in fig.axes:
        expected = ok[ok["arch"] == ax.get_title()].groupby(["method", "link"]).ngroups
        heights = [bar.get_height() for bar in _bars(ax)]
        assert len(heights) == expected and min(heights) > 0
    resnet = next(ax for ax in fig.axes if ax.get_title() == "resnet18")
    assert len(_bars(resnet)) == 11 and any(t.get_text() == "×" for t in resnet.texts)
    assert {bar.get_hatch() for bar in _bars(resnet)} == {"//"}  # extrapolated runtimes
    # the tallest is cloud-only on 3g: 200 s x 10 (extrapolated), median of reps 1.00 and 1.02
    assert max(bar.get_height() for bar in _bars(resnet)) == pytest.approx(2000 * 1.01)
    assert "extrapolated" in resnet.get_ylabel()


def test_gain_bars_are_the_median_percentages():
    summary = make_summary()
    fig = plots.fig_gain(summary)
    hier = summary[summary["method"] == "hierarchical"]
    for ax in fig.axes:
        for container in ax.containers:
            base = next(b for b in plots.BASELINES
                        if container.get_label() == "vs " + plots.style(b)["label"])
            for bar in container:
                link = LINKS[round(bar.get_x() + bar.get_width() / 2)]
                rows = hier[(hier["arch"] == ax.get_title()) & (hier["link"] == link)]
                assert bar.get_height() == pytest.approx(100 * rows[f"gain_vs_{base}"].median())
    vgg = next(ax for ax in fig.axes if ax.get_title() == "vgg16")
    # the tallest is vs edge-only on wifi: 12 s against 80 s
    assert max(bar.get_height() for bar in _bars(vgg)) == pytest.approx(100 * (1 - 12 / 80))
    assert sum(len(c) for c in vgg.containers) == 9
    resnet = next(ax for ax in fig.axes if ax.get_title() == "resnet18")
    assert sum(len(c) for c in resnet.containers) == 8  # split failed on wifi: no bar, not zero


def test_accuracy_marks_edge_exit_hollow():
    fig = plots.fig_accuracy_vs_time(make_summary())
    for ax in fig.axes:
        hollow = [c for c in ax.collections if len(c.get_facecolors()) == 0]
        assert len(hollow) == 3  # hierarchical's edge exit on each link
        assert all(c.get_offsets()[0][1] == pytest.approx(62) for c in hollow)


def test_timeline_aligns_clocks_and_shows_overlap_vs_stop_and_wait(run_dir):
    events, title = plots.timeline_inputs(make_summary(), run_dir)
    assert set(events) == {"hierarchical", "split", "cloud", "edge"} and "3g" in title
    fig = plots.fig_timeline(events, title)
    assert "first 12 steps" in fig.get_suptitle()
    lanes = {}
    for ax in fig.axes:
        label = ax.get_title(loc="left")
        lanes[label] = {}
        for bar in ax.patches:
            span = (bar.get_x(), bar.get_x() + bar.get_width())
            lanes[label].setdefault(round(bar.get_y() + 0.3), []).append(span)
    hier = lanes[plots.style("hierarchical")["label"]]
    assert len(hier[0]) == 12  # edge compute spans: cut to the first 12 steps
    assert min(s for s, _ in hier[2]) == pytest.approx(C + U)  # cloud starts after the upload
    assert any(s < e2 and s2 < e for s, e in hier[0] for s2, e2 in hier[1])  # overlap
    split = sorted(span for lane in lanes[plots.style("split")["label"]].values() for span in lane)
    assert all(a_end <= b_start + 1e-9 for (_, a_end), (b_start, _) in zip(split, split[1:]))


def test_bytes_per_direction_from_one_link():
    fig = plots.fig_bytes(make_summary())
    assert "link 3g" in fig.get_suptitle()
    for ax in fig.axes:
        assert ax.get_yscale() == "linear"  # 37.5 to 50 MiB: no need for a log axis
        heights = sorted(round(bar.get_height() * plots.MIB) for bar in _bars(ax))
        # hierarchical up, split up + down, cloud up + raw; edge-only moves nothing
        assert heights == sorted([STEPS * ACT_BYTES] * 3 + [STEPS * RAW_BYTES] * 2)


def test_bytes_switch_to_log_over_a_wide_range():
    summary = make_summary()
    summary["raw_bytes_to_cloud"] *= 1000
    assert all(ax.get_yscale() == "log" for ax in plots.fig_bytes(summary).axes)


def test_predicted_scatter_and_empty_note():
    summary = make_summary()
    fig = plots.fig_predicted(summary)
    points = sum(len(c.get_offsets()) for c in fig.axes[0].collections[:-1])  # last: the band
    assert points == summary["predicted_s"].notna().sum() == 45
    assert "45 of 45 runs within ±10%" in fig.get_suptitle()  # predicted = 0.95 x measured
    empty = plots.fig_predicted(summary.assign(predicted_s=np.nan))
    assert "no predictions in this run" in [t.get_text() for t in empty.axes[0].texts]


def test_partial_run_titles(run_dir):
    summary = make_summary()
    summary = summary[(summary["arch"] == "vgg16") & (summary["link"] != "wifi")]
    summary.loc[summary["method"] == "cloud", ["status", "wall_s"]] = ["failed", np.nan]
    titles = []
    for name, fig in plots.figures(summary, run_dir, partial=True):
        titles.append(fig.get_suptitle())
        plots.plt.close(fig)
    assert len(titles) == 6 and all("(partial run)" in t for t in titles)


def test_local_run_without_links_or_optional_columns(run_dir):
    """A link-less run read back from CSV (all-NaN float column) plots without warnings."""
    summary = make_summary()
    summary = summary[summary["link"] == "3g"][list(plots.REQUIRED)].assign(link=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, fig in plots.figures(summary, run_dir):
            plots.plt.close(fig)
    assert plots.fig_runtime(summary).axes[0].get_xticklabels()[0].get_text() == "-"


def test_missing_summary_names_the_file(tmp_path):
    with pytest.raises(HarnessError, match="summary.csv"):
        plots.make_all(tmp_path)


def test_link_order():
    links = ["wifi", "lan", "3g", "4g", "dsl"]
    assert plots.link_order(links) == ["3g", "4g", "wifi", "dsl", "lan"]
