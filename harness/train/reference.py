"""All methods in one process, no network: the reference each distributed run is held against.

    python run_bench.py train --model vgg16 --split conv4 --width 0.25 --epochs 1

Each method gets the same network (same seed), the same batches in the same order and the
same augmentation draws. Wall time covers training only; evaluation runs off the clock.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness.config import Case
from harness.train import methods as m
from harness.train.batches import (Augmenter, batches_per_epoch, build_model, eval_batches,
                                   train_batches)
from harness.train.data import ImageData
from harness.train.methods import optim_config
from harness.train.models import SplitModel


def _train_hierarchical(model: SplitModel, case: Case, batches, prep, total: int | None = None) -> None:
    opt_e = m.make_optimizer([*model.edge.parameters(), *model.exit_head.parameters()],
                             optim_config(case.training), total)
    opt_c = m.make_optimizer(model.cloud.parameters(), optim_config(case.training), total)
    for step, _, images, y in batches:
        handoff, _ = m.hierarchical_edge_step(model.edge, model.exit_head, opt_e, prep(step, images), y)
        m.cloud_step(model.cloud, opt_c, handoff.activations, handoff.labels)


def _train_split(model: SplitModel, case: Case, batches, prep, total: int | None = None) -> None:
    opt_e = m.make_optimizer(model.edge.parameters(), optim_config(case.training), total)
    opt_c = m.make_optimizer(model.cloud.parameters(), optim_config(case.training), total)
    for step, _, images, y in batches:
        a = m.split_edge_forward(model.edge, opt_e, prep(step, images))
        grad, _ = m.split_cloud_step(model.cloud, opt_c, a, y)
        m.split_edge_backward(a, grad, opt_e)


def _train_full(model: SplitModel, case: Case, batches, prep, total: int | None = None) -> None:
    full = model.full()
    opt = m.make_optimizer(full.parameters(), optim_config(case.training), total)
    for step, _, images, y in batches:
        m.full_step(full, opt, prep(step, images), y)


TRAINERS: dict[str, Callable] = {"hierarchical": _train_hierarchical, "split": _train_split,
                                 "cloud": _train_full, "edge": _train_full}


@dataclass
class LocalResult:
    method: str
    final_acc: float
    edge_exit_acc: float | None
    wall_s: float
    samples: int
    steps: int
    curve: list[dict] = field(default_factory=list)   # {step, final_acc, edge_exit_acc}

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else float("nan")


def run_local(case: Case, train: ImageData, test: ImageData, on_step=None,
              curve_every: int = 0) -> tuple[LocalResult, SplitModel]:
    """Train `case.method` in this process; evaluate both exits off the clock: at the end, and
    with `curve_every` also before the first batch and after every `curve_every` batches
    (evaluation changes no weight, statistic or random draw: the updates are the same)."""
    model = build_model(case, train.spec)
    per_epoch = batches_per_epoch(case, len(train))
    prep = Augmenter(case, train.spec, per_epoch)
    batches = list(train_batches(train, case))
    head = model.exit_head if case.method == "hierarchical" else None
    curve, off_clock = [], [0.0]

    def evaluate(step: int) -> dict:
        began = time.perf_counter()
        with torch.no_grad():
            acc = m.evaluate(model.edge, model.cloud, head, eval_batches(test))
        off_clock[0] += time.perf_counter() - began
        if curve_every:
            curve.append({"step": step, **acc})
        return acc

    def after(step: int) -> None:
        if on_step is not None:
            on_step()
        if curve_every and step % curve_every == 0 and step < len(batches):
            evaluate(step)
    if curve_every:
        evaluate(0)
    counted = _counting(batches, after)
    # torch's first optimizer construction imports lazily (~1.3 s): pay it off the clock.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    start = time.perf_counter()
    TRAINERS[case.method](model, case, counted, prep, len(batches))
    wall = time.perf_counter() - start - off_clock[0]
    acc = evaluate(len(batches))
    samples = len(batches) * case.training.batch_size
    return LocalResult(case.method, acc["final_acc"], acc["edge_exit_acc"], wall, samples,
                       len(batches), curve), model


def _counting(batches, after):
    """The batches, `after(n)` called once the trainer is done with the n-th (1-based)."""
    for n, item in enumerate(batches, 1):
        yield item
        after(n)
