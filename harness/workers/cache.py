"""Cloud-only's cache of uploaded samples: epoch mode uploads each sample once and later
epochs train from here.

    python -c "from harness.workers.cache import ImageCache"
"""
from __future__ import annotations

import torch

from harness.workers.wire import WireError


class ImageCache:
    """Uploaded samples by index (cloud-only, epoch mode)."""

    def __init__(self, n: int):
        self.n = n
        self.images: torch.Tensor | None = None
        self.labels = torch.full((n,), -1, dtype=torch.long)

    def store(self, idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        """Keep a checked upload (Batches.upload: counts, dtypes and indices are valid)."""
        if self.images is None:
            self.images = torch.empty((self.n, *x.shape[1:]), dtype=x.dtype)
        self.images[idx] = x
        self.labels[idx] = y

    def get(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.images is None or (self.labels[idx] < 0).any():
            raise WireError("a later epoch needs samples the edge never uploaded")
        return self.images[idx], self.labels[idx]
