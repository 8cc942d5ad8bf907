"""Structure-aware fuzzing of a live cloud worker, then a real run against the same process.

    .venv/bin/python scripts/fuzz_cloud.py                                 # 10,000 cases, seed 1
    .venv/bin/python scripts/fuzz_cloud.py --cases 300 --frames 600 --live 2 --seed 7

1. Handshake, live: ONE cloud process (split case, shared secret, 127.0.0.1) gets `--cases`
   hostile connections, drawn by category: deep nesting, huge numbers, long strings, invalid
   UTF-8, bad header fields, truncated frames, valid-looking frames with inconsistent content
   before the handshake and as the handshake (bad MACs, replays, bad pings after a good
   MAC), pickles, random bytes; then slow senders and floods of idle sockets (a valid hello
   behind 50 idle sockets must be answered within 2 s). Each connection must end in exactly
   one `rejected` event, for the expected reason, raised as a WireError, within the per-case
   timeout. Finally a real edge, behind a standing flood, completes a run (both exit 0).
2. After the handshake, in-process: `--frames` mutated batch and grad frames through the wire
   parser and the checks the workers use (cloud.Batches, edge.checked_grad): every invalid
   frame raises a WireError naming the field, every valid one passes, nothing else escapes.
3. After the handshake, live: `--live` fresh cloud processes each get one bad frame after a
   real handshake and must exit 1 with one `error: cloud:` line naming the field (and send it
   to the edge), no Traceback; a real edge sent a NaN gradient must do the same.

Exits 1 if anything crashed, hung, printed a traceback or was rejected for the wrong reason.
"""
from __future__ import annotations

import argparse
import json
import pickle
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig  # noqa: E402
from harness.procs import kill_group, wait_ready  # noqa: E402
from harness.run.case import wait_workers  # noqa: E402
from harness.run.launchers import LocalLauncher  # noqa: E402
from harness.train.batches import build_model  # noqa: E402
from harness.train.data import SPECS  # noqa: E402
from harness.workers.auth import (AUTH_TIMEOUT_S, HELLO_TIMEOUT_S, MAX_PENDING, cloud_handshake,  # noqa: E402
                                  edge_handshake, mac)
from harness.workers.cloud import Batches  # noqa: E402
from harness.workers.steps import decoded  # noqa: E402
from harness.workers.checks import check_tensors  # noqa: E402
from harness.workers.common import PINGS, Link, load_case  # noqa: E402
from harness.workers.edge import checked_grad  # noqa: E402
from harness.workers.events import EventLog  # noqa: E402
from harness.workers.wire import (DTYPES, HEADER, KINDS, MAGIC, MAX_META, MAX_PAYLOAD, VERSION,  # noqa: E402
                                  Connection, Frame, WireError, build_frame, decode_payload,
                                  encode_activation, parse_header, parse_meta, shapes_only)

SECRET = b"fuzzing-secret-0123456789abcdef"
N_TRAIN, BATCH, CLASSES = 512, 8, 10          # the fake dataset and the fuzzed case
FLOOD = 50                                    # idle sockets per flood
ANSWER_WITHIN_S = 2.0                         # a valid hello behind a flood is answered by then
SAFE_ERRORS = {"WireError", "Refused"}        # what a rejection may be raised as


# ---------------------------------------------------------------- cases and frames

@dataclass
class Probe:
    """One hostile connection: bytes to send (or a function driving the socket), and the
    substrings one of which the cloud's rejection reason must contain (empty: any reason)."""
    category: str
    send: bytes | Callable[[socket.socket], None]
    expect: tuple[str, ...] = ()


@dataclass
class Ctx:
    rng: random.Random
    case_hash: str
    marker: Path


def frame(kind: str = "hello", info: dict | None = None, tensors: list | None = None, seq: int = 0,
          meta: bytes | str | None = None, payload: bytes = b"", magic: bytes = MAGIC,
          version: int = VERSION, flags: int = 0, code: int | None = None,
          meta_len: int | None = None, payload_len: int | None = None) -> bytes:
    """Raw frame bytes with every header field and the meta text under our control."""
    if meta is None:
        meta = json.dumps({"tensors": tensors or [], "info": info or {}}, separators=(",", ":"))
    meta = meta.encode() if isinstance(meta, str) else meta
    head = HEADER.pack(magic, version, KINDS[kind] if code is None else code, flags, seq,
                       len(meta) if meta_len is None else meta_len,
                       len(payload) if payload_len is None else payload_len)
    return head + meta + payload


def hello_info(c: Ctx, **over) -> dict:
    info = {"method": "split", "case": c.case_hash, "n_train": N_TRAIN, "nonce": c.rng.randbytes(32).hex()}
    info.update(over)
    return {k: v for k, v in info.items() if v is not DROP}


DROP = object()


def hello_text(c: Ctx, n_train: str = str(N_TRAIN), method: str = '"split"', extra: str = "") -> str:
    """A hello meta as text, so a field can hold a literal json.dumps would never write."""
    return ('{"tensors":[],"info":{"method":%s,"case":"%s","n_train":%s,"nonce":"%s"%s}}'
            % (method, c.case_hash, n_train, c.rng.randbytes(32).hex(), extra))


def sized(meta: str | bytes, expect: tuple[str, ...]) -> tuple[str, ...]:
    """A meta over MAX_META is refused by its header first."""
    return ("exceeds",) if len(meta if isinstance(meta, bytes) else meta.encode()) > MAX_META else expect


# ---------------------------------------------------------------- categories

def gen_nesting(c: Ctx) -> Probe:
    d = c.rng.choice([5, 6, 10, 100, 999, 1000, 1001, 4096, 8000, 20000, 32000])
    v = c.rng.randrange(6)
    text = ["[" * d + "]" * d,
            '{"tensors":[],"info":{"a":' + "[" * d + "]" * d + "}}",
            '{"a":' * d + "1" + "}" * d,
            "[" * d,
            '{"tensors":[{"name":"a","dtype":"uint8","shape":' + "[" * d + "]" * d + '}],"info":{}}',
            '[{"a":' * d + "0" + "}]" * d][v]
    kind = c.rng.choice(["hello", "hello", "ping", "batch", "auth"])
    return Probe("nesting", frame(kind, meta=text), sized(text, ("nests deeper",)))


NUMBERS = [("9223372036854775808", "int64"), ("-9223372036854775809", "int64"),
           ("1" + "0" * 40, "number of"), ("-1" + "0" * 25, "int64"), ("1" + "0" * 4300, "number of"),
           ("-" + "9" * 5000, "number of"), ("9" * 60000, "number of"), ("1e309", "float64"),
           ("-1e309", "float64"), ("1E400", "float64"), ("NaN", "finite"), ("Infinity", "finite"),
           ("-Infinity", "finite"), ("0." + "0" * 60 + "1", "number of"), ("1e-400", "n_train"),
           ("512.0", "n_train"), ("true", "n_train"), ("null", "n_train"), ("-0", "n_train"),
           ("7", "n_train"), ("9223372036854775807", "n_train"), ("0x10", "JSON"), ("01", "JSON"),
           ("+1", "JSON"), ("1.", "JSON"), (".5", "JSON"), ("1e", "JSON"), ("--1", "JSON")]


