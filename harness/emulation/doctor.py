"""What this machine can emulate, and how to fix what is missing.

    sudo .venv/bin/python -m harness.emulation.doctor

Each check is (name, ok, detail or fix). Probes are fast and leave nothing behind: qdisc and
iptables probes run in a throwaway network namespace (`unshare -n`) that dies with the probe.
`netem_available()` is also what the topology asks before choosing netem or NFQUEUE.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.paths import FASHION_MNIST_DIR

PROBE_TIMEOUT_S = 5.0
NFQ_PROBE = ("from netfilterqueue import NetfilterQueue as Q; q = Q(); "
             "q.bind(4242, lambda p: p.accept()); q.unbind()")


def _run(argv: list[str], timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Run a probe; (exit status 0, last line of its output)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else ""


def _in_netns(shell: str) -> tuple[bool, str]:
    """Run a shell line in a fresh, unnamed network namespace (gone when it exits)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False, "needs root and unshare (util-linux)"
    return _run(["unshare", "--net", "sh", "-c", shell])


@functools.lru_cache(maxsize=None)
def netem_available() -> bool:
    """Whether the kernel has sch_netem (probed once per process)."""
    return _in_netns("tc qdisc add dev lo root netem delay 1ms")[0]


def probe_htb() -> tuple[bool, str]:
    """HTB root qdisc with one rate class on a throwaway loopback."""
    return _in_netns("tc qdisc add dev lo root handle 5: htb default 1 && "
                     "tc class add dev lo parent 5: classid 5:1 htb rate 1mbit burst 15k")


def probe_nfqueue() -> tuple[bool, str]:
    """An NFQUEUE rule plus a NetfilterQueue bind in a throwaway namespace."""
    return _in_netns(f"iptables -A INPUT -j NFQUEUE --queue-num 4242 && "
                     f"{sys.executable} -c '{NFQ_PROBE}'")


def _tool(name: str, package: str) -> tuple[str, bool, str]:
    path = shutil.which(name)
    return name, bool(path), path or f"missing: apt-get install {package}"


def _python_pkg(module: str, fix: str) -> tuple[str, bool, str]:
    spec = importlib.util.find_spec(module)
    where = spec.origin if spec else None
    return f"python: {module}", spec is not None, where or f"missing: {fix}"


def _cgroup_cpu() -> tuple[str, bool, str]:
    v1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v1.exists():
        return "cgroup cpu", True, "cgroup v1 cpu controller (cfs quota)"
    if v2.exists() and "cpu" in v2.read_text().split():
        return "cgroup cpu", True, "cgroup v2 cpu controller (Mininet 2.3 expects v1: may fail)"
    return "cgroup cpu", False, "no cpu cgroup controller: CPULimitedHost cannot limit CPU"


def _kernel_rows() -> list[tuple[str, bool, str]]:
    netem = netem_available()
    htb_ok, htb_detail = probe_htb()
    nfq_ok, nfq_detail = probe_nfqueue()
    return [
        ("sch_netem", netem, "delay/loss via tc netem" if netem else
         "kernel lacks sch_netem: delay via NFQUEUE + harness.delayd, loss via iptables statistic"),
        ("sch_htb", htb_ok, "rate shaping via HTB" if htb_ok else
         f"HTB failed ({htb_detail}): kernel needs CONFIG_NET_SCH_HTB"),
        ("NFQUEUE", nfq_ok, "iptables NFQUEUE + NetfilterQueue bind work" if nfq_ok else
         f"NFQUEUE failed ({nfq_detail}): kernel needs NETFILTER_XT_TARGET_NFQUEUE; "
         "pip install NetfilterQueue (apt-get install libnetfilter-queue-dev first)"),
    ]


OPTIONAL_RAY = "python: ray (optional)"


def checks() -> list[tuple[str, bool, str]]:
    """All checks, in the order a user would fix them."""
    root = os.geteuid() == 0
    rows = [("root", root, "running as root" if root else "run as root (Mininet, tc, iptables)")]
    rows.append(_python_pkg("mininet", "pip install mininet==2.3.0.dev6 (and apt-get install mininet)"))
    rows.append(_tool("mnexec", "mininet"))
    rows += _kernel_rows() if root else [
        (name, False, "not probed: needs root") for name in ("sch_netem", "sch_htb", "NFQUEUE")]
    rows.append(_python_pkg("netfilterqueue",
                            "apt-get install libnetfilter-queue-dev && pip install NetfilterQueue"))
    rows.append(_tool("iptables", "iptables"))
    rows.append(_cgroup_cpu())
    rows.append(_tool("cgcreate", "cgroup-tools"))
    rows.append(_tool("iperf3", "iperf3"))
    rows.append(_tool("ping", "iputils-ping"))
    rows.append(_tool("ethtool", "ethtool"))
    rows.append(_tool("tc", "iproute2"))
    rows.append(_python_pkg("torch", "pip install torch==2.14.1 torchvision==0.29.1"))
    data_ok = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
    rows.append(("Fashion-MNIST", data_ok, str(FASHION_MNIST_DIR) if data_ok else
                 "missing: apt-get install dataset-fashion-mnist"))
    ray = _python_pkg("ray", "make setup-cluster")
    rows.append((OPTIONAL_RAY, ray[1], ray[2] if ray[1] else "not installed (only run --cluster "
                 "needs it): make setup-cluster"))
    return rows


def emulation_ok(rows: list[tuple[str, bool, str]]) -> bool:
    """Whether delay can be emulated at all: netem, or NFQUEUE + NetfilterQueue."""
    ok = {name: good for name, good, _ in rows}
    return ok.get("sch_netem", False) or (ok.get("NFQUEUE", False) and
                                           ok.get("python: netfilterqueue", False))


def format_report(rows: list[tuple[str, bool, str]]) -> str:
    """A fixed-width table: one line per check; netem alone missing is not a failure."""
    width = max(len(name) for name, _, _ in rows)
    lines = []
    for name, ok, detail in rows:
        optional = name == OPTIONAL_RAY or (name == "sch_netem" and emulation_ok(rows))
        mark = "ok" if ok else ("--" if optional else "MISSING")
        lines.append(f"{name:<{width}}  {mark:<7}  {detail}")
    return "\n".join(lines)


def all_ok(rows: list[tuple[str, bool, str]]) -> bool:
    """Everything required is there: every check but netem (NFQUEUE stands in), and delay."""
    return (all(ok for name, ok, _ in rows if name not in ("sch_netem", OPTIONAL_RAY))
            and emulation_ok(rows))


def main() -> int:
    """Print the report; exit 1 when something required is missing (as `run_bench.py doctor`)."""
    rows = checks()
    print(format_report(rows))
    return 0 if all_ok(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
