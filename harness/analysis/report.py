"""One self-contained HTML page per run: the answer first, then the evidence behind it.

    python run_bench.py report results/quick/<run>/          # writes <run>/report.html

Everything on the page comes from the run directory: `summary.csv` (runtimes, gains and
accuracies with their 95% CIs, the model's predictions), each link's `linkcheck.json` and
`computecheck.json` (calibration: configured against measured, mechanism, dilation),
`run_status.json` (a partial run says so first), `meta.json` (provenance) and the PNGs under
`plots/`, embedded as data: URIs. The page loads nothing from anywhere else: no scripts, no
fonts, no style sheets, no links that fetch. Reads files only (no torch): it runs on a laptop.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from harness.analysis.tables import CASE_KEYS, run_notes, with_ci
from harness.analysis.answer import answer, esc

REPORT_FILE = "report.html"
MODEL_MISS = 0.10            # a prediction further than this from its measurement is flagged
MAX_OVERRUN_SHARE = 0.05     # paced steps of a case that may overrun their target unflagged
PLOTS = (("runtime.png", "Runtime per method and link"),
         ("gain.png", "Hierarchical training's runtime gain over each baseline"),
         ("accuracy_vs_time.png", "Accuracy against runtime"),
         ("accuracy_curve.png", "Accuracy over training time on each link"),
         ("predicted.png", "The runtime model against the measurements"),
         ("link_time.png", "Progress against a time-varying link's capacity"),
         ("timeline.png", "What each worker did, batch by batch"),
         ("bytes.png", "Bytes on the wire"))
STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.warn{background:#fff4e0;border-left:4px solid #e69500;
padding:.5em 1em;margin:.4em 0}.bad{color:#b00020;font-weight:600}img{max-width:100%;
border:1px solid #eee}figure{margin:1.2em 0}figcaption{color:#555;font-size:.9em}
.answer{font-size:1.08em}code{background:#f5f5f5;padding:0 .2em}.wide{overflow-x:auto}"""


def _table(df: pd.DataFrame) -> str:
    """A DataFrame as an HTML table, every cell escaped, NaN as '-'."""
    def cell(v):
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4g}"
        return esc(v)
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f'<div class="wide"><table><tr>{head}</tr>{rows}</table></div>'


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def warnings(run_dir: Path, summary: pd.DataFrame) -> list[str]:
    """Everything a reader must know before trusting a figure."""
    out = []
    status = _read_json(run_dir / "run_status.json")
    if status.get("state") != "complete":
        out.append(f"Partial run ({status.get('state', 'no run_status.json')}: "
                   f"{status.get('reason', '')}): only finished cases are shown.")
    for _, row in summary[summary["status"] != "ok"].iterrows():
        out.append(f"Case {row.get('method')} on {row.get('link')} rep {row.get('rep')}: "
                   f"{row.get('status')} ({row.get('status_reason', '')})")
    for link_dir in sorted((run_dir / "links").glob("*")):
        check = _read_json(link_dir / "linkcheck.json")
        for name, c in check.get("checks", {}).items():
            if not c.get("ok", True):
                out.append(f"Link {link_dir.name}: calibration check {name} out of tolerance "
                           f"(measured {c.get('measured')}, rule {c.get('rule')})")
        if _read_json(link_dir / "computecheck.json").get("ok") is False:
            out.append(f"Link {link_dir.name}: compute calibration out of tolerance")
    if "predicted_err" in summary:
        for _, row in summary[summary["predicted_err"].abs() > MODEL_MISS].iterrows():
            out.append(f"Model: {row['method']} on {row['link']} predicted "
                       f"{row['predicted_err']:+.1%} from its measured window")
    across = summary.get("gain_nodes", pd.Series(dtype=object)).map(lambda v: isinstance(v, str) and v != "")
    for _, row in summary[across.reindex(summary.index, fill_value=False)].iterrows():
        out.append(f"Gain of hierarchical on {row['link']} compares runs on different cluster "
                   f"nodes ({row['gain_nodes'].strip('; ')}): comparable only through calibration")
    paced = summary.dropna(subset=["paced_steps"]) if "paced_steps" in summary else summary[:0]
    for _, row in paced[paced["pace_overruns"] > MAX_OVERRUN_SHARE * paced["paced_steps"]].iterrows():
        out.append(f"Paced compute: {int(row['pace_overruns'])} of {int(row['paced_steps'])} "
                   f"steps of {row['method']} on {row['link']} overran their target: that case "
                   f"ran at this machine's speed, not the device's")
    if "extrapolated" in summary and summary["extrapolated"].fillna(False).astype(bool).any():
        out.append("Runtimes are estimated for the full budget from the measured batches "
                   "(see the notes under the tables).")
    return out