def gen_numbers(c: Ctx) -> Probe:
    literal, why = c.rng.choice(NUMBERS)
    where = c.rng.choice(["n_train", "n_train", "shape", "extra", "ping"])
    parse_fails = why in ("int64", "number of", "float64", "finite", "JSON")
    if where == "n_train":
        text = hello_text(c, n_train=literal)
        return Probe("numbers", frame(meta=text), sized(text, (why,)))
    if where == "shape":
        text = '{"tensors":[{"name":"a","dtype":"uint8","shape":[%s]}],"info":{}}' % literal
    elif where == "extra":
        text = hello_text(c, extra=',"x":%s' % literal)
    else:
        text = '{"tensors":[],"info":{"t":%s}}' % literal
    kind = "ping" if where == "ping" else "hello"
    return Probe("numbers", frame(kind, meta=text), sized(text, (why,) if parse_fails else ()))


def gen_strings(c: Ctx) -> Probe:
    n = c.rng.choice([0, 1, 255, 256, 257, 300, 1000, 4096, 30000, 65000])
    s = "x" * n
    where = c.rng.choice(["method", "case", "nonce", "key", "name", "dtype", "escape", "message"])
    if where in ("method", "case", "nonce"):
        info = hello_info(c, **{where: s})
        long_ = ("string of",) if n > 256 else ("edge runs",) if where != "nonce" else ("nonce",)
        text = json.dumps({"tensors": [], "info": info})
        return Probe("strings", frame(meta=text), sized(text, long_))
    if where == "key":
        text = json.dumps({"tensors": [], "info": {**hello_info(c), s: 1}})
        return Probe("strings", frame(meta=text), sized(text, ("string of",) if n > 256 else ("info key",)))
    if where in ("name", "dtype"):
        spec = {"name": "a", "dtype": "uint8", "shape": [0]}
        spec[where] = s
        text = json.dumps({"tensors": [spec], "info": {}})
        return Probe("strings", frame("batch", meta=text), sized(text, ("string of",) if n > 256 else ()))
    if where == "message":
        text = json.dumps({"tensors": [], "info": {"message": s}})
        return Probe("strings", frame("error", meta=text), sized(text, ("string of",) if n > 256 else ("expected hello",)))
    escape, why = c.rng.choice([("\\ud800", "not valid Unicode"), ("\\udc00\\ud800", "not valid Unicode"),
                                ("\\ud83d\\ude00", "edge runs"), ("\\u0000", "edge runs"),
                                ("\\u0041" * 300, "string of"), ("\\\\" * 200, "edge runs"),
                                ('\\"' * 257, "string of"), ("\\x41", "JSON")])
    text = hello_text(c, method='"' + escape + '"')
    return Probe("strings", frame(meta=text), sized(text, (why,)))


BAD_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xc0\x80", b"\xe0\x80\xaf", b"\xed\xa0\x80",
            b"\xed\xa0\xbd\xed\xb8\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\xf4\x90\x80\x80",
            b"\xe9", b"\xc3"]


def gen_utf8(c: Ctx) -> Probe:
    meta = hello_text(c).encode()
    v = c.rng.randrange(4)
    if v == 0:
        at = c.rng.randrange(len(meta) + 1)
        meta = meta[:at] + c.rng.choice(BAD_UTF8) + meta[at:]
    elif v == 1:
        meta = b"\xef\xbb\xbf" + meta                          # a BOM: valid UTF-8, not JSON
    elif v == 2:
        meta = meta.decode().encode(c.rng.choice(["utf-16", "utf-16-le", "utf-32"]))
    else:
        meta = meta.replace(b'"split"', b'"spl' + c.rng.choice(BAD_UTF8) + b'it"')
    return Probe("utf8", frame(c.rng.choice(["hello", "ping", "auth"]), meta=meta), ("not UTF-8 JSON",))


def gen_header(c: Ctx) -> Probe:
    good = frame(info=hello_info(c))
    v = c.rng.randrange(11)
    if v == 0:
        magic = c.rng.choice([b"HBW0", b"HBW2", b"\0\0\0\0", b"GET ", c.rng.randbytes(4)])
        return Probe("header", frame(info=hello_info(c), magic=magic), ("magic",) if magic != MAGIC else ())
    if v == 1:
        return Probe("header", frame(info=hello_info(c), version=c.rng.choice([0, 2, 255])), ("version",))
    if v == 2:
        code = c.rng.choice([0, *range(max(KINDS.values()) + 1, 256)])
        return Probe("header", frame(info=hello_info(c), code=code), ("kind",))
    if v == 3:
        return Probe("header", frame(info=hello_info(c), flags=c.rng.choice([1, 2, 0x8000, 0xFFFF])), ("flags",))
    if v == 4:
        return Probe("header", frame(info=hello_info(c), seq=c.rng.choice([1, 2, 2**32, 2**64 - 1])), ("sequence",))
    if v == 5:
        return Probe("header", frame(info=hello_info(c), meta_len=c.rng.choice([MAX_META + 1, 2**32 - 1])), ("exceeds",))
    if v == 6:
        return Probe("header", frame(info=hello_info(c), payload_len=c.rng.choice([1, 4096, 2**63])), ("cap",))
    if v == 7:
        real = len(good) - HEADER.size
        return Probe("header", frame(info=hello_info(c), meta_len=c.rng.randrange(real)), ())
    if v == 8:
        return Probe("header", frame(info=hello_info(c), meta_len=len(good) + c.rng.randrange(1, 60000)), ("closed",))
    if v == 9:
        return Probe("header", good[:c.rng.randrange(HEADER.size)], ("closed",))
    other = c.rng.choice([b"GET / HTTP/1.1\r\nHost: cloud\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n",
                          b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32), b"\r\n" * 20])
    return Probe("header", other, ("magic",) if len(other) >= HEADER.size else ("closed",))


def valid_first_frames(c: Ctx) -> list[bytes]:
    act = {"name": "a", "dtype": "float32", "shape": [2, 4]}
    return [frame(info=hello_info(c)), frame(info=hello_info(c, nonce=DROP)),
            frame("ping", info={"t": 1.5}), frame("auth", info={"mac": "00" * 32}),
            frame("batch", tensors=[act], info={"step": 0}, payload=bytes(32))]


