"""Compute calibration's arithmetic and messages without a topology (the emulated run is in
test_emulated_runs.py)."""
import pytest

from harness.config import ComputeConfig
from harness.errors import HarnessError
from harness.run.computecheck import cfs_quota, devices_of, require_ok, summary_lines


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
    from harness.predict.splits import predict_case, role_step_s
    from harness.run.computecheck import model_factors
    c = scaled(Costs(1, 2, 3, 4, 5, 6), 2.0, 0.5)
    assert (c.edge_fwd_s, c.edge_bwd_s, c.head_s, c.cloud_s, c.full_edge_s, c.full_cloud_s) == \
        (2, 4, 6, 2, 10, 3)
    case = Case(DatasetConfig(), ModelConfig(arch="vgg16", split="conv4"), TrainConfig(batch_size=32),
                ComputeConfig(edge_cores=0.5), "edge", link="3g")
    memo = {"result": {"model_factors": {"vgg16@conv4": {
        "edge": {"factor": 1.25}, "cloud": {"factor": 1.0}}}}}
    factors = model_factors(memo, case)
    assert factors == {"edge": 1.25, "cloud": 1.0}
    assert model_factors({}, case) is None
    link = load_profile("3g")
    plain, corrected = predict_case(case, link, 10), predict_case(case, link, 10, factors=factors)
    assert corrected.total_s == pytest.approx(1.25 * plain.total_s)   # edge-only: all edge compute
    steps = role_step_s(case)
    assert steps["edge"] > 0 and steps["cloud"] > 0
