"""Measurement primitives inside a running emulated link: ping -U, iperf3 TCP and UDP.

    sudo .venv/bin/python -m harness.emulation.linkcheck 3g      # runs these through calibrate

Each starts its helpers in the link's hosts, outside their CPU cgroups (a probe must not be
slowed by the share given to a worker), and kills them in `finally`.
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import time

from harness.errors import HarnessError
from harness.procs import exit_text

IPERF_PORT = 5201
PING_INTERVAL_S = 0.2
MIN_RTT_PROBES = 10
WATCH_S = 0.2                    # how often a running probe checks its helpers
UDP_HEADERS_B = 8 + 20 + 14       # UDP + IPv4 + Ethernet: what HTB counts besides the payload
UDP_MAX_PPS = 2000               # datagrams per second the UDP probe aims at, at most
UDP_PAYLOAD_B = (64, 1400)       # smallest and largest datagram payload, bytes
# iperf3 runs per measurement, at most: one that fails for a transient reason (its own error
# such as "unable to read from stream socket", or no JSON) is run again; every failed try is
# recorded beside the measurement (`failed_tries`), and the third failure stops. A probe
# process killed or its server gone is not transient: it stops at once, naming it.
PROBE_TRIES = 3


class TransientProbeError(HarnessError):
    """One iperf3 run failed in a way a second run may not (not a helper of the link dying)."""


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


def _wait_listening(link, role: str, port: int, server, timeout_s: float = 5.0) -> None:
    """Until the iperf3 server in `role` listens; HarnessError at once if it dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _check_server(server, role)
        if link.cmd(role, f"ss -Hltn 'sport = :{port}'").strip():
            return
        time.sleep(0.05)
    raise HarnessError(f"linkcheck: iperf3 server in {role} not listening on port {port}")


def _check_server(server, role: str, code: int | None = None) -> None:
    code = server.poll() if code is None else code
    if code not in (None, 0):
        raise HarnessError(f"linkcheck: iperf3 server in {role}, pid {server.pid}, died: "
                           f"{exit_text(code)}")


def _iperf3(link, direction: str, extra: list[str], timeout_s: float, on_start=None) -> dict:
    """An iperf3 measurement in `direction`, retried after a transient failure (at most
    PROBE_TRIES runs); its JSON with `failed_tries` (each failed run's reason) added."""
    failed = []
    for _ in range(PROBE_TRIES):
        try:
            return {**_iperf3_once(link, direction, extra, timeout_s, on_start),
                    "failed_tries": failed}
        except TransientProbeError as exc:
            failed.append(str(exc))
    raise HarnessError(f"{failed[-1]} ({PROBE_TRIES} tries failed: {'; '.join(failed[:-1])})")


def _iperf3_once(link, direction: str, extra: list[str], timeout_s: float,
                 on_start=None) -> dict:
    """One iperf3 run in `direction` ('up': edge -> cloud); its JSON, as the receiver saw it.

    The client runs on the receiving host with -R (the server sends), so its per-interval
    reports are the receiver's: what arrived, not what was written into a socket buffer.
    Both iperf3 processes and the link's helpers are watched while it runs: a death fails the
    calibration within a poll, naming the process, instead of waiting for `timeout_s`.
    """
    sender, receiver = ("edge", "cloud") if direction == "up" else ("cloud", "edge")
    server = link.popen(sender, ["iperf3", "-s", "-1", "-p", str(IPERF_PORT)], cgroup=False)
    try:
        _wait_listening(link, sender, IPERF_PORT, server)
        target = link.edge_ip if sender == "edge" else link.cloud_ip
        argv = ["iperf3", "-c", target, "-p", str(IPERF_PORT), "-J", "-R", *extra]
        if on_start is not None:             # e.g. a trace-driven link's time zero
            on_start()
        client = link.popen(receiver, argv, cgroup=False, text=True)
        try:
            out = _supervised_output(link, client, server, sender, timeout_s)
        finally:
            link.kill(client)
        server_code = server.poll()           # before our own kill below sets one
    finally:
        link.kill(server)
    if server_code not in (None, 0):          # the client's error ("connection refused") is its echo
        _check_server(server, sender, server_code)
    if client.returncode not in (0, 1):          # iperf3 exits 1 with a JSON "error" of its own
        raise HarnessError(f"linkcheck: iperf3 client in {receiver} died: "
                           f"{exit_text(client.returncode)}")
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        raise TransientProbeError(f"linkcheck: iperf3 {direction}: no JSON output "
                                  f"(client {exit_text(client.returncode)})") from None
    if "error" in report:
        raise TransientProbeError(f"linkcheck: iperf3 {direction}: {report['error']}")
    return report


