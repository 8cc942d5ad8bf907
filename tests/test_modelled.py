"""Modelled compute (no root): a device this machine cannot pace has its steps waited out
with no training while every message keeps its real size, and the run, its summary, report
and gate say so.

    .venv/bin/python -m pytest tests/test_modelled.py
"""
import json
from types import SimpleNamespace

import pytest

from harness.analysis.report import compute_words
from harness.analysis.summary import compute_sources
from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig, parse_scenario
from harness.emulation.links import load_profile
from harness.errors import HarnessError
from harness.run import virtual
from harness.run.accuracy import accuracy_keys
from harness.run.case import run_case

BATCH, STEPS, TARGET = 8, 6, 0.15
ACT = 32 * 8 * 8              # vgg16 width 0.25, split conv4: 32x8x8 per sample
PHASES = {"hierarchical": {"edge": ("step",), "cloud": ("step",)},
          "split": {"edge": ("forward", "backward"), "cloud": ("step",)},
          "cloud": {"cloud": ("step",)}, "edge": {"edge": ("step",)}}


def modelled_case(method):
    pace = {role: {phase: TARGET for phase in phases} for role, phases in PHASES[method].items()}
    compute = ComputeConfig(pace=True, pace_s=pace, modelled=("edge", "cloud"))
    return Case(DatasetConfig("fake"), ModelConfig("vgg16", 0.25, "conv4"),
                TrainConfig(batch_size=BATCH, max_batches=STEPS, seed=1), compute, method)


@pytest.mark.parametrize("method", ["hierarchical", "split", "cloud", "edge"])
def test_modelled_workers_send_real_sized_messages_and_wait_their_targets(tmp_path, method):
    """Both sides modelled, over loopback: the bytes on the wire are those of real training
    (activations, labels, fp32 gradients, raw images), every compute span is marked modelled,
    lasts its target and did next to none of it as compute (no training: the body only makes
    zeros), so none overran."""
    t = run_case(modelled_case(method), tmp_path / method)
    assert t["steps"] == STEPS
    expected_up = {"hierarchical": STEPS * (BATCH * ACT * 4 + BATCH * 8),
                   "split": STEPS * (BATCH * ACT * 4 + BATCH * 8),
                   "cloud": STEPS * (BATCH * 3 * 32 * 32 + 2 * BATCH * 8), "edge": 0}[method]
    assert t["bytes_up_payload"] == expected_up
    assert t["bytes_down_payload"] == (STEPS * BATCH * ACT * 4 if method == "split" else 0)
    spans = [json.loads(line) for role in PHASES[method]
             for line in (tmp_path / method / f"{role}.jsonl").read_text().splitlines()]
    spans = [s for s in spans if s["event"] == "compute"]
    assert len(spans) == STEPS * sum(len(p) for p in PHASES[method].values())
    for s in spans:
        assert s["modelled"] is True and s["pace_s"] == TARGET and not s["overrun"]
        assert s["t_end"] - s["t_start"] >= TARGET - 1e-6
        assert s["busy_s"] < TARGET / 3, s      # zeros, not a training step
    assert t["modelled_steps"] == len(spans) and t["modelled_overruns"] == 0
    assert t["paced_steps"] == 0           # no real compute was paced: counted apart


def _devices(**compute):
    return parse_scenario({"name": "d", "links": ["3g"], "model": {"arch": "vgg16", "split": "conv7"},
                           "compute": {"edge_device": "rpi4", "cloud_device": "a100",
                                       "pace": True, "max_dilation": 2, **compute}})


def test_a_device_beyond_the_ceiling_is_modelled_and_the_rest_still_fits(monkeypatch):
    """The a100 (~180 cores of this kind of machine) is modelled under the default
    over_ceiling; the rpi4 edge, which the host can pace, stays paced; the dilation is chosen
    for the paced side alone; one line says which side is modelled and what that means."""
    lines = []
    opts = SimpleNamespace(emulate=True, quiet=False, echo=lines.append)
    resolved = virtual.resolve_dilation(_devices(), {"3g": load_profile("3g")}, opts)
    assert resolved.compute.modelled == ("cloud",)
    assert resolved.compute.source("cloud") == "modelled" and resolved.compute.source("edge") == "paced"
    assert resolved.compute.dilation == 1.0
    text = "\n".join(lines)
    assert "modelled compute: cloud (compute.cloud_device: a100 would need" in text
    assert "MODELLED compute, not measured compute" in text
    assert all(case.compute.modelled == ("cloud",) for case in resolved.cases())
    with pytest.raises(HarnessError, match="above compute.max_dilation = 2"):
        virtual.resolve_dilation(_devices(over_ceiling="refuse"), {"3g": load_profile("3g")}, opts)
    assert virtual.resolve_dilation(_devices(over_ceiling="cap"), {"3g": load_profile("3g")},
                                    opts).compute.modelled == ()