def gen_truncated(c: Ctx) -> Probe:
    data = c.rng.choice(valid_first_frames(c))
    cut = c.rng.randrange(len(data))
    payload_len = HEADER.unpack(data[:HEADER.size])[6]
    why = "cap" if cut >= HEADER.size and payload_len else "closed"
    return Probe("truncated", data[:cut], (why,))


def gen_inconsistent(c: Ctx) -> Probe:
    """Valid frames whose content is wrong for a first frame or for this cloud."""
    r = c.rng
    v = r.randrange(16)
    if v == 0:
        return Probe("inconsistent", frame(info=hello_info(c, method=r.choice(["hierarchical", "cloud", "edge", "", "SPLIT"]))), ("edge runs",))
    if v == 1:
        return Probe("inconsistent", frame(info=hello_info(c, case=r.choice(["0" * 16, c.case_hash[::-1], c.case_hash + "0"]))), ("edge runs",))
    if v == 2:
        key = r.choice(["method", "case", "n_train"])
        return Probe("inconsistent", frame(info=hello_info(c, **{key: DROP})), ("missing",))
    if v == 3:
        return Probe("inconsistent", frame(info={**hello_info(c), r.choice(["exec", "step", "auth", "x"]): 1}), ("info key",))
    if v == 4:
        return Probe("inconsistent", frame(info=hello_info(c, n_train=r.choice([0, -1, BATCH - 1, 10**6, 2**62, "512", 512.5, True, None]))), ("n_train",))
    if v == 5:
        return Probe("inconsistent", frame(info=hello_info(c, nonce=r.choice(["zz" * 32, "00" * 31, "00" * 33, 7, None, ""]))), ("nonce",))
    if v == 6:
        return Probe("inconsistent", frame(info=hello_info(c, nonce=DROP)), ("no nonce",))
    if v == 7:
        spec = {"name": "a", "dtype": "uint8", "shape": [0]}
        return Probe("inconsistent", frame(info=hello_info(c), tensors=[spec]), ("carries no tensors",))
    if v == 8:
        spec = {"name": "a", "dtype": "uint8", "shape": [4]}
        return Probe("inconsistent", frame(r.choice(["hello", "batch"]), info=hello_info(c), tensors=[spec], payload=b"abcd"), ("cap",))
    if v == 9:
        kind = r.choice(["end", "done", "hello_ok", "auth", "pong", "ping", "error", "grad", "batch"])
        return Probe("inconsistent", frame(kind, info={}), ("expected hello",))
    if v == 10:
        meta = r.choice(["[]", '"x"', "1", "null", '{"tensors":[],"info":{},"x":1}', '{"tensors":[]}',
                         '{"info":{}}', '{"tensors":{},"info":{}}', '{"tensors":[],"info":[]}',
                         '{"tensors":[],"info":{"a":[1]}}', '{"tensors":[],"info":{"a":{}}}'])
        return Probe("inconsistent", frame(meta=meta), ("exactly", "tensors", "info"))
    if v == 11:
        return Probe("inconsistent", frame(meta='{"tensors":[],"info":{"method":"split","method":"split"}}'), ("repeats the key",))
    if v == 12:
        many = {f"k{i}": i for i in range(40)}
        return Probe("inconsistent", frame(info=many), ("small object",))
    if v == 13:   # pipelined: a second hello where the auth answer belongs
        return Probe("inconsistent", frame(info=hello_info(c)) + frame(info=hello_info(c), seq=1), ("expected auth",))
    if v == 14:   # pipelined: an auth answer guessed without seeing the challenge
        return Probe("inconsistent", frame(info=hello_info(c)) + frame("auth", info={"mac": r.randbytes(32).hex()}, seq=1), ("wrong secret",))
    return Probe("inconsistent", frame(info=hello_info(c)) + frame("auth", info={"mac": "00" * 32}, seq=0), ("sequence",))


def gen_handshake(c: Ctx) -> Probe:
    """Interactive: a real hello, the cloud's challenge read, then a bad answer (or a good
    answer and fewer than PINGS pings before a bad frame: never a complete handshake)."""
    r = c.rng
    v = r.randrange(12)
    nonce = r.randbytes(32)

    def drive(sock: socket.socket) -> None:
        conn = Connection(sock, max_payload=0)
        conn.send("hello", info=hello_info(c, nonce=nonce.hex()))
        challenge = conn.recv()
        cloud_nonce = bytes.fromhex(challenge.info["nonce"])
        good = mac(SECRET, "edge", c.case_hash, nonce, cloud_nonce)
        seq = conn.send_seq
        bad = {0: {"mac": r.randbytes(32).hex()},
               1: {"mac": challenge.info["mac"]},                                     # reflection
               2: {"mac": mac(SECRET, "edge", "f" * 16, nonce, cloud_nonce).hex()},  # other case
               3: {"mac": mac(SECRET, "edge", c.case_hash, cloud_nonce, nonce).hex()},  # swapped
               4: {"mac": mac(SECRET[::-1], "edge", c.case_hash, nonce, cloud_nonce).hex()},
               5: {"mac": good.hex()[:-2]}, 6: {"mac": "g" * 64}, 7: {}, 8: {"mac": good.hex(), "x": 1}}
        if v in bad:
            sock.sendall(frame("auth", info=bad[v], seq=seq))
        elif v == 9:
            sock.sendall(frame(r.choice(["ping", "hello", "end", "pong"]), info={}, seq=seq)
                         if r.random() < 0.5 else frame("error", info={"message": "no"}, seq=seq))
        elif v == 10:
            return                                                      # close after the challenge
        else:
            conn.send("auth", info={"mac": good.hex()})
            conn.recv()                                                 # hello_ok
            for _ in range(r.randrange(PINGS)):
                conn.send("ping", info={"t": 1.0, "last": False})
                conn.recv()
            sock.sendall(r.choice(PING_BREAKERS)(conn.send_seq))

    expect = {0: ("wrong secret",), 1: ("wrong secret",), 2: ("wrong secret",), 3: ("wrong secret",),
              4: ("wrong secret",), 5: ("auth mac",), 6: ("auth mac",), 7: ("missing",),
              8: ("info key",), 9: ("expected auth", "edge gave up"), 10: ("closed",)}
    return Probe("handshake", drive, expect.get(v, ("ping", "'t'", "float64", "sequence", "closed",
                                                     "carries no tensors", "info key")))


