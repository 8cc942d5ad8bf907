"""The cloud worker: listens, validates the edge, trains its part on what arrives.

    python -m harness.workers.cloud --case-dir DIR --listen HOST:PORT      # port 0: pick a free one

Prints `READY <host>:<port>` once listening. A connection that fails the handshake (bad
frame, wrong method or case) is rejected and closed and the cloud keeps listening; a bad frame
after the handshake ends the run with a clear error.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

import torch

from harness.config import Case
from harness.errors import HarnessError
from harness.train import methods as m
from harness.train.batches import Augmenter, batches_per_epoch, build_model
from harness.train.data import SPECS, batch_order
from harness.train.methods import optim_config
from harness.train.models import SplitModel
from harness.workers.common import (Link, answer_pings, cloud_handshake, fail, join_cgroup,
                                    load_case, parse_address, save_parts, tune_socket, warm_up)
from harness.workers.events import COMPUTE, EventLog
from harness.workers.wire import Connection, WireError, decode_activation


def frames(link: Link):
    """Yield training frames until the edge's `end`."""
    while True:
        frame = link.recv_any()
        if frame.kind == "end":
            return
        if frame.kind != "batch":
            raise WireError(f"unexpected '{frame.kind}' frame during training")
        yield frame


def prepare(case: Case) -> SplitModel:
    """Build and warm up the cloud's model before the edge connects (off the clock)."""
    spec = SPECS[case.dataset.name]
    model = build_model(case, spec)
    batch = case.training.batch_size
    if case.method == "cloud":
        warm_up(model.full(), (batch, spec.channels, spec.image_size, spec.image_size))
    else:
        warm_up(model.cloud, (batch, *model.activation_shape))
    return model


def run_hierarchical(case: Case, model: SplitModel, link: Link, hello: dict, case_dir: Path) -> None:
    """Train f_c on arriving activations; nothing is sent back until `done`."""
    opt = m.make_optimizer(model.cloud.parameters(), optim_config(case.training))
    for frame in frames(link):
        step = frame.info.get("step")
        with link.log.span(COMPUTE, step):
            a = decode_activation(frame.tensors["a"], frame.info)
            m.cloud_step(model.cloud, opt, a, frame.tensors["y"])
    save_parts(case_dir, cloud_part=model.cloud)


def run_split(case: Case, model: SplitModel, link: Link, hello: dict, case_dir: Path) -> None:
    """Per batch: forward/backward f_c, step, send dL/da back."""
    opt = m.make_optimizer(model.cloud.parameters(), optim_config(case.training))
    for frame in frames(link):
        step = frame.info.get("step")
        with link.log.span(COMPUTE, step):
            a = decode_activation(frame.tensors["a"], frame.info)
            grad, _ = m.split_cloud_step(model.cloud, opt, a, frame.tensors["y"])
        link.send("grad", step, {"g": grad}, {"step": step})
    save_parts(case_dir, cloud_part=model.cloud)


def run_cloud_only(case: Case, model: SplitModel, link: Link, hello: dict, case_dir: Path) -> None:
    """Train f end to end on uploaded raw images; cache them for later epochs."""
    full = model.full()
    opt = m.make_optimizer(full.parameters(), optim_config(case.training))
    spec = SPECS[case.dataset.name]
    n = int(hello.get("n_train", 0))
    per_epoch = batches_per_epoch(case, n)
    prep = Augmenter(case, spec, per_epoch)
    cache = ImageCache(n)
    for frame in frames(link):
        x, y, idx = frame.tensors["x"], frame.tensors["y"], frame.tensors["i"]
        cache.store(idx, x, y)
        if frame.info.get("train"):
            step = frame.info["step"]
            with link.log.span(COMPUTE, step):
                m.full_step(full, opt, prep(step, x), y)
    step = per_epoch
    for epoch in range(1, case.training.epochs):
        for idx in batch_order(n, case.training.batch_size, case.training.seed, epoch)[:per_epoch]:
            x, y = cache.get(idx)
            with link.log.span(COMPUTE, step, cached=True):
                m.full_step(full, opt, prep(step, x), y)
            step += 1
    save_parts(case_dir, edge_part=model.edge, cloud_part=model.cloud)


