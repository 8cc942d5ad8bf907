"""Time-varying links: the delay daemon's trace link (its schedule, queue, outages), trace
profiles, the trace generator, the model over a trace, and (root) a real link through it.

    sudo .venv/bin/python -m pytest tests/test_tracelink.py -s
"""
import dataclasses
import re
from pathlib import Path

import pytest

from harness.config import ComputeConfig, Tolerances
from harness.emulation import delayd, linkcheck, tracegen
from harness.emulation.dilation import dilate_profile
from harness.emulation.links import daemon_link, link_params, load_profile, parse_profile
from harness.emulation.tracelink import (OPPORTUNITY_B, TraceLink, constant_times,
                                         window_mbps)
from harness.emulation.traces import load_trace, parse_trace
from harness.errors import HarnessError
from harness.predict.runtime import Costs, Sizes, predict
from harness.predict.transfer import LinkRates

ROOT = Path(__file__).resolve().parent.parent
FULL = OPPORTUNITY_B          # one full-size frame: exactly one opportunity


def test_full_frames_leave_one_per_opportunity_and_the_trace_repeats():
    link = TraceLink([2, 4, 10], 10, queue_packets=10)
    got = [link.depart(0.0, FULL) for _ in range(5)]
    assert got == pytest.approx([0.002, 0.004, 0.010, 0.012, 0.014])   # lap 2 from 10 ms


def test_small_packets_share_an_opportunity_and_big_ones_span_two():
    link = TraceLink([1, 2, 3], 3, queue_packets=10)
    assert link.depart(0.0, 500) == link.depart(0.0, 500) == link.depart(0.0, 500) == 0.001
    assert link.depart(0.0, 500) == 0.002         # 14 bytes were left in the first one
    big = TraceLink([1, 2, 3], 3, queue_packets=10)
    assert big.depart(0.0, 2 * FULL) == 0.002


def test_opportunities_pass_unused_while_the_queue_is_empty():
    link = TraceLink([1, 2, 3, 4, 5], 5, queue_packets=10)
    assert link.depart(0.0, FULL) == 0.001
    assert link.depart(0.0035, FULL) == 0.004     # 2 and 3 ms went by with nothing to carry


def test_a_full_queue_drops_and_frees_as_packets_leave():
    link = TraceLink(constant_times(1.2112), 12000, queue_packets=3)   # one frame per 10 ms
    got = [link.depart(0.0, FULL) for _ in range(5)]
    assert got[3:] == [None, None] and link.dropped == 2
    assert link.depart(got[0] + 1e-6, FULL) is not None   # the first left: room for one


def test_an_outage_holds_packets_until_it_ends_and_restart_moves_time_zero():
    link = TraceLink(constant_times(12.112), 12000, queue_packets=100, outages=[(1.0, 2.0)])
    assert link.depart(0.5, FULL) == pytest.approx(0.5, abs=2e-3)
    assert link.depart(1.5, FULL) == pytest.approx(3.0, abs=2e-3)     # waits out [1, 3)
    link.restart(10.0)
    assert link.depart(11.5, FULL) == pytest.approx(13.0, abs=2e-3)   # [11, 13) now
    link.restart(20.0, outages=False)                                 # a calibration
    assert link.depart(21.5, FULL) == pytest.approx(21.5, abs=2e-3)


def test_dilation_stretches_the_trace_and_the_outages():
    link = TraceLink([2, 4, 10], 10, scale=4, outages=[(0.003, 0.004)])
    assert [link.depart(0.0, FULL) for _ in range(2)] == pytest.approx([0.008, 0.040])


def test_capacity_counts_the_traces_opportunities_and_leaves_outages_out():
    trace = parse_trace("\n".join(["1", "1", "7", "20", "33", "40"]), "t")
    link = TraceLink(list(trace.times_ms), trace.period_ms)
    for t0, t1 in [(0, 0.040), (0.005, 0.1), (0.033, 0.2)]:
        assert link.capacity_b(t0, t1) // FULL == trace.bytes_between(t0 * 1000, t1 * 1000) // 1500
    spec = {"trace": None, "rate_mbps": 12.112, "scale": 1.0, "queue_packets": 10,
            "outages": [(2.0, 1.0)]}
    assert window_mbps(spec, 0, 4) == pytest.approx(12.112, rel=0.01)
    assert window_mbps(spec, 0, 4, outages=True) == pytest.approx(12.112 * 3 / 4, rel=0.01)


