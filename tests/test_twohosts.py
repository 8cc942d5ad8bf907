"""The README's two-machine steps, followed as written over loopback: export a case, start the
cloud and the edge by hand, collect their directories; totals, plot and report then give
numbers, and they are the ones the harness computes from the same events."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from harness.analysis.totals import load_events, totals
from harness.paths import FASHION_MNIST_DIR
from test_old_runs import cli

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                                reason="dataset-fashion-mnist not installed")


def _worker(role, args, env):
    return subprocess.Popen([sys.executable, "-m", f"harness.workers.{role}", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """scenarios/ci.yaml's case 0 (hierarchical, 50 batches) exported and run by hand."""
    out = tmp_path_factory.mktemp("two") / "bundle"
    done = cli("export", "scenarios/ci.yaml", "--case", "0", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "harness.workers.cloud --case-dir cloud/" in done.stdout
    assert (out / "edge" / "case.json").read_bytes() == (out / "cloud" / "case.json").read_bytes()
    assert oct((out / "hierbench.secret").stat().st_mode & 0o777) == "0o600"
    env = {**os.environ, "HIERBENCH_SECRET_FILE": str(out / "hierbench.secret")}
    cloud = _worker("cloud", ["--case-dir", str(out / "cloud"), "--listen", "127.0.0.1:0"], env)
    try:
        ready = cloud.stdout.readline().split()
        assert ready and ready[0] == "READY", cloud.stderr.read()
        edge = _worker("edge", ["--case-dir", str(out / "edge"), "--connect", ready[1]], env)
        assert edge.wait(timeout=600) == 0, edge.stderr.read()
        assert cloud.wait(timeout=60) == 0, cloud.stderr.read()
    finally:
        cloud.kill()
    return out


def test_collected_run_has_every_number_the_harness_computes(bundle, tmp_path):
    run_dir = tmp_path / "results" / "two_machines" / "first"
    case_dir, raw = _collected(bundle, run_dir, tmp_path)
    table = cli("totals", run_dir)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "hierarchical" in line)
    assert "unknown" not in row and " - " not in f" {row} " and " ok " in f" {row} "
    assert f" {raw['wall_s']:.3f} " in row                         # the same wall time
    link = json.loads((case_dir / "linkcheck.json").read_text())["observed"]
    assert link["rtt_start_ms"] > 0 and abs(link["clock_offset_start_s"]) < 0.005   # one clock
    assert link["up_message_mbps"] > 1
    acc = json.loads((case_dir / "accuracy.json").read_text())
    assert 0.2 < acc["final_acc"] <= 1 and acc["test_samples"] == 500
    assert cli("plot", run_dir).returncode == 0
    assert (run_dir / "plots" / "runtime.png").is_file()
    report = cli("report", run_dir)
    assert report.returncode == 0, report.stderr
    assert "real</b>" in (run_dir / "report.html").read_text()


def _collected(bundle, run_dir, tmp_path):
    """collect the bundle's two sides into run_dir: the case ok, its totals the harness's."""
    done = cli("collect", bundle / "edge", bundle / "cloud", "--out", run_dir)
    assert done.returncode == 0, done.stderr
    case_dir = next(run_dir.glob("000-*"))
    assert json.loads((case_dir / "status.json").read_text())["status"] == "ok"
    raw = totals(_events(bundle, tmp_path / "both"))
    assert json.loads((case_dir / "totals.json").read_text()) == json.loads(json.dumps(raw))
    return case_dir, raw


def _events(bundle, both):
    """Both workers' logs side by side, loaded as the harness loads a case directory."""
    both.mkdir()
    for role in ("edge", "cloud"):
        shutil.copyfile(bundle / role / f"{role}.jsonl", both / f"{role}.jsonl")
    return load_events(both)


