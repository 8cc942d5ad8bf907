"""Training FLOPs per batch of each block, exit head and part of a split model (torch's counter).

    python -c "from harness.predict.flops import part_flops; print(part_flops('vgg16', 0.25, 'fashion_mnist', 32, 'conv4'))"

Device profiles give sustained GFLOP/s; FLOPs / throughput is the per-batch compute time a
device should take (DESIGN.md section 9). costs.py *times* the same parts on this machine.

What the number is: `torch.utils.flop_counter.FlopCounterMode` counts the matrix-type aten ops
(convolution, mm/addmm/bmm and their backward), a multiply-add as 2 FLOPs. It does not count
bias adds, BatchNorm, ReLU, pooling, residual adds, the loss, nor the optimizer's update: all
elementwise, memory-bound work that a GFLOP/s figure does not describe anyway.

How it is counted: the same blocks and exit heads as costs.py and the workers (models.blocks,
heads.ExitHead of every design at each split, the dataset's input shape and class count), built and run on
torch's `meta` device (shapes only, no arithmetic: a whole model costs milliseconds), in train
mode, at the requested batch size (the counts are exactly linear in it; a test checks).
Backward is seeded with ones at the block's output. A block's backward is the gradient w.r.t.
its weights and its input, except the first block: its input is data, which needs no
gradient, so only its weight gradient is counted, as in training. `input_grad` says how much
of a backward is the input gradient: the hierarchical cloud skips it for its first block
(it receives detached activations), split learning computes it (it sends it down).
"""
from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.errors import HarnessError
from harness.train.data import SPECS
from harness.train.heads import DESIGNS, ExitHead, head_key
from harness.train.models import blocks


def module_flops(module: nn.Module, x: torch.Tensor,
                 input_grad: bool = True) -> tuple[int, int, torch.Tensor]:
    """(forward FLOPs, backward FLOPs, detached output) of one module in train mode on x."""
    module.train()
    x = x.detach().requires_grad_(input_grad)
    with FlopCounterMode(display=False) as counter:
        y = module(x)
    fwd = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        y.backward(torch.ones_like(y))
    return fwd, counter.get_total_flops(), y.detach()


def _costs(module: nn.Module, x: torch.Tensor, input_grad: bool) -> tuple[dict, torch.Tensor]:
    """One block's or head's counts: fwd, bwd, and the input-gradient share of bwd."""
    fwd, bwd, y = module_flops(module, x, input_grad)
    weights_only = module_flops(module, x, False)[1] if input_grad else bwd
    return {"fwd": fwd, "bwd": bwd, "input_grad": bwd - weights_only}, y


@functools.lru_cache(maxsize=None)
def _counted(arch: str, width: float, dataset: str, batch: int) -> dict:
    if dataset not in SPECS:
        raise HarnessError(f"unknown dataset '{dataset}' (known: {', '.join(SPECS)})")
    if batch <= 0:
        raise HarnessError(f"batch size must be > 0, got {batch}")
    spec = SPECS[dataset]
    with torch.device("meta"):
        parts = blocks(arch, width, spec.channels, spec.num_classes)
        x = torch.zeros(batch, spec.channels, spec.image_size, spec.image_size)
        rows, heads = [], {}
        for i, (name, block) in enumerate(parts):
            row, out = _costs(block, x, input_grad=i > 0)
            rows.append({"block": name, **row})
            if i < len(parts) - 1:
                for design in DESIGNS:
                    head = ExitHead(out.shape[1], out.shape[-1], spec.num_classes, design)
                    heads[head_key(name, design)] = _costs(head, out, input_grad=True)[0]
            x = out
    return {"arch": arch, "width": width, "dataset": dataset, "batch_size": batch,
            "counter": "torch.utils.flop_counter.FlopCounterMode", "blocks": rows,
            "heads": heads}


def block_flops(arch: str, width: float, dataset: str, batch: int) -> dict:
    """Forward/backward FLOPs of one batch per block (in order) and per exit head (by split).

    Shape: {"blocks": [{"block", "fwd", "bwd", "input_grad"}, ...],
    "heads": {split: {"fwd", "bwd", "input_grad"}}, plus the arguments. Counted once per
    process (cached); the caller gets its own copy.
    """
    return copy.deepcopy(_counted(arch, width, dataset, batch))


def _part(rows: list[dict]) -> dict:
    """Sum of consecutive rows; input_grad is the part's own input's (inner ones are needed)."""
    fwd, bwd = sum(r["fwd"] for r in rows), sum(r["bwd"] for r in rows)
    return {"fwd": fwd, "bwd": bwd, "input_grad": rows[0]["input_grad"], "total_train": fwd + bwd}


def part_flops(arch: str, width: float, dataset: str, batch: int, split: str,
               head: str = "dgl") -> dict:
    """FLOPs of one batch of the edge part, its exit head (design `head`) and the cloud part
    at `split`.

    edge: the blocks up to and including `split`; head: that split's exit head; cloud: the
    remaining blocks and the final classifier. Each part: {"fwd", "bwd", "input_grad",
    "total_train" = fwd + bwd}; `input_grad` is the share of bwd that is the gradient w.r.t.
    the part's input: 0 for the edge (data), the cloud's dL/da (split learning needs it, the
    hierarchical cloud does not), the head's gradient into the edge.
    """
    counted = _counted(arch, width, dataset, batch)
    names = [row["block"] for row in counted["blocks"]]
    if split not in names[:-1]:
        raise HarnessError(f"unknown split point '{split}' for {arch} "
                           f"(valid: {', '.join(names[:-1])})")
    cut = names.index(split) + 1
    return {"edge": _part(counted["blocks"][:cut]), "head": _part([counted["heads"][head_key(split, head)]]),
            "cloud": _part(counted["blocks"][cut:])}


def target_seconds(flops: float, gflops: float) -> float:
    """Seconds a device sustaining `gflops` GFLOP/s takes for `flops` FLOPs."""
    return flops / (gflops * 1e9)
