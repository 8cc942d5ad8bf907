"""Kill each moving part of an emulated run (root): the failure is noticed within 5 s, names
what died, and nothing is left behind (processes, veths, cgroups, iptables rules).

Each row starts `run_bench.py run` on a one-case scenario over 4g, waits for the moment named
in the row (training under way, or calibration's iperf3 running), sends the signal, and times
how long until the case (or the run) records the failure. The table is printed at the end.
Two rows also check how the run ends: a dead cloud worker under `--stop-on-failure` stops it
(exit 2, "error: run stopped: ...", run partial), and SIGINT leaves it partial, "interrupted".
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.emulation.netclean import leftovers


pytestmark = [pytest.mark.root, pytest.mark.usefixtures("nothing_left")]
ROOT = Path(__file__).resolve().parent.parent
DETECT_LIMIT_S = 5.0
SCENARIO = {"name": "k", "dataset": {"name": "fashion_mnist", "subset": 1280, "test_subset": 200},
            "model": {"arch": "vgg16", "width": 0.25, "split": "conv7"},
            "training": {"batch_size": 32, "max_batches": 40, "seed": 0},
            "methods": ["split"], "links": ["4g"],
            "compute": {"edge_cores": 0.5, "cloud_cores": 1.0}, "measure": {"calibrate_seconds": 1}}
TABLE = []


def _pids(*needles: bytes) -> list[int]:
    """Processes whose command line contains every needle."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if all(n in cmd for n in needles):
                found.append(int(entry.name))
    return found


def _wait_for(predicate, timeout_s: float, poll_s: float = 0.05, proc=None):
    """Poll until predicate() is truthy; fail at once, with its stderr, if `proc` ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before the moment "
                                 f"waited for:\n{proc.stderr.read()}")
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:g} s")


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    env = {**os.environ, "HIERBENCH_RESULTS": str(tmp_path / "results")}
    return subprocess.Popen([sys.executable, str(ROOT / "run_bench.py"), "run", str(path), "--quiet",
                             "--no-plots", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen) -> None:
    """A run the test gave up on: SIGTERM lets the harness tear its network down; then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_dir(tmp_path: Path) -> Path:
    return _wait_for(lambda: next(iter((tmp_path / "results" / "k").glob("*")), None), 60)


def _training(tmp_path: Path) -> bool:
    files = list((tmp_path / "results").glob("k/*/*/cloud.jsonl"))
    return bool(files) and files[0].read_text().count('"compute"') >= 2


def _case_failed(tmp_path: Path):
    for status in (tmp_path / "results").glob("k/*/*/status.json"):
        with_reason = json.loads(status.read_text())
        if with_reason["status"] == "failed":
            return with_reason["reason"]
    return None


def _run_stopped(tmp_path: Path):
    for status in (tmp_path / "results").glob("k/*/run_status.json"):
        state = json.loads(status.read_text())
        if state["state"] != "running":
            return state["reason"] or state["state"]
    return None


# row: (what is killed, when, how it is found, the signal, where the failure shows, expected words)
TRAINING, CALIBRATING = "training", "calibrating"
ROWS = {
    "edge worker": (TRAINING, ("cgroup", "edge"), signal.SIGKILL, _case_failed,
                    "edge worker failed (killed by SIGKILL)"),
    "cloud worker": (TRAINING, ("cgroup", "cloud"), signal.SIGKILL, _case_failed,
                     "cloud worker failed (killed by SIGKILL)"),
    "fork server (edge)": (TRAINING, (b"harness.workers.prefork",), signal.SIGKILL,
                           _case_failed, "worker fork server (harness.workers.prefork) in"),
    "delay daemon (edge)": (TRAINING, (b"harness.emulation.delayd", b"11"), signal.SIGKILL,
                            _case_failed, "delay daemon (harness.emulation.delayd) in edge"),
    "delay daemon (cloud)": (TRAINING, (b"harness.emulation.delayd", b"12"), signal.SIGKILL,
                             _case_failed, "delay daemon (harness.emulation.delayd) in cloud"),
    "iperf3 server": (CALIBRATING, (b"iperf3", b"-s"), signal.SIGKILL, _run_stopped,
                      "iperf3 server in"),
    "iperf3 client": (CALIBRATING, (b"iperf3", b"-c"), signal.SIGKILL, _run_stopped,
                      "iperf3"),
    "harness (SIGTERM)": (TRAINING, None, signal.SIGTERM, _run_stopped, "interrupted"),
    "harness (SIGINT)": (TRAINING, None, signal.SIGINT, _run_stopped, "interrupted"),
}


