"""10,000+ random and malicious frames against a live cloud worker: all rejected, none executed.

Afterwards the same cloud process still accepts a real edge and completes a run.
"""
import json
import pickle
import random
import socket
import time


from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig
from harness.procs import kill_group, wait_ready
from harness.run.case import wait_workers
from harness.run.launchers import LocalLauncher
from harness.workers.wire import HEADER, MAGIC, KINDS, build_frame

N_FRAMES = 10_000


class Exploit:
    """Unpickling this creates a marker file: proof that something deserialized our bytes."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def header(kind=1, seq=0, meta_len=0, payload_len=0, magic=MAGIC, version=1, flags=0):
    return HEADER.pack(magic, version, kind, flags, seq, meta_len, payload_len)


def framed(meta, payload=b"", kind=1, **kw):
    meta = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return header(kind=kind, meta_len=len(meta), payload_len=len(payload), **kw) + meta + payload


def hello(**info):
    buffers, _, _ = build_frame("hello", 0, info={"method": "split", "case": "0" * 16, **info})
    return b"".join(bytes(b) for b in buffers)


def crafted(marker):
    evil = pickle.dumps(Exploit(marker))
    t = lambda dtype, shape: {"tensors": [{"name": "a", "dtype": dtype, "shape": shape}], "info": {}}
    return [
        evil,                                                        # a bare pickle stream
        framed(t("uint8", [len(evil)]), evil),                       # a pickle as tensor payload
        framed({"tensors": [], "info": {"p": evil.decode("latin1")}}),
        framed(t("object", [1]), b"\x00" * 8),
        framed(t("float64", [1]), b"\x00" * 8),
        framed(t("uint8", [-1])), framed(t("uint8", [2**62, 4])), framed(t("uint8", [1] * 20)),
        header(meta_len=2**32 - 1), header(payload_len=2**63), header(magic=b"HBW0"),
        header(version=2), header(kind=200), header(flags=7), header(seq=5),
        framed(b"{not json"), framed(b"\xff" * 10), framed([]), framed({"tensors": {}, "info": {}}),
        framed({"tensors": [], "info": {}, "exec": "import os"}),
        framed(t("uint8", [100]), b"x" * 10)[:-5],                   # truncated payload
        framed({"tensors": [], "info": {}}, kind=KINDS["batch"]),    # batch before hello
        framed({"tensors": [], "info": {}}, kind=KINDS["end"]),
        hello(), hello(method="cloud"), hello(case=None), hello()[:20],
        b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]


def mutants(rng, seeds, n):
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            yield rng.randbytes(rng.randint(0, 300))
        elif kind < 0.6:
            frame = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                if frame:
                    frame[rng.randrange(len(frame))] = rng.randrange(256)
            yield bytes(frame)
        elif kind < 0.8:
            yield header(kind=rng.randint(0, 255), seq=rng.choice([0, 1, 2**64 - 1]),
                         meta_len=rng.choice([0, 5, 2**16 + 1, 2**32 - 1]),
                         payload_len=rng.choice([0, 1, 2**40, 2**64 - 1])) + rng.randbytes(rng.randint(0, 40))
        else:
            shape = [rng.choice([-5, 0, 3, 2**40, 1.5, "x", None]) for _ in range(rng.randint(0, 10))]
            dtype = rng.choice(["object", "uint8", "float32", "int64", "str", "V", "<f8", None, 5])
            yield framed({"tensors": [{"name": rng.choice(["a", "", "x" * 40, 3]), "dtype": dtype,
                                       "shape": shape}], "info": {}}, rng.randbytes(rng.randint(0, 64)))


def send_one(addr, data):
    with socket.create_connection(addr, timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            return                      # the cloud already rejected and closed: fine
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass


def test_fuzzed_frames_are_all_rejected_and_cloud_stays_healthy(tmp_path):
    marker = tmp_path / "pwned"
    case = Case(DatasetConfig("fake"), ModelConfig("vgg16", 0.25, "conv2"),
                TrainConfig(batch_size=8, max_batches=3), ComputeConfig(), "split")
    case_dir = tmp_path / "case"
    case_dir.mkdir()
    (case_dir / "case.json").write_text(json.dumps(case.to_dict()))
    launcher = LocalLauncher()
    cloud = launcher.start("cloud", ["--case-dir", str(case_dir), "--listen", "127.0.0.1:0"],
                           case_dir / "cloud.log")
    try:
        host, port = wait_ready(cloud, 60).split(":")
        rng = random.Random(1234)
        seeds = crafted(str(marker))
        frames = seeds + list(mutants(rng, seeds + [hello()], N_FRAMES - len(seeds)))
        start = time.monotonic()
        for data in frames:
            send_one((host, int(port)), data)
            assert cloud.poll() is None, "cloud died during fuzzing"
        elapsed = time.monotonic() - start
        events = [json.loads(x) for x in (case_dir / "cloud.jsonl").read_text().splitlines()]
        rejected = [e for e in events if e["event"] == "rejected"]
        assert len(frames) >= N_FRAMES and len(rejected) == len(frames)
        assert not marker.exists(), "a payload was deserialized"
        # Still healthy: a real edge now completes the run against the same process.
        edge = launcher.start("edge", ["--case-dir", str(case_dir), "--connect", f"{host}:{port}"],
                              case_dir / "edge.log")
        wait_workers({"cloud": cloud, "edge": edge}, case_dir, 120)
        assert (case_dir / "cloud_part.pt").exists()
        reasons = {}
        for e in rejected:
            key = e["reason"].split(" ")[0:2]
            reasons[" ".join(key)] = reasons.get(" ".join(key), 0) + 1
        print(f"\n{len(frames)} fuzz frames in {elapsed:.1f} s, all rejected; top reasons: "
              f"{sorted(reasons.items(), key=lambda kv: -kv[1])[:6]}")
    finally:
        kill_group(cloud)
