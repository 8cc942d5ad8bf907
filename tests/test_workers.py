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


def max_diff(got, want):
    """Largest absolute difference between two state dicts with the same keys."""
    return max((got[k].double() - want[k].double()).abs().max().item() for k in want)


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
    diff = max_diff(got, want)
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
    diff = max_diff(got, want)
    assert diff <= 1e-5, f"{method}: max abs diff {diff:.3g} after 128 steps"


@pytest.mark.parametrize("method", ["split", "hierarchical", "cloud", "edge"])
def test_a_scheduled_recipe_over_two_processes_equals_one(tmp_path, method):
    """One-cycle with warm-up, Nesterov momentum, augmentation and the MLP exit head: each
    side computes its learning rate from the same schedule (the cloud from the training-set
    size the edge announces), so the two processes end with the one-process weights."""
    case = make_case(method, epochs=2, max_batches=16, schedule="onecycle", warmup=0.2,
                     nesterov=True, augment=True)
    case = Case(case.dataset, ModelConfig("vgg16", 0.25, "conv4", "mlp"), case.training,
                case.compute, method)
    result = run_case(case, tmp_path / method)
    assert result["steps"] == 32
    got, want = parts(tmp_path / method), reference(case)
    assert got.keys() == want.keys()
    diff = max_diff(got, want)
    assert diff <= 1e-5, f"{method}: max abs diff {diff:.3g}"
    constant = make_case(method, epochs=2, max_batches=16)
    other = reference(Case(constant.dataset, case.model, constant.training, case.compute, method))
    assert max_diff(other, want) > 1e-3, \
        "the schedule changed the updates"


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
    assert max_diff(got, want) <= 1e-5


def test_hierarchical_sends_nothing_down_during_training(runs):
    case, case_dir, _ = runs["hierarchical", "fp32"]
    df = load_events(case_dir)
    cloud_sends = df[(df["role"] == "cloud") & (df["event"] == "send")]
    assert cloud_sends.empty
    edge_recv = df[(df["role"] == "edge") & (df["event"] == "recv")]
    assert edge_recv["kind"].tolist() == ["done"]


def test_hierarchical_pipeline_overlaps_edge_and_cloud(runs):
    """In hierarchical, the edge starts batch k+1 before the cloud has finished batch k: it
    never waits for the cloud (event order, which a busy machine does not change)."""
    _, case_dir, _ = runs["hierarchical", "fp32"]
    df = load_events(case_dir)
    comp = df[df["event"] == "compute"]
    edge = comp[comp["role"] == "edge"].set_index("step")
    cloud = comp[comp["role"] == "cloud"].set_index("step")
    ahead = sum(edge.loc[k + 1, "t_start"] < cloud.loc[k, "t_end"] for k in range(STEPS - 1))
    assert ahead == STEPS - 1, f"the edge waited for the cloud before {STEPS - 1 - ahead} batch(es)"


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


# ---- frames after the handshake are checked against the case (in-process, no sockets)

from harness.train.batches import build_model          # noqa: E402
from harness.train.data import SPECS                   # noqa: E402
from harness.workers.cloud import Batches, hello_check   # noqa: E402
from harness.workers.steps import decoded   # noqa: E402
from harness.workers.edge import checked_grad          # noqa: E402
from harness.workers.wire import Frame, WireError, encode_activation   # noqa: E402


def batch_frame(method="split", codec="fp32", n=BATCH, step=0, **info):
    """A valid batch frame of a make_case() case, and the Batches that checks it."""
    case = make_case(method, codec)
    model = build_model(case, SPECS["fake"])
    if method == "cloud":
        tensors = {"x": torch.zeros(n, 3, 32, 32, dtype=torch.uint8), "y": torch.zeros(n, dtype=torch.long),
                   "i": torch.arange(n)}
        meta = {"step": step, "train": True}
    else:
        tensors = {}
        tensors["a"], meta = encode_activation(torch.randn(n, *model.activation_shape), codec)
        tensors["y"] = torch.arange(n) % 10
        meta = {**meta, "step": step}
    return Frame("batch", 0, tensors, {**meta, **info}), Batches(case, model, 512)


@pytest.mark.parametrize("codec", ["fp32", "fp16", "int8"])
def test_valid_batches_pass_in_step_order(codec):
    _, batches = batch_frame(codec=codec)
    for step in range(3):
        frame, _ = batch_frame(codec=codec, step=step)
        assert batches.activation(frame) == step
        assert decoded(frame).dtype == torch.float32