# rows whose run ends a known way: (extra arguments, exit code, what the last line of stderr
# says, the run's state, what its reason says)
ENDINGS = {"cloud worker": (("--stop-on-failure",), 2,
                            lambda last: last.startswith("error: run stopped:"), "partial",
                            lambda reason: "worker failed" in reason),
           "harness (SIGINT)": ((), 2, lambda last: "interrupted" in last, "partial",
                                lambda reason: reason == "interrupted")}


def _in_cgroup(role: str) -> list[int]:
    """The worker of a host: forked from its fork server, so its command line is the server's;
    it is the one in the host's CPU cgroup with that command line (beside the host's shell)."""
    path = Path(f"/sys/fs/cgroup/cpu/{role}/cgroup.procs")
    pids = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [p for p in pids if p in _pids(b"harness.workers.prefork")]


def _daemon_by_queue(needles):
    """delayd instances: match the queue number as its own argument, not inside another."""
    name, queue = needles
    for pid in _pids(name):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if queue in args:
            return [pid]
    return []


@pytest.mark.parametrize("row", list(ROWS))
def test_kill_matrix(row, tmp_path):
    when, needles, sig, failed, words = ROWS[row]
    extra, code, says, end_state, why = ENDINGS.get(row, ((), None, None, None, None))
    proc = _start(tmp_path, *extra)
    try:
        if when == TRAINING:
            _wait_for(lambda: _training(tmp_path), 240, 0.2, proc)
        find = (lambda: _daemon_by_queue(needles)) if needles and b"harness.emulation.delayd" in needles \
            else (lambda: _in_cgroup(needles[1])) if needles and needles[0] == "cgroup" \
            else (lambda: _pids(*needles)) if needles else (lambda: [proc.pid])
        target = _wait_for(find, 120, 0.02, proc)[0]
        t_kill = time.monotonic()
        os.kill(target, sig)
        reason = _wait_for(lambda: failed(tmp_path), 30, 0.02)
        detected_s = time.monotonic() - t_kill
        _, err = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    TABLE.append((row, sig.name, detected_s, reason))
    print("\n" + "\n".join(f"{r:<22} {s:<8} detected in {t:5.2f} s: {why[:110]}"
                           for r, s, t, why in TABLE))
    assert words in reason, reason
    assert detected_s <= DETECT_LIMIT_S
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    state = json.loads((_run_dir(tmp_path) / "run_status.json").read_text())
    assert state["state"] != "running"
    if code is not None:
        assert proc.returncode == code, err
        assert says(err.strip().splitlines()[-1]), err
        assert state["state"] == end_state and why(state["reason"]), state


def test_sigkill_of_the_harness_then_clean(tmp_path):
    """No teardown at all: leftovers exist, `clean` removes every one of them."""
    proc = _start(tmp_path)
    try:
        _wait_for(lambda: _training(tmp_path), 240, 0.2, proc)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert leftovers() != []
    env = {**os.environ, "HIERBENCH_RESULTS": str(tmp_path / "results")}
    out = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), "clean"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert leftovers() == []
    state = json.loads((_run_dir(tmp_path) / "run_status.json").read_text())
    assert state["state"] == "abandoned", state
