"""Generated data of a real dataset's shape, for timing only (`dataset.missing: shaped`).

    dataset: {name: cifar10, root: null, missing: shaped}

Runtime does not depend on pixel values: every step computes on tensors of the same shape and
every message has the same size whatever the images show. So a timing pass can run on uint8
noise of the dataset's stored shape, class count and split sizes, and its runtimes are the
real dataset's. Accuracy cannot: a run on shaped data trains nothing worth measuring, so its
accuracy is reported as not measured (harness.run.accuracy.NOT_MEASURED), never as a number.
With `dataset.root` given, the real dataset is loaded and `missing` has no effect.
"""
from __future__ import annotations

import torch

from harness.catalog import SHAPEABLE_TEST_SAMPLES as TEST_SAMPLES
from harness.errors import HarnessError
from harness.train.data import SPECS, ImageData

WHY = "no dataset given: generated {name}-shaped data (timing only)"


def shaped_dataset(name: str, train: bool, seed: int = 0) -> ImageData:
    """uint8 noise in the stored layout of `name` (N x C x H x W) and uniform labels, with
    the standard split's sample count; seeded, so both workers and every run agree."""
    if name not in TEST_SAMPLES:
        raise HarnessError(f"dataset.missing: shaped: no fixed shape for '{name}' "
                           f"(shapeable: {', '.join(TEST_SAMPLES)})")
    spec = SPECS[name]
    n = spec.train_samples if train else TEST_SAMPLES[name]
    side = spec.stored_side
    g = torch.Generator().manual_seed(seed * 2 + (0 if train else 1))
    images = torch.randint(0, 256, (n, spec.channels, side, side), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, spec.num_classes, (n,), generator=g)
    return ImageData(name, images, labels, spec)


def why_not_measured(name: str) -> str:
    return WHY.format(name=name)
