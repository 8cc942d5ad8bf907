"""Find and remove what a crashed emulation left behind (our share of `mn -c`).

    sudo .venv/bin/python -m harness.emulation.netclean          # list, then remove, what is ours

Ours means: Mininet shells of hosts `edge`/`cloud`, processes carrying the marker environment
variable the topology sets, `harness.emulation.delayd` anywhere, edge/cloud workers
outside the root network namespace, links `edge-eth*`/`cloud-eth*`, the hosts' CPU cgroups,
iptables rules tagged `hierbench`, and worker FIFO directories and cluster nodes' scratch
run directories whose owner is gone (`/tmp/hierbench-fifo-<pid>-*`, `/tmp/hierbench-node-
<pid>-*`). Unlike `mn -c` it never kills by broad name, so another
Mininet user on the machine is left alone. Every process is addressed by its pid.

The hosts' names, links and cgroups are fixed, so one emulation runs on a machine at a time:
a live one holds `emulation_lock` (a flock the kernel releases when its process dies), and
cleaning is refused while another process holds it, since what would be removed is that
emulation's, not a crash's.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.errors import HarnessError

HOSTS = ("edge", "cloud")
FIFO_PREFIX = "hierbench-fifo-"          # + the harness's pid (harness.run.prefork's FIFOs)
SCRATCH_PREFIX = "hierbench-node-"       # + a cluster task's pid (harness.run.cluster): a killed task's is removed
MARKER_ENV = "HIERBENCH_EMULATION"       # harness.emulation.topology sets it in every process it starts
RULE_TAG = "hierbench"                   # harness.emulation.topology tags every iptables rule with it
# Module names of workers, as they appear in a command line (older releases' names too).
WORKER_MODULES = ("harness.workers.edge", "harness.workers.cloud", "harness.workers.prefork",
                  "harness.edge", "harness.cloud")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset")
LOCK_NAME = "hierbench-emulation.lock"   # in the temp directory: held while an emulation lives


def _lock_path() -> Path:
    return Path(tempfile.gettempdir()) / LOCK_NAME


def live_emulation() -> str | None:
    """Which other live process holds the emulation lock ("pid N: its command"), or None."""
    fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if pid == str(os.getpid()):
            return None                   # this process's own emulation
        text = _read(Path(f"/proc/{pid}/cmdline")).replace(b"\0", b" ").decode(errors="replace")
        return f"pid {pid or '(being written)'}: {' '.join(text.split())[:80]}"
    finally:
        os.close(fd)                      # and with it a shared lock just taken


@contextlib.contextmanager
def emulation_lock():
    """Hold the machine's emulation lock for the body; HarnessError if another process holds it."""
    fd = os.open(_lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HarnessError(f"another emulation is running on this machine "
                               f"({live_emulation() or 'its pid unknown'}): hosts edge and cloud "
                               f"are in use; wait for it to end or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)                      # releases the lock


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _netns(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def _why_ours(pid: str, root_ns: str) -> str | None:
    """A short description if the process is ours, else None."""
    argv = _read(Path(f"/proc/{pid}/cmdline")).split(b"\0")
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    ns = _netns(pid)
    for host in HOSTS:
        if f"mininet:{host}".encode() in argv:
            return f"mininet shell of {host}, holding netns {ns}"
    if "harness.emulation.delayd" in text or "harness.delayd" in text:
        return f"delayd in netns {ns}"
    if ns and root_ns and ns != root_ns and any(w in text for w in WORKER_MODULES):
        return f"worker in netns {ns}"
    if f"{MARKER_ENV}=".encode() in _read(Path(f"/proc/{pid}/environ")):
        return f"started in the emulation, netns {ns}"
    return None


def _state(pid: str) -> bytes:
    fields = _read(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)
    return fields[1].split()[0] if len(fields) == 2 and fields[1].split() else b""


def _processes() -> list[tuple[int, str]]:
    """(pid, description) of our live processes, never this process or its ancestors."""
    keep, pid = set(), os.getpid()
    while pid > 1:
        keep.add(pid)
        stat = _read(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)
        pid = int(stat[1].split()[1]) if len(stat) == 2 else 1
    root_ns, found = _netns(str(os.getpid())), []  # /proc/1/ns may be unreadable (microVM init)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in keep:
            why = _why_ours(entry.name, root_ns)
            if why and _state(entry.name) != b"Z":  # a zombie holds nothing; its parent reaps it
                text = _read(entry / "cmdline").replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), f"{why}: {text.strip()[:80]}"))
    return found


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if any(n.startswith(f"{h}-eth") for h in HOSTS)]


