"""Delay daemon: holds each packet of an NFQUEUE for a one-way delay, then accepts it.

    python -m harness.emulation.delayd --queue-num 1 --delay-ms 75 [--jitter-ms 5]
        [--trace FILE | --steps MBPS:SECONDS,... | --rate-mbps R] [--trace-scale K] [--queue-packets N] [--outage S:D ...]

Run it in the *receiving* host's network namespace, fed by
`iptables -A INPUT -i <intf> -j NFQUEUE --queue-num N` (no --queue-bypass: if the daemon is
gone, packets are dropped, never passed undelayed). Stands in for sch_netem where the kernel
lacks it (DESIGN.md section 3). Prints one `READY` line once bound; exits 0 on SIGTERM/SIGINT
after releasing every held packet. One thread: select() on the queue's socket with a timeout
set by the next release time, so packets leave in arrival order. select() wakes ~0.15-0.2 ms
late on this VM; the daemon learns that lateness and wakes early by it. Measured: ping -U RTT
+0.3-0.5 ms over the configured delays (both directions together), 4% of a core per daemon
at 18.88 Mbit/s.

With `--trace` (a Mahimahi file), `--steps` (rate steps, repeating) or `--rate-mbps` (a fixed
rate, needed only for outages) the daemon is also the link: `harness.emulation.tracelink`
says when each packet leaves it, the delay is added after, and an arrival beyond `--queue-packets` waiting is dropped. SIGUSR1
resets the trace's and the outages' time origin to now (the harness sends it when a case
starts); SIGUSR2 does the same without the outages (a calibration measures the link).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import select
import signal
import socket
import sys
import time

from harness.errors import HarnessError


QUEUE_MAXLEN = 10000     # packets the kernel may hold for us (~15 MB at 1500 B)
SOCK_BYTES = 8 << 20     # netlink receive buffer, bytes: a burst must not overflow it
NICE = -10              # scheduling priority of the daemon (root only; ignored otherwise)
MAX_LEAD_S = 1e-3        # cap on the wake-up latency we compensate, seconds
ETHERNET_HEADER_B = 14   # a queued packet is its IP bytes; the link counts the frame
IP_HEADER_COPY_B = 8     # bytes of each packet copied to the daemon: the IP length field


class Delayer:
    """FIFO of (release time, packet); release times never decrease, so order is kept."""

    def __init__(self, delay_ms: float, jitter_ms: float = 0.0, seed: int | None = None):
        self.delay_s = delay_ms / 1e3
        self.jitter_s = jitter_ms / 1e3
        self.rng = random.Random(seed)
        self.held = collections.deque()
        self.last_release = 0.0   # time.monotonic() seconds
        self.count = 0
        # select() wakes ~0.15-0.2 ms late on a VM: wake that much early (EWMA of lateness).
        self.lead_s = 0.0

    def add(self, packet, now: float) -> None:
        """Schedule a packet that arrived at `now` (monotonic seconds)."""
        delay = self.delay_s
        if self.jitter_s:
            delay = max(0.0, delay + self.rng.uniform(-self.jitter_s, self.jitter_s))
        # No overtaking: a packet never leaves before the one queued ahead of it.
        self.last_release = max(now + delay, self.last_release)
        self.held.append((self.last_release, packet))
        self.count += 1

    def release_due(self, now: float) -> None:
        """Accept every packet whose release time has come."""
        while self.held and self.held[0][0] <= now:
            self.held.popleft()[1].accept()

    def flush(self) -> None:
        """Accept everything still held (shutdown)."""
        while self.held:
            self.held.popleft()[1].accept()

    def timeout(self, now: float, idle_s: float = 1.0) -> float:
        """Seconds to sleep before the next release is due (idle_s when nothing is held)."""
        return max(0.0, self.held[0][0] - now - self.lead_s) if self.held else idle_s

    def woke(self, asked_s: float, slept_s: float) -> None:
        """Learn the wake-up lateness from a select() that ran into its timeout."""
        late = min(max(slept_s - asked_s, 0.0), MAX_LEAD_S)
        self.lead_s += 0.1 * (late - self.lead_s)


def expected_jitter_ms(delay_ms: float, jitter_ms: float, pps: float, spec: dict | None = None,
                       frame_b: int = 0, n: int = 20000) -> float:
    """RFC 3550 jitter of a stream of `pps` packets through the delay daemon's own model (and
    its trace link, for a direction `spec` describes, with packets of `frame_b` bytes)."""
    if jitter_ms <= 0 and not spec:
        return 0.0
    from harness.emulation.tracelink import link_of
    d, link = Delayer(delay_ms, jitter_ms, seed=1), link_of(spec) if spec else None
    j, prev = 0.0, None
    for i in range(n):
        sent = i / pps
        d.add(None, now=sent if link is None else link.depart(sent, frame_b) or sent)
        d.held.clear()                       # only its release time matters here
        transit = d.last_release - sent
        if prev is not None:
            j += (abs(transit - prev) - j) / 16
        prev = transit
    return j * 1e3


def serve(queue_num: int, delayer: Delayer, ready=sys.stdout, link=None) -> int:
    """Bind the queue, announce READY, and delay packets until a stop signal; returns #packets.
    With a `link` (a TraceLink), packets first wait for the link's delivery opportunities."""
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    stop, restarts = [], []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    for sig, outages in ((signal.SIGUSR1, True), (signal.SIGUSR2, False)):
        signal.signal(sig, lambda signum, frame, o=outages: restarts.append((time.monotonic(), o)))
    # Imported here: tests import Delayer on machines without the binding.
    from netfilterqueue import COPY_META, COPY_PACKET, NetfilterQueue
    nfq = NetfilterQueue()
    # A link needs each packet's length: the first bytes of its IP header are copied (the
    # metadata alone carries no length); a delay needs nothing but the packet's turn.
    mode, copy = (COPY_PACKET, IP_HEADER_COPY_B) if link is not None else (COPY_META, 0)
    nfq.bind(queue_num, lambda pkt: _arrive(pkt, delayer, link),
             max_len=QUEUE_MAXLEN, mode=mode, range=copy, sock_len=SOCK_BYTES)
    fd = nfq.get_fd()
    os.set_blocking(fd, False)
    print("READY", file=ready, flush=True)
    try:
        while not stop:
            start = time.monotonic()
            asked = delayer.timeout(start)
            readable, _, _ = select.select([fd, wake_r], [], [], asked)
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    wake_r.recv(64)   # drain: the handler has already recorded the signal
            if restarts and link is not None:
                link.restart(*restarts[-1])
                restarts.clear()
            if fd in readable:
                nfq.run(block=False)
            elif not readable and asked > 0:   # woken by the timeout itself
                delayer.woke(asked, time.monotonic() - start)
            delayer.release_due(time.monotonic() + delayer.lead_s)
    finally:
        delayer.flush()
        nfq.unbind()
        signal.set_wakeup_fd(-1)
    return delayer.count


