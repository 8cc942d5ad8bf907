"""Converged accuracy for a benchmark's case, from this machine's accuracy-study cache.

    python -c "from harness.study.reuse import converged_for"

A benchmark trains a short budget (its runtime is what it measures). Where this machine's own
run of the repository's accuracy study (scenarios/accuracy.yaml) has cached every seed of the
same model, width, dataset, split and exit head, under the current training code, the case
also carries that converged accuracy (median and 95% CI across seeds, and hierarchical
training's gap to end-to-end paired by seed), saying where it came from. Nothing else is
reused: a missing seed, another code version or another recipe leaves the short-budget
figure alone, labelled as such.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.config import Case, case_from_dict, load_scenario
from harness.errors import HarnessError
from harness.files import write_json
from harness.paths import SCENARIOS
from harness.study import cache
from harness.study.plan import HIERARCHICAL, trainings

STUDY = SCENARIOS / "accuracy.yaml"


def _entries(case: Case, kind: str, study) -> list[dict] | None:
    """The study's cached entries (one per seed) matching the case, or None if any is missing."""
    threads = study.compute.edge_threads
    found = []
    for t in trainings(study):
        m = t.case.model
        if (t.kind != kind or m.arch != case.model.arch or m.width != case.model.width
                or t.case.dataset.name != case.dataset.name):
            continue
        if kind == HIERARCHICAL and (m.split, m.exit_head) != (case.model.split,
                                                              case.model.exit_head):
            continue
        hit = cache.lookup(cache.training_key(t.case, t.kind, threads))
        if hit is None:
            return None
        found.append(hit)
    return found or None


def converged_for(case: Case) -> dict | None:
    """{final_acc, final_acc_ci, edge_exit_acc, edge_exit_acc_ci, gap, gap_ci, seeds, source}
    from the study cache, or None when any seed of it is not cached here."""
    from harness.analysis.study import spread
    try:
        study = load_scenario(STUDY)[0]
    except HarnessError:
        return None
    e2e = _entries(case, "end-to-end", study)
    if e2e is None:
        return None
    ref = {h["key"]["seed"]: h["result"]["final_acc"] for h in e2e}
    mine = e2e if case.method != HIERARCHICAL else _entries(case, HIERARCHICAL, study)
    if mine is None:
        return None
    out = {"seeds": len(mine)}
    for col in ("final_acc", "edge_exit_acc"):
        out[col], out[f"{col}_ci"], _ = spread([h["result"][col] for h in mine])
    out["gap"], out["gap_ci"], _ = spread([h["result"]["final_acc"] - ref[h["key"]["seed"]]
                                            for h in mine if h["key"]["seed"] in ref])
    t = study.training
    out["source"] = (f"converged: this machine's {STUDY.name} study ({t.epochs} epochs of the "
                     f"full training set, seeds {', '.join(map(str, study.seeds))}, training "
                     f"code {cache.code_version()}), reused from its cache")
    return out


def attach(run_dir: Path, echo=print) -> int:
    """Add `converged` to every accuracy.json of a benchmark run whose case the study cache
    covers, and rebuild summary.csv with it; returns how many cases got it, and says so."""
    done = total = 0
    for path in sorted(Path(run_dir).glob("**/accuracy.json")):
        case_file = path.parent / "case.json"
        if not case_file.exists():
            continue
        top = path.parent.parent == Path(run_dir)          # a case (not the accuracy pass's)
        total += top
        acc = json.loads(path.read_text())
        converged = converged_for(case_from_dict(json.loads(case_file.read_text())))
        done += top and converged is not None
        if acc.get("converged") != converged:          # rewritten only when it changes
            acc = {k: v for k, v in acc.items() if k != "converged"}
            write_json(path, acc if converged is None else {**acc, "converged": converged})
    if total:
        echo(f"converged accuracy: {done} of {total} case(s) covered by this machine's "
             f"{STUDY.name} cache" + ("" if done else f" (none: run 'run_bench.py run "
                                                        f"scenarios/{STUDY.name}' to train it;"
                                                        f" accuracies here are short-budget)"))
    if done and any(Path(run_dir).glob("*/case.json")):
        from harness.analysis.summary import build_summary
        build_summary(run_dir, Path(run_dir).parent.name).to_csv(Path(run_dir) / "summary.csv",
                                                                 index=False)
    return done
