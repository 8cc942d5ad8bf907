"""Shared-secret authentication and handshake deadlines: the protocol in-process, the policy and
the secret's sources on the command line, and real workers over loopback."""
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness.errors import HarnessError
from harness.procs import kill_group, wait_ready
from harness.run.case import run_case, wait_workers
from harness.run.launchers import LocalLauncher
from harness.workers import auth, cloud, edge
from harness.workers.auth import (HELLO_TIMEOUT_S, Refused, cloud_handshake,
                                  edge_handshake, load_secret, mac)
from harness.workers.common import Link, load_case
from harness.workers.events import EventLog
from harness.workers.wire import Connection
from test_workers import make_case

SECRET = b"correct horse battery staple 42"
CASE_HASH = "0123456789abcdef"


@pytest.fixture(autouse=True)
def _no_secret_in_env(monkeypatch):
    """Each test says which secret it uses; none leaks in from the shell."""
    for name in (auth.SECRET_ENV, auth.SECRET_FILE_ENV):
        monkeypatch.delenv(name, raising=False)


def handshake_pair(tmp_path, edge_secret, cloud_secret):
    """Both sides of the handshake over a socketpair; returns (edge outcome, cloud outcome)."""
    a, b = socket.socketpair()
    out = {}

    def run_cloud():
        conn = Connection(b, max_payload=0)
        try:
            out["cloud"] = cloud_handshake(conn, "split", CASE_HASH, cloud_secret,
                                           lambda info: None, lambda: None)
        except Exception as exc:          # what the Acceptor does with a failed handshake
            out["cloud"] = exc
            conn.send_error(getattr(exc, "peer_message", str(exc)))
        conn.close()

    thread = threading.Thread(target=run_cloud)
    thread.start()
    link = Link(Connection(a), EventLog(tmp_path / "edge.jsonl", "edge"))
    try:
        edge_handshake(link, "split", CASE_HASH, {"n_train": 512}, edge_secret)
        out["edge"] = "ok"
    except Exception as exc:
        out["edge"] = exc
        link.conn.send_error(str(exc))
    link.conn.close()
    thread.join(timeout=10)
    return out["edge"], out["cloud"]


def test_same_secret_authenticates_both_ways(tmp_path):
    e, c = handshake_pair(tmp_path, SECRET, SECRET)
    assert e == "ok" and c["n_train"] == 512 and len(c["nonce"]) == 64


def test_no_secret_on_either_side_works_as_before(tmp_path):
    e, c = handshake_pair(tmp_path, None, None)
    assert e == "ok" and "nonce" not in c


@pytest.mark.parametrize("edge_secret,cloud_secret,edge_says,cloud_says", [
    (b"x" * 16, SECRET, "proof does not match this edge's secret", "edge gave up"),
    (None, SECRET, "requires a shared secret", "no nonce"),
    (SECRET, None, "this cloud has no secret", "this cloud has no secret"),
])
def test_mismatched_secrets_fail_on_both_sides(tmp_path, edge_secret, cloud_secret, edge_says, cloud_says):
    e, c = handshake_pair(tmp_path, edge_secret, cloud_secret)
    assert isinstance(e, HarnessError) and "authentication failed" in str(e) and edge_says in str(e)
    assert isinstance(c, Exception) and cloud_says in str(c)


def test_mac_binds_role_case_and_both_nonces():
    ne, nc = b"\1" * 32, b"\2" * 32
    base = mac(SECRET, "edge", CASE_HASH, ne, nc)
    variants = [mac(SECRET, "cloud", CASE_HASH, ne, nc), mac(SECRET, "edge", "f" * 16, ne, nc),
                mac(SECRET, "edge", CASE_HASH, nc, ne), mac(SECRET, "edge", CASE_HASH, ne, b"\3" * 32),
                mac(SECRET + b"!", "edge", CASE_HASH, ne, nc)]
    assert len(base) == 32 and all(v != base for v in variants)


def test_replayed_edge_proof_is_refused(tmp_path):
    """An eavesdropper replaying a recorded edge MAC fails: the cloud's nonce is fresh."""
    a, b = socket.socketpair()
    ne = b"\7" * 32
    client = Connection(a)
    client.send("hello", info={"method": "split", "case": CASE_HASH, "n_train": 512, "nonce": ne.hex()})
    recorded = mac(SECRET, "edge", CASE_HASH, ne, b"\0" * 32)      # from some earlier session
    client.send("auth", info={"mac": recorded.hex()})
    with pytest.raises(Refused, match="wrong secret"):
        cloud_handshake(Connection(b, max_payload=0), "split", CASE_HASH, SECRET,
                        lambda info: None, lambda: None)


