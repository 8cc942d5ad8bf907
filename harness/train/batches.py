"""The shared data path of every method and role: the case's data, model, batches, augmentation.

    python -c "from harness.train.batches import batches_per_epoch"

The edge worker, the cloud worker and the one-process reference all build the network and
walk the batches through these functions, so every method sees the same network (same
seed), the same batches in the same order and the same augmentation draws.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from harness.config import Case
from harness.train.data import (DatasetSpec, ImageData, augment_generator, batch_order,
                                load_dataset, preprocess, take_subset)
from harness.train.models import SplitModel, build_split_model


def load_case_data(case: Case) -> tuple[ImageData, ImageData]:
    """The case's training and test splits (seeded subsets when the scenario asks; generated
    data of the dataset's shape when it has no root and `dataset.missing: shaped`)."""
    return load_split(case, train=True), load_split(case, train=False)


def load_split(case: Case, train: bool) -> ImageData:
    """One split of the case's data (load_case_data)."""
    d, seed = case.dataset, case.training.seed
    subset = d.subset if train else d.test_subset
    if d.root is None and d.missing == "shaped":
        from harness.train.shaped import shaped_dataset
        return take_subset(shaped_dataset(d.name, train, seed), subset, seed)
    return load_dataset(d.name, d.root, train=train, subset=subset, seed=seed)


def build_model(case: Case, spec: DatasetSpec) -> SplitModel:
    """The case's split network for a dataset spec (the cloud has no data, only the spec)."""
    return build_split_model(case.model.arch, case.model.split, width=case.model.width,
                             in_channels=spec.channels, num_classes=spec.num_classes,
                             image_size=spec.image_size, seed=case.training.seed,
                             head=case.model.exit_head)


def total_steps(case: Case, n: int) -> int:
    """Training steps of the whole case on n samples: what a schedule runs over."""
    return batches_per_epoch(case, n) * case.training.epochs


def batches_per_epoch(case: Case, n: int) -> int:
    """Full batches per epoch of n samples, capped by `training.max_batches`."""
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


def augments(case: Case, spec: DatasetSpec) -> bool:
    """Whether the case's training augments: `training.augment`, else the dataset's default."""
    return spec.augment if case.training.augment is None else bool(case.training.augment)


class Augmenter:
    """Preprocess stored batches in step order with per-epoch seeded augmentation."""

    def __init__(self, case: Case, data_spec, steps_per_epoch: int):
        self.case, self.spec, self.per_epoch = case, data_spec, steps_per_epoch
        self.gen, self.epoch = None, -1
        self.on = augments(case, data_spec)

    def __call__(self, step: int, images: torch.Tensor) -> torch.Tensor:
        if not self.on:
            return preprocess(images, self.spec, None)
        epoch = step // self.per_epoch
        if epoch != self.epoch:
            self.gen, self.epoch = augment_generator(self.case.training.seed, epoch), epoch
        return preprocess(images, self.spec, self.gen)


def eval_batches(data: ImageData, batch_size: int = 256):
    """Preprocessed, unaugmented test batches."""
    for i in range(0, len(data), batch_size):
        yield preprocess(data.images[i:i + batch_size], data.spec, None), data.labels[i:i + batch_size]
