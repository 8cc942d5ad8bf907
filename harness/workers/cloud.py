"""The cloud worker: listens, authenticates the edge, trains its part on what arrives.

    python -m harness.workers.cloud --case-dir DIR --listen HOST:PORT      # port 0: pick a free one

Prints `READY <host>:<port>` once listening. Handshakes run concurrently with deadlines
(harness.workers.auth); one that fails (bad frame, wrong method, case or secret, too slow) is
rejected and closed and the cloud keeps listening. Off loopback it needs a shared secret
(HIERBENCH_SECRET_FILE or --secret-file) unless told --no-auth. After the handshake every
frame is checked against the case before it is trained on; a bad one ends the run with a
one-line error naming the field, sent to the edge as well.
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
from harness.train.batches import Augmenter, batches_per_epoch, build_model, total_steps
from harness.train.data import SPECS, batch_order
from harness.train.methods import optim_config
from harness.train.models import SplitModel
from harness.workers.auth import (Acceptor, add_secret_options, cloud_handshake, load_secret,
                                  refuse_cli_secret, require_secret)
from harness.workers.checks import check_info, check_range, check_tensors
from harness.workers.common import (CACHE_CHUNK, Link, answer_pings, exit_process,
                                    fail, join_cgroup, load_case, parse_address, save_parts,
                                    tune_socket, warm_up)
from harness.workers.cache import ImageCache
from harness.workers.events import COMPUTE, EventLog
from harness.workers.modelled import ModelledCloudSteps
from harness.workers.steps import CloudSteps
from harness.workers.stop import StopSignal
from harness.workers.placement import torch_device
from harness.workers.wire import Frame, WireError

CODEC_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}
MAX_TRAIN_SAMPLES = 200_000    # twice the largest dataset (Tiny ImageNet, 100,000 samples)


class Batches:
    """What every `batch` frame of this case must be: tensor names, dtypes and shapes, labels
    in [0, classes), finite values, and steps 0, 1, 2, ... within the case's budget."""

    def __init__(self, case: Case, model: SplitModel, n_train: int):
        spec = SPECS[case.dataset.name]
        self.batch, self.classes, self.n, self.codec = (case.training.batch_size,
                                                        spec.num_classes, n_train, case.codec)
        self.cloud_only = case.method == "cloud"
        epochs = 1 if self.cloud_only else case.training.epochs    # cloud-only: uploads once
        self.steps = batches_per_epoch(case, n_train) * epochs
        self.next_step = 0
        self.uploading = False                  # cloud-only: cache uploads have begun
        side, labels = spec.stored_side, (torch.int64, ())
        self.tensors = ({"x": (torch.uint8, (spec.channels, side, side)), "y": labels, "i": labels}
                        if self.cloud_only else
                        {"a": (CODEC_DTYPES[case.codec], tuple(model.activation_shape)), "y": labels})

    def shapes(self, frame: Frame) -> None:
        """Before a payload is read (Connection.check_specs): a batch frame's info and its
        tensors' names, dtypes and shapes, so nothing else is ever allocated."""
        if frame.kind == "batch":
            self._info(frame)
            check_tensors(frame, self.tensors, self._max_batch(frame))

    def activation(self, frame: Frame) -> int:
        """Check a hierarchical/split batch frame (all but the values of `a`); returns its step."""
        self._info(frame)
        step = self._step(frame)
        check_tensors(frame, self.tensors, self.batch)
        check_range(frame, "y", 0, self.classes, "label")
        return step

    def upload(self, frame: Frame) -> int | None:
        """Check a cloud-only upload; returns its step, or None for a cache-only upload."""
        self._info(frame)
        train = frame.info["train"]
        if train and self.uploading:
            raise WireError("batch frame: a training batch after the cache uploads began")
        if not train and "step" in frame.info:
            raise WireError("batch frame: a cache-only upload (train false) carries a step")
        self.uploading = not train
        step = self._step(frame) if train else None
        check_tensors(frame, self.tensors, self._max_batch(frame))
        check_range(frame, "y", 0, self.classes, "label")
        check_range(frame, "i", 0, self.n, "index")
        return step

    def _info(self, frame: Frame) -> None:
        """The info keys and their types; an activation's codec must be the case's."""
        if self.cloud_only:
            check_info(frame, {"train": bool}, {"step": int})
            return
        int8 = {"scale": float, "zero": float} if self.codec == "int8" else {}
        check_info(frame, {"codec": str, "step": int, **int8}, {})
        if frame.info["codec"] != self.codec:
            raise WireError(f"batch frame: codec {frame.info['codec'][:20]!r}, the case has "
                            f"{self.codec!r}")
        if int8 and not frame.info["scale"] > 0:
            raise WireError(f"batch frame: info 'scale' is {frame.info['scale']}, must be > 0")

    def _max_batch(self, frame: Frame) -> int:
        return CACHE_CHUNK if self.cloud_only and not frame.info["train"] else self.batch

    def _step(self, frame: Frame) -> int:
        if "step" not in frame.info:
            raise WireError("batch frame: info 'step' is missing")
        step = frame.info["step"]
        if self.next_step >= self.steps:
            raise WireError(f"batch frame: step {step} beyond the case's {self.steps} steps")
        if step != self.next_step:
            raise WireError(f"batch frame: step {step}, expected {self.next_step}")
        self.next_step += 1
        return step


