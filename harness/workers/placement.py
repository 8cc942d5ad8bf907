"""Where a worker trains: this machine's CPU (the default, emulated devices) or a real CUDA
device (`compute.edge_backend` / `compute.cloud_backend`: cpu, cuda or cuda:N).

    python -c "from harness.workers.placement import torch_device; print(torch_device('cpu', 'x'))"

A worker on `cuda` trains its part on that GPU: its compute is the real device's, neither
paced nor shared out nor dilated (harness.config refuses dilation with a CUDA worker, and the
runner gives it no pace target). Only the compute moves: batches arrive and activations and
gradients leave through the CPU, as bytes on the wire. `.to(device)` of a CPU tensor to the
CPU returns the tensor itself, so the CPU path is the code it was.
"""
from __future__ import annotations

import torch

from harness.config import backend_ok
from harness.errors import HarnessError


def check_backend(value, where: str) -> str:
    """A backend's spelling: cpu, cuda or cuda:N (a one-line error naming `where` otherwise)."""
    if not backend_ok(value):
        raise HarnessError(f"{where}: expected cpu, cuda or cuda:N, got {value!r}")
    return value


def require_backend(backend: str, where: str) -> None:
    """HarnessError unless this machine can train on `backend` (CUDA: present and usable)."""
    check_backend(backend, where)
    if backend == "cpu":
        return
    if not torch.cuda.is_available():
        raise HarnessError(f"{where}: {backend} asked for, but this machine has no usable CUDA "
                           f"device (torch {torch.__version__}: torch.cuda.is_available() is "
                           f"False); use cpu, or run this worker on a machine with a GPU")
    index = int(backend.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise HarnessError(f"{where}: {backend} asked for, but this machine has "
                           f"{torch.cuda.device_count()} CUDA device(s)")


def require_backends(compute) -> None:
    """Both roles' backends of a ComputeConfig (before a run starts anything)."""
    for role in ("edge", "cloud"):
        require_backend(getattr(compute, f"{role}_backend"), f"compute.{role}_backend")


def torch_device(backend: str, where: str) -> torch.device:
    """The torch device a worker trains on, refused by name if this machine lacks it."""
    require_backend(backend, where)
    return torch.device(backend)