def test_constant_times_carry_the_rate():
    times = constant_times(1.1)
    assert len(times) * OPPORTUNITY_B * 8 / 12 / 1e6 == pytest.approx(1.1, rel=0.002)
    assert times == sorted(times) and times[-1] == 12000


def test_delayd_arguments_build_the_link_or_refuse_in_one_line(capsys):
    args = lambda *a: delayd.main(["--queue-num", "1", "--delay-ms", "1", *a])  # noqa: E731
    with pytest.raises(SystemExit) as exc:
        args("--rate-mbps", "1", "--outage", "5")
    assert exc.value.code == 2
    assert "--outage '5': expected START:DURATION" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        args("--outage", "1:2")
    assert "--outage needs --trace, --steps or --rate-mbps" in capsys.readouterr().err


# ---------------------------------------------------------------- profiles


def _raw(**extra):
    raw = {"name": "t", "up_mbps": 1, "down_mbps": 2, "up_delay_ms": 10, "down_delay_ms": 10,
           "jitter_ms": 0, "loss_pct": 0, "queue_packets": 50, "source": {}}
    raw.update(extra)
    return {k: v for k, v in raw.items() if v is not None}


def test_a_trace_profile_takes_the_traces_mean_and_the_daemon_becomes_the_link(tmp_path):
    (tmp_path / "up.txt").write_text("\n".join(str(i) for i in range(1, 1001)))
    where = str(tmp_path / "t.yaml")
    p = parse_profile(_raw(up_mbps=None, up_trace="up.txt"), where)
    assert p.up_mbps == pytest.approx(1000 * OPPORTUNITY_B * 8 / 1e6)
    assert p.varying("up") and not p.varying("down")
    edge, cloud = link_params(dilate_profile(p, 2), netem=True)    # traces never ride netem
    assert edge["tc"]["bw"] == 1000 and cloud["tc"]["bw"] == 2 / 2
    assert cloud["input"]["link"]["trace"] == str(tmp_path / "up.txt")
    assert cloud["input"]["link"]["scale"] == 2 and edge["input"]["link"] is None


def test_outages_on_a_fixed_rate_link_use_its_undilated_rate():
    p = parse_profile(_raw(outages=[{"start_s": 5, "duration_s": 2, "direction": "down"}]))
    spec = daemon_link(dilate_profile(p, 4), "down")
    assert spec["rate_mbps"] == pytest.approx(2) and spec["scale"] == 4
    assert spec["outages"] == [(5, 2)] and daemon_link(p, "up") is None


@pytest.mark.parametrize("extra, message", [
    ({"up_trace": "x.txt"}, r"up_trace: give one of up_mbps, up_trace or up_steps, not up_mbps "
                            r"and up_trace"),
    ({"up_mbps": None, "up_trace": "missing.txt"}, r"up_trace: no such file: .*missing.txt"),
    ({"up_mbps": None, "up_trace": 5}, r"up_trace: expected a trace file's path"),
    ({"outages": {"start_s": 1}}, r"outages: expected a list"),
    ({"outages": [{"start_s": 1}]}, r"outages\[0\]: duration_s: missing"),
    ({"outages": [{"start_s": 1, "duration_s": 0}]}, r"outages\[0\]: start_s must be >= 0"),
    ({"outages": [{"start_s": 1, "duration_s": 1, "direction": "sideways"}]},
     r"outages\[0\].direction: expected one of up, down, both, got 'sideways'"),
    ({"outages": [{"start_s": 1, "duration_s": 1, "at": 2}]}, r"outages\[0\]: at: unknown key"),
])
def test_time_varying_profile_errors_name_the_field(tmp_path, extra, message):
    with pytest.raises(HarnessError, match=message):
        parse_profile(_raw(**extra), str(tmp_path / "t.yaml"))


def test_shipped_trace_profiles_load_with_their_traces_means():
    for name, up, down in [("3g_trace", 1.1, 2.0), ("4g_trace", 5.85, 13.0)]:
        p = load_profile(name)
        assert p.up_mbps * 1500 / OPPORTUNITY_B == pytest.approx(up, rel=1e-3)
        assert p.down_mbps * 1500 / OPPORTUNITY_B == pytest.approx(down, rel=1e-3)
    assert load_profile("3g_outage60").outages == ((10, 60, "up"),)


