"""Run one case as two worker processes: start, wait ready, run, collect, evaluate.

    python run_bench.py pair --methods all --max-batches 20

A launcher (harness.run.launchers) decides where the workers run. Whatever happens, every
started process group is killed in `finally`, and the case directory records `status.json`
(ok, or failed and why).
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import torch

from harness.files import write_json
from harness.analysis.totals import load_events, totals
from harness.config import Case
from harness.errors import HarnessError
from harness.procs import StdoutReader, exit_text, tail
from harness.run.launchers import LocalLauncher
from harness.train import methods as m
from harness.train.batches import build_model, eval_batches
from harness.train.data import ImageData

WORKER_READY_TIMEOUT_S = 60.0


POLL_S = 0.05
POLL_EVERY_S = 0.5      # progress and the timing window
SETTLE_S = 0.3          # after a first death, how long the others get to show theirs


def last_error(log_path: Path) -> str:
    """The worker's `error:` line (or its last lines) from its stderr log."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    errors = [ln for ln in lines if ln.startswith("error:")]
    return errors[-1] if errors else (tail("\n".join(lines)) or "(no output)")


def wait_workers(procs: dict[str, subprocess.Popen], case_dir: Path, timeout_s: float,
                 on_poll=None, watch=None, on_tick=None) -> None:
    """Wait for every worker; the first failure fails the case (and the caller stops the rest).

    `on_poll()` is called every POLL_EVERY_S (progress, the timing window), `on_tick()` every
    POLL_S (what must follow the workers closely: a time-varying link's time zero).
    `watch()` is called every POLL_S and raises HarnessError when a helper the case depends on
    (a delay daemon, a Mininet shell) has died, so no failure waits for a worker's idle timeout.
    """
    deadline = time.monotonic() + timeout_s
    pending = dict(procs)
    last_poll = 0.0
    while pending:
        if on_poll is not None and time.monotonic() - last_poll > POLL_EVERY_S:
            on_poll()
            last_poll = time.monotonic()
        if on_tick is not None:
            on_tick()
        if watch is not None:
            watch()
        for role, proc in list(pending.items()):
            code = proc.poll()
            if code is None:
                continue
            del pending[role]
            if code != 0:
                raise HarnessError(_worker_failure(procs, case_dir, watch))
        if time.monotonic() > deadline:
            raise HarnessError(f"workers still running after {timeout_s:.0f} s: {', '.join(pending)}")
        time.sleep(POLL_S)


def _worker_failure(procs: dict[str, subprocess.Popen], case_dir: Path, watch) -> str:
    """Name the worker that died first: one killed by a signal (or a dead helper) is the
    cause; a peer that exits 1 on the broken connection right after it is the consequence."""
    time.sleep(SETTLE_S)
    if watch is not None:
        watch()                                  # a dead delay daemon is the cause, say so
    failed = [(role, p.poll()) for role, p in procs.items() if p.poll() not in (None, 0)]
    failed.sort(key=lambda rc: rc[1] >= 0)       # signals first
    parts = [f"{role} worker failed ({exit_text(code)}): {last_error(case_dir / f'{role}.log')}"
             for role, code in failed]
    return "; then ".join(parts)


def write_status(case_dir: Path, status: str, reason: str = "") -> None:
    write_json(case_dir / "status.json", {"status": status, "reason": reason})


def run_case(case: Case, case_dir: Path, launcher=None, timeout_s: float = 3600.0,
             on_poll=None, on_tick=None) -> dict:
    """Run one case's workers to completion; returns the per-run totals (training only)."""
    launcher = launcher or LocalLauncher()
    case_dir.mkdir(parents=True, exist_ok=False)
    write_json(case_dir / "case.json", case.to_dict(), indent=2)
    procs: dict[str, subprocess.Popen] = {}
    readers: dict[str, StdoutReader] = {}

    def start(role, args):
        procs[role] = launcher.start(role, ["--case-dir", str(case_dir), *args], case_dir / f"{role}.log")
        readers[role] = StdoutReader(role, procs[role], launcher.join)

    write_status(case_dir, "running")
    try:
        edge_args = ["--connect-timeout", f"{WORKER_READY_TIMEOUT_S:g}"]
        if case.method != "edge":
            start("cloud", ["--listen", launcher.cloud_listen()])
            if launcher.known_address:       # start both now; the edge retries its connect
                start("edge", edge_args + ["--connect", launcher.known_address])
            try:
                ready = readers["cloud"].wait_ready(WORKER_READY_TIMEOUT_S)
            except HarnessError as exc:   # its stderr went to cloud.log: quote the reason
                raise HarnessError(f"{exc}: {last_error(case_dir / 'cloud.log')}") from None
            edge_args += ["--connect", launcher.cloud_connect(ready)]
        if "edge" not in procs:
            start("edge", edge_args)
        wait_workers(procs, case_dir, timeout_s, on_poll, getattr(launcher, "watch", None),
                     on_tick)
        for reader in readers.values():
            if reader.error:
                raise HarnessError(reader.error)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
        write_status(case_dir, "failed", reason or "interrupted")
        raise
    finally:
        for role, proc in procs.items():
            launcher.kill(proc)
            if role in readers:
                readers[role].join(timeout=2)
    result = totals(load_events(case_dir))
    write_status(case_dir, "ok")
    write_json(case_dir / "totals.json", result, indent=2)
    return result


def load_part(case_dir: Path, name: str) -> dict:
    path = case_dir / f"{name}.pt"
    if not path.exists():
        raise HarnessError(f"{path} missing: the worker did not save its part")
    return torch.load(path, map_location="cpu", weights_only=True)


def evaluate_case(case: Case, case_dir: Path, train: ImageData, test: ImageData) -> dict:
    """Accuracy of the final exit and (hierarchical) the edge exit, from the saved parts."""
    model = build_model(case, train.spec)
    model.edge.load_state_dict(load_part(case_dir, "edge_part"))
    model.cloud.load_state_dict(load_part(case_dir, "cloud_part"))
    head = None
    if case.method == "hierarchical":
        model.exit_head.load_state_dict(load_part(case_dir, "exit_head"))
        head = model.exit_head
    return m.evaluate(model.edge, model.cloud, head, eval_batches(test))
