"""Time dilation's arithmetic (no root): the dilated link, the factor chosen, what is refused,
the shares Mininet gets, and the times the summary reports.

    .venv/bin/python -m pytest tests/test_dilation.py
"""
import pytest

from harness.analysis.summary import _undilate
from harness.config import ComputeConfig, dilation_of, parse_scenario
from harness.emulation.dilation import (HOST_CORES_LEFT, check_rtt, choose_factor,
                                        dilate_profile, factor_needed, label, link_label)
from harness.emulation.links import load_profile
from harness.emulation.plan import plan
from harness.errors import HarnessError


def test_a_dilated_link_is_k_times_slower_and_longer_with_the_same_queue_and_loss():
    p = load_profile("4g_loss1")
    d = dilate_profile(p, 4)
    assert (d.up_mbps, d.down_mbps) == pytest.approx((p.up_mbps / 4, p.down_mbps / 4))
    assert (d.up_delay_ms, d.down_delay_ms) == pytest.approx((p.up_delay_ms * 4, p.down_delay_ms * 4))
    assert (d.jitter_ms, d.down_jitter_ms) == (p.jitter_ms * 4, p.down_jitter_ms * 4)
    assert (d.loss_pct, d.down_loss_pct, d.queue_packets) == (p.loss_pct, p.down_loss_pct,
                                                              p.queue_packets)
    assert d.name == p.name and "x4" in d.source["dilation"]
    # a transfer's serialization time and the RTT both grow by k: bytes / (rate / k) = k x
    assert d.rtt_ms == pytest.approx(4 * p.rtt_ms)
    assert dilate_profile(p, 1) is p


def test_the_factor_is_the_smallest_in_tenths_that_fits():
    threads = {"edge": 1, "cloud": 1}
    assert choose_factor({"edge": 0.5, "cloud": 1.0}, threads, 2, 8) == 1     # the defaults
    # one thread cannot use more than one core: a 4-core cloud needs x4
    assert choose_factor({"edge": 0.5, "cloud": 4.0}, threads, 2, 8) == 4
    # together within 2 - HOST_CORES_LEFT cores: 1.0 + 1.0 needs 2 / 1.5 = x1.33 -> x1.4
    assert factor_needed({"edge": 1.0, "cloud": 1.0}, threads, 2) == pytest.approx(
        2 / (2 - HOST_CORES_LEFT))
    assert choose_factor({"edge": 1.0, "cloud": 1.0}, threads, 2, 8) == 1.4
    assert choose_factor({"edge": 1.0, "cloud": 3.0}, {"edge": 1, "cloud": 4}, 16, 8) == 1
    # exactly a tenth is kept (no rounding error pushes it a step up), and it always fits
    assert choose_factor({"edge": 0.7, "cloud": 1.3}, threads, 2, 8) == 1.4
    for cloud in (1.01, 1.2, 1.49, 2.3, 3.14159, 5.55):
        k = choose_factor({"edge": 0.1, "cloud": cloud}, threads, 2, 8)
        need = factor_needed({"edge": 0.1, "cloud": cloud}, threads, 2)
        assert need <= k < need + 0.1 + 1e-9 and k == round(k, 1)


def test_a_factor_above_the_ceiling_is_refused_naming_what_needs_it():
    with pytest.raises(HarnessError) as err:
        choose_factor({"edge": 0.5, "cloud": 500.0}, {"edge": 1, "cloud": 1}, 2, 8,
                      {"cloud": "compute.cloud_device: v100 would need ~455 cores"})
    text = str(err.value)
    assert "x500" in text and "compute.max_dilation = 8" in text and "v100" in text


def test_a_factor_that_stretches_the_rtt_past_the_handshake_budget_is_refused():
    check_rtt(load_profile("3g"), 6)                 # 900 ms: allowed
    with pytest.raises(HarnessError, match="compute.dilation: x2 makes link 'geo' a 1200 ms RTT"):
        check_rtt(load_profile("geo"), 2)


def test_scenario_dilation_auto_number_and_bad_values():
    base = {"name": "d", "links": ["3g"]}
    assert parse_scenario(base).compute.dilation is None                  # auto by default
    assert parse_scenario({**base, "compute": {"dilation": "auto"}}).compute.dilation is None
    assert parse_scenario({**base, "compute": {"dilation": 4}}).compute.dilation == 4.0
    for value, words in ((0.5, "compute.dilation: must be 'auto' or a number in [1"),
                         (9, "compute.dilation: must be 'auto' or a number in [1"),
                         ("fast", "compute.dilation: expected a number")):
        with pytest.raises(HarnessError, match=words.replace("[", r"\[")):
            parse_scenario({**base, "compute": {"dilation": value}})
    with pytest.raises(HarnessError, match="compute.max_dilation: must be >= 1"):
        parse_scenario({**base, "compute": {"max_dilation": 0.5}})
    assert dilation_of(ComputeConfig()) == 1.0


def test_mininet_gets_the_virtual_cores_divided_by_k():
    compute = ComputeConfig(edge_cores=2.0, cloud_cores=4.0, dilation=4.0)
    _, _, emulation = plan(load_profile("3g"), compute, netem=False)
    assert (emulation["edge_cores"], emulation["cloud_cores"]) == (0.5, 1.0)
    assert emulation["dilation"] == 4.0
    with pytest.raises(HarnessError, match="compute.cloud_cores: 400 is not in"):
        plan(load_profile("3g"), ComputeConfig(cloud_cores=400.0, dilation=4.0), netem=False)