PING_BREAKERS = [
    lambda seq: frame("ping", info={}, seq=seq),
    lambda seq: frame("ping", info={"t": "now", "last": False}, seq=seq),
    lambda seq: frame("ping", info={"t": 1.0}, seq=seq),
    lambda seq: frame("ping", info={"t": 1.0, "last": 1}, seq=seq),
    lambda seq: frame("ping", meta='{"tensors":[],"info":{"t":1e400}}', seq=seq),
    lambda seq: frame("pong", info={"t": 1.0}, seq=seq),
    lambda seq: frame("hello", info={"t": 1.0}, seq=seq),
    lambda seq: frame("ping", info={"t": 1.0, "last": False, "x": 2}, seq=seq),
    lambda seq: frame("ping", info={"t": 1.0, "last": False}, seq=seq + 1),
    lambda seq: frame("ping", tensors=[{"name": "a", "dtype": "uint8", "shape": [0]}], info={"t": 1.0}, seq=seq),
    lambda seq: b"",
]


class Exploit:
    """Unpickling this creates a marker file: proof that something deserialized our bytes."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def gen_pickle(c: Ctx) -> Probe:
    evil = pickle.dumps(Exploit(str(c.marker)))
    spec = {"name": "a", "dtype": "uint8", "shape": [len(evil)]}
    choice = c.rng.randrange(4)
    data = [evil, frame("batch", tensors=[spec], payload=evil),
            frame(info={**hello_info(c), "p": evil.decode("latin1")[:200]}),
            frame(meta=evil)][choice]
    return Probe("pickle", data, ())


def random_json(r: random.Random, depth: int = 0):
    pick = r.randrange(8 if depth < 5 else 5)
    return [lambda: r.randint(-2**70, 2**70), lambda: r.uniform(-1e300, 1e300), lambda: r.choice([True, False, None]),
            lambda: "".join(chr(r.randrange(32, 0x2FFF)) for _ in range(r.randrange(20))),
            lambda: r.randbytes(8).hex(),
            lambda: [random_json(r, depth + 1) for _ in range(r.randrange(4))],
            lambda: {str(random_json(r, 5))[:10]: random_json(r, depth + 1) for _ in range(r.randrange(4))},
            lambda: {"tensors": [], "info": {"method": "split", "x": random_json(r, depth + 1)}}][pick]()


def gen_random(c: Ctx) -> Probe:
    r = c.rng
    v = r.randrange(4)
    if v == 0:
        return Probe("random", r.randbytes(r.randrange(300)))
    if v == 1:
        data = bytearray(r.choice(valid_first_frames(c)))
        for _ in range(r.randint(1, 4)):
            data[r.randrange(len(data))] = r.randrange(256)
        return Probe("random", bytes(data))
    if v == 2:
        head = HEADER.pack(MAGIC, VERSION, r.randint(0, 255), r.choice([0, 0, 1]), r.choice([0, 0, 1, 2**64 - 1]),
                           r.choice([0, 5, 100, MAX_META + 1, 2**32 - 1]), r.choice([0, 0, 1, 2**40, 2**64 - 1]))
        return Probe("random", head + r.randbytes(r.randrange(120)))
    meta = json.dumps(random_json(r)).encode()
    return Probe("random", frame(code=r.randint(1, max(KINDS.values())), meta=meta))


CATEGORIES = {"nesting": (gen_nesting, 1.0), "numbers": (gen_numbers, 1.0), "strings": (gen_strings, 1.0),
              "utf8": (gen_utf8, 1.0), "header": (gen_header, 1.0), "truncated": (gen_truncated, 1.0),
              "inconsistent": (gen_inconsistent, 1.5), "handshake": (gen_handshake, 1.0),
              "pickle": (gen_pickle, 0.2), "random": (gen_random, 1.3)}


# ---------------------------------------------------------------- live runner

def make_case_dir(root: Path, method: str = "split", codec: str = "fp32", name: str = "case") -> tuple[Path, str]:
    case = Case(DatasetConfig("fake"), ModelConfig("vgg16", 0.25, "conv2"),
                TrainConfig(batch_size=BATCH, max_batches=3, seed=1), ComputeConfig(), method, codec)
    case_dir = root / name
    case_dir.mkdir(parents=True)
    (case_dir / "case.json").write_text(json.dumps(case.to_dict()))
    return case_dir, load_case(case_dir)[1]


def start(role: str, case_dir: Path, secret_file: Path, args: list[str]):
    launcher = LocalLauncher(env={"HIERBENCH_SECRET_FILE": str(secret_file)})
    return launcher.start(role, ["--case-dir", str(case_dir), *args], case_dir / f"{role}.log")


class Tail:
    """New lines of a growing JSONL file."""

    def __init__(self, path: Path):
        self.path, self.pos, self.rest = path, 0, ""

    def new(self) -> list[dict]:
        with open(self.path) as fh:
            fh.seek(self.pos)
            text = fh.read()
            self.pos = fh.tell()
        *lines, self.rest = (self.rest + text).split("\n")
        return [json.loads(x) for x in lines if x]


def drain(sock: socket.socket, deadline: float) -> str | None:
    """Read until the cloud closes; None once it has, else why not."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "hung: the cloud kept the connection open"
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return None
        except socket.timeout:
            return "hung: the cloud kept the connection open"
        except OSError:
            return None                  # reset by the cloud: closed too


def send_probe(addr, probe: Probe, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    try:
        sock = socket.create_connection(addr, timeout=timeout_s)
    except OSError as exc:
        return f"cannot connect: {exc}"
    with sock:
        try:
            if callable(probe.send):
                probe.send(sock)
            else:
                sock.sendall(probe.send)
            sock.shutdown(socket.SHUT_WR)
        except (OSError, WireError, KeyError, ValueError):
            pass                         # the cloud hung up first: it rejected us early
        return drain(sock, deadline)


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.failures.append(text[:400])


def check_rejection(events: list[dict], probe: Probe, i: int, report: Report) -> None:
    rejected = [e for e in events if e["event"] == "rejected"]
    if len(rejected) != 1:
        report.fail(f"case {i} ({probe.category}): {len(rejected)} rejected events, expected 1")
        return
    e = rejected[0]
    if e.get("error") not in SAFE_ERRORS:
        report.fail(f"case {i} ({probe.category}): crashed with {e.get('error')}: {e['reason']}")
    elif probe.expect and not any(x in e["reason"] for x in probe.expect):
        report.fail(f"case {i} ({probe.category}): reason {e['reason']!r}, expected one of {probe.expect}")


def sequential_cases(addr, ctx: Ctx, n: int, tail: Tail, cloud, report: Report, timeout_s: float) -> None:
    names = list(CATEGORIES)
    weights = [CATEGORIES[k][1] for k in names]
    start = time.monotonic()
    for i in range(n):
        probe = CATEGORIES[ctx.rng.choices(names, weights)[0]][0](ctx)
        report.counts[probe.category] += 1
        why = send_probe(addr, probe, timeout_s)
        if why:
            report.fail(f"case {i} ({probe.category}): {why}")
        events = tail.new()
        for _ in range(100):                 # the event is written before the close; be patient
            if any(e["event"] == "rejected" for e in events):
                break
            time.sleep(0.02)
            events += tail.new()
        check_rejection(events, probe, i, report)
        if cloud.poll() is not None:
            report.fail(f"case {i} ({probe.category}): the cloud exited with {cloud.returncode}")
            return
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1}/{n} cases, {time.monotonic() - start:.0f} s, "
                  f"{len(report.failures)} failures", flush=True)