def _arrive(packet, delayer: Delayer, link) -> None:
    """A packet from the queue: through the link (if any), then delayed; dropped when full."""
    now = time.monotonic()
    if link is not None:
        now = link.depart(now, ip_length(packet.get_payload()) + ETHERNET_HEADER_B)
        if now is None:
            packet.drop()
            return
    delayer.add(packet, now)


def ip_length(header: bytes) -> int:
    """An IP packet's total length from its first bytes (IPv4 total length; IPv6 payload
    length + its 40-byte header); a full-size frame's worth when unreadable."""
    if len(header) >= 4 and header[0] >> 4 == 4:
        return int.from_bytes(header[2:4], "big")
    if len(header) >= 6 and header[0] >> 4 == 6:
        return int.from_bytes(header[4:6], "big") + 40
    return 1500


def make_link(args) -> "TraceLink | None":
    """The TraceLink the arguments describe, or None (delay only)."""
    from harness.emulation.tracelink import link_of
    outages = [_outage(text) for text in args.outage]
    if not (args.trace or args.steps or args.rate_mbps):
        if outages:
            raise ValueError("--outage needs --trace, --steps or --rate-mbps")
        return None
    if args.steps:
        from harness.emulation.tracegen import step_rates
        step_rates(args.steps)                  # a malformed step: its one-line ValueError
    return link_of({"trace": args.trace, "steps": args.steps, "rate_mbps": args.rate_mbps,
                    "scale": args.trace_scale,
                    "queue_packets": args.queue_packets, "outages": outages}, time.monotonic())


def _outage(text: str) -> tuple[float, float]:
    start, sep, duration = text.partition(":")
    try:
        value = (float(start), float(duration))
    except ValueError:
        value = None
    if not sep or value is None or value[0] < 0 or value[1] <= 0:
        raise ValueError(f"--outage {text!r}: expected START:DURATION in seconds (>= 0, > 0)")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m harness.emulation.delayd", description=__doc__.split("\n")[0])
    ap.add_argument("--queue-num", type=int, required=True, help="NFQUEUE number (0-65535)")
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay, ms")
    ap.add_argument("--jitter-ms", type=float, default=0.0, help="uniform +- jitter, ms")
    ap.add_argument("--seed", type=int, default=None, help="jitter random seed")
    ap.add_argument("--trace", help="Mahimahi trace file: the link's delivery opportunities")
    ap.add_argument("--steps", help="rate steps MBPS:SECONDS,... (repeating): the link's rate")
    ap.add_argument("--rate-mbps", type=float, help="a fixed-rate link (with --outage)")
    ap.add_argument("--trace-scale", type=float, default=1.0, help="time dilation of the trace")
    ap.add_argument("--queue-packets", type=int, default=100, help="link queue, packets")
    ap.add_argument("--outage", action="append", default=[], help="START:DURATION seconds")
    args = ap.parse_args(argv)
    if args.delay_ms < 0 or args.jitter_ms < 0:
        ap.error("--delay-ms and --jitter-ms must be >= 0")
    try:
        link = make_link(args)
    except (ValueError, HarnessError) as exc:
        ap.error(str(exc))
    with contextlib.suppress(OSError):
        # Workers may saturate every core; the link's delay must not stretch with them.
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    try:
        count = serve(args.queue_num, Delayer(args.delay_ms, args.jitter_ms, args.seed),
                      link=link)
    except OSError as exc:
        print(f"delayd: NFQUEUE {args.queue_num}: {exc}", file=sys.stderr)
        return 1
    dropped = f", dropped {link.dropped} at the full link queue" if link is not None else ""
    print(f"delayd: released {count} packets{dropped}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
