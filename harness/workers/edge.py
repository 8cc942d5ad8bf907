"""The edge worker: holds the data, trains its part, talks to the cloud per the method.

    python -m harness.workers.edge --case-dir DIR --connect HOST:PORT

One small function per method; each shares the pure step functions of harness.train.methods.
With a shared secret (HIERBENCH_SECRET_FILE or --secret-file) the edge and the cloud prove it
to each other before any data moves (harness.workers.auth); off loopback one is required
unless told --no-auth. Frames from the cloud are checked (a gradient must match the
activation it answers and be finite); a bad one ends the run with a one-line error.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import torch

from harness.config import Case
from harness.errors import HarnessError
from harness.train import methods as m
from harness.train.batches import (Augmenter, batches_per_epoch, build_model, load_split,
                                    total_steps, train_batches)
from harness.train.data import ImageData
from harness.train.methods import optim_config
from harness.workers.auth import add_secret_options, edge_handshake, load_secret, refuse_cli_secret, require_secret
from harness.workers.checks import check_finite, check_info, check_tensors
from harness.workers.common import (CACHE_CHUNK, Link, Sender, clock_sync, connect,
                                    exit_process, fail, join_cgroup, load_case, parse_address,
                                    save_parts, warm_up)
from harness.workers.events import COMPUTE, EventLog
from harness.workers.modelled import ModelledSteps
from harness.workers.steps import EdgeSteps
from harness.workers.stop import StopSignal
from harness.workers.placement import torch_device
from harness.workers.wire import Connection, Frame, WireError, encode_activation


class Edge:
    """State shared by the protocol functions: the case, data, model and event log."""

    def __init__(self, case: Case, case_dir: Path, data: ImageData, log: EventLog):
        self.case, self.case_dir, self.data, self.log = case, case_dir, data, log
        self.dev = torch_device(case.compute.edge_backend, "compute.edge_backend")
        self.model = build_model(case, data.spec).to(self.dev)
        self.per_epoch = batches_per_epoch(case, len(data))
        self.prep = Augmenter(case, data.spec, self.per_epoch)
        self.optim = optim_config(case.training)
        self.total = total_steps(case, len(data))
        self.stop = StopSignal(case_dir)
        self.stopped = False
        modelled = "edge" in case.compute.modelled
        self.steps = ModelledSteps(self.model) if modelled else EdgeSteps(self)
        spec, batch = data.spec, case.training.batch_size
        shape = (batch, spec.channels, spec.image_size, spec.image_size)
        if modelled:                   # no real step to warm up
            pass
        elif case.method == "hierarchical":
            warm_up(torch.nn.Sequential(self.model.edge, self.model.exit_head), shape)
        elif case.method == "split":
            warm_up(self.model.edge, shape)
        elif case.method == "edge":
            warm_up(self.model.full(), shape)
        else:                          # cloud-only: nothing to train, only the import to pay
            warm_up(torch.nn.Linear(1, 1), (1, 1))

    def batches(self, epochs: int | None = None):
        """The case's batches in the shared order; ends early once the runner asks (STOP)."""
        for item in train_batches(self.data, self.case):
            if epochs is not None and item[0] >= epochs * self.per_epoch:
                return
            if self.stop_requested(item[0]):
                return
            yield item

    def stop_requested(self, step: int) -> bool:
        """True once the runner's STOP (workers.stop) has no use for `step`: the edge then
        starts no new batch, drops what it queued past it, and finishes normally."""
        if not self.stopped and self.stop.past(step):
            self.stopped = True
            self.log.point("stopped", before_step=step, last_step=self.stop.last,
                           reason=self.stop.reason)
        return self.stopped


def run_hierarchical(e: Edge, link: Link) -> None:
    """Train f_e and the exit head locally; stream detached activations through a queue."""
    model = e.model
    opt = m.make_optimizer([*model.edge.parameters(), *model.exit_head.parameters()], e.optim, e.total)
    sender = Sender(link, e.case.training.queue_size, e.stop.past)
    for step, _, images, y in e.batches():
        with e.log.span(COMPUTE, step, pace_s=e.case.compute.pace_for("edge"), **e.steps.fields):
            a, meta = encode_activation(e.steps.hierarchical(opt, step, images, y), e.case.codec)
        sender.put(step, {"a": a, "y": y}, {**meta, "step": step})
    sender.close()
    finish(e, link, edge_part=model.edge, exit_head=model.exit_head)


def run_split(e: Edge, link: Link) -> None:
    """Sequential split learning: activations up, wait for dL/da, backward, next batch."""
    model = e.model
    opt = m.make_optimizer(model.edge.parameters(), e.optim, e.total)
    expected = {"g": (torch.float32, tuple(model.activation_shape))}

    def grad_shapes(f: Frame) -> None:             # Connection.check_specs: before the payload
        if f.kind == "grad":
            check_tensors(f, expected, e.case.training.batch_size)

    link.conn.check_specs = grad_shapes
    for step, _, images, y in e.batches():
        with e.log.span(COMPUTE, step, pace_s=e.case.compute.pace_for("edge", "forward"),
                        phase="forward", **e.steps.fields):
            a = e.steps.split_forward(opt, step, images)
            wire_a, meta = encode_activation(a.detach().cpu(), e.case.codec)
        link.send("batch", step, {"a": wire_a, "y": y}, {**meta, "step": step})
        grad = checked_grad(link.recv_expect("grad", step), a, step)
        with e.log.span(COMPUTE, step, pace_s=e.case.compute.pace_for("edge", "backward"),
                        phase="backward", **e.steps.fields):
            e.steps.split_backward(a, grad, opt)
    finish(e, link, edge_part=model.edge)