def test_reflected_cloud_proof_is_refused():
    """Sending the cloud's own MAC back as the edge's answer fails: the role is bound in."""
    a, b = socket.socketpair()
    client = Connection(a)
    client.send("hello", info={"method": "split", "case": CASE_HASH, "n_train": 512, "nonce": "ab" * 32})
    result = {}
    thread = threading.Thread(target=lambda: result.update(err=_catch(lambda: cloud_handshake(
        Connection(b, max_payload=0), "split", CASE_HASH, SECRET, lambda info: None, lambda: None))))
    thread.start()
    challenge = client.recv()
    client.send("auth", info={"mac": challenge.info["mac"]})
    thread.join(timeout=10)
    assert isinstance(result["err"], Refused) and "wrong secret" in str(result["err"])


def _catch(fn):
    try:
        fn()
    except Exception as exc:
        return exc


def test_secret_sources_and_precedence(tmp_path, monkeypatch):
    f1, f2 = tmp_path / "one", tmp_path / "two"
    f1.write_bytes(b"a" * 20 + b"\n")
    f2.write_bytes(b"b" * 20)
    assert load_secret(None) is None
    monkeypatch.setenv("HIERBENCH_SECRET", "c" * 20)
    assert load_secret(None) == b"c" * 20
    monkeypatch.setenv("HIERBENCH_SECRET_FILE", str(f2))
    assert load_secret(None) == b"b" * 20                  # the file beats the value
    assert load_secret(f1) == b"a" * 20                    # --secret-file beats both; newline dropped


@pytest.mark.parametrize("content,match", [(b"", "is empty"), (b"\n", "is empty"),
                                           (b"short", "has 5 bytes"), (b"x" * 15, "has 15 bytes")])
def test_short_or_empty_secret_is_an_error(tmp_path, monkeypatch, content, match):
    (tmp_path / "s").write_bytes(content)
    with pytest.raises(HarnessError, match=match):
        load_secret(tmp_path / "s")
    monkeypatch.setenv("HIERBENCH_SECRET", content.decode().strip())
    with pytest.raises(HarnessError, match=match):
        load_secret(None)


def test_missing_secret_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HIERBENCH_SECRET_FILE", str(tmp_path / "nope"))
    with pytest.raises(HarnessError, match="cannot read secret file .*nope: No such file"):
        load_secret(None)


@pytest.mark.parametrize("worker", [cloud, edge])
@pytest.mark.parametrize("args", [["--secret", "TOPSECRETVALUE123456"], ["--secret=TOPSECRETVALUE123456"],
                                  ["--secret-key", "TOPSECRETVALUE123456"], ["--secret-fil", "TOPSECRETVALUE123456"]])
