"""Length-prefixed tensor frames over TCP: a fixed header, a small JSON meta, raw bytes.

    python -m harness.workers.wire --bench        # framing throughput for a 4 MiB tensor on loopback

Frame = header (28 bytes, network order: magic 4s, version B, kind B, flags H, seq Q,
meta_len I, payload_len Q) + meta (UTF-8 JSON) + payload (the tensors' raw bytes, back to
back). Nothing is ever unpickled: the receiver checks magic, version, kind, sequence number,
meta size and shape, dtypes against a whitelist, and that the shapes account for exactly
payload_len bytes, before it allocates the payload. A bad frame raises WireError; the caller
closes the connection.
"""
from __future__ import annotations

import json
import math
import socket
import struct
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.catalog import CODECS

MAGIC = b"HBW1"
VERSION = 1
HEADER = struct.Struct("!4sBBHQIQ")
KINDS = {"hello": 1, "hello_ok": 2, "batch": 3, "grad": 4, "end": 5, "done": 6, "error": 7,
         "ping": 8, "pong": 9}
KIND_NAMES = {v: k for k, v in KINDS.items()}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "int8": torch.int8,
          "uint8": torch.uint8, "int64": torch.int64}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_META = 64 * 1024                 # bytes
MAX_PAYLOAD = 1 << 30                # bytes; raise with care, it bounds one allocation
MAX_TENSORS = 8
MAX_DIMS = 8
INFO_KEYS_MAX = 32


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


def parse_meta(raw: bytes, payload_len: int) -> tuple[list[tuple[str, torch.dtype, tuple, int]], dict]:
    """Validate the JSON meta; returns (name, dtype, shape, nbytes) per tensor and the info."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("meta is not UTF-8 JSON") from None
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


class Connection:
    """A framed, validated, byte-counted TCP connection (one sender thread, one receiver)."""

    def __init__(self, sock: socket.socket, max_payload: int = MAX_PAYLOAD):
        self.sock = sock
        self.max_payload = max_payload
        self.send_seq = self.recv_seq = 0
        self.sent_payload = self.sent_framing = self.recv_payload = self.recv_framing = 0
        self._send_lock = threading.Lock()

    def send(self, kind: str, tensors: dict[str, torch.Tensor] | None = None,
             info: dict | None = None) -> tuple[int, int]:
        """Send one frame; returns (framing bytes, payload bytes)."""
        with self._send_lock:
            buffers, framing, payload = build_frame(kind, self.send_seq, tensors, info)
            try:
                for buf in buffers:
                    self.sock.sendall(buf)
            except OSError as exc:
                raise WireError(f"peer went away while sending ({exc.strerror or exc})") from None
            self.send_seq += 1
            self.sent_framing += framing
            self.sent_payload += payload
            return framing, payload

    def wait_header(self) -> bytes:
        """Block until a frame header arrives (the time spent here is waiting, not transfer)."""
        return self._read_exact(HEADER.size)

    def recv_rest(self, header: bytes) -> Frame:
        """Read and validate the rest of a frame whose header was read by wait_header."""
        kind, seq, meta_len, payload_len = parse_header(header, self.recv_seq, self.max_payload)
        specs, info = parse_meta(bytes(self._read_exact(meta_len)), payload_len)
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
            try:
                k = self.sock.recv_into(view[got:], n - got)
            except socket.timeout:
                raise WireError("timed out waiting for the peer") from None
            except OSError as exc:
                raise WireError(f"connection lost ({exc.strerror or exc})") from None
            if k == 0:
                raise WireError("peer closed the connection" + (" mid-frame" if got else ""))
            got += k
        return buf

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def bench(size_mib: int = 4, repeats: int = 50) -> dict:
    """Encode + send + receive + decode a float32 tensor over a loopback TCP connection."""
    import time
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
