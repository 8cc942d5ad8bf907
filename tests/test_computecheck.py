"""Compute calibration's arithmetic and messages without a topology (the emulated run is in
test_emulated_runs.py)."""
import dataclasses

import pytest

from harness.config import ComputeConfig
from harness.errors import HarnessError
from harness.run.computecheck import devices_of, require_ok, summary_lines
from harness.run.computeprobe import cfs_quota


def test_quota_never_under_one_millisecond():
    assert cfs_quota(0.5) == (10_000, 5_000)
    assert cfs_quota(0.2) == (10_000, 2_000)
    period, quota = cfs_quota(0.05)
    assert quota >= 1000 and quota / period == pytest.approx(0.05)
    period, quota = cfs_quota(0.013)
    assert quota >= 1000 and quota / period == pytest.approx(0.013, rel=0.01)


def test_device_names_are_checked_and_named_by_field():
    assert devices_of(ComputeConfig()) == {}
    assert devices_of(ComputeConfig(edge_device="rpi4"))["edge"].name == "rpi4"
    with pytest.raises(HarnessError, match=r"compute.cloud_device: device profile 'tpu9': unknown"):
        devices_of(ComputeConfig(cloud_device="tpu9"))


def _result(ratio):
    row = {"arch": "vgg16", "split": "conv4", "parts": "edge+head", "target_s": 0.2635,
           "measured_s": 0.2635 * ratio, "ratio": ratio, "ok": abs(ratio - 1) <= 0.1,
           "cores": 0.23}
    return {"roles": {"edge": {"device": {"name": "rpi4"}, "rows": [row], "ok": row["ok"],
                               "tolerance_rel": 0.1}}}


def test_summary_and_refusal_name_target_measured_share_and_miss():
    line = summary_lines(_result(0.908))[0]
    assert line == ("compute edge = rpi4: vgg16@conv4 edge+head target 263.5 ms/batch, measured "
                    "239.3 ms at 0.230 core (-9.2%): ok")
    require_ok(_result(0.908))
    with pytest.raises(HarnessError, match=r"measured 340.2 ms at 0.230 core \(\+29.1%\) "
                                           r"\(want within 10%\)"):
        require_ok(_result(1.291))


def test_measured_factors_scale_each_side_of_the_prediction():
    from harness.config import Case, DatasetConfig, ModelConfig, TrainConfig
    from harness.emulation.links import load_profile
    from harness.predict.runtime import Costs, scaled
    from harness.predict.splits import predict_case, role_steps
    from harness.run.factors import METHOD_ROUND, model_factors
    c = scaled(Costs(1, 2, 3, 4, 5, 6), 2.0, 0.5)
    assert (c.edge_fwd_s, c.edge_bwd_s, c.head_s, c.cloud_s, c.full_edge_s, c.full_cloud_s) == \
        (2, 4, 6, 2, 10, 3)
    case = Case(DatasetConfig(), ModelConfig(arch="vgg16", split="conv4"), TrainConfig(batch_size=32),
                ComputeConfig(edge_cores=0.5), "edge", link="3g")
    rounds = {"both at once": (1.4, 1.1), "alone": (1.2, 1.05), "whole network alone": (1.25, 1.3)}
    memo = {"result": {"model_factors": {"vgg16@conv4": {
        name: {"edge": {"factor": e}, "cloud": {"factor": c}} for name, (e, c) in rounds.items()}}}}
    for method, name in METHOD_ROUND.items():     # each method takes its own round's factors
        e, c = rounds[name]
        assert model_factors(memo, dataclasses.replace(case, method=method)) == \
            {"edge": e, "cloud": c}
    factors = model_factors(memo, case)
    assert model_factors({}, case) is None
    link = load_profile("3g")
    plain, corrected = predict_case(case, link, 10), predict_case(case, link, 10, factors=factors)
    assert corrected.total_s == pytest.approx(1.25 * plain.total_s)   # edge-only: all edge compute
    steps = role_steps(case)
    assert set(steps) == {("edge", "edge"), ("cloud", "cloud"), ("edge", "full"), ("cloud", "full")}
    assert all(v > 0 for v in steps.values())


