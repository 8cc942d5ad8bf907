"""Modelled compute: the steps of a device this machine cannot be (DESIGN.md section 11).

    compute: {cloud_device: a100, pace: true}    # harness.run.virtual decides it per run

A GPU-class cloud is a hundred cores of this machine or more; no dilation reaches it, so its
worker does not train in the timing pass. Each step does no compute and returns tensors of
the real shape and dtype (zeros); the paced span (harness.workers.events) then waits the
step's target, which the runner set to the device's modelled time (training FLOPs / its
sustained rate, x the dilation). Every message keeps its real size, codec and framing and
crosses the real emulated link, so the network half is emulated while the compute half is
simulated. The values matter to no reported figure: a run with a modelled side takes its
accuracy from the accuracy pass (real training, harness.run.accuracy). Each compute span is
recorded with `modelled: true`.
"""
from __future__ import annotations

import torch

MODELLED = {"modelled": True}


class ModelledSteps:
    """The edge's steps for a modelled device (the calls of harness.workers.edge.EdgeSteps)."""
    fields = MODELLED

    def __init__(self, model):
        self.shape = tuple(model.activation_shape)

    def hierarchical(self, opt, step: int, images: torch.Tensor, y) -> torch.Tensor:
        return torch.zeros(images.shape[0], *self.shape)

    def split_forward(self, opt, step: int, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(images.shape[0], *self.shape)

    def split_backward(self, a, grad, opt) -> None:
        return None

    def full(self, full, opt, step: int, images, y) -> None:
        return None


class ModelledCloudSteps:
    """The cloud's steps for a modelled device (the calls of harness.workers.cloud.CloudSteps).
    Frames were checked for shape and dtype on arrival; their values are not used."""
    fields = MODELLED

    def __init__(self, model):
        self.shape = tuple(model.activation_shape)

    def hierarchical(self, opt, frame) -> None:
        return None

    def split(self, opt, frame) -> torch.Tensor:
        return torch.zeros(frame.tensors["y"].shape[0], *self.shape)

    def full(self, full, opt, prep, step: int, x, y) -> None:
        return None
