"""The CI regression gate: runtime gains of a run against a committed baseline.

    python run_bench.py check results/quick/<run>/ --baseline results/baselines/quick.json

A check is a short string `METRIC@LINK[/ARCH]:TOL%`, e.g. `gain_vs_split@3g:10%`. METRIC is
`gain_vs_split`, `gain_vs_cloud`, `gain_vs_edge` (1 - wall_hierarchical / wall_baseline, both
measured in the same run, so machine speed cancels) or `final_acc` (hierarchical's final exit).
The value is the median over repetitions (and over archs when ARCH is left out), with a 95%
CI: Student's t over the repetitions when there are 3 or more, else the run's own CI (the
gains' delta-method CI from the steady-state estimates). A regression is called only when the
whole CI lies below baseline - TOL (value + CI < floor); a value below the floor whose CI
reaches it is reported as `noise`, which passes, but only while the CI is at most a third of
TOL (MAX_NOISE_CI_SHARE): so no drop larger than 4/3 x TOL passes as noise. A wider CI cannot
tell a regression from noise and fails as `CI-TOO-WIDE` (more repetitions narrow it). A check
whose value or baseline is absent fails as `missing`. Without any CI (runs of earlier
releases) the value itself is compared. Baselines are made from runs of at least 3 repetitions, and no
accuracy baseline at chance is stored. Reads CSV/JSON only: no torch.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis.steady import mean_ci
from harness.catalog import BASELINES
from harness.errors import HarnessError

METRICS = ("gain_vs_split", "gain_vs_cloud", "gain_vs_edge", "final_acc")
MIN_BASELINE_REPS = 3
CHANCE_ACC = 0.2          # at or below this (2 x chance for 10 classes) accuracy shows nothing
CHECK_RE = re.compile(r"^(?P<metric>[a-z_]+)@(?P<link>[\w.-]+)(?:/(?P<arch>[\w.-]+))?"
                      r":(?P<tol>\d+(?:\.\d+)?)%$")


@dataclass(frozen=True)
class Check:
    metric: str
    link: str
    arch: str | None
    tolerance: float               # fraction (10% -> 0.10), in gain/accuracy units

    @property
    def key(self) -> str:
        return f"{self.metric}@{self.link}" + (f"/{self.arch}" if self.arch else "")

    def __str__(self) -> str:
        return f"{self.key}:{self.tolerance * 100:g}%"


def parse_check(text: str) -> Check:
    """Parse `gain_vs_split@3g:10%` (arch optional: `gain_vs_split@3g/vgg16:10%`)."""
    match = CHECK_RE.match(text.strip())
    if not match:
        raise HarnessError(f"check {text!r}: expected METRIC@LINK[/ARCH]:TOL% "
                           f"(e.g. gain_vs_split@3g:10%)")
    if match["metric"] not in METRICS:
        raise HarnessError(f"check {text!r}: unknown metric (known: {', '.join(METRICS)})")
    return Check(match["metric"], match["link"], match["arch"], float(match["tol"]) / 100)


def _rows(summary: pd.DataFrame, link: str, arch: str | None) -> pd.DataFrame:
    rows = summary[(summary["method"] == "hierarchical") & (summary["link"].astype(str) == link)
                   & (summary["status"] == "ok")]
    return rows[rows["arch"] == arch] if arch else rows


def measure(summary: pd.DataFrame, metric: str, link: str, arch: str | None) -> float:
    """Median of a metric over the run's ok hierarchical rows for that link (and arch)."""
    return measure_ci(summary, metric, link, arch)[0]


def measure_ci(summary: pd.DataFrame, metric: str, link: str,
               arch: str | None) -> tuple[float, float, int]:
    """(median, 95% CI half-width, repetitions) of a metric; the CI as the module says."""
    rows = _rows(summary, link, arch)
    if metric not in rows:
        return float("nan"), float("nan"), 0
    rows = rows[rows[metric].notna()]
    if rows.empty:
        return float("nan"), float("nan"), 0
    values = rows[metric].astype(float)
    # Repetitions that did not measure anew (accuracy comes from one accuracy pass) carry no
    # spread of their own: the run's own CI applies then.
    if len(values) >= MIN_BASELINE_REPS and values.nunique() > 1:
        return float(values.median()), mean_ci(list(values))[1], len(values)
    cis = rows[f"{metric}_ci"].astype(float) if f"{metric}_ci" in rows else pd.Series([math.nan])
    return float(values.median()), float(cis.max()), len(values)