def slow_sender(addr, ctx_hash: str, variant: int, out: list, idx: int) -> None:
    """Dribble (or stall) on one connection; record how long the cloud took to cut it off."""
    info = {"method": "split", "case": ctx_hash, "n_train": N_TRAIN, "nonce": "00" * 32}
    data = frame(info=info) if variant in (0, 2) else frame(info=info) + frame("auth", info={"mac": "11" * 32}, seq=1)
    limit = HELLO_TIMEOUT_S if variant in (0, 3) else AUTH_TIMEOUT_S
    start = time.monotonic()
    with socket.create_connection(addr) as s:
        s.settimeout(0.25)
        sent = 0
        if variant == 1:                               # hello at once, then the auth dribbled
            sent = len(frame(info=info))
            s.sendall(data[:sent])
        if variant == 3:
            s.sendall(data[:10])                       # a partial header, then silence
            sent = len(data)
        if variant == 2:
            s.sendall(data)                            # a full hello, then silence
            sent = len(data)
        while time.monotonic() - start < limit + 10:
            try:
                if sent < len(data):
                    s.sendall(data[sent:sent + 1])
                    sent += 1
                if not s.recv(4096):
                    break
            except socket.timeout:
                continue
            except OSError:
                break
    out[idx] = (variant, time.monotonic() - start, limit)


