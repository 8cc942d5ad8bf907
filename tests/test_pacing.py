"""Paced compute (no root): a paced span lasts its target, the targets follow the runtime
model's costs per method, the dilation leaves the margin, and totals count the overruns.

    .venv/bin/python -m pytest tests/test_pacing.py
"""
import json
import time

import pytest

from harness.analysis.totals import load_events, totals
from harness.config import ComputeConfig, parse_scenario
from harness.emulation.dilation import choose_factor
from harness.emulation.plan import plan
from harness.emulation.links import load_profile
from harness.errors import HarnessError
from harness.predict.runtime import Costs
from harness.run import pacing
from harness.workers.events import COMPUTE, EventLog


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_paced_span_lasts_its_target_and_records_the_real_compute(tmp_path):
    """Judged on what each span recorded (a busy machine may stretch a sleep): the span lasts
    its target or its real compute, whichever is longer, and an overrun is exactly the latter."""
    log = EventLog(tmp_path / "edge.jsonl", "edge")
    with log.span(COMPUTE, 0, pace_s=0.5):
        time.sleep(0.01)                          # the step's real compute: 10 ms of 500
    with log.span(COMPUTE, 1, pace_s=0.0):
        time.sleep(0.03)                          # any compute overruns a zero target
    with log.span(COMPUTE, 2):                    # not paced: nothing added
        pass
    log.close()
    first, second, third = read(tmp_path / "edge.jsonl")
    for span in (first, second):
        assert span["overrun"] == (span["busy_s"] > span["pace_s"])
        assert span["t_end"] - span["t_start"] >= max(span["busy_s"], span["pace_s"]) - 1e-6
    assert first["busy_s"] >= 0.01 and first["pace_s"] == 0.5
    assert second["overrun"] and second["busy_s"] >= 0.03
    assert second["t_end"] - second["t_start"] == pytest.approx(second["busy_s"], abs=1e-6)
    assert "pace_s" not in third and "busy_s" not in third


def test_a_millisecond_paced_span_ends_on_its_target(tmp_path):
    """A modelled GPU-class step waits about a millisecond, where a plain sleep wakes 75 us
    late here (7.5%): the span spins its last half millisecond, so the median of 200 spans is
    within 5% of the target (a median: a preempted span or two on a busy machine do not move
    it), and none ends early."""
    log = EventLog(tmp_path / "cloud.jsonl", "cloud")
    for step in range(200):
        with log.span(COMPUTE, step, pace_s=0.001):
            pass
    log.close()
    lasted = sorted(s["t_end"] - s["t_start"] for s in read(tmp_path / "cloud.jsonl"))
    assert lasted[0] >= 0.001 - 1e-9
    assert lasted[100] <= 0.00105, f"median {lasted[100] * 1e6:.0f} us for a 1000 us target"


def test_totals_count_paced_steps_and_overruns(tmp_path):
    log = EventLog(tmp_path / "edge.jsonl", "edge")
    for step, (real, target) in enumerate(((0.0, 0.3), (0.0, 0.3), (0.02, 0.0))):
        with log.span(COMPUTE, step, pace_s=target):
            time.sleep(real)
    log.close()
    spans = read(tmp_path / "edge.jsonl")
    t = totals(load_events(tmp_path))
    assert (t["paced_steps"], t["steps"]) == (3, 3)
    assert t["pace_overruns"] == sum(s["overrun"] for s in spans) >= 1     # the zero target
    assert t["edge_compute_busy_s"] >= 0.02 and t["edge_compute_s"] >= 0.62
    unpaced = tmp_path / "plain"
    unpaced.mkdir()
    EventLog(unpaced / "edge.jsonl", "edge").close()
    (unpaced / "edge.jsonl").write_text(json.dumps(
        {"v": 1, "role": "edge", "event": "compute", "step": 0, "t_start": 0, "t_end": 1}) + "\n")
    assert "paced_steps" not in totals(load_events(unpaced))