def test_modelled_is_the_runners_and_needs_paced_compute():
    with pytest.raises(HarnessError, match="compute.modelled: decided by the runner"):
        parse_scenario({"name": "d", "compute": {"modelled": ["cloud"]}})
    assert parse_scenario({"name": "d"}).compute.over_ceiling == "model"
    unpaced = ComputeConfig(cloud_device="a100", over_ceiling="model")
    assert virtual.modelled_roles(unpaced, {"edge": 1, "cloud": 180}, {"edge": 1, "cloud": 1},
                                  1.0, 8) == ()
    paced = ComputeConfig(cloud_device="a100", pace=True)
    assert virtual.modelled_roles(paced, {"edge": 1, "cloud": 180}, {"edge": 1, "cloud": 1},
                                  1.5, 8) == ("cloud",)
    assert virtual.modelled_roles(paced, {"edge": 1, "cloud": 5}, {"edge": 1, "cloud": 1},
                                  1.5, 8) == ()          # 7.5 cores: x8 dilation paces it


def test_a_run_with_a_modelled_side_takes_accuracy_from_real_training():
    """A timing pass of the full budget trains for real and is evaluated, unless a side is
    modelled: then the accuracy pass (real training) is always run."""
    full = parse_scenario({"name": "d", "measure": {"timing_batches": None}})
    assert accuracy_keys(full) == set()
    import dataclasses
    modelled = dataclasses.replace(full, compute=dataclasses.replace(full.compute,
                                                                     modelled=("cloud",)))
    assert accuracy_keys(modelled) == {("vgg16", "conv4", "fp32", m)
                                       for m in ("hierarchical", "split", "cloud", "edge")}


def test_the_summary_and_report_say_how_each_sides_compute_arose():
    case = modelled_case("cloud").to_dict()
    assert compute_sources(case) == {"edge_compute": "none", "cloud_compute": "modelled",
                                     "edge_device": "", "cloud_device": ""}
    split = {**modelled_case("split").to_dict(),
             "compute": {**case["compute"], "modelled": ["cloud"], "cloud_device": "a100",
                         "edge_backend": "cpu"}}
    assert compute_sources(split)["edge_compute"] == "paced"
    assert compute_sources(split)["cloud_compute"] == "modelled"
    gpu = {**split, "compute": {**split["compute"], "edge_backend": "cuda", "modelled": []}}
    assert compute_sources(gpu)["edge_compute"] == "real-gpu"
    import pandas as pd
    summary = pd.DataFrame([compute_sources(split), compute_sources(split)])
    html = compute_words(summary)
    assert "Cloud (device profile a100), 2 case(s): MODELLED compute: no training ran" in html
    assert "Edge (cores of this machine), 2 case(s): paced: real training" in html


def test_the_gate_refuses_a_baseline_whose_sides_were_modelled_differently(tmp_path):
    from harness.analysis.compare import COMPUTE_KEYS, compute_of, same_compute
    for name, modelled in (("real", ()), ("modelled", ("cloud",))):
        case = modelled_case("split")
        compute = ComputeConfig(pace=True, cloud_device="a100", modelled=modelled)
        (tmp_path / name / "c0").mkdir(parents=True)
        (tmp_path / name / "c0" / "case.json").write_text(json.dumps(
            Case(case.dataset, case.model, case.training, compute, "split").to_dict()))
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps({"compute": compute_of(tmp_path / "real")}))
    assert same_compute(tmp_path / "real", baseline) == ""
    with pytest.raises(HarnessError, match=r"modelled \[\] in the baseline, \['cloud'\] in the run"):
        same_compute(tmp_path / "modelled", baseline)
    older = {k: v for k, v in compute_of(tmp_path / "real").items() if k != "modelled"}
    baseline.write_text(json.dumps({"compute": older}))     # made before modelled compute
    assert same_compute(tmp_path / "real", baseline) == "" and "modelled" in COMPUTE_KEYS


def test_a_case_exported_to_two_real_machines_computes_for_real(tmp_path):
    """On real machines the compute is their own: a modelled side is taken out with the
    pacing and the devices, and README.txt names it."""
    from harness.run.twohosts import export_case
    case = modelled_case("split")
    compute = ComputeConfig(pace=True, cloud_device="a100", modelled=("cloud",), pace_s=case.compute.pace_s)
    (tmp_path / "run" / "c0").mkdir(parents=True)
    (tmp_path / "run" / "c0" / "case.json").write_text(json.dumps(
        Case(case.dataset, case.model, case.training, compute, "split").to_dict()))
    export_case(tmp_path / "run", 0, tmp_path / "out")
    exported = json.loads((tmp_path / "out" / "cloud" / "case.json").read_text())["compute"]
    assert exported["modelled"] == [] and exported["pace"] is False
    assert "modelled=('cloud',)" in (tmp_path / "out" / "README.txt").read_text()
    plain = Case(case.dataset, case.model, case.training, ComputeConfig(), "split")
    (tmp_path / "run" / "c0" / "case.json").write_text(json.dumps(plain.to_dict()))
    export_case(tmp_path / "run", 0, tmp_path / "out2")
    assert "modelled" not in (tmp_path / "out2" / "README.txt").read_text()   # none to take out


def test_the_summarys_computing_roles_are_the_paced_ones():
    from harness.catalog import COMPUTE_ROLES
    from harness.run.pacing import PACED_STEPS
    assert {m: tuple(roles) for m, roles in PACED_STEPS.items()} == COMPUTE_ROLES
