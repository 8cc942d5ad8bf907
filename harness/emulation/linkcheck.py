"""Calibrate the emulated link against its profile: RTT, goodput, loss and jitter, each way.

    sudo .venv/bin/python -m harness.emulation.linkcheck 3g [--seconds 3]

- RTT: the median of >= 10 `ping -U` probes on the idle link (plain ping does not see delay
  added on its own host's INPUT chain).
- Goodput per direction: iperf3's receiver-side TCP rate in steady state (with random loss
  configured: what the direction delivers saturated with UDP against rate x (1 - loss),
  harness.emulation.capacity, the TCP rate recorded beside it), the median of its
  one-second rates (BBR's periodic PROBE_RTT dips are the flow's, not the link's; the mean is
  recorded too). Start-up is omitted
  for as long as it takes on this link: TCP's window reaches the bandwidth-delay product after
  about log2(BDP / initial window) round trips, and BBR needs a few more to drain its start-up
  queue, so `omit` grows with the RTT (a 3 s test on a 600 ms link measures slow start, not the
  link); the measured part lasts at least `MEASURE_RTTS` round trips. HTB counts headers, so
  goodput is ~95.7% of the configured rate (1448 payload bytes per 1514 on the wire).
- Loss and jitter per direction: UDP datagrams at half the link's rate (the queue never
  fills, so every loss is the emulated one), sized to keep the stream near 2,000 a second
  (a flood of tiny datagrams measures the host's packet rate, not the link); enough of them that the binomial 95% CI of the
  loss is within `LOSS_CI_PCT` points. Jitter is iperf3's RFC 3550 interarrival jitter; its
  expected value is computed by running the delay daemon's own model (`Delayer`) on the same
  packet stream, since no-reordering changes what a uniform +-J delay looks like.
- A trace-driven direction (or one with outages) is measured for at least `TRACE_MEASURE_S`
  from its trace's time zero, set when the iperf3 client starts (outages left out); its
  goodput is the window's mean, judged against the trace's mean over the same window
  (`{d}_trace_mbps`; the window's start estimated as the omitted seconds plus
  `IPERF_START_RTTS` round trips of connection and set-up), and the expected jitter includes
  the trace's service.
- The hypervisor's CPU steal over each attempt is recorded (`host_steal_pct`) and named in
  the error of a failed calibration: on a busy virtual machine it, not the link, is often
  why a rate came out low.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

from harness.files import write_json
from harness.config import Tolerances
from harness.emulation.delayd import expected_jitter_ms
from harness.emulation.links import INITIAL_WINDOW_B, WIRE_EFFICIENCY, daemon_link
from harness.emulation.tracelink import window_mbps
from harness.emulation.probes import (UDP_HEADERS_B, MIN_RTT_PROBES, measure_goodput,
                                     measure_rtt, measure_udp)
from harness.errors import HarnessError
from harness.machine import cpu_ticks, steal_pct

STARTUP_EXTRA_RTTS = 4            # BBR start-up's drain and first probe after the window is full
MEASURE_RTTS = 20                 # the measured part spans at least this many round trips
MIN_MEASURE_S = 3                 # and at least three one-second rates for their median
UDP_SHARE = 0.5                   # UDP probe rate / link rate: below it, no queue drops
TRACE_UDP_SHARE = 0.25            # the same under a trace, whose rate dips below its mean
TRACE_MEASURE_S = 10              # a trace's direction is measured at least this long
SATURATE = 3.0                    # UDP rate / a trace's mean when its capacity is measured
IPERF_START_RTTS = 4              # iperf3's connection and set-up before its test clock starts
LOSS_CI_PCT = 0.2                 # binomial 95% CI half-width aimed at, percentage points
MIN_UDP_PACKETS = 1000
STEAL_NOTE_PCT = 5.0              # CPU steal during a failed calibration worth naming
STEAL_RETRY_PCT = 10.0            # steal at which a failing check is measured again ...
STEAL_RETRIES = 2                 # ... at most this many more times (each recorded)


def goodput_plan(rate_mbps: float, rtt_ms: float, seconds: float) -> tuple[int, float]:
    """(omit s, measured s) for one direction: start-up excluded, duration scaled to the RTT."""
    rtt = rtt_ms / 1e3
    bdp = rate_mbps * 1e6 / 8 * rtt
    rtts = math.log2(max(bdp / INITIAL_WINDOW_B, 1.0)) + STARTUP_EXTRA_RTTS
    return 1 + math.ceil(rtts * rtt), max(seconds, MEASURE_RTTS * rtt, MIN_MEASURE_S)


def udp_packets(loss_pct: float) -> int:
    """Datagrams needed for a binomial 95% CI of LOSS_CI_PCT points at this loss."""
    p = loss_pct / 100
    return max(MIN_UDP_PACKETS, math.ceil(1.96 ** 2 * p * (1 - p) / (LOSS_CI_PCT / 100) ** 2))


def judge(profile, measured: dict, tol: Tolerances) -> dict:
    """Pass/fail per check: goodput >= ratio x configured; |RTT - profile| <= rel x RTT + abs;
    |loss - configured| <= loss_abs_pct; |jitter - expected| <= rel x expected + abs."""
    checks = {}
    for d in ("up", "down"):
        if f"{d}_trace_mbps" in measured:    # a trace: what it delivers, against the trace
            got, want = measured[f"{d}_capacity_mbps"], measured[f"{d}_trace_mbps"]
            checks[f"{d}_capacity"] = {
                "ok": abs(got / want - 1) <= tol.trace_rel, "measured": got,
                "rule": f"within {tol.trace_rel:.0%} of the trace's {want:.3g} Mbit/s"}
            continue
        if f"{d}_lossy_mbps" in measured:    # random loss: the link's rate, saturated (UDP)
            got, want = measured[f"{d}_capacity_mbps"], measured[f"{d}_lossy_mbps"]
            checks[f"{d}_capacity"] = {"ok": got >= tol.goodput_ratio * want, "measured": got,
                                       "rule": f">= {tol.goodput_ratio:g} x rate x (1 - loss) "
                                               f"= {want:.4g} Mbit/s, delivered saturated"}
            continue
        configured = getattr(profile, f"{d}_mbps")
        limit = tol.goodput_ratio * configured
        checks[f"{d}_goodput"] = {"ok": measured[f"{d}_mbps"] >= limit, "measured": measured[f"{d}_mbps"],
                                  "limit": limit, "rule": f">= {tol.goodput_ratio:g} x {configured:g} Mbit/s"}
    allowed = tol.rtt_rel * profile.rtt_ms + tol.rtt_abs_ms
    # On a trace a probe also waits for the next opportunity, seconds in a fade: the fastest
    # probe is the one that shows the configured delays.
    traced = any(f"{d}_trace_mbps" in measured for d in ("up", "down")) and "rtt_min_ms" in measured
    rtt, which = (measured["rtt_min_ms"], "fastest probe's ") if traced else (measured["rtt_ms"], "")
    error = abs(rtt - profile.rtt_ms)
    checks["rtt"] = {"ok": error <= allowed, "measured": rtt, "error_ms": error, "limit": allowed,
                     "rule": f"|{which}rtt - {profile.rtt_ms:g}| <= {allowed:g} ms"}
    for d, loss in (("up", profile.loss_pct), ("down", profile.down_loss_pct)):
        if f"{d}_loss_pct" in measured:
            got = measured[f"{d}_loss_pct"]
            checks[f"{d}_loss"] = {"ok": abs(got - loss) <= tol.loss_abs_pct, "measured": got,
                                   "rule": f"|loss - {loss:g}%| <= {tol.loss_abs_pct:g} points"}
        if f"{d}_jitter_ms" in measured:
            got, want = measured[f"{d}_jitter_ms"], measured[f"{d}_jitter_expected_ms"]
            limit = tol.jitter_rel * want + tol.jitter_abs_ms
            checks[f"{d}_jitter"] = {"ok": abs(got - want) <= limit, "measured": got,
                                     "rule": f"|jitter - {want:.3g} ms| <= {limit:.3g} ms"}
    return checks


def calibrate(link, profile, tolerances: Tolerances | None = None, seconds: float = 3) -> dict:
    """Measure RTT, goodput, loss and jitter both ways inside the topology; compare.

    A check that fails is measured once more (its direction, or the RTT) and judged on the
    second measurement: one disturbance on the host (a daemon waking up, a page-cache flush)
    must not stop a sweep, while a link that is really off fails twice. Under CPU steal of
    `STEAL_RETRY_PCT` or more (stolen time delays the shaper and the delayer: a rate measured
    then is the host's) a failing check is measured up to `STEAL_RETRIES` more times. Every
    attempt is kept (`earlier_attempts`; the first also as `first_attempt`) with its steal.
    """
    tol = tolerances or Tolerances()
    ticks = cpu_ticks()
    measured, plans = _measure_rtt(link, profile), {}
    for d in ("up", "down"):
        plans[d] = _measure_direction(link, profile, d, seconds, measured)
    measured["host_steal_pct"] = steal_pct(ticks, cpu_ticks())
    checks = judge(profile, measured, tol)
    earlier: list[dict] = []
    while True:
        failed = sorted({name.split("_")[0] for name, c in checks.items() if not c["ok"]})
        stolen = (measured["host_steal_pct"] or 0) >= STEAL_RETRY_PCT
        if not failed or len(earlier) >= 1 + (STEAL_RETRIES if stolen else 0):
            break
        earlier.append({"measured": dict(measured), "checks": checks, "remeasured": failed})
        ticks = cpu_ticks()
        for part in failed:
            if part == "rtt":
                measured.update(_measure_rtt(link, profile))
            else:
                _measure_direction(link, profile, part, seconds, measured)
        measured["host_steal_pct"] = steal_pct(ticks, cpu_ticks())
        checks = judge(profile, measured, tol)
    first = earlier[0] if earlier else None
    return {
        "profile": profile.name, "seconds": seconds, "plans": plans,
        "configured": {"up_mbps": profile.up_mbps, "down_mbps": profile.down_mbps,
                       "rtt_ms": profile.rtt_ms, "up_loss_pct": profile.loss_pct,
                       "down_loss_pct": profile.down_loss_pct, "up_jitter_ms": profile.jitter_ms,
                       "down_jitter_ms": profile.down_jitter_ms},
        "expected_goodput_ratio": WIRE_EFFICIENCY,
        "measured": measured, "checks": checks, "tolerances": dataclasses.asdict(tol),
        "emulation": dict(link.emulation), "ok": all(c["ok"] for c in checks.values()),
        "attempts": 1 + len(earlier), "first_attempt": first, "earlier_attempts": earlier,
    }


def _measure_rtt(link, profile) -> dict:
    """RTT probes on the idle link, more of them when loss would eat some."""
    worst_loss = max(profile.loss_pct, profile.down_loss_pct)
    probes = max(MIN_RTT_PROBES, math.ceil(MIN_RTT_PROBES / (1 - worst_loss / 100) ** 2)) + 2
    return measure_rtt(link, probes)


def _measure_direction(link, profile, d: str, seconds: float, measured: dict) -> dict:
    """Goodput (TCP), loss and jitter (UDP) one way into `measured`; returns the TCP plan."""
    rate = getattr(profile, f"{d}_mbps")
    delay, jitter, loss = ((profile.up_delay_ms, profile.jitter_ms, profile.loss_pct) if d == "up"
                           else (profile.down_delay_ms, profile.down_jitter_ms, profile.down_loss_pct))
    omit, duration = goodput_plan(rate, profile.rtt_ms, seconds)
    spec = daemon_link(profile, d)           # a trace-driven (or outage-bearing) direction
    if spec:
        duration = max(duration, TRACE_MEASURE_S)
    tcp = measure_goodput(link, d, duration, omit,       # a trace's time zero: the client's launch
                          on_start=(lambda: link.restart_schedule(outages=False)) if spec else None)
    measured[f"{d}_mbps"], measured[f"{d}_mean_mbps"] = tcp["mbps"], tcp["mean_mbps"]
    measured[f"{d}_interval_mbps"] = tcp["interval_mbps"]
    if spec:      # its rate varies: the mean goodput against the trace's mean over the window
        measured[f"{d}_mbps"] = tcp["mean_mbps"]
        start = omit + IPERF_START_RTTS * profile.rtt_ms / 1e3     # estimated, see above
        measured[f"{d}_tcp_trace_mbps"] = window_mbps(spec, start, duration)
        _measure_capacity(link, profile, d, spec, measured)
    elif loss > 0:   # TCP's goodput is its congestion control's under loss (capacity.py)
        from harness.emulation.capacity import lossy_capacity
        measured.update(lossy_capacity(link, profile, d))
    udp = measure_udp(link, d, (TRACE_UDP_SHARE if spec else UDP_SHARE) * rate, udp_packets(loss))
    measured[f"{d}_loss_pct"], measured[f"{d}_jitter_ms"] = udp["loss_pct"], udp["jitter_ms"]
    measured[f"{d}_probe_failures"] = tcp.get("failed_tries", []) + udp.get("failed_tries", [])
    measured[f"{d}_udp"] = udp
    measured[f"{d}_jitter_expected_ms"] = expected_jitter_ms(
        delay, jitter, udp["pps"], spec, udp["payload_b"] + UDP_HEADERS_B)
    return {"omit_s": omit, "seconds": duration}


def _measure_capacity(link, profile, d: str, spec: dict, measured: dict) -> None:
    """What a trace-driven direction delivers, saturated, against its trace (the emulator's
    own error, harness.emulation.capacity)."""
    from harness.emulation.capacity import measure
    delay_s = (profile.up_delay_ms if d == "up" else profile.down_delay_ms) / 1e3
    got = measure(link, d, SATURATE * getattr(profile, f"{d}_mbps"), TRACE_MEASURE_S)
    start = got["first"] - got["origin"] - delay_s          # when the first one left the link
    measured[f"{d}_capacity_mbps"] = got["mbps"]
    measured[f"{d}_trace_mbps"] = window_mbps(spec, start, got["last"] - got["first"])
    measured[f"{d}_capacity_probe"] = {**got, "trace_window_start_s": start}


def write_linkcheck(run_dir: str | Path, result: dict) -> Path:
    """Write linkcheck.json into the run directory; returns its path."""
    path = Path(run_dir) / "linkcheck.json"
    write_json(path, result, indent=2, sort_keys=True)
    return path


def require_ok(result: dict) -> None:
    """HarnessError naming each failed check with its measured number."""
    bad = [f"{name} {c['measured']:.3g} (want {c['rule']})"
           for name, c in result["checks"].items() if not c["ok"]]
    if bad:
        n = result.get("attempts", 1)
        again = f" (measured {'twice' if n == 2 else f'{n} times'})" if n > 1 else ""
        raise HarnessError(f"link '{result['profile']}' out of tolerance{again}: " + "; ".join(bad)
                           + steal_note(result["measured"]))


def steal_note(measured: dict) -> str:
    """' (the hypervisor stole 12% of this machine's CPU time meanwhile)' when it did (>= 1%)."""
    steal = measured.get("host_steal_pct")
    if steal is None or steal < STEAL_NOTE_PCT:
        return ""
    return (f" (the hypervisor stole {steal:.0f}% of this machine's CPU time meanwhile: "
            f"shaped rates are not to be trusted while it does)")