def test_probe_serves_each_part_and_refuses_a_bad_request():
    """The compute probe's --serve protocol: `measure N [PART]` answers one JSON line for
    that part (built on first use); anything else ends it with one error line, exit 2."""
    import json
    import subprocess
    import sys
    argv = [sys.executable, "-m", "harness.train.steptime", "--arch", "vgg16", "--width",
            "0.0625", "--dataset", "fashion_mnist", "--batch", "4", "--split", "conv4",
            "--part", "edge", "--serve"]
    proc = subprocess.run(argv, input="measure 2\nmeasure 2 full\nmeasure 1 cloud\nmeasure 1 head\n",
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[0] == "READY"
    answers = [json.loads(line) for line in lines[1:]]
    assert [a["part"] for a in answers] == ["edge", "full", "cloud"]
    assert len(answers[0]["per_batch_s"]) == 2 and answers[2]["median_s"] > 0
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: probe: expected")
    assert "'measure 1 head'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_only_the_hosts_a_method_computes_on_are_probed():
    """A run's compute probes time what its methods compute: edge-only the edge's whole network,
    cloud-only the cloud's (a scenario without cloud-only must not be refused over a cloud
    whole-network step it never takes); paced split learning's turns are measured at once."""
    from harness.config import parse_scenario
    from harness.run.factors import needed_rounds

    def rounds(methods, pace):
        return needed_rounds(parse_scenario({"name": "n", "methods": methods,
                                             "compute": {"pace": pace}}))
    both = {"edge", "cloud"}
    assert rounds(["hierarchical", "edge"], True) == {"both at once": both,
                                                      "whole network alone": {"edge"}}
    assert rounds(["cloud"], False) == {"whole network alone": {"cloud"}}
    assert rounds(["edge", "cloud"], False) == {"whole network alone": both}
    assert rounds(["split"], False) == {"alone": both}
    assert rounds(["split"], True) == {"both at once": both}


def test_the_whole_network_is_probed_once_per_model(monkeypatch):
    """The whole network is the same at every split: with two splits of a model, its round is
    measured at the first and named by the second (the paper regime probed it five times over,
    about 35 s). Each split's own part is still measured."""
    from harness.config import parse_scenario
    from harness.run import factors

    asked = []

    class FakeProbe:
        def __init__(self, link, role, scenario, arch, split, threads):
            self.role, self.split, self.part = role, split, None

        def start_round(self, batches, part=None):
            self.part = part

        def result(self):
            asked.append((self.split, self.role, self.part))
            return 0.01

        def measure(self, batches, part=None):
            self.start_round(batches, part)
            return self.result()

        def close(self):
            pass

    monkeypatch.setattr(factors, "Probe", FakeProbe)
    scenario = parse_scenario({"name": "n", "methods": ["hierarchical", "edge"],
                               "model": {"arch": "vgg16", "split": ["conv4", "conv7"]},
                               "compute": {"pace": True}})
    out = factors.share_factors(None, scenario, None)
    assert asked == [("conv4", "edge", "edge"), ("conv4", "cloud", "cloud"),
                     ("conv4", "edge", "full"), ("conv7", "edge", "edge"),
                     ("conv7", "cloud", "cloud")]
    first, second = out["vgg16@conv4"], out["vgg16@conv7"]
    assert list(second) == list(first) == ["both at once", "whole network alone"]
    assert "measured_with" not in first["whole network alone"]["edge"]
    assert second["whole network alone"]["edge"]["measured_with"] == "vgg16@conv4"
    assert second["whole network alone"]["edge"]["measured_s"] == 0.01
    from harness.run.pacing import pace_lines
    assert any("(whole network, measured with vgg16@conv4)" in ln and "vgg16@conv7" in ln
               for ln in pace_lines(out))
    calibrated = factors.share_factors(None, scenario, lambda case: None)   # shares per split
    assert "measured_with" not in calibrated["vgg16@conv7"]["whole network alone"]["edge"]
