"""Mahimahi-format traces: parsing (a bad line is named), rates, repetition, the schedule;
rate steps in a profile."""
import argparse

import pytest

from harness.emulation import traces
from harness.emulation.traces import MTU_B, max_backlog_error_b, parse_trace, schedule
from harness.errors import HarnessError


def test_a_trace_of_one_packet_per_ms_is_12_mbits():
    t = parse_trace("\n".join(str(ms) for ms in range(1, 1001)), "t")
    assert t.period_ms == 1000 and t.mean_mbps == pytest.approx(12.0)
    assert t.bytes_between(0, 1000) == 999 * MTU_B       # times < 1000: 1..999
    assert t.bytes_between(0, 2001) == 2000 * MTU_B      # the second lap


def test_repetition_and_windows():
    # 10 packets at 100 ms, none until 1000 ms, one then: a burst and a long gap.
    t = parse_trace("100\n" * 10 + "1000\n", "burst")
    assert t.mean_mbps == pytest.approx(11 * MTU_B * 8 / 1.0 / 1e6)
    assert t.mean_over(0.2, 0.7) == 0                         # inside the gap: an outage
    assert t.bytes_between(1000, 1101) == 11 * MTU_B          # next lap's burst at 1100 ms
    with pytest.raises(HarnessError, match="window must last > 0 s"):
        t.mean_over(0, 0)


@pytest.mark.parametrize("text, message", [
    ("1\n2\nx3\n", r"t: line 3: expected a whole number of milliseconds, got 'x3'"),
    ("1\n-2\n", r"t: line 2: expected a whole number"),
    ("5\n4\n", r"t: line 2: 4 ms is before the previous line's 5 ms"),
    ("1.5\n", r"t: line 1: expected a whole number"),
    ("", r"t: no delivery opportunities"),
    ("0\n0\n", r"t: the last time is 0 ms"),
    ("1\n99999999999\n", r"t: line 2: .* past one day"),
])
def test_a_bad_trace_is_refused_with_its_line(text, message):
    with pytest.raises(HarnessError, match=message):
        parse_trace(text, "t")


def test_blank_lines_are_skipped_and_counted():
    with pytest.raises(HarnessError, match="line 4:"):
        parse_trace("1\n\n2\nbad\n", "t")


def test_the_schedule_carries_every_byte_and_names_outages():
    text = "".join(f"{ms}\n" for ms in range(0, 500)) + "1000\n"   # 500 ms on, 500 ms off
    t = parse_trace(text, "onoff")
    bins = schedule(t, 100)
    assert [start for start, _ in bins] == list(range(0, 1000, 100))
    # The packet at 1000 ms is the next lap's time 0: the first bin carries 101.
    assert bins[0][1] == pytest.approx(12.12) and bins[1][1] == pytest.approx(12.0)
    assert all(r == pytest.approx(12.0) for _, r in bins[1:5])
    assert all(r == 0 for _, r in bins[5:])
    carried = sum(r * 1e6 / 8 * 0.1 for _, r in bins)
    assert carried == pytest.approx(501 * MTU_B)              # every packet, once a period
    # Smooth within a bin: off by at most one bin's bytes, and finer grids are closer.
    assert max_backlog_error_b(t, 100) <= 100 * MTU_B
    assert max_backlog_error_b(t, 10) <= max_backlog_error_b(t, 100)


def test_a_schedule_repeated_keeps_the_traces_mean():
    t = parse_trace("0\n5\n5\n10\n", "t")                 # 4 packets per 10 ms
    bins = schedule(t, 5)
    assert [r for _, r in bins] == pytest.approx([4.8, 4.8])
    assert sum(r for _, r in bins) / len(bins) == pytest.approx(t.mean_mbps)


def test_the_command_prints_a_summary_or_a_one_line_error(tmp_path, capsys):
    good, bad = tmp_path / "good.trace", tmp_path / "bad.trace"
    good.write_text("".join(f"{ms}\n" for ms in range(1, 1001)))
    bad.write_text("1\nten\n")
    assert traces.main([str(good)]) == 0
    assert "mean 12.000 Mbit/s" in capsys.readouterr().out
    assert traces.main([str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.trace: line 2" in err[0]
    assert traces.main([str(tmp_path / "missing")]) == 2


# ---------------------------------------------------------------- rate steps in a profile

def _steps_profile(steps):
    from harness.emulation.links import parse_profile
    return parse_profile({"name": "s", "up_steps": steps, "down_mbps": 2, "up_delay_ms": 10,
                          "down_delay_ms": 10, "jitter_ms": 0, "loss_pct": 0,
                          "queue_packets": 50, "source": {}})


def test_rate_steps_become_the_daemons_schedule_with_their_mean():
    """[{mbps, seconds}] repeat from each case's start; the daemon serves them as the
    opportunities `tracegen --steps` would write to a file."""
    from harness.emulation import delayd
    from harness.emulation.links import daemon_link
    from harness.emulation.tracegen import opportunities, step_rates
    from harness.emulation.tracelink import link_of, window_mbps
    from harness.emulation.topology import _delayd_argv
    p = _steps_profile([{"mbps": 1.2, "seconds": 2}, {"mbps": 0.3, "seconds": 2}])
    spec = daemon_link(p, "up")
    assert p.up_steps == "1.2:2,0.3:2" and spec["steps"] == p.up_steps and p.varying("up")
    frame = 1514 / MTU_B                                    # a 1500-byte packet is 1514 on the wire
    assert window_mbps(spec, 0, 2) == pytest.approx(1.2 * frame, rel=0.01)
    assert window_mbps(spec, 2, 2) == pytest.approx(0.3 * frame, rel=0.02)
    assert window_mbps(spec, 40, 2) == pytest.approx(window_mbps(spec, 0, 2), rel=0.01)  # repeats
    assert p.up_mbps == pytest.approx(0.75 * frame, rel=0.01)
    assert link_of(spec).times == [t / 1000 for t in opportunities(step_rates("1.2:2,0.3:2"))]
    argv = _delayd_argv(1, {"delay_ms": 10, "jitter_ms": 0, "link": spec})
    assert argv[argv.index("--steps") + 1] == "1.2:2,0.3:2"
    args = argparse.Namespace(trace=None, steps=spec["steps"], rate_mbps=None, trace_scale=2.0,
                              queue_packets=50, outage=[])
    assert delayd.make_link(args).period == 8.0                          # 4 s, dilated by 2
    with pytest.raises(ValueError, match="--steps: '1:x'"):
        delayd.make_link(argparse.Namespace(**{**vars(args), "steps": "1:x"}))


@pytest.mark.parametrize("steps, message", [
    ([], r"up_steps: expected a list of \{mbps, seconds\}"),
    ([{"mbps": 1, "seconds": 0.5}], r"up_steps\[0\]: mbps must be in \[0, 1000\] and seconds a "
                                    r"whole number >= 1, got 1 and 0.5"),
    ([{"mbps": -1, "seconds": 3}], r"up_steps\[0\]: mbps must be in"),
    ([{"mbps": 1}], r"up_steps\[0\]: seconds: missing"),
    ([{"mbps": 0, "seconds": 3}], r"up_steps: every step has rate 0"),
])
def test_bad_rate_steps_are_refused_naming_the_step(steps, message):
    with pytest.raises(HarnessError, match=message):
        _steps_profile(steps)
