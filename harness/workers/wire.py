"""Length-prefixed tensor frames over TCP: a fixed header, a small JSON meta, raw bytes.

    python -m harness.workers.wire --bench        # framing throughput for a 4 MiB tensor on loopback

Frame = header (28 bytes, network order: magic 4s, version B, kind B, flags H, seq Q,
meta_len I, payload_len Q) + meta (UTF-8 JSON) + payload (the tensors' raw bytes, back to
back). Nothing is ever unpickled: the receiver checks magic, version, kind, sequence number,
meta size and shape, dtypes against a whitelist, and that the shapes account for exactly
payload_len bytes, before it allocates the payload. The meta's JSON is bounded before and
while it is parsed (nesting depth, digits, string lengths, strict UTF-8, finite numbers), so
every malformed frame becomes a one-line WireError; the caller closes the connection.
Which tensors a frame of a given case must carry is checked by the workers
(harness.workers.common). This module is longer than 300 lines because the bounded JSON
reader sits beside the frame parser it guards: all that a peer's bytes reach before they are
validated is in one file.
"""
from __future__ import annotations

import json
import math
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.catalog import CODECS

MAGIC = b"HBW1"
VERSION = 1
HEADER = struct.Struct("!4sBBHQIQ")
KINDS = {"hello": 1, "hello_ok": 2, "batch": 3, "grad": 4, "end": 5, "done": 6, "error": 7,
         "ping": 8, "pong": 9, "auth": 10}
KIND_NAMES = {v: k for k, v in KINDS.items()}
TENSOR_KINDS = {"batch", "grad"}     # every other kind is control: info only, no tensors
DTYPES = {"float32": torch.float32, "float16": torch.float16, "int8": torch.int8,
          "uint8": torch.uint8, "int64": torch.int64}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_META = 64 * 1024                 # bytes
MAX_PAYLOAD = 1 << 30                # bytes; raise with care, it bounds one allocation
MAX_TENSORS = 8
MAX_DIMS = 8
INFO_KEYS_MAX = 32
MAX_DEPTH = 4            # {"tensors": [{"shape": [...]}]} is 4 deep; nothing valid is deeper
MAX_STRING = 256         # characters in any JSON key or string value
MAX_NUMBER_CHARS = 32    # characters of one JSON number (int64 has at most 19 digits)
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class WireError(Exception):
    """A frame that fails validation, or a peer that went away mid-frame."""


@dataclass
class Frame:
    kind: str
    seq: int
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    payload_bytes: int = 0
    frame_bytes: int = 0               # header + meta (+ payload in `total_bytes`)

    @property
    def total_bytes(self) -> int:
        return self.frame_bytes + self.payload_bytes


def encode_activation(a: torch.Tensor, codec: str) -> tuple[torch.Tensor, dict]:
    """Compress an activation for the wire; returns the tensor to send and its codec meta."""
    a = a.detach().contiguous()
    if codec == "fp32":
        return a.float(), {"codec": "fp32"}
    if codec == "fp16":
        return a.half(), {"codec": "fp16"}
    if codec == "int8":
        # Per-tensor affine quantization: 256 levels spanning [min, max].
        lo, hi = a.min().item(), a.max().item()
        scale = (hi - lo) / 255.0 if hi > lo else 1.0
        q = torch.round((a - lo) / scale).sub_(128).clamp_(-128, 127).to(torch.int8)
        return q, {"codec": "int8", "scale": scale, "zero": lo}
    raise WireError(f"unknown codec '{codec}' (known: {', '.join(CODECS)})")


def decode_activation(t: torch.Tensor, meta: dict) -> torch.Tensor:
    """Inverse of encode_activation, always to float32."""
    codec = meta.get("codec", "fp32")
    if codec == "fp32" and t.dtype == torch.float32:
        return t
    if codec == "fp16" and t.dtype == torch.float16:
        return t.float()
    if codec == "int8" and t.dtype == torch.int8:
        return (t.float() + 128.0) * float(meta["scale"]) + float(meta["zero"])
    raise WireError(f"codec '{codec}' does not match dtype {DTYPE_NAMES.get(t.dtype)}")


