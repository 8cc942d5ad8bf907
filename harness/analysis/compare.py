"""The CI regression gate: runtime gains of a run against a committed baseline.

    python run_bench.py check results/quick/<run>/ --baseline results/baselines/quick.json

A check is a short string `METRIC@LINK[/ARCH]:TOL%`, e.g. `gain_vs_split@3g:10%`. METRIC is
`gain_vs_split`, `gain_vs_cloud`, `gain_vs_edge` (1 - wall_hierarchical / wall_baseline, both
measured in the same run, so machine speed cancels) or `final_acc` (hierarchical's final exit).
The value is the median over repetitions (and over archs when ARCH is left out). A check
passes when value >= baseline - TOL percentage points. Reads CSV/JSON only: no torch.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError

METRICS = ("gain_vs_split", "gain_vs_cloud", "gain_vs_edge", "final_acc")
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


def measure(summary: pd.DataFrame, metric: str, link: str, arch: str | None) -> float:
    """Median of a metric over the run's ok hierarchical rows for that link (and arch)."""
    rows = summary[(summary["method"] == "hierarchical") & (summary["link"].astype(str) == link)
                   & (summary["status"] == "ok")]
    if arch:
        rows = rows[rows["arch"] == arch]
    values = rows[metric].dropna() if metric in rows else pd.Series(dtype=float)
    return float(values.median()) if len(values) else float("nan")


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
    doc = {"scenario": scenario, "source_run": source, "values": baseline_values(summary)}
    if not doc["values"]:
        raise HarnessError("the run has no hierarchical results to make a baseline from")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return doc


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
    """One row per check: baseline, current, allowed minimum, verdict (pass/REGRESSION/missing)."""
    rows = []
    for check in checks:
        current = measure(summary, check.metric, check.link, check.arch)
        base = baseline.get(check.key, float("nan"))
        floor = base - check.tolerance
        if math.isnan(current) or math.isnan(base):
            verdict = "missing"
        else:
            verdict = "pass" if current >= floor else "REGRESSION"
        rows.append({"check": str(check), "baseline": base, "current": current,
                     "min_allowed": floor, "verdict": verdict})
    return pd.DataFrame(rows)


def format_verdicts(table: pd.DataFrame) -> str:
    def pct(v):
        return "-" if pd.isna(v) else f"{v * 100:+.1f}%"
    shown = table.assign(**{c: table[c].map(pct) for c in ("baseline", "current", "min_allowed")})
    return shown.to_string(index=False)


def github_benchmark_json(summary: pd.DataFrame, checks: list[Check]) -> list[dict]:
    """github-action-benchmark `customBiggerIsBetter` entries, gains in percent."""
    out = []
    for check in checks:
        value = measure(summary, check.metric, check.link, check.arch)
        if not math.isnan(value):
            out.append({"name": check.key, "unit": "%", "value": round(value * 100, 3)})
    return out