@pytest.mark.parametrize("change,message", [
    (lambda f: f.tensors["y"].__setitem__(3, 12), "batch frame: tensor 'y' has label 12 outside [0, 10)"),
    (lambda f: f.tensors["y"].__setitem__(0, -1), "batch frame: tensor 'y' has label -1 outside [0, 10)"),
    (lambda f: f.tensors.update(y=f.tensors["y"].int().to(torch.uint8)), "tensor 'y' is uint8, expected int64"),
    (lambda f: f.tensors.update(a=f.tensors["a"].half()), "tensor 'a' is float16, expected float32"),
    (lambda f: f.tensors.update(z=torch.zeros(1)), "tensors ['a', 'y', 'z'], expected ['a', 'y']"),
    (lambda f: f.tensors.pop("y"), "tensors ['a'], expected ['a', 'y']"),
    (lambda f: f.tensors.update(a=f.tensors["a"][:, :, :4]), "tensor 'a' has shape [8, 32, 4, 8], expected [B, 32, 8, 8]"),
    (lambda f: f.tensors.update(a=f.tensors["a"][:0], y=f.tensors["y"][:0]), "tensor 'a' has batch dimension 0, expected 1 to 8"),
    (lambda f: f.tensors.update(y=f.tensors["y"][:5]), "tensor 'y' has batch dimension 5, the others 8"),
    (lambda f: f.info.update(step=1), "batch frame: step 1, expected 0"),
    (lambda f: f.info.update(step=True), "info 'step' must be int"),
    (lambda f: f.info.pop("step"), "info 'step' is missing"),
    (lambda f: f.info.update(codec="fp16"), "codec 'fp16', the case has 'fp32'"),
    (lambda f: f.info.update(extra=1), "unexpected info key 'extra'"),
])
def test_bad_batches_name_the_field(change, message):
    frame, batches = batch_frame()
    change(frame)
    with pytest.raises(WireError) as info:
        batches.activation(frame)
    assert message in str(info.value)


@pytest.mark.parametrize("codec,poison,message", [
    ("fp32", lambda f: f.tensors["a"].view(-1).__setitem__(7, float("nan")), "tensor 'a' has non-finite values"),
    ("fp16", lambda f: f.tensors["a"].view(-1).__setitem__(0, float("inf")), "tensor 'a' has non-finite values"),
    ("int8", lambda f: f.info.update(scale=1e38), "tensor 'a' has non-finite values"),
    ("int8", lambda f: f.info.update(scale=0.0), "info 'scale' is 0.0, must be > 0"),
])
def test_non_finite_activations_are_refused(codec, poison, message):
    frame, batches = batch_frame(codec=codec)
    poison(frame)
    with pytest.raises(WireError, match=message.replace("(", r"\(")):
        batches.activation(frame)
        decoded(frame)


def test_steps_beyond_the_case_are_refused():
    frame, batches = batch_frame(step=3)
    batches.next_step = batches.steps = 3          # max_batches=20 would allow 20; pretend 3 done
    with pytest.raises(WireError, match="step 3 beyond the case's 3 steps"):
        batches.activation(frame)


def test_cloud_only_uploads_are_checked():
    frame, batches = batch_frame("cloud")
    assert batches.upload(frame) == 0
    frame, _ = batch_frame("cloud", step=1)
    frame.tensors["i"][5] = 9999
    with pytest.raises(WireError, match=r"tensor 'i' has index 9999 outside \[0, 512\)"):
        batches.upload(frame)
    cache = Frame("batch", 0, {"x": torch.zeros(1024, 3, 32, 32, dtype=torch.uint8),
                               "y": torch.zeros(1024, dtype=torch.long), "i": torch.arange(1024) % 512},
                  {"train": False})
    assert batches.upload(cache) is None            # cache-only uploads may be up to CACHE_CHUNK
    frame, _ = batch_frame("cloud", step=1)
    with pytest.raises(WireError, match="a training batch after the cache uploads began"):
        batches.upload(frame)
    batches.shapes(cache)                            # shapes are checked before the payload
    with pytest.raises(WireError, match="tensor 'x' has batch dimension 1025, expected 1 to 1024"):
        batches.shapes(Frame("batch", 0, {"x": torch.empty(1025, 3, 32, 32, dtype=torch.uint8, device="meta"),
                                          "y": torch.empty(1025, dtype=torch.long, device="meta"),
                                          "i": torch.empty(1025, dtype=torch.long, device="meta")},
                             {"train": False}))


def test_hello_needs_a_plausible_training_set_size():
    check = hello_check(make_case("split"))
    check({"n_train": 512})
    for n in (0, BATCH - 1, 10**9):
        with pytest.raises(WireError, match="info 'n_train' is"):
            check({"n_train": n})


def test_gradients_must_answer_their_activation():
    a = torch.randn(4, 32, 16, 16)
    ok = Frame("grad", 0, {"g": torch.randn_like(a)}, {"step": 5})
    assert checked_grad(ok, a, 5) is ok.tensors["g"]
    cases = [({"g": torch.randn_like(a)}, {"step": 6}, "grad frame: step 6, expected 5"),
             ({"g": torch.randn(3, 32, 16, 16)}, {"step": 5}, "batch dimension 3, the activation 4"),
             ({"g": torch.randn(4, 32, 16, 8)}, {"step": 5}, "tensor 'g' has shape [4, 32, 16, 8]"),
             ({"g": torch.randn_like(a).half()}, {"step": 5}, "tensor 'g' is float16, expected float32"),
             ({"g": torch.full_like(a, float("nan"))}, {"step": 5}, "tensor 'g' has non-finite values")]
    for tensors, info, message in cases:
        with pytest.raises(WireError) as err:
            checked_grad(Frame("grad", 0, tensors, info), a, 5)
        assert message in str(err.value)


def test_failure_reports_stay_on_one_line(capsys):
    from harness.workers.common import fail
    assert fail("edge", "peer reported: a\nb\x1b[31mc") == 1
    assert capsys.readouterr().err == "error: edge: peer reported: a b [31mc\n"