def hello_check(case: Case):
    """The case's limits on the edge's hello: n_train between one batch and the dataset."""
    subset = case.dataset.subset
    top = min(subset, MAX_TRAIN_SAMPLES) if subset else MAX_TRAIN_SAMPLES
    low = case.training.batch_size

    def check(info: dict) -> None:
        if not low <= info["n_train"] <= top:
            raise WireError(f"hello frame: info 'n_train' is {info['n_train']}, "
                            f"expected {low} to {top}")
    return check


def frames(link: Link):
    """Yield training frames until the edge's `end`."""
    while True:
        frame = link.recv_any()
        if frame.kind == "end":
            check_info(frame, {}, {})
            return
        if frame.kind != "batch":
            raise WireError(f"unexpected '{frame.kind}' frame during training")
        yield frame


def prepare(case: Case) -> SplitModel:
    """Build and warm up the cloud's model before the edge connects (off the clock)."""
    spec = SPECS[case.dataset.name]
    model = build_model(case, spec).to(torch_device(case.compute.cloud_backend,
                                                    "compute.cloud_backend"))
    batch = case.training.batch_size
    if "cloud" in case.compute.modelled:      # no real step to warm up
        return model
    if case.method == "cloud":
        warm_up(model.full(), (batch, spec.channels, spec.image_size, spec.image_size))
    else:
        warm_up(model.cloud, (batch, *model.activation_shape))
    return model


def run_hierarchical(case: Case, model: SplitModel, link: Link, batches: Batches,
                     case_dir: Path, steps: CloudSteps) -> None:
    """Train f_c on arriving activations; nothing is sent back until `done`."""
    opt = m.make_optimizer(model.cloud.parameters(), optim_config(case.training),
                           total_steps(case, batches.n))
    for frame in frames(link):
        step = batches.activation(frame)
        with link.log.span(COMPUTE, step, pace_s=case.compute.pace_for("cloud"), **steps.fields):
            steps.hierarchical(opt, frame)
    save_parts(case_dir, cloud_part=model.cloud)


def run_split(case: Case, model: SplitModel, link: Link, batches: Batches, case_dir: Path,
              steps: CloudSteps) -> None:
    """Per batch: forward/backward f_c, step, send dL/da back."""
    opt = m.make_optimizer(model.cloud.parameters(), optim_config(case.training),
                           total_steps(case, batches.n))
    for frame in frames(link):
        step = batches.activation(frame)
        with link.log.span(COMPUTE, step, pace_s=case.compute.pace_for("cloud"), **steps.fields):
            grad = steps.split(opt, frame)
        link.send("grad", step, {"g": grad}, {"step": step})
    save_parts(case_dir, cloud_part=model.cloud)