def test_the_summary_divides_every_time_by_k_and_says_so():
    row = {"wall_s": 40.0, "edge_compute_s": 8.0, "est_full_wall_s": 400.0,
           "est_full_wall_ci_s": 20.0, "interval_s": 4.0, "predicted_full_s": 380.0,
           "steps": 10, "runtime_source": "estimated: fill + (100-1) x steady interval"}
    out = _undilate(dict(row), 4.0)
    assert (out["wall_s"], out["edge_compute_s"], out["est_full_wall_s"]) == (10.0, 2.0, 100.0)
    assert (out["est_full_wall_ci_s"], out["interval_s"], out["predicted_full_s"]) == (5.0, 1.0, 95.0)
    assert out["steps"] == 10 and out["dilation"] == 4.0
    assert out["runtime_source"].endswith("dilated x4, times / 4")
    assert _undilate(dict(row), 1.0) == {**row, "dilation": 1.0}
    assert label(1.0) == "" and label(4.0) == " (dilated x4: times / 4)"
    assert link_label(1.0) == "" and "rates / 4, delays x 4" in link_label(4.0)


def test_over_ceiling_is_model_refuse_or_cap_and_cap_needs_paced_compute():
    base = {"name": "d", "links": ["3g"]}
    assert parse_scenario(base).compute.over_ceiling == "model"
    paced = {"pace": True, "over_ceiling": "cap"}
    assert parse_scenario({**base, "compute": paced}).compute.over_ceiling == "cap"
    assert parse_scenario({**base, "compute": {"over_ceiling": "refuse"}}).compute.over_ceiling == "refuse"
    with pytest.raises(HarnessError, match="compute.over_ceiling: expected model, refuse or cap, got 'clip'"):
        parse_scenario({**base, "compute": {"pace": True, "over_ceiling": "clip"}})
    with pytest.raises(HarnessError, match="compute.over_ceiling: cap needs compute.pace: true"):
        parse_scenario({**base, "compute": {"over_ceiling": "cap"}})


def test_a_capped_device_runs_at_the_ceiling_and_says_so(monkeypatch):
    """compute.over_ceiling: cap with a device far beyond the ceiling: k = max_dilation, one
    line per capped device and (model, split), and the summary's uncapped prediction."""
    from types import SimpleNamespace
    from harness.run import virtual
    raw = {"name": "d", "links": ["3g"], "model": {"arch": "vgg16", "split": "conv7"},
           "compute": {"edge_device": "rpi4", "cloud_device": "a100", "pace": True,
                       "max_dilation": 2, "over_ceiling": "cap"}}
    lines = []
    opts = SimpleNamespace(emulate=True, quiet=False, echo=lines.append)
    resolved = virtual.resolve_dilation(parse_scenario(raw), {"3g": load_profile("3g")}, opts)
    assert resolved.compute.dilation == 2.0
    text = "\n".join(lines)
    assert "time dilation x2 (compute.max_dilation; x" in text and "a100 would need" in text
    assert "capped: cloud device a100, vgg16@conv7: its steps run x" in text
    with pytest.raises(HarnessError, match="above compute.max_dilation = 2"):
        virtual.resolve_dilation(parse_scenario({**raw, "compute": {
            **raw["compute"], "over_ceiling": "refuse"}}), {"3g": load_profile("3g")}, opts)


def test_a_dilated_run_does_not_use_bbr(monkeypatch):
    """BBR's PROBE_RTT does not dilate (+8.5% measured at x4): tcp_cc unset under a kernel
    defaulting to BBR becomes reno, said in one line; tcp_cc: bbr set is refused; x1 keeps it."""
    from types import SimpleNamespace
    from harness.run import virtual
    monkeypatch.setattr(virtual, "_kernel_cc", lambda: "bbr")
    raw = {"name": "d", "links": ["3g"], "compute": {"dilation": 2}}
    lines = []
    opts = SimpleNamespace(emulate=True, quiet=True, echo=lines.append)
    profiles = {"3g": load_profile("3g")}
    resolved = virtual.resolve_dilation(parse_scenario(raw), profiles, opts)
    assert resolved.tcp_cc == "reno" and resolved.compute.dilation == 2.0
    assert sum("tcp_cc: reno for this run, not the kernel's default bbr" in x for x in lines) == 1
    with pytest.raises(HarnessError, match=r"tcp_cc: bbr under time dilation x2 is refused: .*\+8\.5%"):
        virtual.resolve_dilation(parse_scenario({**raw, "tcp_cc": "bbr"}), profiles, opts)
    for same in ({**raw, "compute": {"dilation": 1}, "tcp_cc": "bbr"}, {**raw, "tcp_cc": "cubic"}):
        assert virtual.resolve_dilation(parse_scenario(same), profiles, opts).tcp_cc == same["tcp_cc"]
    monkeypatch.setattr(virtual, "_kernel_cc", lambda: "cubic")
    assert virtual.resolve_dilation(parse_scenario(raw), profiles, opts).tcp_cc is None