def baseline_values(summary: pd.DataFrame) -> dict[str, float]:
    """Every metric for every link, per arch and over all archs: what `baseline` stores."""
    out = {}
    links = sorted(summary["link"].dropna().astype(str).unique())
    archs = sorted(summary["arch"].dropna().unique())
    for metric in METRICS:
        for link in links:
            for arch in [None, *archs]:
                value = measure(summary, metric, link, arch)
                if not math.isnan(value):
                    out[Check(metric, link, arch, 0).key] = value
    return out


def write_baseline(summary: pd.DataFrame, path: Path, source: str, scenario: str) -> dict:
    """Store medians (and their CIs) of a run with >= 3 repetitions; never an accuracy at chance."""
    reps = int(summary["rep"].max()) + 1 if len(summary) else 0
    if reps < MIN_BASELINE_REPS:
        raise HarnessError(f"a baseline needs a run of at least {MIN_BASELINE_REPS} repetitions "
                           f"(this one has {reps}): run with --set repetitions={MIN_BASELINE_REPS}")
    values = baseline_values(summary)
    at_chance = sorted(k for k, v in values.items() if k.startswith("final_acc") and v <= CHANCE_ACC)
    values = {k: v for k, v in values.items() if k not in at_chance}
    doc = {"scenario": scenario, "source_run": source, "repetitions": reps, "values": values,
           "compute": compute_of(Path(source)),
           "ci": {k: measure_ci(summary, *_split_key(k))[1] for k in values},
           "omitted_at_chance": at_chance}
    if not doc["values"]:
        raise HarnessError("the run has no hierarchical results to make a baseline from")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return doc


# What makes two runs' compute alike (a case's compute section): the pacing, the cores or the
# device profiles, where each side trains. The dilation factor is left out: 'auto' picks it
# per machine, and a dilated run reports the virtual world's times.
COMPUTE_KEYS = ("pace", "edge_cores", "cloud_cores", "edge_device", "cloud_device",
                "edge_backend", "cloud_backend", "over_ceiling", "modelled")


def compute_of(run_dir: Path) -> dict | None:
    """How a run's compute was produced: its first case's compute section (COMPUTE_KEYS)."""
    for case in sorted(Path(run_dir).glob("*/case.json")):
        compute = json.loads(case.read_text()).get("compute") or {}
        return {k: _normal(k, compute.get(k)) for k in COMPUTE_KEYS}
    return None


def _normal(key: str, value):
    """A compute value as compared: the modelled sides as a sorted list (absent in baselines
    made before modelled compute existed: none were modelled)."""
    return sorted(value or []) if key == "modelled" else value


def same_compute(run_dir: Path, baseline_path: Path) -> str:
    """'' when the run's compute is the baseline's; a note when the baseline records none
    (made before baselines did); HarnessError naming each difference otherwise: gains measured
    on compute of another kind (other devices, paced or not, a GPU) are not comparable."""
    base = json.loads(Path(baseline_path).read_text()).get("compute")
    if base is None:
        return ("note: the baseline records no compute (made before baselines did): the run's "
                "compute was not compared with it")
    mine = compute_of(run_dir) or {}
    diff = [f"{k} {_normal(k, base.get(k))!r} in the baseline, {mine.get(k)!r} in the run"
            for k in COMPUTE_KEYS if _normal(k, base.get(k)) != mine.get(k)]
    if diff:
        raise HarnessError(f"the run's compute is not the baseline's ({'; '.join(diff)}): "
                           f"gains on other compute are not comparable; make a baseline from "
                           f"a run with this compute")
    return ""


def load_baseline(path: Path) -> dict[str, float]:
    try:
        doc = json.loads(Path(path).read_text())
        values = doc["values"]
    except FileNotFoundError:
        raise HarnessError(f"baseline file not found: {path}") from None
    except (ValueError, KeyError, TypeError):
        raise HarnessError(f"baseline file {path} is malformed (expected JSON with 'values')") from None
    if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
        raise HarnessError(f"baseline file {path}: 'values' must map check keys to numbers")
    return {str(k): float(v) for k, v in values.items()}


