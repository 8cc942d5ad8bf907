"""What a trace-driven direction delivers: saturate it with UDP and time every arrival.

    python -m harness.emulation.capacity recv --port 5202 --out FILE [--idle-s 1]
    python -m harness.emulation.capacity send --to 10.0.0.2 --port 5202 --mbps 3 --seconds 10

The sender writes full-size datagrams (`FRAME_B` bytes on the wire) at a fixed rate above the
link's; the receiver stamps each arrival on the monotonic clock the delay daemons share and,
once nothing has come for `--idle-s`, writes {packets, first, last} to FILE. While the link's
queue is not empty every arrival is paced by the link, so (packets - 1) frames over
last - first is the capacity it delivered, and [first, last] minus the one-way delay is the
stretch of the trace it delivered it in: no guess at when a tool's clock started
(harness.emulation.linkcheck compares the two). Loss on the direction counts against it.
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import time

FRAME_B = 1514                   # each datagram's Ethernet frame: a full-size packet
PAYLOAD_B = FRAME_B - 14 - 20 - 8
MAX_SECONDS = 120.0
PORT = 5202


def send(to: str, port: int, mbps: float, seconds: float) -> int:
    """Datagrams at `mbps` (frame bytes) for `seconds`; returns how many were sent."""
    gap = FRAME_B * 8 / (mbps * 1e6)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    payload, sent, start = bytes(PAYLOAD_B), 0, time.monotonic()
    while (now := time.monotonic()) - start < seconds:
        due = start + sent * gap
        if now < due:
            time.sleep(due - now)
        try:
            sock.sendto(payload, (to, port))
            sent += 1
        except OSError:            # the local queue is full: the link is saturated anyway
            time.sleep(gap)
    return sent


def receive(port: int, idle_s: float, ready=sys.stdout) -> dict:
    """Arrivals until `idle_s` pass without one (after the first): count and span."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", port))
    print("READY", file=ready, flush=True)
    sock.settimeout(MAX_SECONDS)
    count, first, last = 0, None, None
    while True:
        try:
            sock.recv(65536)
        except socket.timeout:
            break
        last = time.monotonic()
        first = last if first is None else first
        count += 1
        sock.settimeout(idle_s)
    return {"packets": count, "first": first, "last": last, "frame_b": FRAME_B}


def measure(link, direction: str, mbps: float, seconds: float) -> dict:
    """Saturate `direction` of an emulated link for `seconds` at `mbps` from time zero of its
    schedule (outages left out): {packets, first, last, origin, mbps (delivered)}."""
    import tempfile
    from pathlib import Path
    from harness.errors import HarnessError
    from harness.paths import REPO
    from harness.procs import StdoutReader
    sender, receiver = ("edge", "cloud") if direction == "up" else ("cloud", "edge")
    argv = [sys.executable, "-m", "harness.emulation.capacity"]
    with tempfile.TemporaryDirectory(prefix="hierbench-capacity-") as tmp:
        out, send = Path(tmp) / "arrivals.json", None
        recv = link.popen(receiver, [*argv, "recv", "--port", str(PORT), "--out", str(out)],
                          cgroup=False, text=True, cwd=str(REPO))
        try:
            StdoutReader(f"capacity receiver in {receiver}", recv).wait_ready(10)
            origin = link.restart_schedule(outages=False)
            send = link.popen(sender, [*argv, "send", "--to", getattr(link, f"{receiver}_ip"),
                                       "--port", str(PORT), "--mbps", f"{mbps:.6g}",
                                       "--seconds", f"{seconds:g}"],
                              cgroup=False, text=True, cwd=str(REPO))
            deadline = time.monotonic() + seconds + 30
            while recv.poll() is None and time.monotonic() < deadline:
                link.check_alive()
                time.sleep(0.2)
        finally:
            for proc in (send, recv):
                if proc is not None:
                    link.kill(proc)
        try:
            got = json.loads(out.read_text())
        except (OSError, ValueError):
            raise HarnessError(f"capacity probe {direction}: no result written") from None
    if got["packets"] < 2 or got["last"] <= got["first"]:
        raise HarnessError(f"capacity probe {direction}: {got['packets']} datagram(s) arrived")
    delivered = (got["packets"] - 1) * got["frame_b"] * 8 / (got["last"] - got["first"]) / 1e6
    return {**got, "origin": origin, "mbps_sent": mbps, "mbps": delivered}


LOSSY_SATURATE = 1.5        # UDP rate / the rate of a direction with random loss, saturated
LOSSY_MEASURE_S = 5.0       # seconds: 2,000 full-size frames at 5 Mbit/s


def lossy_capacity(link, profile, d: str) -> dict:
    """What a direction with random loss delivers, saturated, beside what its profile says it
    should: rate x (1 - loss). Its TCP goodput is not that: under random loss a flow's rate
    is its congestion control's (BBR over a 600 ms RTT with 1% loss up: 0.81-0.96 of the rate
    in four calibrations on 2026-12-06, its one-second rates 0.9 to 7.0 Mbit/s), so
    harness.emulation.linkcheck judges such a direction's rate on this measurement."""
    rate = getattr(profile, f"{d}_mbps")
    loss = profile.loss_pct if d == "up" else profile.down_loss_pct
    got = measure(link, d, LOSSY_SATURATE * rate, LOSSY_MEASURE_S)
    return {f"{d}_capacity_mbps": got["mbps"], f"{d}_lossy_mbps": rate * (1 - loss / 100),
            f"{d}_capacity_probe": got}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.emulation.capacity")
    ap.add_argument("mode", choices=("send", "recv"))
    ap.add_argument("--to")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mbps", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--idle-s", type=float, default=1.0)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.mode == "send":
        if not args.to or args.mbps <= 0 or not 0 < args.seconds <= MAX_SECONDS:
            ap.error(f"send needs --to, --mbps > 0 and --seconds in (0, {MAX_SECONDS:g}]")
        print(f"sent {send(args.to, args.port, args.mbps, args.seconds)}", flush=True)
        return 0
    if not args.out:
        ap.error("recv needs --out FILE")
    result = receive(args.port, args.idle_s)
    with open(args.out, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
