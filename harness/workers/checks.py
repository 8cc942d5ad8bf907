"""Frame content checks shared by both workers and scripts/fuzz_cloud.py: names, dtypes,
shapes, ranges, finiteness and info keys, each error naming the frame and the field.

    python -c "from harness.workers.checks import check_tensors"
"""
from __future__ import annotations

import torch

from harness.workers.wire import DTYPE_NAMES, Frame, WireError


def check_tensors(frame: Frame, expected: dict[str, tuple[torch.dtype, tuple]],
                  max_batch: int) -> int:
    """Exactly the expected tensor names, dtypes and per-sample shapes, one batch dimension
    in [1, max_batch]; returns that batch size. Errors name the frame and the tensor."""
    where = f"{frame.kind} frame"
    if set(frame.tensors) != set(expected):
        raise WireError(f"{where}: tensors {sorted(frame.tensors)}, expected {sorted(expected)}")
    batch = None
    for name, (dtype, sample) in expected.items():
        t = frame.tensors[name]
        if t.dtype != dtype:
            raise WireError(f"{where}: tensor '{name}' is {DTYPE_NAMES[t.dtype]}, "
                            f"expected {DTYPE_NAMES[dtype]}")
        if t.dim() != 1 + len(sample) or tuple(t.shape[1:]) != tuple(sample):
            want = ", ".join(["B", *map(str, sample)])
            raise WireError(f"{where}: tensor '{name}' has shape {list(t.shape)}, expected [{want}]")
        if batch is None:
            batch = t.shape[0]
            if not 1 <= batch <= max_batch:
                raise WireError(f"{where}: tensor '{name}' has batch dimension {batch}, "
                                f"expected 1 to {max_batch}")
        elif t.shape[0] != batch:
            raise WireError(f"{where}: tensor '{name}' has batch dimension {t.shape[0]}, "
                            f"the others {batch}")
    return batch


def check_finite(frame: Frame, name: str, t: torch.Tensor | None = None) -> None:
    """No NaN or infinity in a floating tensor (default: the frame's tensor `name`)."""
    t = frame.tensors[name] if t is None else t
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise WireError(f"{frame.kind} frame: tensor '{name}' has non-finite values")


def check_range(frame: Frame, name: str, lo: int, hi: int, what: str = "value") -> None:
    """Every element of integer tensor `name` in [lo, hi)."""
    t = frame.tensors[name]
    if t.numel() == 0:
        return
    low, high = int(t.min()), int(t.max())
    bad = low if low < lo else high if high >= hi else None
    if bad is not None:
        raise WireError(f"{frame.kind} frame: tensor '{name}' has {what} {bad} "
                        f"outside [{lo}, {hi})")


def check_info(frame: Frame, required: dict[str, type], optional: dict[str, type]) -> None:
    """Exactly the required info keys, perhaps some optional ones, each of its JSON type."""
    where = f"{frame.kind} frame"
    for key in frame.info:
        if key not in required and key not in optional:
            raise WireError(f"{where}: unexpected info key {key[:40]!r}")
    for key, kind in {**required, **optional}.items():
        if key not in frame.info:
            if key in required:
                raise WireError(f"{where}: info '{key}' is missing")
        elif not _is(frame.info[key], kind):
            raise WireError(f"{where}: info '{key}' must be {kind.__name__}, "
                            f"got {str(frame.info[key])[:40]!r}")


def _is(value, kind: type) -> bool:
    """JSON typing: a bool is not a number, an int is a valid float."""
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)
