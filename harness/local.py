"""All methods in one process, no network: the reference each distributed run is held against.

    python run_bench.py train --model vgg16 --split conv4 --width 0.25 --epochs 1

Each method gets the same network (same seed), the same batches in the same order and the
same augmentation draws. Wall time covers training only; evaluation runs off the clock.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from harness import methods as m
from harness.config import Case, optim_config
from harness.data import ImageData, augment_generator, batch_order, load_dataset, preprocess
from harness.models import SplitModel, build_split_model


def load_case_data(case: Case) -> tuple[ImageData, ImageData]:
    d = case.dataset
    seed = case.training.seed
    train = load_dataset(d.name, d.root, train=True, subset=d.subset, seed=seed)
    test = load_dataset(d.name, d.root, train=False, subset=d.test_subset, seed=seed)
    return train, test


def build_model(case: Case, data: ImageData) -> SplitModel:
    return build_model_for(case, data.spec)


def build_model_for(case: Case, spec) -> SplitModel:
    """The case's split network for a dataset spec (the cloud has no data, only the spec)."""
    return build_split_model(case.model.arch, case.model.split, width=case.model.width,
                             in_channels=spec.channels, num_classes=spec.num_classes,
                             image_size=spec.image_size, seed=case.training.seed)


def batches_per_epoch(case: Case, n: int) -> int:
    full = n // case.training.batch_size
    cap = case.training.max_batches
    return min(full, cap) if cap else full


def train_batches(data: ImageData, case: Case) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(step, indices, stored images, labels) for every training step, in the shared order."""
    t = case.training
    step = 0
    for epoch in range(t.epochs):
        order = batch_order(len(data), t.batch_size, t.seed, epoch)
        for idx in order[:batches_per_epoch(case, len(data))]:
            yield step, idx, data.images[idx], data.labels[idx]
            step += 1


class Augmenter:
    """Preprocess stored batches in step order with per-epoch seeded augmentation."""

    def __init__(self, case: Case, data_spec, steps_per_epoch: int):
        self.case, self.spec, self.per_epoch = case, data_spec, steps_per_epoch
        self.gen, self.epoch = None, -1

    def __call__(self, step: int, images: torch.Tensor) -> torch.Tensor:
        epoch = step // self.per_epoch
        if epoch != self.epoch:
            self.gen, self.epoch = augment_generator(self.case.training.seed, epoch), epoch
        return preprocess(images, self.spec, self.gen)


def eval_batches(data: ImageData, batch_size: int = 256):
    for i in range(0, len(data), batch_size):
        yield preprocess(data.images[i:i + batch_size], data.spec, None), data.labels[i:i + batch_size]


def _train_hierarchical(model: SplitModel, case: Case, batches, prep) -> None:
    opt_e = m.make_optimizer([*model.edge.parameters(), *model.exit_head.parameters()],
                             optim_config(case.training))
    opt_c = m.make_optimizer(model.cloud.parameters(), optim_config(case.training))
    for step, _, images, y in batches:
        handoff, _ = m.hierarchical_edge_step(model.edge, model.exit_head, opt_e, prep(step, images), y)
        m.cloud_step(model.cloud, opt_c, handoff.activations, handoff.labels)


def _train_split(model: SplitModel, case: Case, batches, prep) -> None:
    opt_e = m.make_optimizer(model.edge.parameters(), optim_config(case.training))
    opt_c = m.make_optimizer(model.cloud.parameters(), optim_config(case.training))
    for step, _, images, y in batches:
        a = m.split_edge_forward(model.edge, opt_e, prep(step, images))
        grad, _ = m.split_cloud_step(model.cloud, opt_c, a, y)
        m.split_edge_backward(a, grad, opt_e)


def _train_full(model: SplitModel, case: Case, batches, prep) -> None:
    full = model.full()
    opt = m.make_optimizer(full.parameters(), optim_config(case.training))
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

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else float("nan")


def run_local(case: Case, train: ImageData, test: ImageData, on_step=None) -> tuple[LocalResult, SplitModel]:
    """Train `case.method` in this process; evaluate both exits off the clock."""
    model = build_model(case, train)
    per_epoch = batches_per_epoch(case, len(train))
    prep = Augmenter(case, train.spec, per_epoch)
    batches = list(train_batches(train, case))
    counted = _counting(batches, on_step)
    # torch's first optimizer construction imports lazily (~1.3 s): pay it off the clock.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    start = time.perf_counter()
    TRAINERS[case.method](model, case, counted, prep)
    wall = time.perf_counter() - start
    head = model.exit_head if case.method == "hierarchical" else None
    acc = m.evaluate(model.edge, model.cloud, head, eval_batches(test))
    samples = len(batches) * case.training.batch_size
    return LocalResult(case.method, acc["final_acc"], acc["edge_exit_acc"], wall, samples,
                       len(batches)), model


def _counting(batches, on_step):
    for item in batches:
        yield item
        if on_step is not None:
            on_step()
