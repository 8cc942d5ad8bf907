"""Wire frames: round trips, codecs, and validation of every header and meta field."""
import json
import socket
import struct

import pytest
import torch

from harness.workers import wire
from harness.workers.wire import HEADER, MAGIC, Connection, WireError


def pair():
    a, b = socket.socketpair()
    return Connection(a), Connection(b)


def raw_frame(kind=3, seq=0, meta=None, payload=b"", magic=MAGIC, version=1, flags=0,
              meta_len=None, payload_len=None):
    meta_bytes = meta if isinstance(meta, bytes) else json.dumps(meta or {"tensors": [], "info": {}}).encode()
    head = HEADER.pack(magic, version, kind, flags, seq,
                       len(meta_bytes) if meta_len is None else meta_len,
                       len(payload) if payload_len is None else payload_len)
    return head + meta_bytes + payload


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int8, torch.uint8, torch.int64])
def test_round_trip_every_dtype(dtype):
    tx, rx = pair()
    t = (torch.randn(3, 5, 7) * 50).to(dtype)
    framing, payload = tx.send("batch", {"a": t, "y": torch.arange(3)}, {"step": 4})
    f = rx.recv()
    assert f.kind == "batch" and f.info == {"step": 4} and torch.equal(f.tensors["a"], t)
    assert payload == t.numel() * t.element_size() + 3 * 8 == f.payload_bytes
    assert (tx.sent_payload, tx.sent_framing) == (rx.recv_payload, rx.recv_framing) == (payload, framing)


def test_odd_sizes_stay_aligned():
    tx, rx = pair()
    tx.send("batch", {"q": torch.ones(3, dtype=torch.int8), "y": torch.arange(5)})
    f = rx.recv()
    assert f.tensors["y"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("codec,bytes_per,tol", [("fp32", 4, 0), ("fp16", 2, 2e-3), ("int8", 1, None)])
def test_codecs(codec, bytes_per, tol):
    a = torch.randn(64, 32, 8, 8).relu()
    enc, meta = wire.encode_activation(a, codec)
    assert enc.numel() * enc.element_size() == a.numel() * bytes_per
    back = wire.decode_activation(enc, meta)
    step = (a.max() - a.min()).item() / 255
    limit = step / 2 + 1e-6 if tol is None else tol * a.abs().max().item()
    assert back.dtype == torch.float32 and (back - a).abs().max().item() <= limit


def test_int8_constant_tensor():
    enc, meta = wire.encode_activation(torch.full((4,), 2.5), "int8")
    assert torch.allclose(wire.decode_activation(enc, meta), torch.full((4,), 2.5))


def test_sequence_numbers_are_checked():
    a, b = socket.socketpair()
    a.sendall(raw_frame(seq=1))
    with pytest.raises(WireError, match="sequence"):
        Connection(b).recv()


@pytest.mark.parametrize("frame,match", [
    (raw_frame(magic=b"XXXX"), "magic"),
    (raw_frame(version=9), "version"),
    (raw_frame(kind=99), "kind"),
    (raw_frame(flags=1), "flags"),
    (raw_frame(meta_len=1 << 20), "meta"),
    (raw_frame(payload_len=1 << 40), "cap"),
    (raw_frame(meta=b"\xff\xfe"), "JSON"),
    (raw_frame(meta=[1, 2]), "exactly"),
    (raw_frame(meta={"tensors": [], "info": {}, "x": 1}), "exactly"),
    (raw_frame(meta={"tensors": [], "info": {"a": {"b": 1}}}), "scalars"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "object", "shape": [1]}], "info": {}}, payload=b"x" * 8), "not allowed"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "float64", "shape": [1]}], "info": {}}, payload=b"x" * 8), "not allowed"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [-1]}], "info": {}}), "dimension"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [1.5]}], "info": {}}), "dimension"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [True]}], "info": {}}), "dimension"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [1] * 9}], "info": {}}), "dims"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [2**29, 2**29]}], "info": {}}), "too large"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [4]}], "info": {}}, payload=b"abc"), "account"),
    (raw_frame(meta={"tensors": [{"name": "__import__('os')", "dtype": "uint8", "shape": [0]}], "info": {}}), "identifier"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [0]}] * 2, "info": {}}), "duplicate"),
    (raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [100]}], "info": {}},
               payload=b"x" * 10, payload_len=100), "closed the connection mid-frame"),
    (b"\x00" * 10, "closed"),
])
def test_bad_frames_are_rejected(frame, match):
    a, b = socket.socketpair()
    a.sendall(frame)
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(WireError, match=match):
        Connection(b).recv()


def test_payload_cap_is_checked_before_allocation():
    a, b = socket.socketpair()
    a.sendall(raw_frame(meta={"tensors": [{"name": "a", "dtype": "uint8", "shape": [100]}], "info": {}},
                        payload=b"x" * 100))
    with pytest.raises(WireError, match="cap"):
        Connection(b, max_payload=10).recv()