def run_cloud_only(case: Case, model: SplitModel, link: Link, batches: Batches,
                   case_dir: Path, steps: CloudSteps) -> None:
    """Train f end to end on uploaded raw images; cache them for later epochs."""
    full = model.full()
    opt = m.make_optimizer(full.parameters(), optim_config(case.training),
                           total_steps(case, batches.n))
    n = batches.n
    per_epoch = batches_per_epoch(case, n)
    prep = Augmenter(case, SPECS[case.dataset.name], per_epoch)
    cache = ImageCache(n)
    stop, stopped = StopSignal(case_dir), False
    for frame in frames(link):
        step = batches.upload(frame)
        x, y = frame.tensors["x"], frame.tensors["y"]
        cache.store(frame.tensors["i"], x, y)
        if step is not None and (stopped or stop.past(step)):  # the timing window is done:
            if not stopped:      # dozens of small uploads may wait in the socket buffers
                link.log.point("stopped", before_step=step, last_step=stop.last)
            stopped = True       # (20 on wifi, 12 s of a 19 s case): checked, not trained
        elif step is not None:
            with link.log.span(COMPUTE, step, pace_s=case.compute.pace_for("cloud"),
                               **steps.fields):
                steps.full(full, opt, prep, step, x, y)
    step = per_epoch
    for epoch in range(1, 1 if stopped else case.training.epochs):
        for idx in batch_order(n, case.training.batch_size, case.training.seed, epoch)[:per_epoch]:
            x, y = cache.get(idx)
            with link.log.span(COMPUTE, step, pace_s=case.compute.pace_for("cloud"), cached=True,
                               **steps.fields):
                steps.full(full, opt, prep, step, x, y)
            step += 1
    save_parts(case_dir, edge_part=model.edge, cloud_part=model.cloud)


PROTOCOLS = {"hierarchical": run_hierarchical, "split": run_split, "cloud": run_cloud_only}


def listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), backlog=64)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise HarnessError(f"cannot listen on {host}:{port}: {reason}") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="hierbench cloud worker", allow_abbrev=False)
    parser.add_argument("--case-dir", required=True, type=Path)
    parser.add_argument("--listen", default="0.0.0.0:0", help="HOST:PORT (port 0: any free port)")
    parser.add_argument("--accept-timeout", type=float, default=300.0)
    parser.add_argument("--idle-timeout", type=float, default=600.0,
                        help="seconds without a byte from the edge before giving up")
    parser.add_argument("--max-payload-mib", type=int, default=512)
    add_secret_options(parser, "listen")
    log = conn = None
    try:
        refuse_cli_secret(argv)
        args = parser.parse_args(argv)
        case, case_hash = load_case(args.case_dir)
        if case.method not in PROTOCOLS:
            raise HarnessError(f"method '{case.method}' has no cloud side")
        secret = load_secret(args.secret_file)
        host, port = parse_address(args.listen)
        require_secret(secret, host, args.no_auth, "listen on")
        torch.set_num_threads(case.compute.cloud_threads)
        model = prepare(case)
        log = EventLog(args.case_dir / "cloud.jsonl", "cloud")
        server = listen(host, port)
        bound = server.getsockname()
        join_cgroup(log)
        print(f"READY {bound[0]}:{bound[1]}", flush=True)
        log.point("start", method=case.method, threads=case.compute.cloud_threads, pid=os.getpid(),
                  listen=f"{bound[0]}:{bound[1]}", auth=secret is not None)
        check = hello_check(case)
        acceptor = Acceptor(server, lambda c, verified: cloud_handshake(
            c, case.method, case_hash, secret, check, verified), log)
        conn, hello = acceptor.wait(time.monotonic() + args.accept_timeout)
        conn.sock.settimeout(args.idle_timeout)
        tune_socket(conn.sock)
        batches = Batches(case, model, hello["n_train"])
        conn.max_payload = args.max_payload_mib << 20
        conn.check_specs = batches.shapes
        link = Link(conn, log)
        steps = (ModelledCloudSteps(model) if "cloud" in case.compute.modelled
                 else CloudSteps(model))
        PROTOCOLS[case.method](case, model, link, batches, args.case_dir, steps)
        link.send("done", None)
        answer_pings(conn)             # the edge's closing clock sync (drift)
        link.close()
        log.point("end")
        return 0
    except socket.timeout:     # a stalled link (an outage longer than this) or a hung peer
        return fail("cloud", f"no progress to or from the edge for {args.idle_timeout:g} s "
                    f"(--idle-timeout): the link stalled or the edge hung", log, conn)
    except (HarnessError, WireError) as exc:
        return fail("cloud", str(exc) or type(exc).__name__, log, conn)
    except KeyboardInterrupt:
        return fail("cloud", "interrupted", log, conn)


if __name__ == "__main__":
    exit_process(main())