SOURCE_WORDS = {
    "modelled": "MODELLED compute: no training ran there in the timing pass; each step waited "
                "the device's modelled time (training FLOPs / its sustained rate) while every "
                "message kept its real size on the emulated link (the device is faster than "
                "this machine can pace)",
    "paced": "paced: real training, each step then waiting out the runtime model's time for "
             "it on the device, so this machine's own speed does not reach the runtime",
    "shares": "real training under a CPU share of this machine: its runtimes move with this "
              "machine's speed",
    "real-gpu": "real training on a CUDA GPU at that GPU's own speed"}


def compute_words(summary: pd.DataFrame) -> str:
    """One sentence per side: how its step times arose, in how many cases, on which device."""
    out = []
    for role in ("edge", "cloud"):
        col = f"{role}_compute"
        if col not in summary:
            continue
        used = summary[summary[col].fillna("none") != "none"]
        for (source, device), rows in used.groupby([col, f"{role}_device"]):
            named = f"device profile {device}" if device else "cores of this machine"
            out.append(f"<p>{role.capitalize()} ({esc(named)}), {len(rows)} case(s): "
                       f"{esc(SOURCE_WORDS.get(source, source))}.</p>")
    return "".join(out) or "<p>No compute recorded.</p>"


def calibration(run_dir: Path) -> str:
    """Per link: configured against measured, and how each part was emulated."""
    parts = []
    for link_dir in sorted((run_dir / "links").glob("*")):
        check = _read_json(link_dir / "linkcheck.json")
        if not check:
            continue
        rows = [{"check": name, "measured": c.get("measured"), "rule": c.get("rule", ""),
                 "ok": "ok" if c.get("ok") else "OUT OF TOLERANCE"}
                for name, c in check.get("checks", {}).items()]
        emu = check.get("emulation", {})
        how = {k: emu[k] for k in ("rate", "delay", "loss", "queue", "compute", "tcp_cc")
               if k in emu}
        parts.append(f"<h3>{esc(link_dir.name)}</h3><p>dilation x{esc(check.get('dilation', 1))}"
                     f", measured at {esc(check.get('measured_at', '?'))}</p>"
                     + _table(pd.DataFrame(rows)) + _table(pd.DataFrame(
                         [{"part": k, "how": v} for k, v in how.items()])))
        compute = _read_json(link_dir / "computecheck.json")
        for role, r in (compute.get("roles") or {}).items():
            d = r.get("device", {})
            parts.append(f"<p>{esc(role)} device {esc(d.get('name'))}: "
                         f"{esc(d.get('sustained_gflops'))} GFLOP/s sustained, "
                         + ("measured on the device" if d.get("measured") else
                            "<b>an assumption</b> (vendor peak x an assumed efficiency, not "
                            "measured: run_bench.py device-profile measures one)") + "</p>")
        if compute.get("model_factors"):
            from harness.analysis.tables import factor_lines
            parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>"
                                          for line in factor_lines(compute["model_factors"]))
                         + "</ul>")
    return "".join(parts) or "<p>No calibration: a loopback run (no emulated link).</p>"


def _figures(run_dir: Path) -> str:
    out = []
    for name, caption in PLOTS:
        path = run_dir / "plots" / name
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{esc(caption)} (<code>plots/{esc(name)}</code>)</figcaption>"
                       f"</figure>")
    return "".join(out) or "<p>No plots in this run (run_bench.py plot RUN_DIR draws them).</p>"


def _model(summary: pd.DataFrame) -> str:
    cols = [c for c in CASE_KEYS + ["rep", "steps", "wall_s", "predicted_s", "predicted_err",
                                    "est_full_wall_s", "predicted_full_s"] if c in summary]
    if "predicted_s" not in summary:
        return "<p>No predictions in this run.</p>"
    return ("<p>The runtime model's prediction (harness/predict) beside each measured window; "
            "a modelled figure, not a measurement.</p>" + _table(summary[cols].assign(
                predicted_err=summary["predicted_err"].map(lambda e: "-" if e != e else f"{e:+.1%}"))))


def time_to_accuracy(run_dir: Path, summary: pd.DataFrame) -> str:
    """The table of seconds to each target (the run's tta.csv, else computed from its cases),
    and how the curve met each link's time."""
    from harness.analysis import tta
    saved = run_dir / tta.TTA_FILE
    if saved.is_file():
        table = pd.read_csv(saved)
    else:
        curve, targets = tta.curves(run_dir, summary), tta.targets_of(run_dir)
        if curve.empty:
            return ("<p>No accuracy curves in this run (they come from an accuracy pass with "
                    "<code>measure.curve_every</code> &gt; 0).</p>")
        if not targets:
            return "<p>The scenario names no <code>accuracy_targets</code>.</p>"
        table = tta.tta_table(curve, targets)
    how = tta.__doc__.split("\n\n")[2:]            # past the title and the usage line
    return (_table(tta.tta_text(table))
            + "".join(f"<p>{esc(' '.join(part.split()))}</p>" for part in how))


