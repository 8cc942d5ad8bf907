"""Edge and cloud as two processes over loopback TCP, against the one-process reference."""
import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig
from harness.train.data import load_dataset
from harness.errors import HarnessError
from harness.train.reference import run_local
from harness.analysis.totals import load_events
from harness.procs import kill_group, wait_ready
from harness.run.case import run_case
from harness.run.launchers import LocalLauncher

BATCH, STEPS = 8, 20
ACT = 32 * 8 * 8              # vgg16 width 0.25, split conv4: 32x8x8 per sample


def make_case(method, codec="fp32", **train):
    t = {"batch_size": BATCH, "max_batches": STEPS, "seed": 1, **train}
    return Case(DatasetConfig("fake"), ModelConfig("vgg16", 0.25, "conv4"), TrainConfig(**t),
                ComputeConfig(), method, codec)


RUNS = [("hierarchical", "fp32"), ("hierarchical", "fp16"), ("hierarchical", "int8"),
        ("split", "fp32"), ("split", "fp16"), ("split", "int8"), ("cloud", "fp32"), ("edge", "fp32")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("loopback")
    out = {}
    for method, codec in RUNS:
        case = make_case(method, codec)
        out[method, codec] = (case, base / f"{method}-{codec}", run_case(case, base / f"{method}-{codec}"))
    return out


def parts(case_dir):
    state = {}
    for name in ("edge_part", "cloud_part", "exit_head"):
        path = Path(case_dir) / f"{name}.pt"
        if path.exists():
            state.update({f"{name}.{k}": v for k, v in
                          torch.load(path, weights_only=True).items()})
    return state


def reference(case):
    data = load_dataset("fake")
    _, model = run_local(case, data, data)
    state = {f"edge_part.{k}": v for k, v in model.edge.state_dict().items()}
    state.update({f"cloud_part.{k}": v for k, v in model.cloud.state_dict().items()})
    if case.method == "hierarchical":
        state.update({f"exit_head.{k}": v for k, v in model.exit_head.state_dict().items()})
    return state


@pytest.mark.parametrize("method", ["split", "hierarchical", "cloud", "edge"])
def test_two_processes_match_one_process(runs, method):
    case, case_dir, result = runs[method, "fp32"]
    assert result["steps"] == STEPS
    got, want = parts(case_dir), reference(case)
    assert got.keys() == want.keys()
    diff = max((got[k].double() - want[k].double()).abs().max().item() for k in want)
    assert diff <= 1e-5, f"{method}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("method", ["split", "hierarchical", "cloud", "edge"])
def test_accuracy_pass_updates_equal_the_workers_over_128_steps(tmp_path, method):
    """What the scenario runner's accuracy pass trains (one process, the workers' 1 thread)
    ends with the weights of the two-process run, over two epochs of 64 batches."""
    case = make_case(method, epochs=2, max_batches=None)
    result = run_case(case, tmp_path / method)
    assert result["steps"] == 128
    got, want = parts(tmp_path / method), reference(case)
    assert got.keys() == want.keys()
    diff = max((got[k].double() - want[k].double()).abs().max().item() for k in want)
    assert diff <= 1e-5, f"{method}: max abs diff {diff:.3g} after 128 steps"


@pytest.mark.parametrize("method,codec", RUNS)
def test_bytes_on_the_wire_equal_the_payload(runs, method, codec):
    case, case_dir, t = runs[method, codec]
    per_elem = {"fp32": 4, "fp16": 2, "int8": 1}[codec]
    labels = BATCH * 8
    expected_up = {"hierarchical": STEPS * (BATCH * ACT * per_elem + labels),
                   "split": STEPS * (BATCH * ACT * per_elem + labels),
                   "cloud": STEPS * (BATCH * 3 * 32 * 32 + labels + BATCH * 8),   # images, y, index
                   "edge": 0}[method]
    expected_down = STEPS * BATCH * ACT * 4 if method == "split" else 0         # fp32 gradients
    assert t["bytes_up_payload"] == expected_up
    assert t["bytes_down_payload"] == expected_down
    assert t["raw_bytes_to_cloud"] == (STEPS * BATCH * 3 * 32 * 32 if method == "cloud" else 0)
    if method != "edge":
        # The connection's own counters agree with the per-frame events (handshake: no payload).
        events = [json.loads(x) for x in (case_dir / "edge.jsonl").read_text().splitlines()]
        wire_totals = next(e for e in events if e["event"] == "wire_totals")
        assert wire_totals["sent_payload"] == expected_up
        assert wire_totals["recv_payload"] == expected_down
    assert json.loads((case_dir / "case.json").read_text())["codec"] == codec


def test_cloud_only_caches_uploads_across_epochs(tmp_path):
    case = make_case("cloud", epochs=3, max_batches=None)
    t = run_case(case, tmp_path / "c")
    n = len(load_dataset("fake"))
    assert t["raw_bytes_to_cloud"] == n * 3 * 32 * 32, "each sample is uploaded exactly once"
    assert t["steps"] == 3 * (n // BATCH)
    got, want = parts(tmp_path / "c"), reference(case)
    assert max((got[k].double() - want[k].double()).abs().max().item() for k in want) <= 1e-5


def test_hierarchical_sends_nothing_down_during_training(runs):
    case, case_dir, _ = runs["hierarchical", "fp32"]
    df = load_events(case_dir)
    cloud_sends = df[(df["role"] == "cloud") & (df["event"] == "send")]
    assert cloud_sends.empty
    edge_recv = df[(df["role"] == "edge") & (df["event"] == "recv")]
    assert edge_recv["kind"].tolist() == ["done"]


def test_hierarchical_pipeline_overlaps_edge_and_cloud(runs):
    """In hierarchical, the cloud computes batch k while the edge computes a later batch."""
    _, case_dir, _ = runs["hierarchical", "fp32"]
    df = load_events(case_dir)
    comp = df[df["event"] == "compute"]
    edge, cloud = comp[comp["role"] == "edge"], comp[comp["role"] == "cloud"]
    overlaps = sum(((edge["t_start"] < c.t_end) & (edge["t_end"] > c.t_start)).any()
                   for c in cloud.itertuples())
    assert overlaps >= STEPS // 4


@pytest.mark.parametrize("method", ["hierarchical", "split"])
def test_killed_cloud_stops_the_edge_quickly(tmp_path, method):
    case = make_case(method, epochs=50, max_batches=None)
    case_dir = tmp_path / "k"
    case_dir.mkdir()
    (case_dir / "case.json").write_text(json.dumps(case.to_dict()))
    launcher = LocalLauncher()
    cloud = launcher.start("cloud", ["--case-dir", str(case_dir), "--listen", "127.0.0.1:0"], case_dir / "cloud.log")
    edge = None
    try:
        addr = wait_ready(cloud, 60)
        edge = launcher.start("edge", ["--case-dir", str(case_dir), "--connect", addr], case_dir / "edge.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (case_dir / "cloud.jsonl").exists() and (case_dir / "cloud.jsonl").read_text().count('"compute"') >= 5:
                break
            time.sleep(0.1)
        before = (case_dir / "cloud.jsonl").read_text().count('"compute"')
        os.kill(cloud.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        code = edge.wait(timeout=10)
        elapsed = time.monotonic() - killed_at
        assert code != 0 and elapsed < 10
        message = (case_dir / "edge.log").read_text().strip().splitlines()[-1]
        assert message.startswith("error: edge:") and ("peer" in message or "connection" in message), message
        events = [json.loads(x) for x in (case_dir / "cloud.jsonl").read_text().splitlines()]
        assert sum(e["event"] == "compute" for e in events) >= before >= 5
        print(f"{method}: edge exited {elapsed:.2f} s after the cloud was killed: {message}")
    finally:
        for proc in (cloud, edge):
            if proc is not None:
                kill_group(proc)


def test_failed_worker_marks_the_case_failed(tmp_path):
    case = Case(DatasetConfig("cifar10", root=str(tmp_path / "missing")), ModelConfig("vgg16", 0.25, "conv4"),
                TrainConfig(batch_size=8, max_batches=2), ComputeConfig(), "split")
    with pytest.raises(HarnessError, match="edge worker failed.*CIFAR-10 not found"):
        run_case(case, tmp_path / "f")
    status = json.loads((tmp_path / "f" / "status.json").read_text())
    assert status["status"] == "failed" and "CIFAR-10" in status["reason"]


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket
    import subprocess
    import sys
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    case_dir = tmp_path / "p"
    case_dir.mkdir()
    (case_dir / "case.json").write_text(json.dumps(make_case("split").to_dict()))
    proc = subprocess.run([sys.executable, "-m", "harness.workers.cloud", "--case-dir", str(case_dir),
                           "--listen", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    taken.close()
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: cloud: cannot listen on 127.0.0.1:{port}: Address already in use"]
