"""What the edge and cloud workers share: the case, clock sync, the sender, failing cleanly.

Worker contract (both roles): started with a case directory holding `case.json`; the cloud
prints one `READY <host>:<port>` line on stdout once listening; each writes `<role>.jsonl`
events and its trained parts as `<part>.pt` state dicts; exit 0 on success, or one
`error: ...` line on stderr and exit 1. The handshake and who may connect: workers.auth;
what a frame may contain: workers.checks.

    python -c "from harness.workers.common import load_case"
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config import Case, case_from_dict
from harness.errors import HarnessError
from harness.workers.checks import check_info
from harness.workers.events import SEND, WAIT, EventLog
from harness.workers.wire import Connection, WireError

PINGS = 8
SHARED_CLOCK_PINGS = 2      # one clock (Mininet, loopback): offset 0, the estimate is kept
CACHE_CHUNK = 1024          # samples per cache-only upload frame (cloud-only, later epochs)


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise HarnessError(f"address must be HOST:PORT, got {text!r}")
    return host, int(port)


def load_case(case_dir: Path) -> tuple[Case, str]:
    """The case and its content hash (both peers must hold the same case)."""
    path = case_dir / "case.json"
    if not path.is_file():
        raise HarnessError(f"no case.json in {case_dir}")
    text = path.read_text()
    try:
        raw = json.loads(text)
    except ValueError:
        raise HarnessError(f"{path} is not JSON") from None
    canonical = json.dumps(raw, sort_keys=True).encode()
    return case_from_dict(raw), hashlib.sha256(canonical).hexdigest()[:16]


def warm_up(module: torch.nn.Module, input_shape: tuple[int, ...]) -> None:
    """One forward+backward on zeros through a throwaway copy, off the clock.

    The first pass through a network pays one-time costs (kernel selection, allocator growth)
    that would otherwise land on batch 0 of the measured run, and torch's first optimizer
    construction imports lazily (1.3 s measured here). A copy keeps the real weights and
    BatchNorm statistics untouched, so the training run is unchanged.
    """
    import copy
    twin = copy.deepcopy(module)
    twin.train()
    opt = torch.optim.SGD(twin.parameters(), lr=0.0, momentum=0.9)
    out = twin(torch.zeros(input_shape, device=next(twin.parameters()).device))
    out.float().sum().backward()
    opt.step()


def save_parts(case_dir: Path, **parts: torch.nn.Module) -> None:
    for name, module in parts.items():
        tmp = case_dir / f"{name}.pt.part"
        torch.save(module.state_dict(), tmp)
        tmp.rename(case_dir / f"{name}.pt")


@dataclass
class Link:
    conn: Connection
    log: EventLog

    def close(self) -> None:
        """Record the connection's own byte counters, then close it."""
        c = self.conn
        self.log.point("wire_totals", sent_payload=c.sent_payload, sent_framing=c.sent_framing,
                       recv_payload=c.recv_payload, recv_framing=c.recv_framing)
        c.close()

    def recv_any(self, step: int | None = None):
        """Receive one frame; logs the wait for its header and the time to read the rest."""
        t0 = time.monotonic()
        header = self.conn.wait_header()
        t1 = time.monotonic()
        frame = self.conn.recv_rest(header)
        t2 = time.monotonic()
        if frame.kind == "error":
            raise WireError(f"peer reported: {frame.info.get('message', 'unknown error')}")
        step = frame.info.get("step", step)
        self.log.write(WAIT, step=step, t_start=t0, t_end=t1, reason="recv")
        self.log.write("recv", step=step, t_start=t1, t_end=t2, bytes_payload=frame.payload_bytes,
                       bytes_framing=frame.frame_bytes, kind=frame.kind)
        return frame

    def recv_expect(self, kind: str, step: int | None = None):
        frame = self.recv_any(step)
        if frame.kind != kind:
            raise WireError(f"expected a '{kind}' frame, got '{frame.kind}'")
        return frame

    def send(self, kind: str, step: int | None, tensors=None, info=None, raw_bytes: int = 0):
        """Send a frame; training data counts as `send`, end/done as `control`."""
        event = SEND if kind in ("batch", "grad") else "control"
        with self.log.span(event, step, kind=kind) as extra:
            framing, payload = self.conn.send(kind, tensors, info)
            extra.update(bytes_payload=payload, bytes_framing=framing, bytes_raw=raw_bytes)


class Sender:
    """Background uplink: a bounded queue of frames; `put` blocks (logged as wait) when full.
    Frames whose step `drop` refuses (workers.stop) are not sent, nor waited for; logged."""

    def __init__(self, link: Link, size: int, drop=lambda step: False):
        self.link, self.drop, self.dropped = link, drop, []
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self.thread.start()

    def put(self, step, tensors, info, raw_bytes: int = 0) -> None:
        item = (step, tensors, info, raw_bytes)
        start = time.monotonic()
        blocked = False
        while True:
            if self.error:
                raise WireError(f"uplink failed: {self.error}")
            try:
                self.queue.put(item, timeout=0.2 if blocked else 0)
                break
            except queue.Full:
                blocked = True
                if self.drop(step):
                    self.dropped.append(step)
                    break
        if blocked:
            self.link.log.write(WAIT, step=step, t_start=start, t_end=time.monotonic(),
                                reason="queue full")

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            step, tensors, info, raw_bytes = item
            if self.drop(step):
                self.dropped.append(step)
                continue
            try:
                self.link.send("batch", step, tensors, info, raw_bytes)
            except Exception as exc:   # reported to the producer on its next put/close
                self.error = exc
                return

    def close(self) -> None:
        """Flush every queued frame, then stop; raises if the uplink failed."""
        while self.thread.is_alive():
            try:
                self.queue.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        self.thread.join()
        if self.error:
            raise WireError(f"uplink failed: {self.error}")
        if self.dropped:
            self.link.log.point("dropped", steps=sorted(self.dropped))