def build_frame(kind: str, seq: int, tensors: dict[str, torch.Tensor] | None = None,
                info: dict | None = None) -> tuple[list, int, int]:
    """Serialize a frame: (buffers to send, framing bytes, payload bytes)."""
    tensors = tensors or {}
    specs, buffers = [], []
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype not in DTYPE_NAMES:
            raise WireError(f"dtype {t.dtype} cannot go on the wire")
        specs.append({"name": name, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape)})
        buffers.append(memoryview(t.numpy()).cast("B") if t.numel() else b"")
    meta = json.dumps({"tensors": specs, "info": info or {}}, separators=(",", ":")).encode()
    payload_len = sum(len(b) for b in buffers)
    head = HEADER.pack(MAGIC, VERSION, KINDS[kind], 0, seq, len(meta), payload_len)
    return [head + meta, *buffers], HEADER.size + len(meta), payload_len


def parse_header(raw: bytes, expect_seq: int | None, max_payload: int) -> tuple[str, int, int, int]:
    magic, version, kind, flags, seq, meta_len, payload_len = HEADER.unpack(raw)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}")
    if version != VERSION:
        raise WireError(f"unsupported wire version {version}")
    if kind not in KIND_NAMES:
        raise WireError(f"unknown frame kind {kind}")
    if flags != 0:
        raise WireError(f"unknown flags {flags:#x}")
    if expect_seq is not None and seq != expect_seq:
        raise WireError(f"sequence number {seq}, expected {expect_seq}")
    if meta_len > MAX_META:
        raise WireError(f"meta of {meta_len} bytes exceeds {MAX_META}")
    if payload_len > max_payload:
        raise WireError(f"payload of {payload_len} bytes exceeds the cap of {max_payload}")
    return KIND_NAMES[kind], seq, meta_len, payload_len


def parse_meta(raw: bytes, payload_len: int,
               kind: str | None = None) -> tuple[list[tuple[str, torch.dtype, tuple, int]], dict]:
    """Validate the JSON meta; returns (name, dtype, shape, nbytes) per tensor and the info."""
    meta = load_json(raw)
    if not isinstance(meta, dict) or set(meta) != {"tensors", "info"}:
        raise WireError("meta must be an object with exactly 'tensors' and 'info'")
    specs, info = meta["tensors"], meta["info"]
    if not isinstance(info, dict) or len(info) > INFO_KEYS_MAX:
        raise WireError("meta.info must be a small object")
    for value in info.values():
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise WireError("meta.info values must be scalars")
    if not isinstance(specs, list) or len(specs) > MAX_TENSORS:
        raise WireError(f"meta.tensors must be a list of at most {MAX_TENSORS}")
    if specs and kind is not None and kind not in TENSOR_KINDS:
        raise WireError(f"a '{kind}' frame carries no tensors")
    out, total, names = [], 0, set()
    for spec in specs:
        name, dtype, shape, nbytes = _check_spec(spec)
        if name in names:
            raise WireError(f"duplicate tensor name {name!r}")
        names.add(name)
        total += nbytes
        out.append((name, dtype, shape, nbytes))
    if total != payload_len:
        raise WireError(f"shapes account for {total} bytes, header says {payload_len}")
    return out, info


_JSON_SPECIALS = re.compile(r'[\[\]{}"\\]')


def load_json(raw: bytes):
    """Parse a meta with every resource bounded; anything malformed is a one-line WireError."""
    try:
        text = raw.decode("utf-8")             # strict: overlong forms and surrogates fail
    except UnicodeDecodeError as exc:
        raise WireError(f"meta is not UTF-8 JSON (invalid UTF-8 at byte {exc.start})") from None
    check_depth(text)
    try:
        value = json.loads(text, parse_int=_json_int, parse_float=_json_float,
                           parse_constant=_json_constant, object_pairs_hook=_json_object)
    except RecursionError:                      # unreachable after check_depth; kept as a guard
        raise WireError(f"meta nests deeper than {MAX_DEPTH}") from None
    except ValueError as exc:
        detail = f" ({exc.msg} at char {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
        raise WireError(f"meta is not UTF-8 JSON{detail}") from None
    _check_strings(value)
    return value


def check_depth(text: str) -> None:
    """Reject JSON nested deeper than MAX_DEPTH before the recursive parser sees it.

    One pass over the structural characters only; brackets inside strings do not count.
    """
    depth, in_string, escaped = 0, False, -1
    for m in _JSON_SPECIALS.finditer(text):
        c, i = m.group(), m.start()
        if i == escaped:                        # the character after a backslash
            continue
        if c == "\\":
            escaped = i + 1
        elif c == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise WireError(f"meta nests deeper than {MAX_DEPTH}")
        else:
            depth -= 1


