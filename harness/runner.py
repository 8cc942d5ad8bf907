"""Run one case as two worker processes: start, wait ready, run, collect, evaluate.

    python run_bench.py pair --methods all --max-batches 20

A launcher decides where the workers run: `LocalLauncher` starts them as local processes
(loopback, or two machines by hand); the Mininet topology provides one that starts them in its
hosts. Whatever happens, every started process group is killed in `finally`, and the case
directory records `status.json` (ok, or failed and why).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from harness import methods as m
from harness.config import Case
from harness.data import ImageData
from harness.errors import HarnessError
from harness.local import build_model, eval_batches
from harness.metrics import load_events, totals
from harness.netclean import kill_groups

READY_TIMEOUT_S = 60.0
MININET_PORT = 5555


@dataclass
class LocalLauncher:
    """Workers as local processes; the cloud listens on `host`."""
    host: str = "127.0.0.1"
    python: str = sys.executable
    env: dict = field(default_factory=dict)

    def start(self, role: str, args: list[str], log_path: Path) -> subprocess.Popen:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                          env.get("PYTHONPATH")]))
        with open(log_path, "ab") as log:
            return subprocess.Popen([self.python, "-m", f"harness.{role}", *args], stdout=subprocess.PIPE,
                                    stderr=log, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)

    def cloud_listen(self) -> str:
        return f"{self.host}:0"

    def cloud_connect(self, ready: str) -> str:
        return ready

    def kill(self, proc: subprocess.Popen) -> None:
        kill_group(proc)

    known_address = None          # port 0: the edge must wait for the cloud's READY
    join = None                   # no cgroups
    describe = "loopback TCP on this machine, no link shaping, no CPU shares"


@dataclass
class MininetLauncher:
    """Workers inside the hosts of a running `topology.emulated_link` (its CPU cgroups)."""
    link: object
    python: str = sys.executable

    def start(self, role: str, args: list[str], log_path: Path) -> subprocess.Popen:
        repo = str(Path(__file__).resolve().parent.parent)
        # Started outside the host's CPU cgroup (imports at full speed); the worker joins it
        # itself right before training (harness.worker.join_cgroup) and logs that it did.
        env = {**os.environ, "PYTHONPATH": repo, "HIERBENCH_CGROUP": role}
        with open(log_path, "ab") as log:
            return self.link.popen(role, [self.python, "-m", f"harness.{role}", *args],
                                   cgroup=False, stdout=subprocess.PIPE, stderr=log,
                                   stdin=subprocess.DEVNULL, env=env, cwd=repo)

    def cloud_listen(self) -> str:
        return self.known_address

    def cloud_connect(self, ready: str) -> str:
        return ready

    def kill(self, proc: subprocess.Popen) -> None:
        self.link.kill(proc)

    @staticmethod
    def join(role: str, pid: int) -> None:
        """Move a worker into its host's CPU cgroup (from the root mount namespace)."""
        for controller in ("cpu", "cpuacct"):
            with open(f"/sys/fs/cgroup/{controller}/{role}/cgroup.procs", "w") as fh:
                fh.write(str(pid))

    @property
    def known_address(self) -> str:
        """The cloud host's own namespace: a fixed port is free, so both start at once."""
        return f"{self.link.cloud_ip}:{MININET_PORT}"

    @property
    def describe(self) -> str:
        return f"Mininet link '{self.link.profile.name}'"