def summary_line(c: dict) -> str:
    """'link 3g: up 1.05/1.1 Mbit/s, ... (measured/configured): ok' for the run's output."""
    m, cfg = c["measured"], c["configured"]
    loss = "".join(f", loss {d} {m[f'{d}_loss_pct']:.2f}/{cfg.get(f'{d}_loss_pct', 0):g}%"
                   for d in ("up", "down") if f"{d}_loss_pct" in m)
    again = (f" after re-measuring {', '.join(c['first_attempt']['remeasured'])}"
             if c.get("attempts", 1) > 1 else "")
    retried = sum(len(m.get(f"{d}_probe_failures", [])) for d in ("up", "down"))
    again += f" ({retried} failed probe run(s) retried: linkcheck.json)" if retried else ""
    rates = ", ".join(
        f"{d} {m[f'{d}_capacity_mbps']:.3g}/{m[f'{d}_trace_mbps']:.3g} Mbit/s delivered/trace"
        if f"{d}_trace_mbps" in m else f"{d} {m[f'{d}_capacity_mbps']:.3g}/"
        f"{m[f'{d}_lossy_mbps']:.3g} Mbit/s delivered/rate x (1 - loss) (TCP {m[f'{d}_mbps']:.2f})"
        if f"{d}_lossy_mbps" in m else f"{d} {m[f'{d}_mbps']:.2f}/{cfg[f'{d}_mbps']:g} Mbit/s"
        for d in ("up", "down"))
    return (f"link {c['profile']}: {rates}, RTT {m['rtt_ms']:.1f}/"
            f"{cfg['rtt_ms']:g} ms{loss} (measured/configured): "
            f"{'ok' if c['ok'] else 'OUT OF TOLERANCE'}{again}{'' if c['ok'] else steal_note(m)}")