def checked_grad(frame: Frame, a: torch.Tensor, step: int) -> torch.Tensor:
    """dL/da for the activation it answers: its step, float32, a's shape, finite."""
    check_info(frame, {"step": int}, {})
    if frame.info["step"] != step:
        raise WireError(f"grad frame: step {frame.info['step']}, expected {step}")
    batch = check_tensors(frame, {"g": (torch.float32, tuple(a.shape[1:]))}, a.shape[0])
    if batch != a.shape[0]:
        raise WireError(f"grad frame: tensor 'g' has batch dimension {batch}, "
                        f"the activation {a.shape[0]}")
    check_finite(frame, "g")
    return frame.tensors["g"]


def run_cloud_only(e: Edge, link: Link) -> None:
    """Upload stored images (their own dtype) and labels; the cloud trains everything.

    Epoch mode uploads each sample once: epoch 0's batches as they are trained, then (when
    more epochs follow) every sample not yet sent, for the cloud's cache.
    """
    sender = Sender(link, e.case.training.queue_size, e.stop.past)
    sent = torch.zeros(len(e.data), dtype=torch.bool)
    for step, idx, images, y in e.batches(epochs=1):
        sender.put(step, {"x": images, "y": y, "i": idx}, {"step": step, "train": True},
                   raw_bytes=images.numel() * images.element_size())
        sent[idx] = True
    if e.case.training.epochs > 1 and not e.stopped:
        rest = (~sent).nonzero().flatten()
        for chunk in rest.split(CACHE_CHUNK) if len(rest) else ():   # split() of none: one empty
            images = e.data.images[chunk]
            sender.put(None, {"x": images, "y": e.data.labels[chunk], "i": chunk},
                       {"train": False}, raw_bytes=images.numel() * images.element_size())
    sender.close()
    finish(e, link)


def run_edge_only(e: Edge) -> None:
    """Train the whole network on the edge; no connection."""
    full = e.model.full()
    opt = m.make_optimizer(full.parameters(), e.optim, e.total)
    for step, _, images, y in e.batches():
        with e.log.span(COMPUTE, step, pace_s=e.case.compute.pace_for("edge"), **e.steps.fields):
            e.steps.full(full, opt, step, images, y)
    save_parts(e.case_dir, edge_part=e.model.edge, cloud_part=e.model.cloud)


def finish(e: Edge, link: Link, **parts) -> None:
    """Tell the cloud we are done, wait until it has trained on everything, save our parts;
    then measure the clock offset again (drift between two machines)."""
    link.send("end", None)
    check_info(link.recv_expect("done"), {}, {})
    save_parts(e.case_dir, **parts)
    clock_sync(link, "end")


PROTOCOLS = {"hierarchical": run_hierarchical, "split": run_split, "cloud": run_cloud_only}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="hierbench edge worker", allow_abbrev=False)
    parser.add_argument("--case-dir", required=True, type=Path)
    parser.add_argument("--connect", help="cloud HOST:PORT (not needed for method 'edge')")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--idle-timeout", type=float, default=600.0,
                        help="seconds without a byte from the cloud before giving up")
    add_secret_options(parser, "connect")
    log = conn = None
    try:
        refuse_cli_secret(argv)
        args = parser.parse_args(argv)
        case, case_hash = load_case(args.case_dir)
        secret = None
        if case.method != "edge":
            if not args.connect:
                raise HarnessError(f"method {case.method} needs --connect HOST:PORT")
            secret = load_secret(args.secret_file)
            require_secret(secret, parse_address(args.connect)[0], args.no_auth, "connect to")
        torch.set_num_threads(case.compute.edge_threads)
        data = load_split(case, train=True)
        log = EventLog(args.case_dir / "edge.jsonl", "edge")
        edge = Edge(case, args.case_dir, data, log)
        join_cgroup(log)
        log.point("start", method=case.method, threads=case.compute.edge_threads, pid=os.getpid())
        if case.method == "edge":
            run_edge_only(edge)
        else:
            sock = connect(args.connect, args.connect_timeout)
            sock.settimeout(args.idle_timeout)
            conn = Connection(sock)
            link = Link(conn, log)
            edge_handshake(link, case.method, case_hash, {"n_train": len(data)}, secret)
            PROTOCOLS[case.method](edge, link)
            link.close()
        log.point("end")
        return 0
    except socket.timeout:     # a stalled link (an outage longer than this) or a hung peer
        return fail("edge", f"no progress to or from the cloud for {args.idle_timeout:g} s "
                    f"(--idle-timeout): the link stalled or the cloud hung", log, conn)
    except (HarnessError, WireError) as exc:
        return fail("edge", str(exc) or type(exc).__name__, log, conn)
    except KeyboardInterrupt:
        return fail("edge", "interrupted", log, conn)


if __name__ == "__main__":
    exit_process(main())
