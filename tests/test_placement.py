"""CUDA workers (compute.*_backend): spelling, availability (mocked: this machine has no GPU),
what pacing and the model do with a GPU role, and the one-line error without one."""
import pytest
import torch

from harness.config import parse_scenario
from harness.errors import HarnessError
from harness.run import pacing
from harness.run.factors import case_predictions
from harness.workers import placement
from test_cli import run_cli
from test_pacing import COSTS


def gpu(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_the_cpu_is_the_default_and_needs_nothing(monkeypatch):
    gpu(monkeypatch, 0)
    s = parse_scenario({"name": "p"})
    assert (s.compute.edge_backend, s.compute.cloud_backend) == ("cpu", "cpu")
    placement.require_backends(s.compute)
    assert placement.torch_device("cpu", "x") == torch.device("cpu")


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "CUDA", 1, "cuda:123"])
def test_a_misspelt_backend_is_refused_by_name(value):
    with pytest.raises(HarnessError, match="compute.cloud_backend: expected (cpu, cuda or cuda:N|a string)"):
        parse_scenario({"name": "p", "compute": {"cloud_backend": value, "dilation": 1}})


def test_a_gpu_cannot_be_dilated():
    with pytest.raises(HarnessError, match="compute.dilation: must be 1 with a cuda backend"):
        parse_scenario({"name": "p", "compute": {"cloud_backend": "cuda"}})      # auto
    s = parse_scenario({"name": "p", "compute": {"cloud_backend": "cuda", "dilation": 1}})
    assert s.compute.cloud_backend == "cuda"


def test_cuda_is_selected_only_where_the_machine_has_it(monkeypatch):
    gpu(monkeypatch, 0)
    with pytest.raises(HarnessError, match=r"^compute.edge_backend: cuda asked for, but this "
                                           r"machine has no usable CUDA device"):
        placement.torch_device("cuda", "compute.edge_backend")
    gpu(monkeypatch, 2)
    assert placement.torch_device("cuda", "w") == torch.device("cuda")
    assert placement.torch_device("cuda:1", "w") == torch.device("cuda:1")
    with pytest.raises(HarnessError, match="cuda:2 asked for, but this machine has 2 CUDA"):
        placement.torch_device("cuda:2", "w")


def test_a_gpu_role_is_not_paced_and_not_modelled(monkeypatch):
    monkeypatch.setattr("harness.predict.runtime.costs_from_profile", lambda *a: COSTS)
    monkeypatch.setattr("harness.predict.splits.case_costs", lambda case: ((None, None), 1, 1))
    s = parse_scenario({"name": "p", "methods": ["hierarchical"],
                        "compute": {"pace": True, "cloud_backend": "cuda", "dilation": 1}})
    case = pacing.paced(s.cases()[0])
    assert case.compute.pace_for("edge") == pytest.approx(0.33)
    assert case.compute.pace_for("cloud") is None                 # the GPU's own time
    pred = case_predictions(case, None, 10, 100, {})
    assert pred["predicted_full_s"] != pred["predicted_full_s"]   # NaN: not modelled
    assert "not modelled: the cloud trained on CUDA" in pred["predicted_by"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_here_is_a_one_line_error():
    proc = run_cli("run", "scenarios/ci.yaml", "--loopback", "--set", "compute.cloud_backend=cuda",
                   "--set", "compute.dilation=1")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: compute.cloud_backend: cuda asked for")
    assert "Traceback" not in proc.stderr
