"""Run directories: `results/<scenario>/<UTC>_<commit8>[-dirty]/`, never overwritten.

    python -c "from harness.run.rundir import new_run_dir, mark_abandoned"

`meta.json` says what code, machine and versions produced a run (schema version, git commit
and dirty flag, host, kernel, CPU, package versions, argv, the emulation). `run_status.json`
says where the run stands: `running` (with the harness's pid, host, boot id and process start
time, so a later process can tell whether it is still alive), `complete` (every case ran;
`cases_failed` of them failed), `partial` (stopped, with the reason) or `abandoned` (it said
running, but its harness is gone). A resumed run (`run --resume`) continues in the same
directory: finished cases stay, a half-done case directory is moved to `superseded/`.
"""
from __future__ import annotations

import json
import os
import platform
import random
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

from harness.files import write_json
from harness.config import Case, Scenario, check_name
from harness.errors import HarnessError
from harness.machine import cpu_model, git_state, versions
from harness.paths import results_dir
from harness.workers.events import SCHEMA_VERSION

SUPERSEDED = "superseded"      # half-done case directories a resume moved aside
RESUMABLE = ("partial", "abandoned", "complete")


def new_run_dir(scenario: str, root: Path | None = None, extra_meta: dict | None = None) -> Path:
    """Create results/<scenario>/<UTC>_<commit8>[-dirty]/ (never an existing one) with meta.json."""
    commit, dirty = git_state()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = (root or results_dir()) / check_name(scenario, "scenario name")
    name = f"{stamp}_{commit[:8]}{'-dirty' if dirty else ''}"
    run_dir, n = base / name, 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{name}.{n}"
    run_dir.mkdir(parents=True)
    write_json(run_dir / "meta.json", run_meta(stamp, extra_meta), indent=2)
    return run_dir


def run_meta(stamp: str, extra_meta: dict | None = None) -> dict:
    """meta.json's provenance: schema, commit, this machine, versions, argv, and extras."""
    commit, dirty = git_state()
    return {"schema_version": SCHEMA_VERSION, "git_commit": commit, "git_dirty": dirty,
            "created_utc": stamp, "host": platform.node(), "kernel": platform.release(),
            "machine": platform.machine(), "cpu_model": cpu_model(), "cpus": os.cpu_count(),
            "versions": versions(), "argv": sys.argv, **(extra_meta or {})}


def case_plan(scenario: Scenario) -> list[tuple[str, Case, int]]:
    """(directory `NNN-<label>-rK`, case, repetition) in run order: link by link, each
    repetition's order shuffled with the scenario's seed so drift (thermal, background load)
    does not favour one method; deterministic, so a resumed run maps onto the same names."""
    plan = []
    for link in scenario.links:
        cases = [c for c in scenario.cases() if c.link == link]
        for rep in range(scenario.repetitions):
            order = list(cases)
            random.Random(scenario.training.seed * 1000 + rep).shuffle(order)
            for case in order:
                plan.append((f"{len(plan):03d}-{check_name(case.label, 'case label')}-r{rep}",
                             case, rep))
    return plan


def link_dir(run_dir: Path, name: str) -> Path:
    """links/<profile name>/, made if missing; an earlier calibration there is kept aside."""
    path = Path(run_dir) / "links" / check_name(name, "link profile name")
    path.mkdir(parents=True, exist_ok=True)
    if (path / "linkcheck.json").exists():
        n = len(list(path.glob("linkcheck.before-resume-*.json"))) + 1
        (path / "linkcheck.json").rename(path / f"linkcheck.before-resume-{n}.json")
    return path


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def read_state(run_dir: Path) -> dict:
    """run_status.json as a dict ({} if missing or unreadable)."""
    return _json(Path(run_dir) / "run_status.json")