def test_secret_is_never_a_command_line_value(tmp_path, capsys, worker, args):
    (tmp_path / "case.json").write_text(json.dumps(make_case("split").to_dict()))
    code = worker.main(["--case-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 1 and "TOPSECRETVALUE" not in err
    assert err.strip().splitlines() == [err.strip()] and "never taken on the command line" in err


@pytest.mark.parametrize("content,match", [(b"", "is empty"), (b"tooshort", "has 8 bytes")])
def test_worker_with_short_secret_fails_in_one_line(tmp_path, capsys, content, match):
    (tmp_path / "case.json").write_text(json.dumps(make_case("split").to_dict()))
    (tmp_path / "s").write_bytes(content)
    code = cloud.main(["--case-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                       "--secret-file", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and match in err


def test_edge_needs_a_secret_to_leave_loopback(tmp_path, capsys):
    (tmp_path / "case.json").write_text(json.dumps(make_case("split").to_dict()))
    assert edge.main(["--case-dir", str(tmp_path), "--connect", "192.0.2.1:5555"]) == 1
    assert "refusing to connect to 192.0.2.1 without a shared secret" in capsys.readouterr().err


def test_loopback_names():
    assert auth.is_loopback("127.0.0.1") and auth.is_loopback("::1") and auth.is_loopback("localhost")
    assert not auth.is_loopback("0.0.0.0") and not auth.is_loopback("10.0.0.2")
    assert not auth.is_loopback("::")


def test_non_loopback_listen_without_secret_refuses(tmp_path):
    """A real cloud process: one line, exit 1, before it ever listens; --no-auth overrides."""
    (tmp_path / "case.json").write_text(json.dumps(make_case("split").to_dict()))
    argv = [sys.executable, "-m", "harness.workers.cloud", "--case-dir", str(tmp_path),
            "--listen", "0.0.0.0:0"]
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HIERBENCH_SECRET")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: cloud: refusing to listen on 0.0.0.0 without a shared secret: set --secret-file "
        "PATH or HIERBENCH_SECRET_FILE=PATH on both workers, or pass --no-auth on a trusted network"]
    launcher = LocalLauncher()
    trusted = launcher.start("cloud", ["--case-dir", str(tmp_path), "--listen", "0.0.0.0:0", "--no-auth"],
                             tmp_path / "cloud.log")
    try:
        assert wait_ready(trusted, 60).startswith("0.0.0.0:")
    finally:
        kill_group(trusted)


def test_loopback_without_a_secret_works(tmp_path):
    result = run_case(make_case("split", max_batches=3), tmp_path / "c")
    assert result["steps"] == 3
    start = next(json.loads(x) for x in (tmp_path / "c" / "cloud.jsonl").read_text().splitlines()
                 if '"start"' in x)
    assert start["auth"] is False


def test_wrong_or_missing_secret_is_rejected_and_the_right_one_runs(tmp_path):
    """One cloud with a secret: an edge with the wrong secret and one with none fail in one
    line each, the cloud keeps listening, then an edge with the right secret (given through
    HIERBENCH_SECRET this time) completes a run."""
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    (case_dir / "case.json").write_text(json.dumps(make_case("hierarchical", max_batches=3).to_dict()))
    (tmp_path / "right").write_bytes(SECRET + b"\n")
    (tmp_path / "wrong").write_bytes(b"w" * 32)
    cloud_proc = LocalLauncher(env={"HIERBENCH_SECRET_FILE": str(tmp_path / "right")}).start(
        "cloud", ["--case-dir", str(case_dir), "--listen", "127.0.0.1:0"], case_dir / "cloud.log")
    try:
        addr = wait_ready(cloud_proc, 60)
        for name, env in [("wrong", {"HIERBENCH_SECRET_FILE": str(tmp_path / "wrong")}), ("none", {})]:
            proc = LocalLauncher(env=env).start("edge", ["--case-dir", str(case_dir), "--connect", addr],
                                                tmp_path / f"edge-{name}.log")
            assert proc.wait(timeout=60) == 1
            lines = (tmp_path / f"edge-{name}.log").read_text().strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: edge:"), lines
            assert "authentication failed" in lines[0]
            assert cloud_proc.poll() is None, "the cloud must keep listening"
        good = LocalLauncher(env={"HIERBENCH_SECRET": SECRET.decode()}).start(
            "edge", ["--case-dir", str(case_dir), "--connect", addr], case_dir / "edge.log")
        wait_workers({"cloud": cloud_proc, "edge": good}, case_dir, 120)
    finally:
        kill_group(cloud_proc)
    events = [json.loads(x) for x in (case_dir / "cloud.jsonl").read_text().splitlines()]
    rejected = [e["reason"] for e in events if e["event"] == "rejected"]
    assert len(rejected) == 2 and "wrong secret" not in rejected[1]
    assert any("no nonce" in r for r in rejected) and any("edge gave up" in r for r in rejected)
    assert [e["event"] for e in events].count("accepted") == 1
    assert (case_dir / "cloud_part.pt").exists()


def test_idle_flood_and_slow_sender_do_not_delay_a_valid_edge(tmp_path):
    """A sender dribbling its hello a byte every 0.2 s is cut off at the hello deadline, not
    kept alive byte by byte; then, behind 50 fresh idle sockets, a valid edge's whole handshake
    (authentication and the clock-sync pings) completes within 2 s."""
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    (case_dir / "case.json").write_text(json.dumps(make_case("split").to_dict()))
    (tmp_path / "s").write_bytes(SECRET)
    cloud_proc = LocalLauncher(env={"HIERBENCH_SECRET_FILE": str(tmp_path / "s")}).start(
        "cloud", ["--case-dir", str(case_dir), "--listen", "127.0.0.1:0"], case_dir / "cloud.log")
    idle = []
    try:
        host, port = wait_ready(cloud_proc, 60).split(":")
        addr = (host, int(port))
        slow = {}
        _dribble(addr, slow)
        # Cut by the hello deadline: not before it, and before the hello was complete.
        assert slow["closed_after_s"] >= HELLO_TIMEOUT_S - 0.5 and slow["sent"] < slow["total"], slow
        idle = [socket.create_connection(addr) for _ in range(50)]
        start = time.monotonic()
        link = Link(Connection(socket.create_connection(addr)), EventLog(tmp_path / "e.jsonl", "edge"))
        edge_handshake(link, "split", load_case(case_dir)[1], {"n_train": 512}, SECRET)
        took = time.monotonic() - start
        link.conn.close()
        # Queued behind the idle sockets it would wait for their hello deadline to evict them.
        assert took < HELLO_TIMEOUT_S, f"valid edge's handshake took {took:.2f} s behind the flood"
        print(f"\ndribbler cut after {slow['closed_after_s']:.2f} s ({slow['sent']} bytes sent); "
              f"handshake behind 50 idle sockets: {took * 1e3:.0f} ms")
    finally:
        for s in idle:
            s.close()
        kill_group(cloud_proc)
    reasons = [json.loads(x)["reason"] for x in (case_dir / "cloud.jsonl").read_text().splitlines()
               if '"rejected"' in x]
    assert "timed out waiting for the edge's hello" in reasons[0]
    # Each idle socket beyond the cap is evicted, or refused at the door while evicted ones
    # are still closing (a slower machine sees more of those): both name the cap.
    capped = f"more than {auth.MAX_PENDING} handshakes pending"
    assert sum(capped in r for r in reasons) >= 50 - auth.MAX_PENDING, reasons


def _dribble(addr, out):
    """Send a valid hello one byte every 0.2 s until the cloud closes the connection."""
    from harness.workers.wire import build_frame
    buffers, _, _ = build_frame("hello", 0, info={"method": "split", "case": "0" * 16, "n_train": 512,
                                                  "nonce": "00" * 32})
    data, sent = bytes(buffers[0]), 0
    with socket.create_connection(addr) as s:
        start = time.monotonic()
        s.settimeout(0.2)
        while sent < len(data):
            try:
                s.sendall(data[sent:sent + 1])
                sent += 1
                if s.recv(1) == b"":
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        out.update(closed_after_s=time.monotonic() - start, sent=sent, total=len(data))


def test_a_link_silent_past_the_idle_timeout_fails_the_cloud_with_that_reason(tmp_path):
    """An outage (or a hung edge) longer than --idle-timeout: the cloud gives up once nothing
    has arrived for that long, exits non-zero and says why in one line (the limit an outage
    run states: 600 s by default)."""
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    (case_dir / "case.json").write_text(json.dumps(make_case("split").to_dict()))
    (tmp_path / "s").write_bytes(SECRET)
    cloud_proc = LocalLauncher(env={"HIERBENCH_SECRET_FILE": str(tmp_path / "s")}).start(
        "cloud", ["--case-dir", str(case_dir), "--listen", "127.0.0.1:0", "--idle-timeout", "1.5"],
        case_dir / "cloud.log")
    try:
        host, port = wait_ready(cloud_proc, 60).split(":")
        link = Link(Connection(socket.create_connection((host, int(port)))),
                    EventLog(tmp_path / "e.jsonl", "edge"))
        edge_handshake(link, "split", load_case(case_dir)[1], {"n_train": 512}, SECRET)
        start = time.monotonic()                      # then the edge sends nothing
        assert cloud_proc.wait(timeout=30) == 1
        waited = time.monotonic() - start
        link.conn.close()
    finally:
        kill_group(cloud_proc)
    assert 1.4 <= waited <= 10, waited
    errors = [ln for ln in (case_dir / "cloud.log").read_text().splitlines() if ln.startswith("error:")]
    assert errors == ["error: cloud: nothing from the peer for 1.5 s (the idle timeout): the link "
                      "stalled or the peer hung"]