def format_table(results: list[dict]) -> str:
    """Configured vs measured per profile, one line each."""
    head = (f"{'profile':<8} {'up cfg':>7} {'up meas':>8} {'down cfg':>8} {'down meas':>9} "
            f"{'rtt cfg':>7} {'rtt meas':>8}  ok")
    lines = [head]
    for r in results:
        c, m = r["configured"], r["measured"]
        lines.append(f"{r['profile']:<8} {c['up_mbps']:>7.2f} {m['up_mbps']:>8.2f} {c['down_mbps']:>8.2f} "
                     f"{m['down_mbps']:>9.2f} {c['rtt_ms']:>7.1f} {m['rtt_ms']:>8.1f}  {r['ok']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build each named profile's link, calibrate it, print the table."""
    import argparse
    from harness.emulation.links import load_profile
    from harness.emulation.topology import emulated_link
    ap = argparse.ArgumentParser(prog="python -m harness.emulation.linkcheck")
    ap.add_argument("profiles", nargs="+")
    ap.add_argument("--seconds", type=float, default=3)
    args = ap.parse_args(argv)
    results = []
    for name in args.profiles:
        profile = load_profile(name)
        with emulated_link(profile) as link:
            results.append(calibrate(link, profile, seconds=args.seconds))
    print(format_table(results))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