def test_modelled_steps_are_counted_apart_from_paced_compute(tmp_path):
    """A modelled step has no compute in its body: one that outlasts a near-zero modelled
    time (an A100 finishing ResNet-18's last block) is the harness's bookkeeping, counted
    and bounded on its own, never a paced step that ran at this machine's speed."""
    from harness.run.progress import pace_text
    log = EventLog(tmp_path / "cloud.jsonl", "cloud")
    for step, (real, target, modelled) in enumerate(((0.0, 0.05, False), (0.0, 0.05, True),
                                                     (0.002, 0.0, True))):
        with log.span(COMPUTE, step, pace_s=target, **({"modelled": True} if modelled else {})):
            time.sleep(real)
    log.close()
    t = totals(load_events(tmp_path))
    assert (t["paced_steps"], t["pace_overruns"]) == (1, 0)
    assert (t["modelled_steps"], t["modelled_overruns"]) == (2, 1)
    spans = [x for x in read(tmp_path / "cloud.jsonl") if x.get("modelled")]
    assert t["modelled_excess_max_s"] == max(x["busy_s"] - x["pace_s"] for x in spans) >= 0.002
    assert pace_text(t) == (f"; paced, 0 of 1 steps overran; 2 modelled steps (1 lasted up "
                            f"to {1e3 * t['modelled_excess_max_s']:.2f} ms longer)")


COSTS = Costs(edge_fwd_s=0.1, edge_bwd_s=0.2, head_s=0.03, cloud_s=0.4, full_edge_s=0.9,
              full_cloud_s=0.5)


@pytest.mark.parametrize("method, expected", [
    ("hierarchical", {"edge": {"step": 0.33}, "cloud": {"step": 0.4}}),
    ("split", {"edge": {"forward": 0.1, "backward": 0.2}, "cloud": {"step": 0.4}}),
    ("cloud", {"cloud": {"step": 0.5}}),
    ("edge", {"edge": {"step": 0.9}}),
])
def test_targets_are_the_runtime_models_costs_of_each_methods_steps(monkeypatch, method, expected):
    monkeypatch.setattr("harness.predict.runtime.costs_from_profile", lambda *a: COSTS)
    monkeypatch.setattr("harness.predict.splits.case_costs", lambda case: ((None, None), 1, 1))
    s = parse_scenario({"name": "p", "methods": [method], "compute": {"pace": True}})
    case = pacing.paced(s.cases()[0])
    assert set(case.compute.pace_s) == set(expected)
    for role, phases in expected.items():
        for phase, seconds in phases.items():
            assert case.compute.pace_for(role, phase) == pytest.approx(seconds)
    unpaced = parse_scenario({"name": "p", "methods": [method]}).cases()[0]
    assert pacing.paced(unpaced) is unpaced and unpaced.compute.pace_for("edge") is None


def test_scenario_pace_is_a_bool_and_its_targets_are_the_runners():
    assert parse_scenario({"name": "p", "compute": {"pace": True}}).compute.pace is True
    assert parse_scenario({"name": "p"}).compute.pace is False
    with pytest.raises(HarnessError, match="compute.pace: expected true or false"):
        parse_scenario({"name": "p", "compute": {"pace": "yes"}})
    with pytest.raises(HarnessError, match="compute.pace_s: set by the runner"):
        parse_scenario({"name": "p", "compute": {"pace_s": {"edge": {"step": 1}}}})


def test_a_malformed_target_in_a_case_file_is_refused_by_name():
    c = ComputeConfig(pace=True, pace_s={"edge": {"step": -1}})
    with pytest.raises(HarnessError, match=r"compute.pace_s.edge.step: expected seconds"):
        c.pace_for("edge")
    with pytest.raises(HarnessError, match=r"compute.pace_s.cloud.step"):
        ComputeConfig(pace=True, pace_s={"edge": {"step": 1}}).pace_for("cloud")


