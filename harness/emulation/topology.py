"""Two Mininet hosts, `edge` and `cloud`, joined by one shaped link (the only mininet import).

    sudo .venv/bin/python -c "from harness.emulation.topology import demo; demo('3g')"

Rate: HTB on each sender's egress (TCLink). Delay, jitter, loss: netem when the kernel has it;
otherwise `harness.emulation.delayd` on an NFQUEUE of the receiver's INPUT chain and an iptables
`statistic` DROP rule there (DESIGN.md section 3). `emulation` records what actually applied.
Teardown runs in `finally`, is idempotent, and kills every process group it started.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from mininet.link import TCLink
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import CPULimitedHost

from harness.config import ComputeConfig
from harness.emulation.links import LinkProfile, load_profile
from harness.emulation.netclean import (MARKER_ENV, RULE_TAG, clean, emulation_lock, leftovers,
                                        remove_cgroups)
from harness.emulation.plan import CFS_PERIOD_US, cfs_cores, offloads, plan, tc_rate_mbps
from harness.errors import HarnessError
from harness.paths import REPO
from harness.procs import StdoutReader, exit_text, kill_groups, tail

IPS = {"edge": "10.0.0.1", "cloud": "10.0.0.2"}
QUEUE_NUM = {"edge": 11, "cloud": 12}   # NFQUEUE numbers (one per receiving host)
DELAYD_READY_TIMEOUT_S = 10.0


@dataclass
class EmulatedLink:
    """A running two-host emulation; use through `emulated_link()`."""
    profile: LinkProfile
    emulation: dict
    net: Mininet | None = None
    procs: list = field(default_factory=list)     # (role, Popen) started through popen()
    daemons: list = field(default_factory=list)   # (role, Popen) delayd instances
    rules: list = field(default_factory=list)     # (role, iptables args after -A/-D)

    @property
    def edge(self):
        return self.host("edge")

    @property
    def cloud(self):
        return self.host("cloud")

    edge_ip, cloud_ip = IPS["edge"], IPS["cloud"]

    def host(self, role: str):
        """The Mininet host for 'edge' or 'cloud'."""
        if role not in IPS:
            raise HarnessError(f"role: unknown '{role}' (known: edge, cloud)")
        if self.net is None:
            raise HarnessError("the emulated link is stopped")
        return self.net.get(role)

    def intf(self, role: str) -> str:
        """The host's link interface name, e.g. edge-eth0 (for GLOO_SOCKET_IFNAME)."""
        return f"{role}-eth0"

    def popen(self, role: str, argv: list[str], *, cgroup: bool = True, **kw) -> subprocess.Popen:
        """Start argv in the host (own session and process group; in its CPU cgroup by default)."""
        host = self.host(role)
        env = dict(kw.pop("env", None) or os.environ)
        env[MARKER_ENV] = f"{os.getpid()}:{role}"
        if self.emulation.get("tcp_cc_set", "").startswith("per socket"):
            env["HIERBENCH_TCP_CC"] = self.emulation["tcp_cc"]
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        if not cgroup:  # mnexec -d: setsid, so pid == process group id
            kw["mncmd"] = ["mnexec", "-da", str(host.pid)]
        proc = host.popen(list(argv), env=env, **kw)
        self.procs.append((role, proc))
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """Stop one process group started by popen() and forget it."""
        kill_groups([proc])
        self.procs = [(r, p) for r, p in self.procs if p is not proc]

    def restart_schedule(self, outages: bool = True) -> float:
        """Time zero of the traces and outages is now (a case starts; a calibration without
        the outages): signals each delay daemon; returns the monotonic time it was sent."""
        now = time.monotonic()
        if self.profile.time_varying:
            for _role, proc in self.daemons:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGUSR1 if outages else signal.SIGUSR2)
        return now

    def check_alive(self) -> None:
        """HarnessError naming the first delay daemon or host shell that has died.

        A dead delay daemon leaves its NFQUEUE rule without a reader, so the kernel drops
        every packet on that direction and the workers would only notice at their idle
        timeout; polling this every few tens of ms turns that into an immediate failure.
        """
        for role, proc in self.daemons:
            code = proc.poll()
            if code is not None:
                err = ""
                if proc.stderr is not None:
                    with contextlib.suppress(OSError, ValueError):
                        err = tail(proc.stderr.read() or "")
                raise HarnessError(f"delay daemon (harness.emulation.delayd) in {role}, pid "
                                   f"{proc.pid}, died: {exit_text(code)}"
                                   + (f"; stderr: {err}" if err else ""))
        for host in (self.net.hosts if self.net is not None else []):
            shell = getattr(host, "shell", None)
            if shell is not None and shell.poll() is not None:
                raise HarnessError(f"Mininet shell of host {host.name}, pid {shell.pid}, died: "
                                   f"{exit_text(shell.poll())}")

    def cmd(self, role: str, line: str) -> str:
        """Run a short shell line in the host and return its output."""
        return self.host(role).cmd(line)

    def stop(self) -> None:
        """Tear everything down; idempotent, and a second call finishes an interrupted one."""
        procs, self.procs = self.procs, []
        kill_groups([p for _, p in procs])
        rules, self.rules = self.rules, []
        for role, rule in reversed(rules):
            self._iptables_direct(role, "-D " + rule)
        daemons, self.daemons = self.daemons, []
        kill_groups([p for _, p in daemons])
        net, self.net = self.net, None
        if net is not None:
            _stop_net(net)
            remove_cgroups()

    def _iptables_direct(self, role: str, args: str) -> bool:
        """iptables in the host's namespace without its shell (which may be mid-command)."""
        argv = ["mnexec", "-a", str(self.host(role).pid), "iptables", *args.split()]
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            return subprocess.run(argv, capture_output=True, timeout=5).returncode == 0
        return False