JOIN_TIMEOUT_S = 30.0


def join_cgroup(log: EventLog) -> None:
    """Get moved into the CPU cgroup named by HIERBENCH_CGROUP (if set), then go on.

    The runner starts workers outside their host's cgroup so that importing torch is not
    slowed by the CPU quota, which only has to hold while training. Inside a Mininet host the
    cgroup filesystem is hidden (sysfs is remounted), so the worker asks the runner: it prints
    `JOIN <pid>` and waits until /proc/self/cgroup shows the move. Not getting there is an
    error, never a silently unlimited run.
    """
    name = os.environ.get("HIERBENCH_CGROUP")
    if not name:
        return
    print(f"JOIN {os.getpid()}", flush=True)
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        with open("/proc/self/cgroup") as fh:
            cpu = [ln.split(":", 2)[2] for ln in fh.read().splitlines() if ln.split(":")[1] == "cpu"]
        if cpu and cpu[0].rstrip("/").endswith("/" + name):
            log.point("cgroup", cgroup=name, joined_after_s=JOIN_TIMEOUT_S - (deadline - time.monotonic()))
            return
        time.sleep(0.01)
    raise HarnessError(f"was not moved into CPU cgroup '{name}' within {JOIN_TIMEOUT_S:.0f} s")


def tune_socket(sock: socket.socket) -> None:
    """No Nagle; the congestion control the topology asked for (per socket: sysctl is EPERM
    inside a Mininet host)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cc = os.environ.get("HIERBENCH_TCP_CC")
    if cc:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        except OSError as exc:
            raise HarnessError(f"cannot use TCP congestion control {cc!r}: {exc.strerror}") from None


def connect(address: str, timeout_s: float) -> socket.socket:
    """Connect to the cloud, retrying until `timeout_s` (it may still be starting)."""
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            sock = socket.create_connection((host, port), timeout=5)
            tune_socket(sock)
            return sock
        except OSError as exc:
            last = exc
            time.sleep(0.2)
    raise HarnessError(f"could not connect to the cloud at {address} within {timeout_s:.0f} s ({last})")


def clock_sync(link: Link, phase: str) -> None:
    """Estimate cloud_clock - edge_clock from the fastest of up to PINGS ping-pongs; log it.

    When the launcher says both workers read one clock (HIERBENCH_CLOCK=shared: one machine,
    Mininet or loopback), the offset is exactly 0 and recorded as such; the estimate is kept
    beside it, from SHARED_CLOCK_PINGS ping-pongs only (8 added 1.2 s at each end of every
    case over 3g). Between two machines it is measured from PINGS, at the start and at the
    end of a run; the loader corrects the drift. The last ping says so (the cloud's loop ends).
    """
    shared = os.environ.get("HIERBENCH_CLOCK") == "shared"
    count = SHARED_CLOCK_PINGS if shared else PINGS
    best = None
    for i in range(count):
        t0 = time.monotonic()
        link.conn.send("ping", info={"t": t0, "last": i == count - 1})
        pong = link.conn.recv()
        t1 = time.monotonic()
        if pong.kind != "pong":
            raise WireError(f"cloud answered '{pong.kind}' to ping")
        check_info(pong, {"t": float}, {})
        rtt = t1 - t0
        if best is None or rtt < best[0]:
            best = (rtt, float(pong.info["t"]) - (t0 + t1) / 2)
    link.log.point("clock", phase=phase, shared_clock=shared, pings=count,
                   offset_s=0.0 if shared else best[1], offset_estimate_s=best[1], rtt_s=best[0])


def answer_pings(conn: Connection) -> None:
    """The cloud's side of clock_sync: a pong carrying its clock per ping, until the one
    marked last (at most PINGS)."""
    for i in range(PINGS):
        ping = conn.recv()
        if ping.kind != "ping":
            raise WireError(f"expected ping, got '{ping.kind}'")
        check_info(ping, {"t": float, "last": bool}, {})
        conn.send("pong", info={"t": time.monotonic()})
        if ping.info["last"]:
            return
    raise WireError(f"clock sync: no ping marked last among {PINGS}")


def exit_process(code: int) -> None:
    """End the worker process now, its files already written and closed (events are flushed
    line by line, parts renamed into place). Python's own teardown with torch loaded costs
    ~1 s of CPU (2 s under half a core) that the harness would wait for after every case."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fail(role: str, message: str, log: EventLog | None = None,
         conn: Connection | None = None) -> int:
    """Report a worker failure: one line on stderr and an `error` event; tell the peer and
    close the connection when there is one. Control characters (a peer's message may hold
    newlines or terminal escapes) become spaces, so the report stays one line."""
    message = "".join(c if c.isprintable() else " " for c in message)
    if log is not None:
        log.point("error", message=message)
    if conn is not None:
        conn.send_error(f"{role}: {message}")
        conn.close()
    print(f"error: {role}: {message}", file=sys.stderr, flush=True)
    return 1
