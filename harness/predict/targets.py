"""Device profiles turned into per-batch compute times, and what this machine must give for them.

    python run_bench.py list                                      # targets per device and part
    python run_bench.py predict --edge-device rpi4 --cloud-device v100

A device's time for a part is that part's training FLOPs per batch (predict.flops, torch's
counter) divided by the device's sustained GFLOP/s (emulation.devices): a *modelled* number,
labelled so wherever it is printed. This machine's own throughput on the same parts comes from
the timed, cached block costs (predict.costs): the cores a device needs here is its sustained
rate over this machine's rate per core; more cores than the machine has means the device can
only be emulated with time dilation (harness.emulation.dilation, DESIGN.md section 9).
"""
from __future__ import annotations

from harness.emulation.devices import DeviceProfile
from harness.predict.flops import block_flops, part_flops, target_seconds

PARTS = ("edge", "head", "cloud")
# Pacing margin for a device capped at this machine's speed (compute.over_ceiling: cap,
# predict.targets.capped_costs): its targets sit on the machine's limit by construction, and
# at 1.5 the capped A100 cloud of scenarios/devices.yaml overran 39 of 441 steps, its probe
# margin down to 1.02 while the edge computed beside it (2026-12-02).
CAP_MARGIN = 2.0


def part_targets(device: DeviceProfile, arch: str, width: float, dataset: str, batch: int,
                 split: str, head: str = "dgl") -> dict:
    """{part: {"flops": training FLOPs per batch, "target_s": seconds on `device`}}; the
    exit head of design `head`."""
    counted = part_flops(arch, width, dataset, batch, split, head)
    return {part: {"flops": counted[part]["total_train"],
                   "target_s": target_seconds(counted[part]["total_train"], device.sustained_gflops)}
            for part in PARTS}


def host_gflops(measured: dict) -> float:
    """This machine's training GFLOP/s on a whole model: counted FLOPs / timed seconds of one
    batch (forward + backward and SGD step of every block, at the profile's thread count)."""
    counted = block_flops(measured["arch"], measured["width"], measured["dataset"],
                          measured["batch_size"])
    flops = sum(b["fwd"] + b["bwd"] for b in counted["blocks"])
    seconds = sum(b["forward_s"] + b["backward_step_s"] for b in measured["blocks"])
    return flops / seconds / 1e9


def cores_needed(device: DeviceProfile, measured: dict) -> float:
    """CPU cores of this machine that compute as fast as `device` (measured at 1 thread)."""
    return device.sustained_gflops / (host_gflops(measured) / measured["threads"])


def device_costs(measured: dict, device: DeviceProfile) -> dict:
    """A block-cost profile shaped like predict.costs.measure's, with every time modelled as
    FLOPs / the device's sustained rate; the runtime model reads it unchanged (threads 1, so
    no CPU-share slowdown applies). Preprocessing has no FLOP count: this machine's time for
    it is scaled by the ratio of the two throughputs."""
    counted = block_flops(measured["arch"], measured["width"], measured["dataset"],
                          measured["batch_size"])
    rate = device.sustained_gflops

    def seconds(row: dict) -> dict:
        return {"forward_s": target_seconds(row["fwd"], rate),
                "backward_step_s": target_seconds(row["bwd"], rate)}
    assert [b["block"] for b in measured["blocks"]] == [b["block"] for b in counted["blocks"]]
    blocks = [{**timed, **seconds(row)} for timed, row in zip(measured["blocks"], counted["blocks"])]
    return {**measured, "threads": 1, "blocks": blocks,
            "heads": {name: seconds(row) for name, row in counted["heads"].items()},
            "preprocess_s": measured["preprocess_s"] * host_gflops(measured) / rate,
            "machine": f"device profile '{device.name}' (modelled: FLOPs / "
                       f"{rate:g} GFLOP/s sustained)", "statistic": "modelled", "device": device.name}


def capped_costs(device_prof: dict, host_prof: dict, k: float, margin: float) -> dict:
    """A device's modelled costs (device_costs) with every time raised to at least what this
    machine holds as a paced step under dilation k: `margin` x its timed time at its thread
    count (host_prof), / k. A device faster than that (a GPU-class cloud on a CPU host) runs
    capped at this machine's speed; `capped_by` says how much slower the capped whole network
    is than the device's own."""
    floor = margin / k

    def capped(dev: dict, host: dict) -> dict:
        return {key: max(dev[key], floor * host[key]) for key in ("forward_s", "backward_step_s")}
    blocks = [{**dev, **capped(dev, host)}
              for dev, host in zip(device_prof["blocks"], host_prof["blocks"])]
    heads = {name: capped(row, host_prof["heads"][name])
             for name, row in device_prof["heads"].items()}
    preprocess = max(device_prof["preprocess_s"], floor * host_prof["preprocess_s"])

    def whole(prof: dict) -> float:
        return prof["preprocess_s"] + sum(b["forward_s"] + b["backward_step_s"]
                                          for b in prof["blocks"])
    out = {**device_prof, "blocks": blocks, "heads": heads, "preprocess_s": preprocess}
    return {**out, "capped_by": whole(out) / whole(device_prof),
            "machine": f"{device_prof['machine']}, capped at this machine's paced speed "
                       f"under dilation x{k:g}"}