def judge(summary: pd.DataFrame, checks: list[Check], baseline: dict[str, float]) -> pd.DataFrame:
    """One row per check: baseline, current with its CI, allowed minimum, verdict (pass, noise:
    below the floor but within a CI no wider than a third of the tolerance, CI-TOO-WIDE,
    REGRESSION, missing, or baseline-at-chance)."""
    rows = []
    for check in checks:
        current, ci, reps = measure_ci(summary, check.metric, check.link, check.arch)
        base = baseline.get(check.key, float("nan"))
        floor = base - check.tolerance
        if math.isnan(current) or math.isnan(base):
            verdict = "missing"
        elif check.metric == "final_acc" and base <= CHANCE_ACC:
            verdict = "baseline-at-chance"
        elif current >= floor:
            verdict = "pass"
        elif not math.isnan(ci) and current + ci >= floor:
            verdict = "noise" if ci <= MAX_NOISE_CI_SHARE * check.tolerance else "CI-TOO-WIDE"
        else:
            verdict = "REGRESSION"
        rows.append({"check": str(check), "baseline": base, "current": current,
                     "min_allowed": floor, "verdict": verdict, "current_ci": ci, "reps": reps})
    return pd.DataFrame(rows)


PASSING = ("pass", "noise")
MAX_NOISE_CI_SHARE = 1 / 3      # of a check's tolerance: the widest CI that may excuse a drop


def _split_key(key: str) -> tuple[str, str, str | None]:
    metric, _, rest = key.partition("@")
    link, _, arch = rest.partition("/")
    return metric, link, arch or None


def format_verdicts(table: pd.DataFrame) -> str:
    def pct(v):
        return "-" if pd.isna(v) else f"{v * 100:+.1f}%"
    shown = table.assign(**{c: table[c].map(pct) for c in ("baseline", "current", "min_allowed")})
    shown["current_ci"] = table["current_ci"].map(lambda v: "n/a" if pd.isna(v) else f"±{v * 100:.1f}%")
    return shown.to_string(index=False)


def github_benchmark_json(summary: pd.DataFrame, checks: list[Check]) -> list[dict]:
    """github-action-benchmark `customBiggerIsBetter` entries, gains in percent."""
    out = []
    for check in checks:
        value = measure(summary, check.metric, check.link, check.arch)
        if not math.isnan(value):
            out.append({"name": check.key, "unit": "%", "value": round(value * 100, 3)})
    return out


def compare_runs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Hierarchical's gains in two runs side by side, per case (median over repetitions, with
    the CI `measure_ci` gives): the difference in points and whether the two CIs overlap."""
    rows = []
    keys = ["arch", "split", "codec", "link"]
    hier_a = a[(a["method"] == "hierarchical") & (a["status"] == "ok")]
    for key, _ in hier_a.groupby(keys, dropna=False):
        for metric in (f"gain_vs_{base}" for base in BASELINES):
            arch, link = key[0], str(key[3])
            va, ca, _ = measure_ci(a, metric, link, arch)
            vb, cb, _ = measure_ci(b, metric, link, arch)
            if math.isnan(va) or math.isnan(vb):
                continue
            overlap = (not math.isnan(ca) and not math.isnan(cb)
                       and abs(va - vb) <= ca + cb)
            rows.append({**dict(zip(keys, key)), "metric": metric, "run_a": va, "ci_a": ca,
                         "run_b": vb, "ci_b": cb, "diff_points": 100 * (vb - va),
                         "cis_overlap": overlap})
    return pd.DataFrame(rows)


STAGE_COLUMNS = ("edge_compute_s", "uplink_s", "cloud_compute_s", "downlink_s", "wall_s")


def stage_errors(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per case and stage, seconds per batch in run A and run B and B's error against A (B an
    emulation of the real run A, say). Cases pair on model, split, codec and method, and on the
    link too when the two runs share a link name (a real run's link has its own name)."""
    keys = ["arch", "split", "codec", "method"]
    if set(a["link"].dropna()) & set(b["link"].dropna()):
        keys.append("link")

    def per_batch(df: pd.DataFrame) -> pd.DataFrame:
        ok = df[(df["status"] == "ok") & (df["steps"] > 0)]
        return ok.assign(**{c: ok[c] / ok["steps"] for c in STAGE_COLUMNS}).groupby(
            keys, dropna=False)[list(STAGE_COLUMNS)].median()
    both = per_batch(a).join(per_batch(b), lsuffix="_a", rsuffix="_b", how="inner")
    rows = []
    for key, r in both.iterrows():
        for col in STAGE_COLUMNS:
            va, vb = r[f"{col}_a"], r[f"{col}_b"]
            rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                         "stage": col.removesuffix("_s").replace("_", " "),
                         "A ms/batch": 1000 * va, "B ms/batch": 1000 * vb,
                         "B / A": f"{vb / va - 1:+.1%}" if va > 0 else "-"})
    return pd.DataFrame(rows)
