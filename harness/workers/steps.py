"""The workers' training steps, computed for real: what a paced or unpaced worker runs inside
each compute span (harness.workers.edge and .cloud call them; a device this machine cannot
pace has harness.workers.modelled's instead, with the same calls and no compute).

    python -c "from harness.workers.steps import EdgeSteps, CloudSteps"
"""
from __future__ import annotations

import torch

from harness.train import methods as m
from harness.train.models import SplitModel
from harness.workers.checks import check_finite
from harness.workers.wire import Frame, decode_activation


class EdgeSteps:
    """The edge's training steps, computed for real (a device this machine cannot pace has
    harness.workers.modelled.ModelledSteps instead: same calls, no compute)."""
    fields: dict = {}                  # added to each compute span's record

    def __init__(self, e):
        self.e = e

    def hierarchical(self, opt, step: int, images, y) -> torch.Tensor:
        e = self.e
        handoff, _ = m.hierarchical_edge_step(e.model.edge, e.model.exit_head, opt,
                                              e.prep(step, images).to(e.dev), y.to(e.dev))
        return handoff.activations.cpu()

    def split_forward(self, opt, step: int, images) -> torch.Tensor:
        e = self.e
        return m.split_edge_forward(e.model.edge, opt, e.prep(step, images).to(e.dev))

    def split_backward(self, a: torch.Tensor, grad: torch.Tensor, opt) -> None:
        m.split_edge_backward(a, grad.to(self.e.dev), opt)

    def full(self, full, opt, step: int, images, y) -> None:
        e = self.e
        m.full_step(full, opt, e.prep(step, images).to(e.dev), y.to(e.dev))


def decoded(frame: Frame) -> torch.Tensor:
    """The batch's activation as float32, refused if any value is NaN or infinite."""
    a = decode_activation(frame.tensors["a"], frame.info)
    check_finite(frame, "a", a)
    return a


def on(model: SplitModel) -> torch.device:
    """Where the cloud trains (harness.workers.placement); tensors arrive on the CPU."""
    return next(model.cloud.parameters()).device


class CloudSteps:
    """The cloud's training steps, computed for real (a device this machine cannot pace has
    harness.workers.modelled.ModelledCloudSteps instead: same calls, no compute)."""
    fields: dict = {}                  # added to each compute span's record

    def __init__(self, model: SplitModel):
        self.model, self.dev = model, on(model)

    def hierarchical(self, opt, frame: Frame) -> None:
        m.cloud_step(self.model.cloud, opt, decoded(frame).to(self.dev),
                     frame.tensors["y"].to(self.dev))

    def split(self, opt, frame: Frame) -> torch.Tensor:
        grad, _ = m.split_cloud_step(self.model.cloud, opt, decoded(frame).to(self.dev),
                                     frame.tensors["y"].to(self.dev))
        return grad.cpu()

    def full(self, full, opt, prep, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        m.full_step(full, opt, prep(step, x).to(self.dev), y.to(self.dev))