def slow_cases(addr, ctx: Ctx, n: int, report: Report) -> int:
    """n slow or stalled senders at once (fewer than the handshake cap, so none is evicted)."""
    n = min(n, MAX_PENDING - 1)
    out = [None] * n
    threads = [threading.Thread(target=slow_sender, args=(addr, ctx.case_hash, i % 4, out, i)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=AUTH_TIMEOUT_S + 20)
    for item in out:
        if item is None:
            report.fail("slow sender: no result (hung)")
            continue
        variant, took, limit = item
        if not limit - 0.5 <= took <= limit + 1.5:
            report.fail(f"slow sender {variant}: cut after {took:.2f} s, deadline {limit:.1f} s")
    report.counts["slow"] += n
    return n


def flood_case(addr, ctx: Ctx, report: Report) -> int:
    """FLOOD idle sockets, then a valid hello: the cloud's challenge must come within 2 s."""
    idle = [socket.create_connection(addr) for _ in range(FLOOD)]
    try:
        start = time.monotonic()
        with socket.create_connection(addr) as s:
            conn = Connection(s, max_payload=0)
            s.settimeout(ANSWER_WITHIN_S + 5)
            conn.send("hello", info=hello_info(ctx))
            reply = conn.recv()
            took = time.monotonic() - start
        if reply.kind != "auth" or took > ANSWER_WITHIN_S:
            report.fail(f"flood: valid hello answered with '{reply.kind}' after {took:.2f} s")
        report.notes.append(f"valid hello behind {FLOOD} idle sockets answered in {took * 1e3:.0f} ms")
    except (OSError, WireError) as exc:
        report.fail(f"flood: the valid hello got no answer: {exc}")
    finally:
        for s in idle:
            s.close()
    report.counts["flood"] += FLOOD + 1
    return FLOOD + 1


class FloodKeeper(threading.Thread):
    """Keeps FLOOD idle connections open (replacing those the cloud closes) until stopped."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr, self.stop, self.opened = addr, threading.Event(), 0

    def run(self) -> None:
        socks = []
        while not self.stop.is_set():
            alive = []
            for s in socks:
                try:
                    s.setblocking(False)
                    closed = s.recv(1) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    s.close()
                else:
                    alive.append(s)
            socks = alive
            while len(socks) < FLOOD and not self.stop.is_set():
                try:
                    socks.append(socket.create_connection(self.addr, timeout=1))
                    self.opened += 1
                except OSError:
                    break
            self.stop.wait(0.05)
        for s in socks:
            s.close()


def phase_live_handshake(root: Path, secret_file: Path, args, report: Report) -> None:
    case_dir, case_hash = make_case_dir(root, name="fuzzed")
    ctx = Ctx(random.Random(args.seed), case_hash, root / "pwned")
    cloud = start("cloud", case_dir, secret_file, ["--listen", "127.0.0.1:0", "--accept-timeout", "3600"])
    t0 = time.monotonic()
    try:
        host, port = wait_ready(cloud, 120).split(":")
        addr = (host, int(port))
        tail = Tail(case_dir / "cloud.jsonl")
        n_slow = min(args.slow, MAX_PENDING - 1)
        n_seq = max(0, args.cases - n_slow - args.floods * (FLOOD + 1))
        print(f"phase 1: {n_seq} sequential cases, {n_slow} slow senders, {args.floods} flood(s) "
              f"against one cloud (pid {cloud.pid}) at {host}:{port}", flush=True)
        sequential_cases(addr, ctx, n_seq, tail, cloud, report, args.case_timeout)
        opened = n_seq + slow_cases(addr, ctx, n_slow, report)
        for _ in range(args.floods):
            opened += flood_case(addr, ctx, report)
        wait_for_rejections(case_dir, opened, report)
        report.seconds["handshake_cases"] = time.monotonic() - t0
        if ctx.marker.exists():
            report.fail("a payload was unpickled (the marker file exists)")
        real_edge_run(case_dir, secret_file, addr, cloud, report)
    finally:
        kill_group(cloud)
    log = (case_dir / "cloud.log").read_text()
    if "Traceback" in log:
        report.fail("the fuzzed cloud printed a traceback: " + log[log.index("Traceback"):][:300])


def wait_for_rejections(case_dir: Path, opened: int, report: Report) -> None:
    """Every connection opened so far ends in exactly one rejected event (idle ones later)."""
    deadline = time.monotonic() + HELLO_TIMEOUT_S + 10
    while True:
        events = [json.loads(x) for x in (case_dir / "cloud.jsonl").read_text().splitlines()]
        rejected = [e for e in events if e["event"] == "rejected"]
        if len(rejected) >= opened or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if len(rejected) != opened:
        report.fail(f"{opened} connections, {len(rejected)} rejected events")
    bad = Counter(e.get("error") for e in rejected if e.get("error") not in SAFE_ERRORS)
    if bad:
        report.fail(f"rejections raised as {dict(bad)} (only {SAFE_ERRORS} are expected)")
    report.notes.append("rejection reasons (top 8): " + ", ".join(
        f"{k} x{v}" for k, v in Counter(" ".join(e["reason"].split()[:3]) for e in rejected).most_common(8)))


def real_edge_run(case_dir: Path, secret_file: Path, addr, cloud, report: Report) -> None:
    """A real edge with the secret, behind a standing flood, completes a run: both exit 0."""
    keeper = FloodKeeper(addr)
    keeper.start()
    t0 = time.monotonic()
    edge = start("edge", case_dir, secret_file, ["--connect", f"{addr[0]}:{addr[1]}"])
    try:
        wait_workers({"cloud": cloud, "edge": edge}, case_dir, 300)
    except Exception as exc:
        report.fail(f"real edge run after fuzzing: {exc}")
    finally:
        keeper.stop.set()
        kill_group(edge)
    keeper.join(timeout=5)
    report.seconds["real_run"] = time.monotonic() - t0
    accepted = [json.loads(x) for x in (case_dir / "cloud.jsonl").read_text().splitlines() if '"accepted"' in x]
    if edge.returncode != 0 or cloud.returncode != 0 or len(accepted) != 1:
        report.fail(f"real run: edge exit {edge.returncode}, cloud exit {cloud.returncode}, "
                    f"{len(accepted)} accepted")
    elif accepted[0]["handshake_s"] > ANSWER_WITHIN_S:
        report.fail(f"real edge's handshake took {accepted[0]['handshake_s']:.2f} s behind the flood")
    else:
        report.notes.append(f"real edge completed a run behind a standing flood ({keeper.opened} idle "
                            f"sockets opened), handshake {accepted[0]['handshake_s'] * 1e3:.0f} ms, both exit 0")


# ---------------------------------------------------------------- after the handshake, in-process

def through_wire(kind: str, tensors: dict, info: dict, check_specs=None) -> Frame:
    """Serialize and parse a frame exactly as a Connection would (no socket), with the
    receiver's shapes-only check before the payload."""
    buffers, _, _ = build_frame(kind, 0, tensors, info)
    data = b"".join(bytes(b) for b in buffers)
    k, seq, meta_len, payload_len = parse_header(data[:HEADER.size], 0, MAX_PAYLOAD)
    specs, info = parse_meta(data[HEADER.size:HEADER.size + meta_len], payload_len, k)
    if check_specs is not None:
        check_specs(Frame(k, seq, shapes_only(specs), info))
    payload = bytearray(data[HEADER.size + meta_len:])
    return Frame(k, seq, decode_payload(specs, payload), info, payload_len, HEADER.size + meta_len)


def other_dtype(r: random.Random, not_this: torch.dtype) -> torch.dtype:
    return r.choice([d for d in DTYPES.values() if d != not_this])


def rebatch(t: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros((n, *t.shape[1:]), dtype=t.dtype)


def mutate(r: random.Random, tensors: dict, info: dict, kind: str, s) -> tuple | None:
    """Apply one mutation meant to make the frame invalid; returns the substrings one of which
    the error must contain, or None if it did not apply."""
    names = list(tensors)
    m = r.randrange(14)
    if m == 0 and names:
        del tensors[r.choice(names)]
        return ("tensors",)
    if m == 1:
        tensors["z"] = torch.zeros(1, dtype=torch.uint8)
        return ("tensors",)
    if m == 2 and names:
        n = r.choice(names)
        tensors[n + "2"] = tensors.pop(n)
        return ("tensors",)
    if m == 3 and names:
        n = r.choice(names)
        tensors[n] = tensors[n].to(other_dtype(r, tensors[n].dtype))
        return (f"'{n}' is", "non-finite")          # a cast may also overflow fp16
    if m == 4 and s.main in tensors and tensors[s.main].dim() > 1:
        t = tensors[s.main]
        shape = list(t.shape)
        j = r.randrange(1, len(shape))
        choice = r.randrange(3)
        if choice == 0:
            shape[j] += r.choice([-1, 1, 2]) if shape[j] > 1 else 1
        elif choice == 1:
            shape.append(1)
        else:
            shape.pop(j)
        tensors[s.main] = torch.zeros(shape, dtype=t.dtype)
        return (f"'{s.main}' has shape",)
    if m == 5 and names:
        n = r.choice([0, s.max_batch + r.randint(1, 3 * s.max_batch)])
        for k in names:
            tensors[k] = rebatch(tensors[k], n)
        return ("batch dimension",)
    if m == 6 and len(names) > 1:
        k = r.choice(names)
        b = tensors[k].shape[0]
        tensors[k] = rebatch(tensors[k], b + r.choice([-1, 1]) if b > 1 else b + 1)
        return ("batch dimension",)
    if m == 7 and s.labels in tensors and tensors[s.labels].numel() and tensors[s.labels].dtype == torch.int64:
        y = tensors[s.labels].clone()
        y[r.randrange(len(y))] = r.choice([s.classes + r.randrange(5), -1 - r.randrange(5), 2**40])
        tensors[s.labels] = y
        return (s.labels_word,)
    if m == 8 and s.main in tensors and tensors[s.main].is_floating_point() and tensors[s.main].numel():
        t = tensors[s.main].clone()
        t.view(-1)[r.randrange(t.numel())] = r.choice([float("nan"), float("inf"), float("-inf")])
        tensors[s.main] = t
        return ("non-finite",)
    if m == 9 and "step" in s.info_keys:
        now = info.get("step") if type(info.get("step")) is int else 0
        info["step"] = r.choice([now + r.randint(1, 5), -1, 2**62, True, 1.5, "0", None])
        return ("step",)
    if m == 10 and "step" in info:
        del info["step"]
        return ("step",)
    if m == 11:
        info[r.choice(["zz", "exec", "Step", "codec2"])] = 1
        return ("info key",)
    if m == 12:
        info[r.choice(list(info) or ["t"])] = r.choice([float("nan"), float("inf")])
        return ("finite",)
    if m == 13 and s.extra:
        return s.extra(r, tensors, info)
    return None


@dataclass
class Shape:
    """What the mutator needs to know about one frame type."""
    main: str
    labels: str
    labels_word: str
    classes: int
    max_batch: int
    info_keys: tuple
    extra: Callable | None = None


def fuzz_activation(r, case, model, report: Report) -> None:
    b = Batches(case, model, N_TRAIN)
    b.next_step = r.randrange(b.steps)
    n = r.randint(1, BATCH)
    wire_a, meta = encode_activation(torch.randn(n, *model.activation_shape), case.codec)
    tensors = {"a": wire_a, "y": torch.randint(0, CLASSES, (n,))}
    info = {**meta, "step": b.next_step}

    def codec_extra(r, tensors, info):
        if case.codec == "int8" and r.random() < 0.5:
            if r.random() < 0.5:
                info["scale"] = r.choice([0.0, -1.0, -1e-9, "1"])
                return ("scale",)
            info["scale"] = 1e38
            return ("non-finite",)
        info["codec"] = r.choice([c for c in ("fp32", "fp16", "int8", "raw") if c != case.codec])
        return ("codec",)

    s = Shape("a", "y", "label", CLASSES, BATCH, ("step",), codec_extra)
    check_mutants(r, "batch", tensors, info, s, lambda f: (b.activation(f), decoded(f)), report,
                  b.shapes)


def fuzz_upload(r, case, model, report: Report) -> None:
    b = Batches(case, model, N_TRAIN)
    train = r.random() < 0.7
    n = r.randint(1, BATCH if train else 64)
    tensors = {"x": torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8),
               "y": torch.randint(0, CLASSES, (n,)), "i": torch.randint(0, N_TRAIN, (n,))}
    info = {"train": True, "step": 0} if train else {"train": False}
    b.uploading = False

    def upload_extra(r, tensors, info):
        v = r.randrange(4)
        if v == 0 and "i" in tensors and len(tensors["i"]) and tensors["i"].dtype == torch.int64:
            i = tensors["i"].clone()
            i[0] = r.choice([N_TRAIN, -1, 2**40])
            tensors["i"] = i
            return ("index",)
        if v == 1:
            info["train"] = r.choice([1, "yes", None])
            return ("train",)
        if v == 2 and not info.get("train", True):
            info["step"] = 0
            return ("step",)
        b.uploading = True
        info["train"], info["step"] = True, 0
        return ("after the cache", "batch dimension")      # a cache chunk may exceed a batch

    s = Shape("x", "y", "label", CLASSES, BATCH if train else 1024, ("step",) if train else (), upload_extra)
    check_mutants(r, "batch", tensors, info, s, b.upload, report, b.shapes)


def fuzz_grad(r, model, report: Report) -> None:
    n = r.randint(1, BATCH)
    a = torch.randn(n, *model.activation_shape)
    step = r.randrange(100)
    s = Shape("g", "", "", 0, n, ("step",))
    expected = {"g": (torch.float32, tuple(model.activation_shape))}
    check_mutants(r, "grad", {"g": torch.randn_like(a)}, {"step": step}, s,
                  lambda f: checked_grad(f, a, step), report,
                  lambda f: check_tensors(f, expected, BATCH))     # as edge.run_split sets it


def check_mutants(r, kind, tensors, info, s: Shape, check, report: Report, check_specs) -> None:
    """One mutation: the frame must be refused naming its field. Several: they may cancel
    out (add a tensor, then drop it), so the frame may pass, but only a WireError may escape.
    None: the valid frame must pass."""
    expects = []
    for _ in range(r.choice([0, 1, 1, 1, 1, 2, 3])):
        got = mutate(r, tensors, info, kind, s)
        if got:
            expects.append(got)
    label = {0: "valid", 1: "mutated"}.get(len(expects), "multi-mutated")
    report.counts[f"{kind} frames ({label})"] += 1
    try:
        check(through_wire(kind, tensors, info, check_specs))
    except WireError as exc:
        if not expects:
            report.fail(f"valid {kind} frame refused: {exc}")
        elif not any(x in str(exc) for e in expects for x in e):
            report.fail(f"{kind} frame refused for {exc!s}, expected one of {expects}")
        elif "\n" in str(exc):
            report.fail(f"{kind} frame: a multi-line error: {exc!r}")
        return
    except Exception as exc:
        report.fail(f"{kind} frame raised {type(exc).__name__}: {exc} (mutations {expects})")
        return
    if len(expects) == 1:
        report.fail(f"{kind} frame with {expects} was accepted")


def phase_frames(args, report: Report) -> None:
    r = random.Random(args.seed + 1)
    setups = []
    for method, codec in [("split", "fp32"), ("hierarchical", "fp16"), ("split", "int8"), ("cloud", "fp32")]:
        case = Case(DatasetConfig("fake"), ModelConfig("vgg16", 0.25, "conv2"),
                    TrainConfig(batch_size=BATCH, epochs=2, seed=1), ComputeConfig(), method, codec)
        setups.append((case, build_model(case, SPECS["fake"])))
    t0 = time.monotonic()
    for i in range(args.frames):
        case, model = r.choice(setups)
        if r.random() < 0.2:
            fuzz_grad(r, model, report)
        elif case.method == "cloud":
            fuzz_upload(r, case, model, report)
        else:
            fuzz_activation(r, case, model, report)
    report.seconds["frames"] = time.monotonic() - t0


# ---------------------------------------------------------------- after the handshake, live

def valid_batch(case: Case, shape, n: int = BATCH, step: int = 0) -> tuple[dict, dict]:
    if case.method == "cloud":
        return ({"x": torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8),
                 "y": torch.randint(0, CLASSES, (n,)), "i": torch.arange(n)}, {"step": step, "train": True})
    a, meta = encode_activation(torch.randn(n, *shape), case.codec)
    return {"a": a, "y": torch.randint(0, CLASSES, (n,))}, {**meta, "step": step}


