"""What the topology will build, decided without building it (imports no mininet).

    python -c "from harness.emulation.plan import plan; from harness.config import ComputeConfig; \
from harness.emulation.links import load_profile; print(plan(load_profile('3g'), ComputeConfig())[2])"

`plan` turns a link profile and the compute shares into per-interface parameters and the
emulation record (which mechanism applies rate, delay, loss, queue); the parsers read back what
the kernel holds, for the record and for the checks after the build.
"""
from __future__ import annotations

import contextlib
import os
import re

from harness.config import ComputeConfig, dilation_of
from harness.emulation.doctor import netem_available
from harness.emulation.links import LinkProfile, link_params
from harness.errors import HarnessError

CFS_PERIOD_US = 10_000


def plan(profile: LinkProfile, compute: ComputeConfig, *, tcp_cc: str | None = None,
         netem: bool | None = None) -> tuple[dict, dict, dict]:
    """(edge params, cloud params, emulation record) without building anything."""
    netem = netem_available() if netem is None else netem
    edge, cloud = link_params(profile, netem)
    ncpu = os.cpu_count() or 1
    k = dilation_of(compute)
    shares = {role: compute.cgroup_cores(role) for role in ("edge", "cloud")}
    for role, cores in shares.items():
        if not compute.pace and not 0 < cores <= ncpu:
            raise HarnessError(f"compute.{role}_cores: {cores * k:g} is not in (0, {ncpu * k:g}] "
                               f"(CPU cores on this machine" + (f", x{k:g} dilated)" if k != 1 else
                                                                ")"))
    impaired = profile.rtt_ms > 0 or profile.jitter_ms > 0 or profile.down_jitter_ms > 0
    lossy = profile.loss_pct > 0 or profile.down_loss_pct > 0
    emulation = {
        "netem": netem, "rate": "htb",
        "delay": "netem" if netem else "nfqueue", "loss": "none",
        "queue": "netem limit" if netem else "pfifo under htb",
        "queue_packets": profile.queue_packets,
        "jitter_loss_direction": "each on its own direction (receiver's INPUT chain, or "
                                 "sender's netem)",
        "offloads_requested": "off (gro, tx, rx, tso, gso)",   # what ethtool reports: *_offloads
        # sysctl inside a Mininet host fails (EPERM): a chosen one is set per socket by workers
        "tcp_cc": workers_cc(tcp_cc), "tcp_cc_set": "per socket (TCP_CONGESTION)" if tcp_cc else "kernel default",
        "edge_cpu_fraction": shares["edge"] / ncpu, "cloud_cpu_fraction": shares["cloud"] / ncpu,
        "edge_cores": shares["edge"], "cloud_cores": shares["cloud"], "cpu_count": ncpu,
        "dilation": k,
        "cfs_period_us": CFS_PERIOD_US,
        "compute": ("paced: each step waits out the runtime model's time on the virtual device "
                    f"(edge {compute.edge_cores:g}, cloud {compute.cloud_cores:g} virtual cores); "
                    "each host's share is one core per thread" if compute.pace else
                    "CPU shares: each host's cgroup quota is its virtual cores / the dilation"),
    }
    varying = [d for d in ("up", "down") if profile.varying(d)]
    if varying:
        emulation["rate"] = "; ".join(
            f"{d}: delay daemon's trace link ({_how(profile, d)}"
            f"{', outages' if profile.outage_windows(d) else ''}; queue {profile.queue_packets} packets)"
            for d in varying) + ("; others: htb" if len(varying) == 1 else "")
    if lossy:
        emulation["loss"] = "netem" if netem else "iptables-statistic"
    if not impaired:
        emulation["delay"] = "none (profile has no delay)"
    return edge, cloud, emulation


def workers_cc(wanted: str | None) -> str:
    """The congestion control workers will use: the requested one (checked) or the default."""
    with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as fh:
        available = fh.read().split()
    if wanted is not None and wanted not in available:
        raise HarnessError(f"tcp_cc: '{wanted}' not available (kernel has: {', '.join(available)})")
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as fh:
        return wanted or fh.read().strip()


def _how(profile, d: str) -> str:
    """What sets a daemon-served direction's rate: its trace, its rate steps, a fixed rate."""
    return ("trace" if getattr(profile, f"{d}_trace") else
            f"rate steps {getattr(profile, f'{d}_steps')}" if getattr(profile, f"{d}_steps")
            else "fixed rate")


def tc_rate_mbps(text: str) -> float | None:
    """The first `rate <n><unit>` in tc output, in Mbit/s (tc's K/M/G are powers of 1000)."""
    match = re.search(r"\brate (\d+(?:\.\d+)?)([KMG]?)bit", text)
    if not match:
        return None
    return float(match.group(1)) * {"": 1e-6, "K": 1e-3, "M": 1.0, "G": 1e3}[match.group(2)]


OFFLOAD_FEATURES = ("generic-receive-offload", "tx-checksumming", "rx-checksumming",
                    "tcp-segmentation-offload", "generic-segmentation-offload")


def offloads(ethtool_k: str) -> dict:
    """The offload features as `ethtool -k` reports them ('on', 'off', or 'unknown')."""
    found = {}
    for line in ethtool_k.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and name in OFFLOAD_FEATURES:
            found[name] = value.split()[0] if value.split() else "unknown"
    return {name: found.get(name, "unknown") for name in OFFLOAD_FEATURES}


def cfs_cores(role: str) -> float | None:
    """CPU cores the host's cgroup may use (cfs quota / period), None if unreadable."""
    base = f"/sys/fs/cgroup/cpu/{role}/cpu.cfs_"
    with contextlib.suppress(OSError, ValueError):
        with open(base + "quota_us") as quota, open(base + "period_us") as period:
            return int(quota.read()) / int(period.read())
    return None