def _supervised_output(link, client, server, sender: str, timeout_s: float) -> str:
    """The client's stdout once it exits; HarnessError as soon as the server or a helper dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            out, _ = client.communicate(timeout=WATCH_S)
            return out
        except subprocess.TimeoutExpired:
            pass
        _check_server(server, sender)
        link.check_alive()
        if time.monotonic() > deadline:
            raise HarnessError(f"linkcheck: iperf3 did not finish within {timeout_s:.0f} s")


def measure_goodput(link, direction: str, seconds: float, omit_s: int, on_start=None) -> dict:
    """Receiver-side TCP goodput per direction after `omit_s` seconds of start-up.

    `mbps` is the median of the one-second rates: BBR (this kernel's default) drops its
    window to 4 packets for 200 ms plus a round trip every 10 s to re-measure the path's
    minimum RTT (PROBE_RTT), a dip of the flow, not of the link, which on a 600 ms path takes
    ~8% off a mean. The mean over the window is kept beside it (`mean_mbps`).
    """
    extra = ["-t", f"{seconds:g}", "-O", str(omit_s)]
    if link.emulation.get("tcp_cc_set", "").startswith("per socket"):
        extra += ["-C", link.emulation["tcp_cc"]]
    report = _iperf3(link, direction, extra, seconds + omit_s + 30, on_start)
    per_s = [iv["sum"]["bits_per_second"] / 1e6 for iv in report.get("intervals", [])
             if not iv["sum"].get("omitted")]
    mean = report["end"]["sum_received"]["bits_per_second"] / 1e6
    return {"mbps": statistics.median(per_s) if per_s else mean, "mean_mbps": mean,
            "interval_mbps": [round(v, 3) for v in per_s], "failed_tries": report["failed_tries"]}


def udp_payload_b(rate_mbps: float) -> int:
    """Datagram payload for a UDP probe at `rate_mbps`: small datagrams on slow links (enough
    of them per second), larger ones on fast links so the stream stays near UDP_MAX_PPS.
    64-byte datagrams at 15 Mbit/s are 17,700 a second: a host that pauses the receiver for
    8 ms (measured with a CPU hog) then overflows its socket buffer, and the probe reports
    2-10% loss on a link configured loss-free."""
    payload = rate_mbps * 1e6 / 8 / UDP_MAX_PPS - UDP_HEADERS_B
    return int(min(max(payload, UDP_PAYLOAD_B[0]), UDP_PAYLOAD_B[1]))


def measure_udp(link, direction: str, rate_mbps: float, packets: int, on_start=None) -> dict:
    """Loss and jitter one way: `packets` UDP datagrams at `rate_mbps` (on the wire, below
    the link's rate so the queue never drops); the receiver counts the lost ones and computes
    the RFC 3550 interarrival jitter."""
    payload_b = udp_payload_b(rate_mbps)
    pps = rate_mbps * 1e6 / 8 / (payload_b + UDP_HEADERS_B)
    seconds = max(1.0, 1.5 * packets / pps)      # iperf3 paces small datagrams ~25% slow
    extra = ["-u", "-l", str(payload_b), "-b", f"{rate_mbps * payload_b / (payload_b + UDP_HEADERS_B):.4f}M",
             "-t", f"{seconds:.1f}"]
    report = _iperf3(link, direction, extra, seconds + 30, on_start)
    s = report["end"]["sum"]
    return {"failed_tries": report["failed_tries"], "loss_pct": float(s["lost_percent"]), "lost": int(s["lost_packets"]),
            "packets": int(s["packets"]), "jitter_ms": float(s["jitter_ms"]),
            "pps": round(pps, 1), "payload_b": payload_b, "seconds": round(seconds, 1),
            "test_s": float(s.get("seconds", seconds))}