def test_unsendable_dtype():
    tx, _ = pair()
    with pytest.raises(WireError, match="cannot go on the wire"):
        tx.send("batch", {"a": torch.zeros(2, dtype=torch.float64)})


def test_header_is_28_bytes_network_order():
    assert HEADER.size == 28
    assert struct.unpack("!4s", raw_frame()[:4])[0] == b"HBW1"


def recv_meta(meta: bytes, kind: int = 1):
    a, b = socket.socketpair()
    a.sendall(raw_frame(kind=kind, meta=meta))
    a.shutdown(socket.SHUT_WR)
    return Connection(b, max_payload=0).recv()


@pytest.mark.parametrize("meta,match", [
    (b"[" * 32768 + b"]" * 32768, "nests deeper than 4"),            # was a RecursionError
    (b"[" * 60000, "nests deeper"),
    (b'{"tensors":[],"info":{"a":' + b"[" * 5 + b"]" * 5 + b"}}", "nests deeper"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nests deeper"),
    (b'{"tensors":[],"info":{"n":' + b"9" * 5000 + b"}}", "number of 5000 characters"),
    (b'{"tensors":[],"info":{"n":9223372036854775808}}', "outside int64"),
    (b'{"tensors":[],"info":{"n":-9223372036854775809}}', "outside int64"),
    (b'{"tensors":[],"info":{"n":1e400}}', "outside float64"),
    (b'{"tensors":[],"info":{"n":NaN}}', "NaN; numbers must be finite"),
    (b'{"tensors":[],"info":{"n":-Infinity}}', "-Infinity; numbers must be finite"),
    (b'{"tensors":[],"info":{"s":"' + b"x" * 257 + b'"}}', "string of 257 characters"),
    (b'{"tensors":[],"info":{"' + b"k" * 300 + b'":1}}', "string of 300"),
    (b'{"tensors":[],"info":{"s":"\\ud800"}}', "not valid Unicode"),
    (b'{"tensors":[],"info":{"s":"\xed\xa0\x80"}}', "invalid UTF-8 at byte 27"),
    (b'{"tensors":[],"info":{"s":"\xc0\xaf"}}', "invalid UTF-8"),
    (b'\xef\xbb\xbf{"tensors":[],"info":{}}', "JSON"),
    (b'{"tensors":[],"info":{"a":1,"a":2}}', "repeats the key 'a'"),
    (b'{"tensors":[{"name":"a","dtype":"uint8","shape":[0]}],"info":{}}', "'hello' frame carries no tensors"),
])
def test_meta_is_bounded_before_and_while_parsing(meta, match):
    with pytest.raises(WireError, match=match) as info:
        recv_meta(meta)
    assert "\n" not in str(info.value)


def test_brackets_and_escaped_quotes_inside_strings_do_not_nest():
    f = recv_meta(b'{"tensors":[],"info":{"a":"[[[[[[{{{{\\"[[[[\\\\","b":"\\\\"}}')
    assert f.info == {"a": '[[[[[[{{{{"[[[[\\', "b": "\\"}


def test_largest_allowed_values_still_parse():
    meta = json.dumps({"tensors": [], "info": {"n": 2**63 - 1, "m": -2**63, "s": "é" * 256,
                                               "f": 1.7e308}}).encode()
    assert recv_meta(meta).info["n"] == 2**63 - 1


def test_deadline_bounds_a_dribbling_peer_in_total():
    """One byte every 50 ms keeps every recv short, but the deadline covers the whole read: it
    fires no earlier than set, and while the frame is still arriving (event-based: a busy
    machine may deliver the exception late, but only the deadline can end the read before
    the frame is complete)."""
    import threading
    import time
    a, b = socket.socketpair()
    frame = raw_frame(kind=1)
    stop, sent = threading.Event(), [0]

    def dribble():
        for byte in frame:
            if stop.wait(0.05):
                return
            try:
                a.send(bytes([byte]))
                sent[0] += 1
            except OSError:
                return
    threading.Thread(target=dribble, daemon=True).start()
    conn = Connection(b)
    start = time.monotonic()
    conn.set_deadline(start + 0.5, "the hello")
    with pytest.raises(WireError, match="timed out waiting for the hello"):
        conn.recv()
    stop.set()
    assert time.monotonic() - start >= 0.45 and sent[0] < len(frame)
    conn.set_deadline(None)
    assert b.gettimeout() is None, "clearing the deadline restores the socket's own timeout"


def test_send_error_never_blocks_on_a_busy_sender():
    import time
    tx, rx = pair()
    import threading
    tx._send_lock.acquire()                      # another thread stuck in a big send
    caller = threading.Thread(target=tx.send_error, args=("boom",), kwargs={"timeout_s": 0.2})
    caller.start()
    caller.join(30)
    assert not caller.is_alive(), "send_error waited for a send lock that is never released"
    tx._send_lock.release()
    tx.send_error("boom")
    f = rx.recv()
    assert f.kind == "error" and f.info == {"message": "boom"}
