"""Who may connect: a shared secret, a mutual challenge-response, and the handshake around it.

    python -m harness.workers.auth --new-secret PATH      # a fresh 32-byte secret, mode 0600

The handshake (control frames, info only; edge first):

    edge   hello     {method, case, n_train, nonce: Ne}   nonce only when the edge has a secret
    cloud  auth      {nonce: Nc, mac: MAC("cloud")}       only when the cloud has a secret
    edge   auth      {mac: MAC("edge")}                   after checking the cloud's MAC
    cloud  hello_ok  {auth: true|false}
    edge   ping {t, last} / cloud pong {t}, until last    clock sync (common.clock_sync; at most PINGS)

MAC(role) = HMAC-SHA256(secret, "hierbench-auth-v1" NUL role NUL case-hash NUL Ne Nc), Ne and
Nc 32 fresh random bytes from each side. Each side proves the secret over the other's fresh
nonce (no replay); the role label keeps one side's MAC from passing as the other's (no
reflection); the case hash binds the run. The cloud proves first, so an impostor cloud learns
nothing from the edge. A side with a secret refuses a peer that does not authenticate.

The secret: `--secret-file PATH`, else the file named by HIERBENCH_SECRET_FILE, else the bytes
of HIERBENCH_SECRET; at least 16 bytes; never a command-line value (argv is public in ps).

This module is longer than 300 lines: the secret, the MACs, both sides of the handshake and the concurrent
acceptor that runs it (deadlines, cap, eviction) are one protocol, audited together.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import os
import queue
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.workers.checks import check_info
from harness.workers.common import PINGS, Link, answer_pings, clock_sync
from harness.workers.events import EventLog
from harness.workers.wire import Connection, WireError

SECRET_FILE_ENV = "HIERBENCH_SECRET_FILE"
SECRET_ENV = "HIERBENCH_SECRET"
MIN_SECRET_BYTES = 16
NONCE_BYTES = 32
MAC_LABEL = b"hierbench-auth-v1"
WHERE_TO_PUT_IT = f"--secret-file PATH or {SECRET_FILE_ENV}=PATH on both workers"

# Deadlines per connection, counted from its accept, per phase in total (not per recv: a peer
# dribbling a byte a second still runs out). The edge sends hello as soon as it connects: one
# one-way delay (300 ms on the slowest emulated link, geo, 600 ms RTT) plus one retransmission
# (an RTO of about 1.8 s after a 600 ms RTT sample) fit in 5 s. This bounds how long a silent
# socket holds a handshake slot, not how long a valid edge waits: at the cap a new connection
# evicts the oldest one that has not yet authenticated (Acceptor).
HELLO_TIMEOUT_S = 5.0
MAX_RTT_S = 1.0                        # 600 ms RTT (geo) plus queueing and jitter
# The auth answer is one round trip later; hello_ok and the PINGS ping-pongs are PINGS + 1
# more. Each round trip may take two RTTs (one retransmission): 5 + 2 x 10 x 1 s = 25 s.
AUTH_TIMEOUT_S = HELLO_TIMEOUT_S + 2 * MAX_RTT_S
HANDSHAKE_TIMEOUT_S = HELLO_TIMEOUT_S + 2 * (PINGS + 2) * MAX_RTT_S
MAX_PENDING = 16                       # handshakes in flight, one thread and one fd each
ACCEPT_POLL_S = 0.2                    # how soon the accept loop notices it should stop


class Refused(WireError):
    """A handshake the cloud turns down; `peer_message` is what the peer is told (the log
    keeps the full reason, which may name the cloud's own case)."""

    def __init__(self, reason: str, peer_message: str):
        super().__init__(reason)
        self.peer_message = peer_message


def add_secret_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """--secret-file and --no-auth, the same on both workers (`verb`: listen or connect)."""
    parser.add_argument("--secret-file", type=Path, metavar="PATH",
                        help="file holding the shared secret (else $HIERBENCH_SECRET_FILE, "
                             "else $HIERBENCH_SECRET); never the secret itself")
    parser.add_argument("--no-auth", action="store_true",
                        help=f"{verb} off loopback without a secret (trusted networks only)")


def refuse_cli_secret(argv: list[str]) -> None:
    """Fail on any `--secret...` option but --secret-file, without echoing its value."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name.startswith("--secret") and name != "--secret-file":
            raise HarnessError(f"the secret is never taken on the command line (any user can "
                               f"read it with ps); put it in a file: {WHERE_TO_PUT_IT}")


def load_secret(path: Path | None) -> bytes | None:
    """The shared secret from --secret-file, HIERBENCH_SECRET_FILE or HIERBENCH_SECRET; None if
    none is set. A trailing newline in a file is not part of the secret."""
    if path is None and SECRET_FILE_ENV in os.environ:
        if not os.environ[SECRET_FILE_ENV]:
            raise HarnessError(f"{SECRET_FILE_ENV} is set but empty")
        path = Path(os.environ[SECRET_FILE_ENV])
    if path is not None:
        try:
            secret, source = path.read_bytes().rstrip(b"\r\n"), f"secret file {path}"
        except OSError as exc:
            raise HarnessError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    elif SECRET_ENV.encode() in os.environb:
        secret, source = os.environb[SECRET_ENV.encode()], SECRET_ENV
    else:
        return None
    if len(secret) < MIN_SECRET_BYTES:
        what = "is empty" if not secret else f"has {len(secret)} bytes"
        raise HarnessError(f"{source} {what}; a secret needs at least {MIN_SECRET_BYTES} bytes "
                           f"(python -m harness.workers.auth --new-secret PATH makes one)")
    return secret


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback
                               for i in infos)


def require_secret(secret: bytes | None, host: str, no_auth: bool, doing: str) -> None:
    """Off loopback a secret is required, unless --no-auth says the network is trusted."""
    if secret is None and not no_auth and not is_loopback(host):
        raise HarnessError(f"refusing to {doing} {host} without a shared secret: set "
                           f"{WHERE_TO_PUT_IT}, or pass --no-auth on a trusted network")


def mac(secret: bytes, role: str, case_hash: str, edge_nonce: bytes, cloud_nonce: bytes) -> bytes:
    """HMAC-SHA256 of the label, the prover's role, the case and both nonces (fixed length)."""
    message = b"\0".join([MAC_LABEL, role.encode(), case_hash.encode(), edge_nonce + cloud_nonce])
    return hmac.new(secret, message, hashlib.sha256).digest()


def _hex(value, n_bytes: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * n_bytes:
        raise WireError(f"{what} must be {2 * n_bytes} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise WireError(f"{what} must be {2 * n_bytes} hex digits") from None


def authenticate_edge(conn: Connection, secret: bytes, case_hash: str, hello: dict) -> None:
    """The cloud's side: prove the secret over the edge's nonce, then check the edge's proof."""
    if "nonce" not in hello:
        raise Refused("edge did not authenticate (no nonce in its hello)",
                      "authentication failed: this cloud requires a shared secret "
                      f"({WHERE_TO_PUT_IT})")
    edge_nonce = _hex(hello["nonce"], NONCE_BYTES, "hello nonce")
    cloud_nonce = secrets.token_bytes(NONCE_BYTES)
    proof = mac(secret, "cloud", case_hash, edge_nonce, cloud_nonce)
    conn.send("auth", info={"nonce": cloud_nonce.hex(), "mac": proof.hex()})
    answer = conn.recv()
    if answer.kind == "error":
        raise WireError(f"edge gave up: {str(answer.info.get('message'))[:200]}")
    if answer.kind != "auth":
        raise WireError(f"expected auth, got '{answer.kind}'")
    check_info(answer, {"mac": str}, {})
    want = mac(secret, "edge", case_hash, edge_nonce, cloud_nonce)
    if not hmac.compare_digest(_hex(answer.info["mac"], len(want), "auth mac"), want):
        raise Refused("edge failed authentication (wrong secret)",
                      "authentication failed: the edge's proof does not match this cloud's secret")


def cloud_handshake(conn: Connection, method: str, case_hash: str, secret: bytes | None,
                    check_hello, verified) -> dict:
    """Hello (method and case must match), authentication, clock sync; returns the hello info.

    `check_hello(info)` applies the case's own limits; `verified()` marks the connection as
    proven (no longer evictable) once it has authenticated, or sent a valid hello if no secret.
    """
    start = time.monotonic()
    conn.set_deadline(start + HELLO_TIMEOUT_S, "the edge's hello")
    hello = conn.recv()
    if hello.kind != "hello":
        raise WireError(f"expected hello, got '{hello.kind}'")
    check_info(hello, {"method": str, "case": str, "n_train": int}, {"nonce": str})
    if hello.info["method"] != method or hello.info["case"] != case_hash:
        raise Refused(f"edge runs method {hello.info['method'][:20]!r} / case "
                      f"{hello.info['case'][:20]!r}, cloud has {method!r} / {case_hash!r}",
                      "method or case differs from the cloud's")
    check_hello(hello.info)
    conn.set_deadline(start + AUTH_TIMEOUT_S, "the edge's authentication")
    if secret is not None:
        authenticate_edge(conn, secret, case_hash, hello.info)
    elif "nonce" in hello.info:
        raise Refused("edge offers authentication, this cloud has no secret",
                      f"authentication failed: this cloud has no secret ({WHERE_TO_PUT_IT})")
    verified()
    conn.set_deadline(start + HANDSHAKE_TIMEOUT_S, "the edge's clock sync")
    conn.send("hello_ok", info={"auth": secret is not None})
    answer_pings(conn)
    conn.set_deadline(None)
    return hello.info


class AuthFailed(HarnessError):
    """The edge's verdict on a cloud that did not prove the secret, or wants one we lack."""

    def __init__(self, why: str):
        super().__init__(f"authentication failed: {why}")


def edge_handshake(link: Link, method: str, case_hash: str, info: dict,
                   secret: bytes | None) -> None:
    """The edge's side: hello, mutual authentication when it has a secret, clock sync."""
    conn = link.conn
    conn.set_deadline(time.monotonic() + HANDSHAKE_TIMEOUT_S, "the cloud's handshake")
    edge_nonce = secrets.token_bytes(NONCE_BYTES) if secret is not None else None
    hello = {"method": method, "case": case_hash, **info}
    if edge_nonce is not None:
        hello["nonce"] = edge_nonce.hex()
    conn.send("hello", info=hello)
    reply = _reply(conn)
    if secret is None and reply.kind == "auth":
        raise AuthFailed(f"the cloud requires a shared secret ({WHERE_TO_PUT_IT})")
    if secret is not None:
        if reply.kind != "auth":
            raise AuthFailed("the cloud did not prove it holds the secret (it has none?)")
        check_info(reply, {"nonce": str, "mac": str}, {})
        cloud_nonce = _hex(reply.info["nonce"], NONCE_BYTES, "auth nonce")
        want = mac(secret, "cloud", case_hash, edge_nonce, cloud_nonce)
        if not hmac.compare_digest(_hex(reply.info["mac"], len(want), "auth mac"), want):
            raise AuthFailed("the cloud's proof does not match this edge's secret "
                             "(different secrets, or not the real cloud)")
        proof = mac(secret, "edge", case_hash, edge_nonce, cloud_nonce)
        conn.send("auth", info={"mac": proof.hex()})
        reply = _reply(conn)
    if reply.kind != "hello_ok":
        raise WireError(f"cloud answered '{reply.kind}' to hello")
    check_info(reply, {"auth": bool}, {})
    clock_sync(link, "start")
    conn.set_deadline(None)


def _reply(conn: Connection):
    frame = conn.recv()
    if frame.kind == "error":
        raise HarnessError(f"cloud refused the connection: {str(frame.info.get('message'))[:200]}")
    return frame


@dataclass(eq=False)
class _Pending:
    conn: Connection
    peer: str
    accepted_at: float
    verified: bool = False
    stop_reason: str = ""              # set (under the lock) when the acceptor ends it


class Acceptor:
    """Handshakes run concurrently, at most MAX_PENDING at once; the first edge to complete
    one wins and the rest are rejected. At the cap a new connection evicts the oldest one
    that has not proven itself, so a flood of idle sockets cannot lock a valid edge out."""

    def __init__(self, server: socket.socket, handshake, log: EventLog):
        self.server, self.handshake, self.log = server, handshake, log
        self.lock = threading.Lock()
        self.pending: set[_Pending] = set()
        self.results: queue.Queue = queue.Queue()
        self.rejected = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._accept_loop, name="accept", daemon=True)

    def wait(self, deadline: float) -> tuple[Connection, dict]:
        """The first edge to complete the handshake before `deadline` (time.monotonic())."""
        self.thread.start()
        try:
            result = self.results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise HarnessError(f"no valid edge connected in time "
                               f"({self.rejected} connection(s) rejected)") from None
        finally:
            self.stop()
        if isinstance(result, Exception):
            raise HarnessError(f"accepting connections failed: {result}")
        p, hello = result
        self.log.point("accepted", peer=p.peer, rejected_before=self.rejected,
                       handshake_s=time.monotonic() - p.accepted_at)
        return p.conn, hello

    def stop(self) -> None:
        """Stop accepting; end the handshakes still running (they are logged as rejected)."""
        with self.lock:
            self.stopped = True
            left = list(self.pending)
            for p in left:
                p.stop_reason = p.stop_reason or "the cloud accepted another edge"
        for p in left:
            _end(p)
        try:
            self.server.shutdown(socket.SHUT_RDWR)     # wakes a blocked accept() on Linux
        except OSError:
            pass
        if self.thread.is_alive():
            self.thread.join(timeout=2 * ACCEPT_POLL_S)
        self.server.close()

    def _accept_loop(self) -> None:
        self.server.settimeout(ACCEPT_POLL_S)
        try:
            while not self.stopped:
                try:
                    sock, addr = self.server.accept()
                except socket.timeout:
                    continue
                except OSError:
                    # EMFILE, ECONNABORTED or the shutdown from stop(): transient or the end.
                    time.sleep(0.05)
                    continue
                self._admit(sock, str(addr[0]))
        except Exception as exc:                       # a bug here must not hang wait()
            self.results.put(exc)

    def _admit(self, sock: socket.socket, peer: str) -> None:
        p = _Pending(Connection(sock, max_payload=0), peer, time.monotonic())
        with self.lock:
            if self.stopped:
                sock.close()
                return
            live = [q for q in self.pending if not q.stop_reason]
            evict = None
            if len(live) >= MAX_PENDING:
                unproven = [q for q in live if not q.verified]
                if not unproven or len(self.pending) >= 2 * MAX_PENDING:
                    p.stop_reason = f"more than {MAX_PENDING} handshakes pending"
                else:
                    evict = min(unproven, key=lambda q: q.accepted_at)
                    evict.stop_reason = f"evicted: more than {MAX_PENDING} handshakes pending"
            if not p.stop_reason:
                self.pending.add(p)
        if p.stop_reason:
            self._reject(p, WireError(p.stop_reason))
            return
        if evict is not None:
            _end(evict)
        threading.Thread(target=self._run, args=(p,), name="handshake", daemon=True).start()

    def _run(self, p: _Pending) -> None:
        try:
            hello = self.handshake(p.conn, lambda: self._verify(p))
        except Exception as exc:                       # one connection's failure, never ours
            self._reject(p, exc)
            return
        with self.lock:
            won = not self.stopped and not p.stop_reason
            self.pending.discard(p)
            self.stopped = self.stopped or won
        if won:
            self.results.put((p, hello))
        else:
            self._reject(p, WireError(p.stop_reason or "the cloud accepted another edge"))

    def _verify(self, p: _Pending) -> None:
        with self.lock:
            if p.stop_reason:
                raise WireError(p.stop_reason)
            p.verified = True

    def _reject(self, p: _Pending, exc: Exception) -> None:
        known = isinstance(exc, (WireError, HarnessError))
        reason = p.stop_reason or (str(exc) if known else f"{type(exc).__name__}: {exc}")
        with self.lock:
            self.pending.discard(p)
            self.rejected += 1
            count = self.rejected
        self.log.point("rejected", peer=p.peer, reason=reason[:200], count=count,
                       error=type(exc).__name__)
        p.conn.send_error(getattr(exc, "peer_message", reason), timeout_s=0.5)
        p.conn.close()


def _end(p: _Pending) -> None:
    """Make a handshake thread's next (or current) read fail at once."""
    try:
        p.conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def write_secret(path: Path) -> None:
    """A fresh random secret (64 hex characters) in a new file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="hierbench shared secrets")
    parser.add_argument("--new-secret", type=Path, required=True, metavar="PATH",
                        help="write a fresh secret to PATH (a new file, mode 0600)")
    args = parser.parse_args(argv)
    try:
        write_secret(args.new_secret)
    except OSError as exc:
        print(f"error: cannot create {args.new_secret}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote a fresh secret to {args.new_secret}; "
          f"give both workers {SECRET_FILE_ENV}={args.new_secret}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