def test_paced_hosts_get_a_core_per_thread_and_the_dilation_keeps_the_margin():
    c = ComputeConfig(edge_cores=0.5, cloud_cores=1.0, pace=True, dilation=2.0)
    assert (c.cgroup_cores("edge"), c.cgroup_cores("cloud")) == (1.0, 1.0)
    assert (c.host_cores("edge"), c.host_cores("cloud")) == (0.25, 0.5)   # what targets assume
    _, _, emulation = plan(load_profile("4g"), c, netem=False)
    assert emulation["edge_cores"] == 1.0 and emulation["compute"].startswith("paced")
    threads = {"edge": 1, "cloud": 1}
    margin = pacing.PACE_MARGIN
    # unpaced 0.5 + 1 core fit at x1; paced, a 1-core cloud's target must be 1.5x its real
    # 1-thread step: x1.5. The margin is per host: paced 0.25 + 0.5 cores fit at x1.
    assert choose_factor({"edge": 0.5, "cloud": 1.0}, threads, 2, 8) == 1
    assert choose_factor({"edge": 0.5, "cloud": 1.0}, threads, 2, 8, margin=margin) == 1.5
    assert choose_factor({"edge": 0.25, "cloud": 0.5}, threads, 2, 8, margin=margin) == 1
    # the sum stays the real load (a paced host computes about its virtual cores' worth)
    assert choose_factor({"edge": 0.6, "cloud": 0.6}, threads, 2, 8, margin=margin) == 1


def test_a_host_slower_than_its_targets_is_refused_with_the_numbers():
    ok = {"vgg16@conv7": {"both at once": {
        "edge": {"part": "edge", "measured_s": 0.1, "model_s": 0.4, "factor": 0.25},
        "cloud": {"part": "cloud", "measured_s": 0.05, "model_s": 0.1, "factor": 0.5}}}}
    pacing.require_paceable(ok)
    assert "x4.00 margin" in pacing.pace_lines(ok)[0]
    ok["vgg16@conv7"]["both at once"]["cloud"].update(measured_s=0.12, factor=1.2)
    with pytest.raises(HarnessError, match=r"cloud 120 ms real > 100 ms target"):
        pacing.require_paceable(ok)


def test_the_run_names_its_tightest_paced_step_and_warns_of_a_step_over_its_target(monkeypatch):
    # the auto dilation sizes a device's whole network; its parts can sit closer to their
    # targets (this machine is not equally fast on every layer), so the run prints each span's
    # target / timed cost, and a span whose target is below it (a sure overrun) as a warning
    import dataclasses
    from harness.run.virtual import pace_line
    device = Costs(edge_fwd_s=0.13, edge_bwd_s=0.39, head_s=0.0, cloud_s=0.001,
                   full_edge_s=1.3, full_cloud_s=0.01)          # targets under dilation x1.3
    host = Costs(edge_fwd_s=0.1, edge_bwd_s=0.2, head_s=0.0, cloud_s=0.4, full_edge_s=0.9,
                 full_cloud_s=0.5)                            # this machine, full speed
    monkeypatch.setattr("harness.predict.runtime.costs_from_profile",
                        lambda e, *a: device if e == "device" else host)
    monkeypatch.setattr("harness.predict.splits.case_costs",
                        lambda case: (("device", "device"), 1, 1))
    monkeypatch.setattr("harness.predict.splits.profiles_for", lambda *a: ("host", "host"))
    s = parse_scenario({"name": "p", "methods": ["hierarchical", "split", "cloud", "edge"],
                        "compute": {"pace": True, "dilation": 1.3}})
    s = dataclasses.replace(s, compute=dataclasses.replace(s.compute, modelled=("cloud",)))
    margins = pacing.step_margins(s.cases())
    # the cloud is modelled (computes nothing): only the edge's four distinct spans
    assert [(round(m, 6), name) for m, name in margins] == [
        (1.3, "vgg16@conv4 split learning's edge forward"),
        (pytest.approx(1.3 / 0.9), "vgg16@conv4 edge-only's edge step"),
        (pytest.approx(0.52 / 0.3), "vgg16@conv4 hierarchical training's edge step"),
        (1.95, "vgg16@conv4 split learning's edge backward")]
    assert pace_line(s) == (
        "paced steps: target / this machine's timed cost (cached block costs) from x1.30 "
        "(vgg16@conv4 split learning's edge forward) to x1.95 (vgg16@conv4 split learning's "
        "edge backward) under dilation x1.3; a step over its target is an overrun, counted "
        "per case")
    host = dataclasses.replace(host, edge_fwd_s=0.15)      # now over its 0.13 s target
    line = pace_line(s)
    assert line.startswith("warning: paced steps under dilation x1.3 whose target is below")
    assert "vgg16@conv4 split learning's edge forward x0.87" in line
    assert line.endswith("compute.dilation x1.5 or more would fit them")   # 1.3 x 0.15/0.13
    assert pace_line(parse_scenario({"name": "p"})) is None                # nothing paced