def provenance(run_dir: Path) -> str:
    meta = _read_json(run_dir / "meta.json")
    rows = [{"what": k, "value": v if not isinstance(v, (dict, list)) else json.dumps(v)}
            for k, v in meta.items()]
    return _table(pd.DataFrame(rows)) if rows else "<p>No meta.json.</p>"


def render(run_dir: Path, summary: pd.DataFrame) -> str:
    """The page for one run (a string of HTML)."""
    from harness.analysis.tables import per_case
    name = f"{run_dir.parent.name} / {run_dir.name}"
    warn = warnings(run_dir, summary)
    body = [f"<h1>hierbench: {esc(name)}</h1>",
            "<h2>The answer</h2>" + "".join(f'<p class="answer">{line}</p>'
                                            for line in answer(summary) or ["No finished case."]),
            "<h2>Warnings</h2>" + ("".join(f'<div class="warn">{esc(w)}</div>' for w in warn)
                                   if warn else "<p>None.</p>"),
            "<h2>Results</h2>" + _table(per_case(summary))
            + "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in run_notes(summary)) + "</ul>",
            "<h2>Compute</h2>" + compute_words(summary),
            "<h2>Time to accuracy</h2>" + time_to_accuracy(run_dir, summary),
            "<h2>Plots</h2>" + _figures(run_dir),
            "<h2>Link and compute calibration</h2>" + calibration(run_dir),
            "<h2>Model against measurement</h2>" + _model(summary),
            "<h2>Provenance</h2>" + provenance(run_dir)]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
            f"{esc(name)}</title><style>{STYLE}</style></head><body>{''.join(body)}"
            f"</body></html>")


def write_report(run_dir: Path, summary: pd.DataFrame, path: Path | None = None) -> Path:
    """Write the page (default RUN_DIR/report.html), replaced whole: written aside, renamed."""
    from harness.errors import HarnessError
    path = path or run_dir / REPORT_FILE
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(render(run_dir, summary), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write ({exc.strerror})") from None
    return path


def compare_page(run_a: Path, a: pd.DataFrame, run_b: Path, b: pd.DataFrame) -> str:
    """Two runs side by side: each case's runtime and hierarchical's gains, a difference
    flagged where it is larger than the two CIs together."""
    from harness.analysis.compare import compare_runs, stage_errors
    keys = CASE_KEYS
    cols = keys + ["est_full_wall_s", "est_full_wall_ci_s"]
    ok_a, ok_b = (df[df["status"] == "ok"][[c for c in cols if c in df]] for df in (a, b))
    both = ok_a.groupby(keys, dropna=False).median().join(
        ok_b.groupby(keys, dropna=False).median(), lsuffix="_a", rsuffix="_b", how="inner")
    rows = []
    for key, r in both.iterrows():
        diff = r["est_full_wall_s_b"] - r["est_full_wall_s_a"]
        reach = r.get("est_full_wall_ci_s_a", math.nan) + r.get("est_full_wall_ci_s_b", math.nan)
        rows.append({**dict(zip(keys, key)),
                     "A s": with_ci(r["est_full_wall_s_a"], r.get("est_full_wall_ci_s_a"), "{:.1f}"),
                     "B s": with_ci(r["est_full_wall_s_b"], r.get("est_full_wall_ci_s_b"), "{:.1f}"),
                     "B / A": f"{r['est_full_wall_s_b'] / r['est_full_wall_s_a'] - 1:+.1%}",
                     "beyond the CIs": "YES" if abs(diff) > reach else
                     ("no" if reach == reach else "no CI")})
    gains = compare_runs(a, b)
    if not gains.empty:
        has_ci = gains["ci_a"].notna() & gains["ci_b"].notna()
        gains = gains.assign(**{"beyond the CIs": [
            ("no" if o else "YES") if c else "no CI" for o, c in zip(gains["cis_overlap"], has_ci)]})
        gains = gains.drop(columns=["cis_overlap"])
    title = f"{run_a.name} (A) against {run_b.name} (B)"
    flagged = sum(r["beyond the CIs"] == "YES" for r in rows) + (
        int((gains["beyond the CIs"] == "YES").sum()) if not gains.empty else 0)
    body = (f"<h1>hierbench: {esc(title)}</h1><p class=\"answer\">{flagged} difference(s) "
            f"larger than their CIs.</p><h2>Runtime per case</h2>"
            + (_table(pd.DataFrame(rows)) if rows else "<p>No case in common.</p>")
            + "<h2>Per stage</h2><p>Each stage's busy time per batch (the wall time per "
            "batch last; medians over repetitions): B against A, e.g. an emulated run "
            "against the real one it copies.</p>" + _table(stage_errors(a, b))
            + "<h2>Hierarchical training's gains</h2>"
            + (_table(gains) if not gains.empty else "<p>No gains in common.</p>")
            + "<h2>Provenance</h2><h3>A</h3>" + provenance(run_a) + "<h3>B</h3>" + provenance(run_b))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}'
            f"</title><style>{STYLE}</style></head><body>{body}</body></html>")
