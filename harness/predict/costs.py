"""Per-block compute costs of a model on this machine, measured once and cached.

    python run_bench.py predict --model vgg16 --width 0.25

For each block and each exit head (at every separation point): forward seconds and
backward+optimizer-step seconds for one batch, medians over repetitions after warm-up, with
the torch thread count given. Cached per machine (CPU model, torch version) under
~/.cache/hierbench/profiles/ so sweeps do not re-measure.

A profile timed while the process did not get its core (other work beside it, a CPU quota,
the hypervisor's steal) would be this machine's load, cached as its speed: every pacing
target, dilation and prediction after it would inherit it (seen: a batch-32 VGG-16 profile
timed 7.5x slower than the batch-64 one, which drove `dilation: auto` to x5 for a device
that needs 0.4 core). So each profile records the CPU time the process got over the wall
time it spent (`cpu_share`); under `FULL_SHARE` it is timed again, up to `TRIES` times, and
the best kept; still under it, that profile is used by this run only (it is this machine's
load now, which slows this run's real compute too) and never cached, with a warning. A cached
profile without the figure (an older one) or under the share is timed again.
"""
from __future__ import annotations

import hashlib
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from harness.files import write_json
from harness.machine import cpu_model
from harness.paths import cache_dir
from harness.train.data import SPECS, preprocess
from harness.train.heads import DESIGNS, ExitHead, head_key
from harness.train.models import blocks

WARMUP, REPEATS = 2, 5
FULL_SHARE = 0.85     # CPU seconds per wall second while timing: a core of its own
TRIES = 3
_UNCACHED: dict = {}  # profiles timed without a core, per process: used by this run only


def machine_key() -> str:
    """What a cached profile is valid for: this host, its CPU model and the torch version."""
    return f"{platform.node()}|{cpu_model()}|torch {torch.__version__}"


def _median_time(fn) -> float:
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_module(module: torch.nn.Module, x: torch.Tensor, loss_fn=None) -> tuple[float, float, torch.Tensor]:
    """(forward s, backward+SGD step s, output) of one module on input x."""
    opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9) \
        if any(True for _ in module.parameters()) else None
    x = x.detach().requires_grad_(True)
    with torch.no_grad():
        out = module(x)

    def forward():
        module(x)

    def backward_step():
        y = module(x)
        loss = loss_fn(y) if loss_fn else (y * torch.ones_like(y)).sum()
        loss.backward()
        if opt:
            opt.step()
            opt.zero_grad(set_to_none=True)

    fwd = _median_time(forward)
    both = _median_time(backward_step)
    return fwd, max(both - fwd, 0.0), out


def measure(arch: str, width: float, dataset: str, batch_size: int, threads: int) -> dict:
    """Profile every block, every exit head, preprocessing and the loss, for one batch."""
    spec = SPECS[dataset]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    wall, cpu = time.perf_counter(), time.process_time()
    parts = blocks(arch, width, spec.channels, spec.num_classes)
    side = spec.stored_side
    stored = torch.randint(0, 256, (batch_size, spec.channels, side, side), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    prep_s = _median_time(lambda: preprocess(stored, spec, gen if spec.augment else None))
    x = preprocess(stored, spec, None)
    labels = torch.randint(0, spec.num_classes, (batch_size,))
    rows, heads = [], {}
    for i, (name, block) in enumerate(parts):
        block.train()
        last = i == len(parts) - 1
        loss_fn = (lambda y: F.cross_entropy(y, labels)) if last else None
        fwd, bwd, out = _time_module(block, x, loss_fn)
        rows.append({"block": name, "forward_s": fwd, "backward_step_s": bwd,
                     "out_bytes_per_sample": int(out[0].numel() * 4) if not last else 0})
        if not last:
            for design in DESIGNS:
                head = ExitHead(out.shape[1], out.shape[-1], spec.num_classes, design)
                h_fwd, h_bwd, _ = _time_module(head, out, lambda y: F.cross_entropy(y, labels))
                heads[head_key(name, design)] = {"forward_s": h_fwd, "backward_step_s": h_bwd}
        x = out
    return {"arch": arch, "width": width, "dataset": dataset, "batch_size": batch_size,
            "threads": threads, "machine": machine_key(), "preprocess_s": prep_s,
            "blocks": rows, "heads": heads, "warmup": WARMUP, "repeats": REPEATS,
            "statistic": "median",
            "cpu_share": (time.process_time() - cpu) / (time.perf_counter() - wall)}


def load_or_measure(arch: str, width: float, dataset: str, batch_size: int, threads: int = 1,
                    refresh: bool = False) -> dict:
    """The cached profile for this machine, measuring it first if needed."""
    key = json.dumps([machine_key(), arch, width, dataset, batch_size, threads, sorted(DESIGNS)])
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir() / "profiles" / f"{arch}-{name}.json"
    if path.exists() and not refresh:
        cached = json.loads(path.read_text())
        if cached.get("cpu_share", 0) >= FULL_SHARE:
            return cached
    if name in _UNCACHED and not refresh:
        return _UNCACHED[name]
    tries = []
    while len(tries) < TRIES and (not tries or tries[-1]["cpu_share"] < FULL_SHARE):
        tries.append(measure(arch, width, dataset, batch_size, threads))
    prof = max(tries, key=lambda t: t["cpu_share"])
    shares = ", ".join(f"{t['cpu_share']:.0%}" for t in tries)
    if prof["cpu_share"] < FULL_SHARE:     # this machine's load now, not its speed: not cached
        print(f"warning: profiling {arch} (width {width:g}, batch {batch_size}): the process "
              f"got {shares} of a core while timing ({len(tries)} tries): the best is used for "
              f"this run only, not cached; its costs are {1 / prof['cpu_share'] - 1:.0%} above "
              f"an unshared core's (what runs beside it now slows this run's real compute too)",
              file=sys.stderr)
        _UNCACHED[name] = prof
        return prof
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, prof, indent=1)
    return prof