def _stop_net(net: Mininet) -> None:
    """net.stop(), or, if a host shell is busy (interrupted cmd) or gone (net.stop would wait
    for its output forever), kill the shells directly."""
    gone = any(getattr(h, "shell", None) is None or h.shell.poll() is not None for h in net.hosts)
    if not gone and not any(host.waiting for host in net.hosts):
        with contextlib.suppress(Exception):
            net.stop()
            return
    # Killing a shell ends its namespace, which deletes its veth end and iptables rules.
    for host in net.hosts:
        with contextlib.suppress(Exception):
            host.terminate()


def _build(link: EmulatedLink, edge_p: dict, cloud_p: dict, compute: ComputeConfig) -> None:
    """Create the hosts and the TCLink; fix the queue and offloads Mininet leaves alone."""
    # Mininet logs HTB's harmless "quantum is big" as "*** Error"; _verify_applied checks
    # what the kernel holds instead.
    setLogLevel("critical")
    ncpu = os.cpu_count() or 1
    net = Mininet(topo=None, host=CPULimitedHost, link=TCLink, controller=None,
                  build=False, autoSetMacs=True, cleanup=False)
    link.net = net
    # CFS period 10 ms (Mininet's default is 100 ms): a half-core quota then alternates in
    # 5 ms slices, so a ~0.2 s training step sees the share it was given, not a 50 ms burst.
    for role in ("edge", "cloud"):     # under time dilation each host computes k times slower
        net.addHost(role, ip=IPS[role] + "/24", cpu=min(compute.cgroup_cores(role), ncpu) / ncpu,
                    period_us=CFS_PERIOD_US)
    net.addLink("edge", "cloud", params1=edge_p["tc"], params2=cloud_p["tc"])
    net.build()
    for role, params in (("edge", edge_p), ("cloud", cloud_p)):
        dev = link.intf(role)
        link.cmd(role, f"ethtool -K {dev} tso off gso off")  # TCIntf only sets gro/tx/rx
        if params["pfifo_limit"] is not None:
            out = link.cmd(role, f"tc qdisc add dev {dev} parent 5:1 handle 10: "
                                 f"pfifo limit {params['pfifo_limit']}")
            if out.strip():
                raise HarnessError(f"queue on {dev}: tc failed: {out.strip()}")


def _impair_inputs(link: EmulatedLink, edge_p: dict, cloud_p: dict) -> None:
    """Loss (iptables statistic) then delay (NFQUEUE -> delayd) on each receiver's INPUT chain."""
    for role, params in (("edge", edge_p), ("cloud", cloud_p)):
        imp, dev = params["input"], link.intf(role)
        if imp is None:
            continue
        tag = f"-m comment --comment {RULE_TAG}"
        if imp["loss_pct"] > 0:
            prob = imp["loss_pct"] / 100.0
            _add_rule(link, role, f"INPUT -i {dev} {tag} -m statistic --mode random "
                                  f"--probability {prob:.6f} -j DROP")
        if imp["delay_ms"] > 0 or imp["jitter_ms"] > 0 or imp.get("link"):
            # Outside the host's CPU cgroup: emulating the link must not eat the host's cores.
            proc = link.popen(role, _delayd_argv(QUEUE_NUM[role], imp), cgroup=False, text=True,
                              cwd=str(REPO))
            link.procs.remove((role, proc))
            link.daemons.append((role, proc))
            StdoutReader(f"delayd in {role}", proc).wait_ready(DELAYD_READY_TIMEOUT_S)
            _add_rule(link, role, f"INPUT -i {dev} {tag} -j NFQUEUE --queue-num {QUEUE_NUM[role]}")