def write_state(run_dir: Path, state: str, reason: str = "", **fields) -> dict:
    """Replace run_status.json atomically, keeping its history and resume records."""
    old = read_state(run_dir)
    doc = {k: v for k, v in old.items() if k in ("cases_total", "harness", "resumes")}
    doc.update(state=state, reason=reason, updated_utc=utc_now(), **fields)
    doc["history"] = [*old.get("history", []), {"utc": doc["updated_utc"], "state": state,
                                                 **({"reason": reason} if reason else {})}]
    write_json(Path(run_dir) / "run_status.json", doc, indent=2)
    return doc


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int]:
    """(state letter, start time in clock ticks since boot) from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    rest = text[text.rindex(")") + 2:].split()      # fields 3.. (the name may hold spaces)
    return rest[0], int(rest[19])                   # field 3: state; field 22: starttime


def process_identity(pid: int | None = None) -> dict:
    """What tells this process apart from any later one with the same pid."""
    pid = pid or os.getpid()
    try:
        start = _proc_stat(pid)[1]
    except (OSError, ValueError, IndexError):
        start = None
    return {"pid": pid, "host": platform.node(), "boot_id": _boot_id(), "start_ticks": start,
            "started_utc": utc_now()}


def harness_gone(ident: dict | None) -> str | None:
    """Why the harness that wrote `ident` is certainly gone; None if alive or not knowable
    (another host, or a run of an older release with no identity)."""
    if not ident or not ident.get("pid") or ident.get("host") != platform.node():
        return None
    pid = ident["pid"]
    if ident.get("boot_id") and _boot_id() and ident["boot_id"] != _boot_id():
        return f"pid {pid}: the machine has rebooted since"
    try:
        state, start = _proc_stat(pid)
    except (OSError, ValueError, IndexError):
        return f"pid {pid} no longer exists"
    if state in ("Z", "X"):
        return f"pid {pid} has exited"
    if ident.get("start_ticks") is not None and start != ident["start_ticks"]:
        return f"pid {pid} is now another process"
    return None


def mark_abandoned(root: Path | None = None) -> list[str]:
    """Mark each run under results/ that says `running` but whose harness is gone; a line each."""
    lines = []
    for status in sorted((root or results_dir()).glob("*/*/run_status.json")):
        doc = read_state(status.parent)
        why = harness_gone(doc.get("harness")) if doc.get("state") == "running" else None
        if why:
            reason = f"harness died without finishing ({why}, found by pid {os.getpid()})"
            write_state(status.parent, "abandoned", reason, abandoned_utc=utc_now())
            lines.append(f"marked abandoned: {status.parent} ({why})")
    return lines


def case_done(case_dir: Path, emulated: bool) -> bool:
    """A case directory the runner finished: ok, with its accuracy (and its link's check)."""
    files = ["case_info.json", "accuracy.json"] + (["linkcheck.json"] if emulated else [])
    return (_json(case_dir / "status.json").get("status") == "ok"
            and all((case_dir / f).exists() for f in files))


def case_counts(run_dir: Path, names: list[str]) -> dict:
    """cases_ok / cases_failed (with their names) / cases_not_run over the planned names."""
    status = {n: _json(Path(run_dir) / n / "status.json").get("status") for n in names}
    failed = [n for n, s in status.items() if s is not None and s != "ok"]
    return {"cases_ok": sum(s == "ok" for s in status.values()), "cases_failed": len(failed),
            "failed_cases": failed, "cases_not_run": sum(s is None for s in status.values())}


def set_aside(run_dir: Path, name: str) -> str:
    """Move run_dir/name to superseded/<name>.<n> (kept for its logs, out of the summary)."""
    target_dir = Path(run_dir) / SUPERSEDED
    target_dir.mkdir(exist_ok=True)
    n = 1
    while (target_dir / f"{name}.{n}").exists():
        n += 1
    (Path(run_dir) / name).rename(target_dir / f"{name}.{n}")
    return f"{SUPERSEDED}/{name}.{n}"


def saved_accuracy(run_dir: Path, keys: set[tuple]) -> dict | None:
    """The accuracy pass's results saved in accuracy/*/, if they cover every key; else None."""
    found = {}
    for case_dir in sorted((Path(run_dir) / "accuracy").glob("*/")):
        case, acc = _json(case_dir / "case.json"), _json(case_dir / "accuracy.json")
        if case and "final_acc" in acc:
            found[(case["model"]["arch"], case["model"]["split"], case["codec"],
                   case["method"])] = acc
    return found if keys <= set(found) else None


def prepare_resume(run_dir: Path, todo: list[str], accuracy_keys: set[tuple],
                   echo) -> tuple[dict | None, list[dict]]:
    """Move half-done case directories (and an unfinished accuracy pass) to superseded/;
    returns (the saved accuracy results if they cover `accuracy_keys`, the resume records)."""
    run_dir = Path(run_dir)
    moved = {name: set_aside(run_dir, name) for name in todo if (run_dir / name).exists()}
    accuracy = saved_accuracy(run_dir, accuracy_keys) if accuracy_keys else None
    if accuracy_keys and accuracy is None and (run_dir / "accuracy").exists():
        moved["accuracy"] = set_aside(run_dir, "accuracy")
    for name, where in moved.items():
        echo(f"resume: moved half-done {name} to {where}")
    record = {"utc": utc_now(), "pid": os.getpid(), "argv": sys.argv, "cases_to_run": todo,
              "moved_aside": moved, "accuracy_pass": ("reused" if accuracy else "rerun")
              if accuracy_keys else "not needed"}
    return accuracy, [*read_state(run_dir).get("resumes", []), record]


def check_resumable(run_dir: Path, given_raw: dict | None) -> tuple[dict, dict, dict]:
    """(saved scenario, meta, state) of a run that may be resumed; else a one-line reason."""
    run_dir = Path(run_dir)
    meta, state = _json(run_dir / "meta.json"), read_state(run_dir)
    try:
        saved = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    except (OSError, yaml.YAMLError):
        saved = None
    if not run_dir.is_dir() or not meta or not isinstance(saved, dict):
        raise HarnessError(f"--resume {run_dir}: not a run directory (meta.json and "
                           f"scenario.yaml needed)")
    if state.get("state") == "running":
        who = state.get("harness") or {}
        raise HarnessError(f"--resume {run_dir}: still running (harness pid {who.get('pid')} "
                           f"on {who.get('host')} is alive or cannot be checked from here)")
    if state.get("state") not in RESUMABLE:
        raise HarnessError(f"--resume {run_dir}: state {state.get('state')!r} is not resumable")
    if given_raw is not None and given_raw != saved:
        raise HarnessError(f"--resume {run_dir}: the scenario differs from the run's "
                           f"scenario.yaml at {_first_difference(saved, given_raw)}")
    commit, dirty = git_state()
    if commit != meta.get("git_commit"):
        raise HarnessError(f"--resume {run_dir}: the run was made at commit "
                           f"{str(meta.get('git_commit'))[:8]}, the checkout is at {commit[:8]}")
    if dirty and not meta.get("git_dirty"):
        raise HarnessError(f"--resume {run_dir}: the checkout has uncommitted changes, the "
                           f"run's had none")
    return saved, meta, state


def _first_difference(a, b, where: str = "") -> str:
    """The first dotted key at which two plain-data trees differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key, ...) != b.get(key, ...):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}".lstrip("."))
    return f"{where or 'top level'} (saved {a!r}, given {b!r})"