class StdoutReader(threading.Thread):
    """Reads a worker's stdout: `READY host:port` (cloud) and `JOIN pid` (cgroup requests)."""

    def __init__(self, role: str, proc: subprocess.Popen, on_join=None):
        super().__init__(name=f"{role}-stdout", daemon=True)
        self.role, self.proc, self.on_join = role, proc, on_join
        self.ready: str | None = None
        self.error: str | None = None
        self.event = threading.Event()
        self.start()

    def run(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("READY "):
                self.ready = line.split()[1]
                self.event.set()
            elif line.startswith("JOIN ") and self.on_join is not None:
                try:
                    self.on_join(self.role, int(line.split()[1]))
                except (OSError, ValueError) as exc:
                    self.error = f"could not move {self.role} into its cgroup: {exc}"
        self.event.set()

    def wait_ready(self, timeout_s: float) -> str:
        if not self.event.wait(timeout_s):
            raise HarnessError(f"{self.role} did not print READY within {timeout_s:.0f} s")
        if self.ready is None:
            raise HarnessError(f"{self.role} exited before READY (status {self.proc.wait()})")
        return self.ready


def wait_ready(proc: subprocess.Popen, timeout_s: float) -> str:
    """Wait for a cloud's `READY host:port` line; returns host:port."""
    return StdoutReader("cloud", proc).wait_ready(timeout_s)


def kill_group(proc: subprocess.Popen, grace_s: float = 2.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace_s`."""
    kill_groups([proc], grace_s)


def last_error(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1]


def wait_workers(procs: dict[str, subprocess.Popen], case_dir: Path, timeout_s: float,
                 on_poll=None) -> None:
    """Wait for every worker; the first non-zero exit fails the case (and stops the others)."""
    deadline = time.monotonic() + timeout_s
    pending = dict(procs)
    last_poll = 0.0
    while pending:
        if on_poll is not None and time.monotonic() - last_poll > 0.5:
            on_poll()
            last_poll = time.monotonic()
        for role, proc in list(pending.items()):
            code = proc.poll()
            if code is None:
                continue
            del pending[role]
            if code != 0:
                raise HarnessError(f"{role} worker failed (exit {code}): "
                                   f"{last_error(case_dir / f'{role}.log')}")
        if time.monotonic() > deadline:
            raise HarnessError(f"workers still running after {timeout_s:.0f} s: {', '.join(pending)}")
        time.sleep(0.05)


def write_status(case_dir: Path, status: str, reason: str = "") -> None:
    (case_dir / "status.json").write_text(json.dumps({"status": status, "reason": reason}) + "\n")


def run_case(case: Case, case_dir: Path, launcher=None, timeout_s: float = 3600.0,
             on_poll=None) -> dict:
    """Run one case's workers to completion; returns the per-run totals (training only)."""
    launcher = launcher or LocalLauncher()
    case_dir.mkdir(parents=True, exist_ok=False)
    (case_dir / "case.json").write_text(json.dumps(case.to_dict(), indent=2) + "\n")
    procs: dict[str, subprocess.Popen] = {}
    readers: dict[str, StdoutReader] = {}

    def start(role, args):
        procs[role] = launcher.start(role, ["--case-dir", str(case_dir), *args], case_dir / f"{role}.log")
        readers[role] = StdoutReader(role, procs[role], launcher.join)

    write_status(case_dir, "running")
    try:
        edge_args = ["--connect-timeout", f"{READY_TIMEOUT_S:g}"]
        if case.method != "edge":
            start("cloud", ["--listen", launcher.cloud_listen()])
            if launcher.known_address:       # start both now; the edge retries its connect
                start("edge", edge_args + ["--connect", launcher.known_address])
            ready = readers["cloud"].wait_ready(READY_TIMEOUT_S)
            edge_args += ["--connect", launcher.cloud_connect(ready)]
        if "edge" not in procs:
            start("edge", edge_args)
        wait_workers(procs, case_dir, timeout_s, on_poll)
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
    (case_dir / "totals.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_part(case_dir: Path, name: str) -> dict:
    path = case_dir / f"{name}.pt"
    if not path.exists():
        raise HarnessError(f"{path} missing: the worker did not save its part")
    return torch.load(path, map_location="cpu", weights_only=True)


def evaluate_case(case: Case, case_dir: Path, train: ImageData, test: ImageData) -> dict:
    """Accuracy of the final exit and (hierarchical) the edge exit, from the saved parts."""
    model = build_model(case, train)
    model.edge.load_state_dict(load_part(case_dir, "edge_part"))
    model.cloud.load_state_dict(load_part(case_dir, "cloud_part"))
    head = None
    if case.method == "hierarchical":
        model.exit_head.load_state_dict(load_part(case_dir, "exit_head"))
        head = model.exit_head
    return m.evaluate(model.edge, model.cloud, head, eval_batches(test))