def _delayd_argv(queue_num: int, impairment: dict) -> list[str]:
    argv = [sys.executable, "-m", "harness.emulation.delayd", "--queue-num", str(queue_num),
            "--delay-ms", f"{impairment['delay_ms']:g}", "--jitter-ms", f"{impairment['jitter_ms']:g}"]
    link = impairment.get("link")
    if link:
        argv += (["--trace", link["trace"]] if link["trace"] else
                 ["--steps", link["steps"]] if link.get("steps") else
                 ["--rate-mbps", repr(link["rate_mbps"])])
        argv += ["--trace-scale", repr(link["scale"]), "--queue-packets", str(link["queue_packets"])]
        argv += [arg for start, duration in link["outages"]
                 for arg in ("--outage", f"{start!r}:{duration!r}")]
    return argv


def _add_rule(link: EmulatedLink, role: str, rule: str) -> None:
    out = link.cmd(role, f"iptables -A {rule} && echo OK").strip()
    if not out.endswith("OK"):
        raise HarnessError(f"iptables in {role} failed: {out.splitlines()[0] if out else rule}")
    link.rules.append((role, rule))


def _verify_applied(link: EmulatedLink, edge_p: dict, cloud_p: dict) -> None:
    """Record the qdiscs the kernel holds; fail if a rate, netem or queue did not apply."""
    for role, params in (("edge", edge_p), ("cloud", cloud_p)):
        dev = link.intf(role)
        qdiscs = link.cmd(role, f"tc qdisc show dev {dev}").strip()
        rate = tc_rate_mbps(link.cmd(role, f"tc class show dev {dev}"))
        link.emulation[f"{role}_qdiscs"] = qdiscs.splitlines()
        link.emulation[f"{role}_htb_mbps"] = rate
        if rate is None or abs(rate - params["tc"]["bw"]) > 0.01 * params["tc"]["bw"]:
            raise HarnessError(f"rate shaping did not apply on {dev}: class rate {rate} Mbit/s, "
                               f"want {params['tc']['bw']:g}")
        if link.emulation["netem"] and "netem" not in qdiscs:
            raise HarnessError(f"netem did not apply on {dev}: {qdiscs!r}")
        if params["pfifo_limit"] and f"limit {params['pfifo_limit']}p" not in qdiscs:
            raise HarnessError(f"queue limit did not apply on {dev}: {qdiscs!r}")
        link.emulation[f"{role}_cfs_cores"] = cfs_cores(role)
        link.emulation[f"{role}_offloads"] = offloads(link.cmd(role, f"ethtool -k {dev}"))
    link.emulation["delayd_pids"] = {role: p.pid for role, p in link.daemons}
    link.emulation["tcp_cc_in_hosts"] = link.cmd(
        "edge", "cat /proc/sys/net/ipv4/tcp_congestion_control").strip()


@contextlib.contextmanager
def emulated_link(profile: LinkProfile | str, compute: ComputeConfig | None = None, *,
                  allow_no_delay: bool = False, tcp_cc: str | None = None):
    """Build the edge/cloud emulation, yield an EmulatedLink, always tear it down."""
    if os.geteuid() != 0:
        raise HarnessError("network emulation needs root (Mininet, tc, iptables)")
    profile = load_profile(profile) if isinstance(profile, str) else profile
    compute = compute or ComputeConfig()
    edge_p, cloud_p, emulation = plan(profile, compute, tcp_cc=tcp_cc)
    with emulation_lock():      # one emulation per machine: another live one is refused
        if leftovers():         # a crashed run's hosts, links, daemons or rules: remove them (mn -c)
            emulation["cleaned_at_start"] = clean()
            if leftovers():
                raise HarnessError(f"leftovers of an earlier run could not be removed: "
                                   f"{leftovers()[0]} (try: run_bench.py clean)")
        link = EmulatedLink(profile, emulation)
        try:
            _build(link, edge_p, cloud_p, compute)
            if not emulation["netem"]:
                _start_impairments(link, edge_p, cloud_p, allow_no_delay)
            _verify_applied(link, edge_p, cloud_p)
            yield link
        finally:
            link.stop()


def _start_impairments(link: EmulatedLink, edge_p: dict, cloud_p: dict, allow_no_delay: bool) -> None:
    try:
        _impair_inputs(link, edge_p, cloud_p)
    except HarnessError as exc:
        if not allow_no_delay:
            raise HarnessError(f"no netem and NFQUEUE delay failed: {exc}") from None
        for role, rule in reversed(link.rules):
            link.cmd(role, "iptables -D " + rule)
        link.rules.clear()
        kill_groups([p for _, p in link.daemons])
        link.daemons.clear()
        link.emulation["delay"] = "none (explicitly allowed)"
        if link.profile.loss_pct > 0 or link.profile.down_loss_pct > 0:
            link.emulation["loss"] = "none (explicitly allowed)"


def demo(name: str = "3g") -> None:
    """Build a profile's link, print what applied and a ping -U, tear down."""
    with emulated_link(name) as link:
        print("\n".join(f"{k}: {v}" for k, v in link.emulation.items()))
        print(link.cmd("edge", f"ping -U -c 3 -i 0.2 {link.cloud_ip}"))