def _json_int(s: str) -> int:
    if len(s) > MAX_NUMBER_CHARS:
        raise WireError(f"meta has a number of {len(s)} characters (at most {MAX_NUMBER_CHARS})")
    value = int(s)
    if not INT64_MIN <= value <= INT64_MAX:
        raise WireError("meta has an integer outside int64")
    return value


def _json_float(s: str) -> float:
    if len(s) > MAX_NUMBER_CHARS:
        raise WireError(f"meta has a number of {len(s)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(s)
    if not math.isfinite(value):
        raise WireError("meta has a number outside float64")
    return value


def _json_constant(name: str):
    raise WireError(f"meta has {name}; numbers must be finite")


def _json_object(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise WireError(f"meta repeats the key {key[:MAX_STRING]!r}")
        out[key] = value
    return out


def _check_strings(value) -> None:
    """Every key and string at most MAX_STRING characters and valid Unicode (no lone
    surrogates from \\ud800 escapes). Depth is already bounded, so recursion is safe."""
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise WireError(f"meta has a string of {len(value)} characters (at most {MAX_STRING})")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise WireError("meta has a string that is not valid Unicode") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def _check_spec(spec) -> tuple[str, torch.dtype, tuple, int]:
    if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
        raise WireError("tensor spec must have exactly name, dtype, shape")
    name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
    if not isinstance(name, str) or not 0 < len(name) <= 32 or not name.isidentifier():
        raise WireError("tensor name must be a short identifier")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise WireError(f"dtype {dtype!r} not allowed (allowed: {', '.join(DTYPES)})")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise WireError(f"shape must be a list of at most {MAX_DIMS} dims")
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0 or d > MAX_PAYLOAD:
            raise WireError(f"bad dimension {d!r}")
    elem = torch.empty(0, dtype=DTYPES[dtype]).element_size()
    nbytes = math.prod(shape) * elem
    if nbytes > MAX_PAYLOAD:
        raise WireError("tensor too large")
    return name, DTYPES[dtype], tuple(shape), nbytes


def decode_payload(specs, payload: bytearray) -> dict[str, torch.Tensor]:
    out, offset = {}, 0
    for name, dtype, shape, nbytes in specs:
        if nbytes:
            np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
            arr = np.frombuffer(payload, dtype=np_dtype, count=nbytes // np_dtype.itemsize,
                                offset=offset)
            if offset % np_dtype.itemsize:
                arr = arr.copy()        # keep every tensor aligned for torch
            out[name] = torch.from_numpy(arr).reshape(shape)
        else:
            out[name] = torch.empty(shape, dtype=dtype)
        offset += nbytes
    return out


def shapes_only(specs) -> dict[str, torch.Tensor]:
    """Tensors with the specs' dtypes and shapes and no storage (torch's meta device)."""
    return {name: torch.empty(shape, dtype=dtype, device="meta") for name, dtype, shape, _ in specs}


class Connection:
    """A framed, validated, byte-counted TCP connection (one sender thread, one receiver)."""

    def __init__(self, sock: socket.socket, max_payload: int = MAX_PAYLOAD):
        self.sock = sock
        self.max_payload = max_payload
        self.send_seq = self.recv_seq = 0
        self.sent_payload = self.sent_framing = self.recv_payload = self.recv_framing = 0
        self._send_lock = threading.Lock()
        self.check_specs = None                # f(shapes-only Frame), before a payload is read
        self.deadline: float | None = None     # time.monotonic() by which every read must end
        self.deadline_what = "the peer"
        self._timeout_s = sock.gettimeout()    # the socket's own timeout, back once no deadline

    def set_deadline(self, deadline: float | None, what: str = "the peer") -> None:
        """Bound all reads and sends until `deadline` in total, not per recv (None: back to the
        socket's own timeout), so a peer dribbling a byte a second still runs out of time."""
        if deadline is None and self.deadline is not None:
            self.sock.settimeout(self._timeout_s)
        elif deadline is not None and self.deadline is None:
            self._timeout_s = self.sock.gettimeout()
        self.deadline, self.deadline_what = deadline, what

    def send(self, kind: str, tensors: dict[str, torch.Tensor] | None = None,
             info: dict | None = None) -> tuple[int, int]:
        """Send one frame; returns (framing bytes, payload bytes)."""
        with self._send_lock:
            buffers, framing, payload = build_frame(kind, self.send_seq, tensors, info)
            self._apply_deadline()
            try:
                for buf in buffers:
                    self.sock.sendall(buf)
            except OSError as exc:
                raise WireError(f"peer went away while sending ({exc.strerror or exc})") from None
            self.send_seq += 1
            self.sent_framing += framing
            self.sent_payload += payload
            return framing, payload

    def send_error(self, message: str, timeout_s: float = 2.0) -> None:
        """Best effort: tell the peer why we stop, without blocking on a stuck uplink."""
        if not self._send_lock.acquire(timeout=timeout_s):
            return
        try:
            self.sock.settimeout(timeout_s)
            buffers, _, _ = build_frame("error", self.send_seq, info={"message": message[:200]})
            self.sock.sendall(buffers[0])
            self.send_seq += 1
        except (OSError, WireError):
            pass
        finally:
            self._send_lock.release()

    def wait_header(self) -> bytes:
        """Block until a frame header arrives (the time spent here is waiting, not transfer)."""
        return self._read_exact(HEADER.size)

    def recv_rest(self, header: bytes) -> Frame:
        """Read and validate the rest of a frame whose header was read by wait_header."""
        kind, seq, meta_len, payload_len = parse_header(header, self.recv_seq, self.max_payload)
        specs, info = parse_meta(bytes(self._read_exact(meta_len)), payload_len, kind)
        if self.check_specs is not None:       # the receiver's own rules, before allocating
            self.check_specs(Frame(kind, seq, shapes_only(specs), info))
        payload = self._read_exact(payload_len)
        self.recv_seq += 1
        self.recv_framing += HEADER.size + meta_len
        self.recv_payload += payload_len
        return Frame(kind, seq, decode_payload(specs, payload), info, payload_len,
                     HEADER.size + meta_len)

    def recv(self) -> Frame:
        return self.recv_rest(self.wait_header())

    def _read_exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            self._apply_deadline()
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except socket.timeout:
                raise WireError(self._timed_out()) from None
            except OSError as exc:
                raise WireError(f"connection lost ({exc.strerror or exc})") from None
            if k == 0:
                raise WireError("peer closed the connection" + (" mid-frame" if got else ""))
            got += k
        return buf

    def _timed_out(self) -> str:
        """Why a read timed out: a handshake's deadline, or the socket's idle timeout (nothing
        arrived for that long: an outage longer than it, or a hung peer)."""
        idle = self.sock.gettimeout()
        if self.deadline is None and idle:
            return (f"nothing from the peer for {idle:g} s (the idle timeout): the link stalled "
                    f"or the peer hung")
        return f"timed out waiting for {self.deadline_what}"

    def _apply_deadline(self) -> None:
        if self.deadline is None:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise WireError(f"timed out waiting for {self.deadline_what}")
        self.sock.settimeout(left)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def bench(size_mib: int = 4, repeats: int = 50) -> dict:
    """Encode + send + receive + decode a float32 tensor over a loopback TCP connection."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    for s in (client, peer):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tx, rx = Connection(client), Connection(peer)
    t = torch.randn(size_mib * 1024 * 1024 // 4)
    times = []

    def send_all():
        for _ in range(repeats + 5):
            tx.send("batch", {"a": t})

    sender = threading.Thread(target=send_all)
    sender.start()
    for i in range(repeats + 5):
        start = time.perf_counter()
        frame = rx.recv()
        elapsed = time.perf_counter() - start
        if i >= 5:                      # warm-up excluded
            times.append(elapsed)
        assert frame.tensors["a"].shape == t.shape
    sender.join()
    for s in (client, peer, server):
        s.close()
    median = sorted(times)[len(times) // 2]
    return {"bytes": t.numel() * 4, "median_s": median, "gb_per_s": t.numel() * 4 / median / 1e9,
            "repeats": repeats}


if __name__ == "__main__":
    import sys
    if "--bench" in sys.argv:
        r = bench()
        print(f"wire framing, {r['bytes'] / 2**20:.0f} MiB float32 tensor over loopback TCP: "
              f"median {r['median_s'] * 1e3:.2f} ms per frame = {r['gb_per_s']:.2f} GB/s "
              f"(encode+send+receive+decode, {r['repeats']} frames after 5 warm-up)")
    else:
        print(__doc__)
