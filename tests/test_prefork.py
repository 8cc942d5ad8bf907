"""The worker fork server and its Popen-like handles, outside any emulation (no root)."""
import json
import os
import signal
import subprocess
import sys

import pytest

from test_workers import STEPS, make_case

from harness.errors import HarnessError
from harness.procs import StdoutReader, kill_group
from harness.run.prefork import ForkServer


def _popen(role, argv, cgroup=False, **kw):
    return subprocess.Popen(argv, start_new_session=True, **kw)


@pytest.fixture
def server(tmp_path):
    s = ForkServer("edge", _popen, sys.executable, dict(os.environ), tmp_path / "server.log")
    s.wait_ready()
    yield s
    kill_group(s.proc)
    s.close()
    assert not s.dir.exists()


def test_a_forked_worker_runs_main_and_reports_its_exit(server, tmp_path):
    log = tmp_path / "edge.log"
    child = server.start(["--help"], log, {})
    assert child.wait(10) == 0                               # argparse's SystemExit(0)
    assert b"usage: harness.workers.edge" in child.stdout.read()
    bad = server.start(["--no-such-option"], log, {})
    assert bad.wait(10) == 2 and "error:" in log.read_text()
    assert not bad.fifo.exists()


def _case_dir(tmp_path, name, **train):
    case_dir = tmp_path / name
    case_dir.mkdir()
    case = make_case("edge", **train)
    (case_dir / "case.json").write_text(json.dumps(case.to_dict()))
    return case_dir


def test_a_forked_worker_trains_and_a_killed_one_reports_its_signal(server, tmp_path):
    done = _case_dir(tmp_path, "done")
    child = server.start(["--case-dir", str(done)], done / "edge.log", {})
    assert child.wait(60) == 0, (done / "edge.log").read_text()
    assert (done / "edge.jsonl").read_text().count('"compute"') == STEPS
    long = _case_dir(tmp_path, "long", epochs=50, max_batches=None)
    child = server.start(["--case-dir", str(long)], long / "edge.log", {})
    reader = StdoutReader("edge", child)
    kill_group(child)                                         # what the runner does
    assert child.poll() == -signal.SIGTERM
    reader.join(5)
    assert not reader.is_alive()                              # its stdout ended too


def test_a_dead_server_fails_with_its_name(server, tmp_path):
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(5)
    with pytest.raises(HarnessError, match="worker fork server .* in edge.*died: killed by SIGKILL"):
        server.check_alive()
    with pytest.raises(HarnessError, match="fork server in edge"):
        server.start(["--help"], tmp_path / "edge.log", {})