def bad_label(t, i):
    t["y"][3] = 12


def nan_act(t, i):
    t["a"][0, 0, 0, 0] = float("nan")


def fp32_act(t, i):
    t["a"] = t["a"].float()


def skip_step(t, i):
    i["step"] = 1


def extra_tensor(t, i):
    t["z"] = torch.zeros(2)


def bad_index(t, i):
    t["i"][5] = 9999


def big_batch(t, i):
    for k in list(t):
        t[k] = torch.cat([t[k], t[k][:1]])


LIVE = [("split", "fp32", bad_label, "batch frame: tensor 'y' has label 12 outside [0, 10)"),
        ("hierarchical", "fp32", nan_act, "batch frame: tensor 'a' has non-finite values"),
        ("split", "fp16", fp32_act, "batch frame: tensor 'a' is float32, expected float16"),
        ("hierarchical", "int8", skip_step, "batch frame: step 1, expected 0"),
        ("split", "fp32", extra_tensor, "batch frame: tensors ['a', 'y', 'z'], expected ['a', 'y']"),
        ("cloud", "fp32", bad_index, "batch frame: tensor 'i' has index 9999 outside [0, 512)"),
        ("hierarchical", "fp32", big_batch, "batch frame: tensor 'a' has batch dimension 9, expected 1 to 8"),
        ("split", "fp32", None, "unexpected 'ping' frame during training")]