def _cgroups() -> list[Path]:
    return [CGROUP_ROOT / c / h for c in CGROUP_CONTROLLERS for h in HOSTS
            if (CGROUP_ROOT / c / h).is_dir()]


def remove_cgroups() -> list[str]:
    """rmdir the hosts' empty cgroups (Mininet's cgdelete leaves cpuacct and cpuset ones)."""
    removed = []
    for path in _cgroups():
        with contextlib.suppress(OSError):
            path.rmdir()   # only succeeds once no task is left in it
            removed.append(f"deleted cgroup {path}")
    return removed


def _rules() -> list[tuple[str, str]]:
    """(iptables binary, rule spec after -A) tagged with RULE_TAG in the root namespace."""
    found = []
    for binary in ("iptables", "iptables-legacy"):
        try:
            out = subprocess.run([binary, "-S"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        found += [(binary, line[3:]) for line in out.splitlines()
                  if line.startswith("-A ") and RULE_TAG in line]
    return found


def leftovers() -> list[str]:
    """Everything of ours that exists right now (empty when clean)."""
    items = [f"process {pid}: {why}" for pid, why in _processes()]
    items += [f"link {name}" for name in _links()]
    items += [f"cgroup {path}" for path in _cgroups()]
    items += [f"iptables rule ({binary}): -A {rule}" for binary, rule in _rules()]
    items += [f"{what} {path}" for what, path in _orphan_dirs()]
    return items


def _orphan_dirs() -> list[tuple[str, Path]]:
    """The worker FIFO directories (harness.run.prefork) and a cluster node's scratch run
    directories (harness.run.cluster) whose owner process is gone (named by its pid)."""
    found = []
    for what, prefix in (("FIFO directory", FIFO_PREFIX), ("node scratch directory", SCRATCH_PREFIX)):
        for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
            owner = path.name[len(prefix):].split("-", 1)[0]
            if path.is_dir() and not (owner.isdigit() and Path(f"/proc/{owner}").exists()):
                found.append((what, path))
    return found


def _kill_pids(pids: list[int], grace_s: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.05)


def clean() -> list[str]:
    """Remove our leftovers; returns what was removed (still-present items stay in leftovers()).
    HarnessError, removing nothing, while another process's emulation is live."""
    live = live_emulation()
    if live:
        raise HarnessError(f"an emulation is running on this machine ({live}); its hosts, links "
                           f"and daemons are not leftovers: nothing removed")
    removed, procs = [], _processes()
    _kill_pids([pid for pid, _ in procs])
    removed += [f"killed process {pid}: {why}" for pid, why in procs]
    for name in _links():
        if subprocess.run(["ip", "link", "del", name], capture_output=True).returncode == 0:
            removed.append(f"deleted link {name}")
    removed += remove_cgroups()
    for binary, rule in _rules():
        if subprocess.run([binary, "-D", *rule.split()], capture_output=True).returncode == 0:
            removed.append(f"deleted iptables rule ({binary}): -A {rule}")
    for what, path in _orphan_dirs():
        shutil.rmtree(path, ignore_errors=True)
        removed.append(f"deleted {what} {path}")
    return removed


def main() -> int:
    """Remove leftovers and print what was removed and what remains."""
    for line in clean():
        print(line)
    remaining = leftovers()
    for line in remaining:
        print(f"still present: {line}")
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.exit(main())
