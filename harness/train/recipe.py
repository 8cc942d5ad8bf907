"""Learning-rate schedules: the step-by-step learning rate of a training recipe.

    python -c "from harness.train.recipe import lr_at; print(lr_at('onecycle', 0.1, 50, 100, 0.2))"

| schedule   | shape over the run's `total` steps                                          |
|------------|------------------------------------------------------------------------------|
| `constant` | `lr` throughout (warm-up, if any, ramps to it linearly)                      |
| `cosine`   | linear warm-up to `lr`, then half a cosine down to 0 (Loshchilov & Hutter, SGDR) |
| `onecycle` | linear warm-up to `lr`, then linear down to 0 (Smith's one-cycle, as airbench and Myrtle's ResNet-9 train) |

The rate of step t is a pure function of (schedule, lr, t, total, warm-up share), so every
role and process that trains a part computes the same sequence without talking to the other.
"""
from __future__ import annotations

import math

import torch

from harness.catalog import SCHEDULES
from harness.errors import HarnessError


def lr_at(schedule: str, lr: float, step: int, total: int, warmup: float) -> float:
    """Learning rate of 0-based `step` of `total`, warm-up over the first `warmup` share."""
    if schedule not in SCHEDULES:
        raise HarnessError(f"unknown schedule '{schedule}' (known: {', '.join(SCHEDULES)})")
    if total < 1:
        raise HarnessError(f"a schedule needs at least one step, got {total}")
    ramp = int(round(warmup * total))
    if step < ramp:
        return lr * (step + 1) / ramp
    if schedule == "constant":
        return lr
    rest = max(1, total - ramp)
    done = min(1.0, (step - ramp) / rest)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * done))
    return lr * (1.0 - done)


class Scheduled:
    """An optimizer whose learning rate follows a schedule: each `step()` steps the optimizer
    at the current step's rate, then moves to the next step. Only what the step functions use
    (zero_grad, step, param_groups) is exposed."""

    def __init__(self, opt: torch.optim.Optimizer, schedule: str, lr: float, total: int,
                 warmup: float):
        self.opt, self.schedule, self.lr, self.total, self.warmup = opt, schedule, lr, total, warmup
        self.steps = 0
        self._set()

    @property
    def param_groups(self):
        return self.opt.param_groups

    def _set(self) -> None:
        rate = lr_at(self.schedule, self.lr, min(self.steps, self.total - 1), self.total,
                     self.warmup)
        for group in self.opt.param_groups:
            group["lr"] = rate

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.opt.step()
        self.steps += 1
        self._set()
