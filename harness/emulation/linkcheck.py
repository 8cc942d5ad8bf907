"""Measure the emulated link (RTT with ping -U, goodput with iperf3) against its profile.

    sudo .venv/bin/python -m harness.emulation.linkcheck 3g [--seconds 3]

RTT is the median of >= 10 `ping -U` probes on the idle link (plain ping does not see delay
added on its own host's INPUT chain). Goodput is iperf3's receiver-side rate, first second
omitted, per direction. HTB counts headers, so goodput is ~95.7% of the configured rate
(1448 payload bytes per 1514 on the wire); the tolerance allows for it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path

from harness.config import Tolerances
from harness.emulation.links import WIRE_EFFICIENCY
from harness.errors import HarnessError

IPERF_PORT = 5201
OMIT_S = 1                # iperf3 warm-up excluded from the result, seconds
PING_INTERVAL_S = 0.2
MIN_RTT_PROBES = 10


def measure_rtt(link, count: int = MIN_RTT_PROBES) -> dict:
    """ping -U from edge to cloud; median/min/max in ms and the number of replies."""
    out = link.cmd("edge", f"ping -U -n -c {count} -i {PING_INTERVAL_S} -W 3 {link.cloud_ip}")
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
    if len(times) < min(MIN_RTT_PROBES, count):
        raise HarnessError(f"linkcheck: only {len(times)} of {count} pings answered "
                           f"edge -> cloud ({out.strip().splitlines()[-1] if out.strip() else 'no output'})")
    # ping prints whole ms from 100 ms up; its summary line keeps microseconds (mean, mdev).
    summary = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", out)
    return {"rtt_ms": statistics.median(times), "rtt_min_ms": min(times),
            "rtt_max_ms": max(times), "rtt_probes": len(times), "rtt_sent": count,
            "rtt_mean_ms": float(summary.group(2)) if summary else None,
            "rtt_mdev_ms": float(summary.group(4)) if summary else None}


def _wait_listening(link, role: str, port: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if link.cmd(role, f"ss -Hltn 'sport = :{port}'").strip():
            return
        time.sleep(0.05)
    raise HarnessError(f"linkcheck: iperf3 server in {role} not listening on port {port}")


def measure_goodput(link, direction: str, seconds: float) -> float:
    """Receiver-side iperf3 goodput in Mbit/s for 'up' (edge->cloud) or 'down'."""
    server = link.popen("cloud", ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], cgroup=False)
    try:
        _wait_listening(link, "cloud", IPERF_PORT)
        argv = ["iperf3", "-c", link.cloud_ip, "-p", str(IPERF_PORT), "-J",
                "-t", f"{seconds:g}", "-O", str(OMIT_S)]
        if direction == "down":
            argv.append("-R")    # the server (cloud) sends
        if link.emulation.get("tcp_cc_set", "").startswith("per socket"):
            argv += ["-C", link.emulation["tcp_cc"]]
        client = link.popen("edge", argv, cgroup=False, text=True)
        try:
            out, _ = client.communicate(timeout=seconds + OMIT_S + 20)
        finally:
            link.kill(client)
    finally:
        link.kill(server)
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        raise HarnessError(f"linkcheck: iperf3 {direction}: no JSON output") from None
    if "error" in report:
        raise HarnessError(f"linkcheck: iperf3 {direction}: {report['error']}")
    return report["end"]["sum_received"]["bits_per_second"] / 1e6


def judge(profile, measured: dict, tol: Tolerances) -> dict:
    """Pass/fail per check: goodput >= ratio x configured; |RTT - profile| <= rel x RTT + abs."""
    checks = {}
    for d in ("up", "down"):
        configured = getattr(profile, f"{d}_mbps")
        limit = tol.goodput_ratio * configured
        checks[f"{d}_goodput"] = {"ok": measured[f"{d}_mbps"] >= limit, "measured": measured[f"{d}_mbps"],
                                  "limit": limit, "rule": f">= {tol.goodput_ratio:g} x {configured:g} Mbit/s"}
    allowed = tol.rtt_rel * profile.rtt_ms + tol.rtt_abs_ms
    error = abs(measured["rtt_ms"] - profile.rtt_ms)
    checks["rtt"] = {"ok": error <= allowed, "measured": measured["rtt_ms"], "error_ms": error,
                     "limit": allowed, "rule": f"|rtt - {profile.rtt_ms:g}| <= {allowed:g} ms"}
    return checks


def calibrate(link, profile, tolerances: Tolerances | None = None, seconds: float = 3) -> dict:
    """Measure RTT and goodput both ways inside the topology; compare with the profile."""
    tol = tolerances or Tolerances()
    probes = max(MIN_RTT_PROBES, math.ceil(MIN_RTT_PROBES / (1 - profile.loss_pct / 100))) + 2
    measured = measure_rtt(link, probes)  # on the idle link, before any bulk transfer
    measured["up_mbps"] = measure_goodput(link, "up", seconds)
    measured["down_mbps"] = measure_goodput(link, "down", seconds)
    checks = judge(profile, measured, tol)
    return {
        "profile": profile.name, "seconds": seconds, "omit_s": OMIT_S,
        "configured": {"up_mbps": profile.up_mbps, "down_mbps": profile.down_mbps,
                       "rtt_ms": profile.rtt_ms, "loss_pct": profile.loss_pct},
        "expected_goodput_ratio": WIRE_EFFICIENCY,
        "measured": measured, "checks": checks, "tolerances": dataclasses.asdict(tol),
        "emulation": dict(link.emulation), "ok": all(c["ok"] for c in checks.values()),
    }


def write_linkcheck(run_dir: str | Path, result: dict) -> Path:
    """Write linkcheck.json into the run directory; returns its path."""
    path = Path(run_dir) / "linkcheck.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


def require_ok(result: dict) -> None:
    """HarnessError naming each failed check with its measured number."""
    bad = [f"{name} {c['measured']:.3g} (want {c['rule']})"
           for name, c in result["checks"].items() if not c["ok"]]
    if bad:
        raise HarnessError(f"link '{result['profile']}' out of tolerance: " + "; ".join(bad))


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
