"""A device's sustained training rate, measured on the device itself: a profile whose numbers
are a measurement, not an assumption.

    python run_bench.py device-profile --out topologies/devices/my_laptop.yaml

Device profiles (harness.emulation.devices) carry a vendor peak and an efficiency; the
efficiency is an assumption wherever nobody measured it (DESIGN.md section 11). This times
whole-network training steps of each model on this machine (its CPU, or its GPU with
`--backend cuda`) after a warm-up, divides the training FLOPs of a step (torch's counter,
harness.predict.flops) by the median step time, and writes a profile whose `peak_gflops` is
that sustained rate (the slowest model's) with `efficiency: 1.0`, each with the measurement
as its source: a user with a real Jetson or GPU replaces the assumption with a figure.
"""
from __future__ import annotations

import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from harness.errors import HarnessError
from harness.machine import cpu_model
from harness.predict.flops import block_flops
from harness.train.data import SPECS
from harness.train.models import blocks


def step_rate(arch: str, width: float, dataset: str, batch: int, steps: int, warmup: int,
              device: torch.device) -> dict:
    """{gflops, step_s, flops}: one model's sustained training rate on `device`."""
    spec = SPECS[dataset]
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[m for _, m in blocks(arch, width, spec.channels,
                                                      spec.num_classes)]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, spec.channels, spec.image_size, spec.image_size, device=device)
    y = torch.randint(0, spec.num_classes, (batch,), device=device)
    times = []
    for i in range(warmup + steps):
        sync(device)
        began = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - began)
    counted = block_flops(arch, width, dataset, batch)
    flops = sum(b["fwd"] + b["bwd"] for b in counted["blocks"])
    step_s = statistics.median(times)
    return {"gflops": flops / step_s / 1e9, "step_s": step_s, "flops": flops}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_profile(name: str, archs: list[str], width: float, dataset: str, batch: int,
                    steps: int, warmup: int, backend: str, threads: int) -> dict:
    """A device profile (plain data, as topologies/devices/*.yaml) from measured rates."""
    if backend.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError(f"--backend {backend}: no CUDA device on this machine")
    if steps < 3 or warmup < 1 or batch < 2:
        raise HarnessError("device-profile: needs --steps >= 3, --warmup >= 1, --batch >= 2")
    torch.set_num_threads(threads)
    device = torch.device(backend)
    rates = {arch: step_rate(arch, width, dataset, batch, steps, warmup, device) for arch in archs}
    slowest = min(rates.values(), key=lambda r: r["gflops"])
    what = (torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"{cpu_model()}, {threads} torch thread(s)")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    each = "; ".join(f"{a} {r['gflops']:.2f} GFLOP/s ({r['step_s'] * 1e3:.1f} ms/step)"
                     for a, r in rates.items())
    how = (f"measured {stamp} by run_bench.py device-profile on {what} ({platform.node()}): "
           f"median of {steps} training steps after {warmup} warm-up, batch {batch}, "
           f"{dataset}, width {width:g}: {each}; the slowest model's rate")
    return {"name": name, "kind": "any", "accelerator": "gpu" if device.type == "cuda" else "cpu",
            "peak_gflops": round(slowest["gflops"], 3), "efficiency": 1.0,
            "source": {"peak_gflops": how, "efficiency": "measured: peak_gflops is already "
                                                        "the sustained training rate"},
            "measured": {a: {k: round(v, 6) for k, v in r.items()} for a, r in rates.items()}}


def write_profile(doc: dict, out: Path) -> Path:
    """The profile as YAML (the `measured` details as a comment-free extra file beside it)."""
    from harness.emulation.devices import parse_device
    profile = {k: v for k, v in doc.items() if k != "measured"}
    parse_device(profile, str(out))                     # what load_device will accept
    if out.exists():
        raise HarnessError(f"{out} exists: give another --out (a profile is never overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(profile, sort_keys=False))
    return out
