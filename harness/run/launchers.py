"""Where a case's workers run: local processes (loopback) or the hosts of a Mininet link.

    python -c "from harness.run.launchers import LocalLauncher"

A launcher starts `python -m harness.workers.<role>` in its own process group (under Mininet
forked from a per-host fork server that has imported torch once: harness.workers.prefork,
~4 s less per case), says where the cloud listens and how the edge reaches it, moves a worker into its CPU cgroup when asked, and
kills what it started. Both launchers run the workers on one machine, so they tell the workers
their clocks are one (HIERBENCH_CLOCK=shared).
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.paths import REPO
from harness.procs import kill_group
from harness.run.prefork import ForkServer
from harness.workers.auth import SECRET_ENV, SECRET_FILE_ENV

MININET_PORT = 5555
WORKER_MODULE = "harness.workers.{role}"


def _worker_argv(python: str, role: str, args: list[str]) -> list[str]:
    return [python, "-m", WORKER_MODULE.format(role=role), *args]


@dataclass
class LocalLauncher:
    """Workers as local processes; the cloud listens on `host`."""
    host: str = "127.0.0.1"
    python: str = sys.executable
    env: dict = field(default_factory=dict)

    def start(self, role: str, args: list[str], log_path: Path) -> subprocess.Popen:
        env = {**os.environ, **self.env, "HIERBENCH_CLOCK": "shared"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(log_path, "ab") as log:
            return subprocess.Popen(_worker_argv(self.python, role, args), stdout=subprocess.PIPE,
                                    stderr=log, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)

    def restart_schedule(self) -> dict | None:
        """No link here: nothing varies over time."""
        return None

    def cloud_listen(self) -> str:
        return f"{self.host}:0"

    def cloud_connect(self, ready: str) -> str:
        return ready

    def kill(self, proc: subprocess.Popen) -> None:
        kill_group(proc)

    known_address = None          # port 0: the edge must wait for the cloud's READY
    join = None                   # no cgroups
    watch = None                  # no helpers beside the workers
    describe = "loopback TCP on this machine, no link shaping, no CPU shares"


def new_secret() -> str:
    """A fresh shared secret for one launcher's workers (256 bits, hex)."""
    return secrets.token_hex(32)


@dataclass
class MininetLauncher:
    """Workers inside the hosts of a running `emulation.topology.emulated_link` (CPU cgroups).

    The cloud listens on the Mininet host's address, not loopback, so the workers authenticate
    each other: the launcher makes one secret per link and hands it to both through the
    environment (HIERBENCH_SECRET), never on a command line other users could read in `ps`.
    """
    link: object
    python: str = sys.executable
    secret: str = field(default_factory=new_secret)
    servers: dict = field(default_factory=dict)       # role -> ForkServer, started on first use

    def start(self, role: str, args: list[str], log_path: Path):
        # Forked from the host's fork server (harness.workers.prefork: torch already imported),
        # outside the host's CPU cgroup; the worker joins it itself right before training
        # (harness.workers.common.join_cgroup) and logs that.
        if any(server.proc.poll() is not None for server in self.servers.values()):
            self.close()                     # one died (and failed its case): start afresh
        if not self.servers:                 # both hosts' servers import torch at once
            env = {**os.environ, "PYTHONPATH": str(REPO), "HIERBENCH_CLOCK": "shared",
                   SECRET_ENV: self.secret}
            env.pop(SECRET_FILE_ENV, None)   # a user's secret file would win over this one
            logs = log_path.parent.parent / "links" / self.link.profile.name
            logs.mkdir(parents=True, exist_ok=True)
            for host in ("cloud", "edge"):
                self.servers[host] = ForkServer(host, self.link.popen, self.python, env,
                                                logs / f"prefork-{host}.log")
            try:
                for server in self.servers.values():
                    server.wait_ready()
            except HarnessError:
                self.close()                 # the next case starts them afresh
                raise
        return self.servers[role].start(args, log_path, {"HIERBENCH_CGROUP": role})

    def close(self) -> None:
        """The fork servers' FIFO directories (the link's teardown kills the servers)."""
        servers, self.servers = self.servers, {}
        for server in servers.values():
            self.link.kill(server.proc)
            server.close()

    def restart_schedule(self) -> dict | None:
        """Start a trace-driven or outage-bearing link's schedule from zero for the case about
        to run; the record (time origin on the workers' clock, traces, outages) or None."""
        p = self.link.profile
        if not p.time_varying:
            return None
        from harness.emulation.links import daemon_link
        return {"origin_monotonic": self.link.restart_schedule(), "scale": p.trace_scale,
                "up": daemon_link(p, "up"), "down": daemon_link(p, "down"),
                "outages": [list(o) for o in p.outages]}

    def cloud_listen(self) -> str:
        return self.known_address

    def cloud_connect(self, ready: str) -> str:
        return ready

    def kill(self, proc: subprocess.Popen) -> None:
        self.link.kill(proc)

    def watch(self) -> None:
        """Fail the case at once when a delay daemon, host shell or fork server died."""
        self.link.check_alive()
        for server in self.servers.values():
            server.check_alive()

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