# ---------------------------------------------------------------- generator, model


@pytest.mark.parametrize("model", sorted(tracegen.MODELS))
def test_shipped_traces_are_what_the_documented_generator_makes(tmp_path, model):
    out = tmp_path / f"{model}.txt"
    assert tracegen.main([model, str(out)]) == 0
    shipped = ROOT / "topologies" / "traces" / f"{model}.txt"
    assert out.read_bytes() == shipped.read_bytes()
    got, m = tracegen.check(load_trace(out)), tracegen.MODELS[model]
    assert got["mean_mbps"] == pytest.approx(m.mbps, rel=1e-3)
    assert abs(got["cv"] / m.cv - 1) <= 0.1 and abs(got["lag1"] - m.rho) <= 0.1


def test_generator_refuses_bad_arguments_in_one_line(tmp_path, capsys):
    assert tracegen.main(["5g_up", str(tmp_path / "x")]) == 2
    assert "give a model" in capsys.readouterr().err
    assert tracegen.main(["3g_up", str(tmp_path / "no" / "x")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_model_on_a_trace_integrates_capacity_and_adds_outages():
    from harness.predict.varying import predict_varying, rates_over, stall_s
    from harness.predict.transfer import LinkRates
    fixed = load_profile("3g")
    as_trace = dataclasses.replace(fixed, outages=((0.0, 1e-9, "down"),))   # fixed rate via daemon
    base = LinkRates.from_profile(fixed)
    assert rates_over(as_trace, base, 30).up_Bps == base.up_Bps             # no trace: unchanged
    traced = load_profile("3g_trace")
    r = rates_over(traced, LinkRates.from_profile(traced), 20)
    assert r.up_Bps / LinkRates.from_profile(traced).up_Bps == pytest.approx(
        window_mbps(daemon_link(traced, "up"), 0, 20) / traced.up_mbps)
    outage = load_profile("3g_outage10")                                    # 10 s up from 10 s
    assert stall_s(outage, "split", 15) == 10 and stall_s(outage, "edge", 100) == 0
    assert stall_s(outage, "cloud", 9) == 0 and stall_s(load_profile("3g_outage60"), "cloud", 12) == 60
    cloud = predict_varying(outage, "cloud", COSTS, SIZES, 40)
    assert cloud.total_s == pytest.approx(predict("cloud", COSTS, SIZES, base, 40).total_s + 10)


COSTS = Costs(0.1, 0.15, 0.02, 0.05, 0.5, 0.3)
SIZES = Sizes(act_b=120_000, grad_b=110_000, raw_b=50_000)


def test_split_on_the_links_timeline_matches_the_closed_form_on_a_fixed_rate():
    """A fixed rate served by the daemon (an outage of zero length elsewhere) gives the
    closed form's time to within the opportunities' granularity; an outage mid-run adds its
    length; a trace costs more than its mean would (each message sees its own seconds)."""
    from harness.predict.varying import predict_varying, rates_over
    fixed = load_profile("3g")
    via_daemon = dataclasses.replace(fixed, outages=((0.0, 1e-9, "up"), (0.0, 1e-9, "down")))
    closed = predict("split", COSTS, SIZES, LinkRates.from_profile(fixed), 30)
    timeline = predict_varying(via_daemon, "split", COSTS, SIZES, 30)
    assert timeline.total_s == pytest.approx(closed.total_s, rel=0.01)
    assert timeline.busy["uplink_s"] == pytest.approx(closed.busy["uplink_s"], rel=0.01)
    outage = predict_varying(load_profile("3g_outage10"), "split", COSTS, SIZES, 30)
    assert outage.total_s == pytest.approx(closed.total_s + 10, rel=0.01)
    traced = load_profile("3g_trace")
    on_trace = predict_varying(traced, "split", COSTS, SIZES, 30)
    mean = predict("split", COSTS, SIZES,                 # at the trace's mean over that time
                   rates_over(traced, LinkRates.from_profile(traced), on_trace.total_s), 30)
    assert on_trace.total_s > 1.03 * mean.total_s and "timeline" in on_trace.bottleneck


def test_a_transfer_ends_when_the_opportunities_carry_its_frames():
    from harness.predict.varying import finish_s
    link = TraceLink([5, 10], 10)            # 2 x 1514 B per 10 ms, opportunities at 5 and 10 ms
    assert finish_s(link, 0.0, 0) == 0.0
    assert finish_s(link, 0.0, 1514) == pytest.approx(0.005)
    assert finish_s(link, 0.0, 3 * 1514) == pytest.approx(0.015)
    assert finish_s(link, 0.006, 1) == pytest.approx(0.010)


def test_expected_jitter_counts_the_trace_service():
    spec = {"trace": None, "rate_mbps": 1.1, "scale": 1.0, "queue_packets": 100, "outages": []}
    assert delayd.expected_jitter_ms(75, 0, 20.0) == 0
    assert delayd.expected_jitter_ms(75, 0, 20.0, spec, 200) > 1.0


# ---------------------------------------------------------------- root: a real trace link


def _topology():
    pytest.importorskip("mininet", reason="Mininet not installed")
    from harness.emulation import topology as module
    return module


@pytest.mark.root
def test_an_uplink_outage_holds_packets_until_it_ends(nothing_left):
    p = dataclasses.replace(load_profile("3g"), outages=((1.0, 2.0, "up"),))
    with _topology().emulated_link(p) as link:
        assert "trace link" in link.emulation["rate"] and link.emulation["edge_htb_mbps"] == 1000
        link.restart_schedule()
        out = link.cmd("edge", f"ping -U -n -c 20 -i 0.2 -W 5 {link.cloud_ip}")
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
    assert len(rtts) == 20, out                     # nothing lost: held in the queue
    assert min(rtts) == pytest.approx(150, abs=15)
    assert 1800 <= max(rtts) <= 2300, rtts          # sent at ~1.0 s, released at 3.0 s


@pytest.mark.root
def test_a_trace_link_calibrates_against_the_traces_window_mean(nothing_left):
    profile = load_profile("3g_trace")
    with _topology().emulated_link(profile, ComputeConfig()) as link:
        result = linkcheck.calibrate(link, profile, Tolerances(), seconds=3)
    m = result["measured"]
    print(f"\n3g_trace: saturated up {m['up_capacity_mbps']:.3f} vs the trace's "
          f"{m['up_trace_mbps']:.3f}, down {m['down_capacity_mbps']:.3f} vs "
          f"{m['down_trace_mbps']:.3f} Mbit/s; TCP goodput up {m['up_mbps']:.3f} of "
          f"{m['up_tcp_trace_mbps']:.3f}, down {m['down_mbps']:.3f} of "
          f"{m['down_tcp_trace_mbps']:.3f}; RTT {m['rtt_ms']:.1f} ms; jitter up "
          f"{m['up_jitter_ms']:.2f} (expected {m['up_jitter_expected_ms']:.2f}) ms")
    assert {"up_capacity", "down_capacity"} <= set(result["checks"])
    assert "up_goodput" not in result["checks"]     # TCP's share of a trace is reported only
    assert result["ok"], result["checks"]


def test_a_step_trace_holds_each_rate_for_its_seconds(tmp_path, capsys):
    out = tmp_path / "steps.txt"
    assert tracegen.main(["--steps", "1.2:2,0:1,2.4:1", str(out)]) == 0
    t = load_trace(out)
    assert t.period_ms == 4000
    assert [round(t.mean_over(s, 1), 2) for s in range(4)] == [1.2, 1.2, 0.0, 2.4]
    for bad in ("1.2", "x:2", "1:0", "0:3"):
        assert tracegen.main(["--steps", bad, str(out)]) == 2
        assert "--steps" in capsys.readouterr().err


def test_on_a_trace_the_rtt_check_takes_the_fastest_probe():
    p = load_profile("3g_trace")
    measured = {"rtt_ms": 234.0, "rtt_min_ms": 155.0, "up_capacity_mbps": 1.0,
                "up_trace_mbps": 1.0, "down_capacity_mbps": 2.0, "down_trace_mbps": 2.0}
    checks = linkcheck.judge(p, measured, Tolerances())
    assert checks["rtt"]["ok"] and checks["rtt"]["measured"] == 155.0
    assert "fastest probe" in checks["rtt"]["rule"]
    fixed = linkcheck.judge(load_profile("3g"), {"rtt_ms": 234.0, "rtt_min_ms": 155.0,
                                                 "up_mbps": 1.05, "down_mbps": 1.9}, Tolerances())
    assert not fixed["rtt"]["ok"]                  # a fixed link: the median, as before
