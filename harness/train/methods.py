"""The four training methods as pure step functions: no sockets, no processes, no clocks.

    python -m pytest tests/test_methods.py

| method       | edge                                   | up        | down  | cloud                  |
|--------------|----------------------------------------|-----------|-------|------------------------|
| hierarchical | a=f_e(x); CE(h_e(a),y); step f_e, h_e  | a.detach, y | -   | CE(f_c(a),y); step f_c |
| split        | a=f_e(x); a.backward(g); step f_e      | a, y      | dL/da | CE(f_c(a),y); step f_c |
| cloud        | -                                      | x raw, y  | -     | f end to end           |
| edge         | f end to end                           | -         | -     | -                      |

The edge and cloud roles (in one process, or in two over the wire) call these same functions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.catalog import OPTIMIZERS
from harness.errors import HarnessError
from harness.train.recipe import Scheduled


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "constant"        # harness.train.recipe
    warmup: float = 0.0               # share of the run's steps spent warming up


def optim_config(t) -> OptimConfig:
    """The optimizer settings of a scenario's `training` section."""
    return OptimConfig(t.optimizer, t.lr, t.momentum, t.weight_decay, t.nesterov, t.schedule,
                       t.warmup)


def make_optimizer(params, cfg: OptimConfig, total_steps: int | None = None):
    """SGD with momentum (default; Nesterov's when asked) or Adam over `params`; with a
    schedule or a warm-up, stepping it also moves the learning rate along the schedule over
    `total_steps` (harness.train.recipe)."""
    params = list(params)
    if cfg.name == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay,
                              nesterov=cfg.nesterov and cfg.momentum > 0)
    elif cfg.name == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise HarnessError(f"unknown optimizer '{cfg.name}' (known: {', '.join(OPTIMIZERS)})")
    if cfg.schedule == "constant" and cfg.warmup == 0:
        return opt
    if not total_steps:
        raise HarnessError(f"schedule '{cfg.schedule}' needs the run's number of steps")
    return Scheduled(opt, cfg.schedule, cfg.lr, total_steps, cfg.warmup)


@dataclass(frozen=True)
class Handoff:
    """Everything the hierarchical edge hands to the cloud for one batch: nothing else exists."""
    activations: torch.Tensor      # detached, no autograd history
    labels: torch.Tensor


def hierarchical_edge_step(edge: nn.Module, head: nn.Module, opt: torch.optim.Optimizer,
                           x: torch.Tensor, y: torch.Tensor) -> tuple[Handoff, float]:
    """Train f_e and h_e on the exit loss alone; return the detached activations and labels."""
    opt.zero_grad(set_to_none=True)
    a = edge(x)
    loss = F.cross_entropy(head(a), y)
    loss.backward()
    opt.step()
    return Handoff(a.detach(), y), loss.item()


def cloud_step(cloud: nn.Module, opt: torch.optim.Optimizer, a: torch.Tensor,
               y: torch.Tensor) -> float:
    """Hierarchical cloud: train f_c on received activations; nothing flows back."""
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(cloud(a), y)
    loss.backward()
    opt.step()
    return loss.item()


def split_edge_forward(edge: nn.Module, opt: torch.optim.Optimizer,
                       x: torch.Tensor) -> torch.Tensor:
    """Split learning, edge half 1: forward f_e keeping the graph for the returned gradient."""
    opt.zero_grad(set_to_none=True)
    return edge(x)


def split_cloud_step(cloud: nn.Module, opt: torch.optim.Optimizer, a: torch.Tensor,
                     y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Split learning, cloud: loss on f_c(a), step f_c, return dL/da for the edge."""
    opt.zero_grad(set_to_none=True)
    a = a.detach().requires_grad_(True)
    loss = F.cross_entropy(cloud(a), y)
    loss.backward()
    opt.step()
    return a.grad.detach(), loss.item()


def split_edge_backward(a: torch.Tensor, grad: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    """Split learning, edge half 2: backpropagate the cloud's gradient through f_e and step."""
    if grad.shape != a.shape:
        raise HarnessError(f"gradient shape {tuple(grad.shape)} != activation shape {tuple(a.shape)}")
    a.backward(grad.to(a.dtype))
    opt.step()


def full_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
              y: torch.Tensor) -> float:
    """Cloud-only or edge-only: one end-to-end step of the unsplit network."""
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


@torch.no_grad()
def evaluate(edge: nn.Module, cloud: nn.Module | None, head: nn.Module | None,
             batches) -> dict[str, float | None]:
    """Accuracy of the final exit f_c(f_e(x)) and of the edge exit h_e(f_e(x)), in eval mode."""
    modules = [m for m in (edge, cloud, head) if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    final = early = total = 0
    try:
        for x, y in batches:
            a = edge(x)
            if cloud is not None:
                final += (cloud(a).argmax(1) == y).sum().item()
            if head is not None:
                early += (head(a).argmax(1) == y).sum().item()
            total += len(y)
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    return {"final_acc": final / total if cloud is not None and total else None,
            "edge_exit_acc": early / total if head is not None and total else None}