class ImageCache:
    """Uploaded samples by index (cloud-only, epoch mode)."""

    def __init__(self, n: int):
        self.n = n
        self.images: torch.Tensor | None = None
        self.labels = torch.full((n,), -1, dtype=torch.long)

    def store(self, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        if idx.dtype != torch.int64 or len(idx) != len(x) or len(y) != len(x):
            raise WireError("upload with inconsistent index/image/label counts")
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise WireError(f"upload index outside [0, {self.n})")
        if self.images is None:
            self.images = torch.empty((self.n, *x.shape[1:]), dtype=x.dtype)
        self.images[idx] = x
        self.labels[idx] = y

    def get(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images is None or (self.labels[idx] < 0).any():
            raise WireError("a later epoch needs samples the edge never uploaded")
        return self.images[idx], self.labels[idx]


PROTOCOLS = {"hierarchical": run_hierarchical, "split": run_split, "cloud": run_cloud_only}


def accept_edge(server: socket.socket, method: str, case_hash: str, log: EventLog,
                deadline: float, handshake_timeout: float) -> tuple[Connection, dict]:
    """Accept connections until one completes the handshake; reject the others."""
    rejected = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HarnessError(f"no valid edge connected in time ({rejected} connection(s) rejected)")
        server.settimeout(remaining)
        try:
            sock, peer = server.accept()
        except socket.timeout:
            continue
        sock.settimeout(handshake_timeout)
        conn = Connection(sock, max_payload=0)     # handshake frames carry no tensors
        try:
            hello = cloud_handshake(conn, method, case_hash)
        except (WireError, OSError, ValueError, KeyError) as exc:
            rejected += 1
            log.point("rejected", peer=str(peer[0]), reason=str(exc)[:200], count=rejected)
            try:
                conn.send("error", info={"message": str(exc)[:200]})
            except WireError:
                pass
            conn.close()
            continue
        log.point("accepted", peer=str(peer[0]), rejected_before=rejected)
        return conn, hello


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="hierbench cloud worker")
    parser.add_argument("--case-dir", required=True, type=Path)
    parser.add_argument("--listen", default="0.0.0.0:0", help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--accept-timeout", type=float, default=300.0)
    parser.add_argument("--idle-timeout", type=float, default=600.0,
                        help="seconds without a byte from the edge before giving up")
    parser.add_argument("--max-payload-mib", type=int, default=512)
    args = parser.parse_args(argv)
    log = None
    try:
        case, case_hash = load_case(args.case_dir)
        if case.method not in PROTOCOLS:
            raise HarnessError(f"method '{case.method}' has no cloud side")
        torch.set_num_threads(case.compute.cloud_threads)
        model = prepare(case)
        log = EventLog(args.case_dir / "cloud.jsonl", "cloud")
        host, port = parse_address(args.listen)
        try:
            server = socket.create_server((host, port), backlog=64)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise HarnessError(f"cannot listen on {host}:{port}: {reason}") from None
        bound = server.getsockname()
        join_cgroup(log)
        print(f"READY {bound[0]}:{bound[1]}", flush=True)
        log.point("start", method=case.method, threads=case.compute.cloud_threads,
                  listen=f"{bound[0]}:{bound[1]}")
        conn, hello = accept_edge(server, case.method, case_hash, log,
                                  time.monotonic() + args.accept_timeout, 10.0)
        server.close()
        conn.sock.settimeout(args.idle_timeout)
        tune_socket(conn.sock)
        conn.max_payload = args.max_payload_mib << 20
        link = Link(conn, log)
        PROTOCOLS[case.method](case, model, link, hello, args.case_dir)
        link.send("done", None)
        answer_pings(conn)             # the edge's closing clock sync (drift)
        link.close()
        log.point("end")
        return 0
    except (HarnessError, WireError, socket.timeout) as exc:
        return fail("cloud", str(exc) or type(exc).__name__, log)
    except KeyboardInterrupt:
        return fail("cloud", "interrupted", log)


if __name__ == "__main__":
    sys.exit(main())