def test_a_missing_side_fails_the_case_with_the_reason(bundle, tmp_path):
    empty_cloud = tmp_path / "cloud"
    empty_cloud.mkdir()
    (empty_cloud / "case.json").write_bytes((bundle / "cloud" / "case.json").read_bytes())
    run_dir = tmp_path / "run"
    assert cli("collect", bundle / "edge", empty_cloud, "--out", run_dir).returncode == 0
    status = json.loads(next(run_dir.glob("000-*/status.json")).read_text())
    assert status["status"] == "failed" and "no cloud.jsonl" in status["reason"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "case.json").write_text((bundle / "cloud" / "case.json").read_text()
                                     .replace('"seed": 0', '"seed": 1'))
    bad = cli("collect", bundle / "edge", other, "--out", tmp_path / "run2")
    assert bad.returncode == 2 and "not one case" in bad.stderr


@pytest.mark.root
def test_the_steps_between_two_unshaped_mininet_hosts(tmp_path):
    """Two Mininet hosts on a plain veth pair (no shaping, no harness emulation): the README's
    commands run in each host; collect gives a run whose link is observed, not configured."""
    pytest.importorskip("mininet", reason="Mininet not installed")
    from mininet.net import Mininet

    from harness.emulation.netclean import leftovers
    out = tmp_path / "bundle"
    assert cli("export", "scenarios/ci.yaml", "--case", "1", "--out", out).returncode == 0
    env = {**os.environ, "HIERBENCH_SECRET_FILE": str(out / "hierbench.secret")}
    net = Mininet(controller=None, build=False)
    try:
        edge_host, cloud_host = net.addHost("edge", ip="10.0.0.1/24"), net.addHost("cloud", ip="10.0.0.2/24")
        net.addLink(edge_host, cloud_host)
        net.build()
        python = [sys.executable, "-m"]
        cloud = cloud_host.popen(python + ["harness.workers.cloud", "--case-dir", str(out / "cloud"),
                                           "--listen", "0.0.0.0:5555"], env=env, text=True)
        assert cloud.stdout.readline().startswith("READY"), cloud.stderr.read()
        edge = edge_host.popen(python + ["harness.workers.edge", "--case-dir", str(out / "edge"),
                                         "--connect", "10.0.0.2:5555"], env=env, text=True)
        assert edge.wait(timeout=600) == 0, edge.stderr.read()
        assert cloud.wait(timeout=60) == 0, cloud.stderr.read()
        server = cloud_host.popen(["iperf3", "-s"], text=True)     # the link, as README.txt says
        try:
            time.sleep(0.5)
            for line in ("iperf3 -c 10.0.0.2 -t 2 -J > {}/iperf3_up.json",
                         "iperf3 -c 10.0.0.2 -t 2 -R -J > {}/iperf3_down.json",
                         "ping -c 10 -i 0.2 10.0.0.2 > {}/ping.txt"):
                edge_host.cmd(line.format(out / "edge"))
        finally:
            server.kill()
            server.wait()
    finally:
        net.stop()
    assert leftovers() == []
    run_dir = tmp_path / "run"
    case_dir, raw = _collected(out, run_dir, tmp_path)
    assert raw["steps"] == 50 and raw["bytes_down_total"] > 0              # case 1: split
    link = json.loads((case_dir / "linkcheck.json").read_text())["observed"]
    assert link["up_message_mbps"] > 10 and link["down_message_mbps"] > 10
    tools = link["tools"]
    assert tools["up_iperf3_mbps"] > 100 and tools["down_iperf3_mbps"] > 100
    assert tools["ping_probes"] == 10 and 0 < tools["rtt_ping_ms"] < 5
    profile = yaml.safe_load((run_dir / "observed_profile.yaml").read_text())
    assert profile["name"] == "real_observed" and "iperf3's goodput" in profile["source"]["up_mbps"]
    assert profile["up_mbps"] == min(round(tools["up_iperf3_mbps"], 3), 1000)   # the cap
    assert cli("report", run_dir).returncode == 0