def live_bad_batch(root: Path, secret_file: Path, k: int, spec, proc, report: Report) -> None:
    """Handshake as the edge, send one good frame (split) and then a bad one; the cloud must
    answer with an `error` frame, exit 1, and print one line naming the field."""
    method, codec, breaker, expect = spec
    case_dir = root / f"live{k}"
    case = Case(DatasetConfig("fake"), ModelConfig("vgg16", 0.25, "conv2"),
                TrainConfig(batch_size=BATCH, max_batches=3, seed=1), ComputeConfig(), method, codec)
    shape = build_model(case, SPECS["fake"]).activation_shape
    try:
        host, port = wait_ready(proc, 120).split(":")
        sock = socket.create_connection((host, int(port)), timeout=60)
        link = Link(Connection(sock), EventLog(case_dir / "fake_edge.jsonl", "edge"))
        edge_handshake(link, method, load_case(case_dir)[1], {"n_train": N_TRAIN}, SECRET)
        if breaker is None:
            link.conn.send("batch", *valid_batch(case, shape))
            link.conn.recv()                                   # its gradient
            link.conn.send("ping", info={"t": 1.0})
        else:
            tensors, info = valid_batch(case, shape)
            breaker(tensors, info)
            link.conn.send("batch", tensors, info)
        reply = link.conn.recv()
        told = reply.info.get("message", "") if reply.kind == "error" else f"a '{reply.kind}' frame"
        code = proc.wait(timeout=60)
    except (OSError, WireError, Exception) as exc:
        report.fail(f"live {k} ({expect}): {type(exc).__name__}: {exc}")
        return
    err = (case_dir / "cloud.log").read_text()
    lines = err.strip().splitlines()
    ok = (code == 1 and len(lines) == 1 and lines[0] == f"error: cloud: {expect}"
          and "Traceback" not in err and expect in told)
    report.counts["live bad frames"] += 1
    if not ok:
        report.fail(f"live {k}: exit {code}, stderr {err.strip()[:200]!r}, edge told {told!r}, "
                    f"expected {expect!r}")


def live_bad_grad(root: Path, secret_file: Path, report: Report) -> None:
    """A fake cloud sends a real edge a NaN gradient: the edge must exit 1 in one line."""
    case_dir, case_hash = make_case_dir(root, "split", "fp32", "edge_nan")
    server = socket.create_server(("127.0.0.1", 0))
    edge = start("edge", case_dir, secret_file, ["--connect", "127.0.0.1:%d" % server.getsockname()[1]])
    try:
        server.settimeout(120)
        sock, _ = server.accept()
        conn = Connection(sock, max_payload=0)
        cloud_handshake(conn, "split", case_hash, SECRET, lambda info: None, lambda: None)
        conn.max_payload = 1 << 30
        batch = conn.recv()
        g = torch.zeros(batch.tensors["a"].shape)
        g[0, 0, 0, 0] = float("nan")
        conn.send("grad", {"g": g}, {"step": batch.info["step"]})
        reply = conn.recv()
        code = edge.wait(timeout=60)
    except Exception as exc:
        report.fail(f"edge NaN gradient: {type(exc).__name__}: {exc}")
        return
    finally:
        kill_group(edge)
        server.close()
    err = (case_dir / "edge.log").read_text()
    lines = err.strip().splitlines()
    expect = "grad frame: tensor 'g' has non-finite values"
    report.counts["live bad frames"] += 1
    if not (code == 1 and lines == [f"error: edge: {expect}"] and reply.kind == "error"
            and expect in reply.info.get("message", "")):
        report.fail(f"edge NaN gradient: exit {code}, stderr {err.strip()[:200]!r}, reply {reply.kind}")


def phase_live_frames(root: Path, secret_file: Path, args, report: Report) -> None:
    t0 = time.monotonic()
    specs = [LIVE[k % len(LIVE)] for k in range(args.live)]
    procs = []

    def launch(k):
        method, codec = specs[k][:2]
        case_dir, _ = make_case_dir(root, method, codec, f"live{k}")
        procs.append(start("cloud", case_dir, secret_file, ["--listen", "127.0.0.1:0"]))

    try:
        for k, spec in enumerate(specs):
            if k == 0:
                launch(0)
            if k + 1 < len(specs):
                launch(k + 1)            # the next one imports while this one is attacked
            live_bad_batch(root, secret_file, k, spec, procs[k], report)
    finally:
        for proc in procs:
            kill_group(proc)
    live_bad_grad(root, secret_file, report)
    report.seconds["live_frames"] = time.monotonic() - t0


# ---------------------------------------------------------------- main

def run(args) -> Report:
    report = Report()
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="fuzz_cloud_"))
    root.mkdir(parents=True, exist_ok=True)
    secret_file = root / "secret"
    secret_file.write_bytes(SECRET)
    t0 = time.monotonic()
    phase_live_handshake(root, secret_file, args, report)
    print(f"phase 2: {args.frames} mutated frames in-process", flush=True)
    phase_frames(args, report)
    print(f"phase 3: {args.live} live clouds and one live edge get a bad frame after the handshake", flush=True)
    phase_live_frames(root, secret_file, args, report)
    report.seconds["total"] = time.monotonic() - t0
    if not report.failures and not args.work_dir and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        report.notes.append(f"logs and case directories kept in {root}")
    return report


def summary(report: Report, args) -> str:
    live = sum(v for k, v in report.counts.items() if k in CATEGORIES or k in ("slow", "flood"))
    lines = [f"{live} live connections against one cloud process in "
             f"{report.seconds.get('handshake_cases', 0):.1f} s (seed {args.seed}); per category:"]
    lines += [f"  {k:<14} {v:>6}" for k, v in sorted(report.counts.items()) if k in CATEGORIES or k in ("slow", "flood")]
    frames = {k: v for k, v in report.counts.items() if k.startswith(("batch frames", "grad frames"))}
    lines.append(f"{sum(frames.values())} in-process post-handshake frames in {report.seconds.get('frames', 0):.1f} s: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(frames.items())))
    lines.append(f"{report.counts.get('live bad frames', 0)} live post-handshake bad frames (one process each) "
                 f"in {report.seconds.get('live_frames', 0):.1f} s")
    lines += [f"  {n}" for n in report.notes]
    lines.append(f"total {report.seconds.get('total', 0):.1f} s; "
                 + (f"{len(report.failures)} FAILURES:" if report.failures else "no failures"))
    lines += [f"  {f}" for f in report.failures[:30]]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=10_000, help="live connections in phase 1")
    p.add_argument("--frames", type=int, default=5_000, help="in-process frames in phase 2")
    p.add_argument("--live", type=int, default=len(LIVE), help="live cloud processes in phase 3")
    p.add_argument("--slow", type=int, default=12, help="slow senders (at most MAX_PENDING - 1)")
    p.add_argument("--floods", type=int, default=3, help=f"floods of {FLOOD} idle sockets")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--case-timeout", type=float, default=10.0, help="seconds per connection")
    p.add_argument("--work-dir", type=Path, help="keep case directories and logs here")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    report = run(args)
    print(summary(report, args), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
