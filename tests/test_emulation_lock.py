"""One emulation per machine: a live one holds the lock, and is neither cleaned nor joined;
a host shell that dies mid-run does not hang the teardown."""
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.emulation import netclean
from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parent.parent

HOLDER = """
import time
from harness.emulation.netclean import emulation_lock
with emulation_lock():
    print("READY", flush=True)
    time.sleep(60)
"""


def test_a_live_emulation_is_refused_and_never_cleaned_and_its_death_frees_the_lock(
        tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))       # the lock file lives here
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True,
                            cwd=str(ROOT), env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        assert proc.stdout.readline().strip() == "READY"
        assert f"pid {proc.pid}: " in netclean.live_emulation()
        with pytest.raises(HarnessError, match=f"another emulation is running on this machine "
                                               f"\\(pid {proc.pid}: "):
            with netclean.emulation_lock():
                pass
        killed = []
        monkeypatch.setattr(netclean, "_kill_pids", lambda pids, *a: killed.extend(pids))
        with pytest.raises(HarnessError, match=f"pid {proc.pid}.*nothing removed"):
            netclean.clean()
        assert killed == []
    finally:
        proc.kill()                                  # no teardown at all: the kernel unlocks
        proc.wait(timeout=10)
    assert netclean.live_emulation() is None
    with netclean.emulation_lock():
        assert netclean.live_emulation() is None     # this process's own emulation


KILLED_SHELL = """
import os, signal
from harness.emulation.topology import emulated_link
with emulated_link("4g") as link:
    os.kill(link.host("edge").shell.pid, signal.SIGKILL)
print("DONE", flush=True)
"""


@pytest.mark.root
def test_a_host_shell_killed_mid_run_is_torn_down_without_waiting_for_it(nothing_left):
    """Mininet's own stop asks each host's shell to delete its links and would wait for a dead
    shell's answer forever (seen: a run held 10 min after its shells were killed)."""
    pytest.importorskip("mininet", reason="Mininet not installed")
    done = subprocess.run([sys.executable, "-c", KILLED_SHELL], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=90)
    assert done.returncode == 0 and done.stdout.strip() == "DONE", done.stderr[-2000:]
    assert netclean.leftovers() == []
