"""Device profiles: YAML in `topologies/devices/`, validated into frozen dataclasses.

    .venv/bin/python -c "from harness.emulation.devices import load_device; print(load_device('rpi4').describe())"

A device is described by what transfers across host machines (DESIGN.md section 9): a vendor
or architecture fp32 peak and an efficiency assumption, two numbers with a source each.
Sustained training throughput is their product; per-batch time is FLOPs / that throughput.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.config import check_name
from harness.emulation.links import profile_file, read_yaml
from harness.errors import HarnessError
from harness.fields import check_type, top_mapping
from harness.paths import REPO, TOPOLOGIES

DEVICES = TOPOLOGIES / "devices"             # device profiles (YAML), one per file
DEVICE_KINDS = ("edge", "cloud", "any")      # the role a device is meant for
ACCELERATORS = ("cpu", "gpu")
DEVICE_NUMBERS = ("peak_gflops", "efficiency")
DEVICE_KEYS = ("name", "kind", "accelerator", *DEVICE_NUMBERS, "source")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    kind: str                # edge | cloud | any
    accelerator: str         # cpu | gpu
    peak_gflops: float       # fp32 peak, GFLOP/s (10^9 floating-point operations per second)
    efficiency: float        # sustained training throughput / peak, in (0, 1]
    source: dict = field(default_factory=dict, compare=False)  # where each number comes from

    @property
    def sustained_gflops(self) -> float:
        """Sustained training throughput, GFLOP/s: peak x efficiency."""
        return self.peak_gflops * self.efficiency

    @property
    def measured(self) -> bool:
        """Whether its efficiency is a measurement (run_bench.py device-profile writes one),
        not an assumption."""
        return str(self.source.get("efficiency", "")).lower().startswith("measured")

    def to_dict(self) -> dict:
        """Plain data for run directories (includes sustained_gflops and whether measured)."""
        return {**asdict(self), "sustained_gflops": self.sustained_gflops,
                "measured": self.measured}

    def describe(self) -> str:
        """One line: name, role, accelerator, and the arithmetic behind the throughput."""
        return (f"{self.name:<12} {self.kind:<5} {self.accelerator:<5} "
                f"peak {_num(self.peak_gflops)} GFLOP/s x {self.efficiency:.2f} = "
                f"{_num(self.sustained_gflops)} GFLOP/s sustained"
                + ("  (measured)" if self.measured else "  (efficiency ASSUMED, not measured)"))


def device_names(directory: Path = DEVICES) -> list[str]:
    """Names of the device profiles shipped in `topologies/devices/`, sorted."""
    return sorted(p.stem for p in Path(directory).glob("*.yaml"))


def all_devices() -> dict[str, DeviceProfile]:
    """Every shipped device profile, by name, in name order."""
    return {name: load_device(name) for name in device_names()}


def load_device(name_or_path: str | Path) -> DeviceProfile:
    """Load a device by name (`rpi4`) or by path to a .yaml file; errors name the field."""
    path = profile_file(name_or_path, DEVICES, "device profile", device_names())
    where = _shown(path)
    device = parse_device(read_yaml(path, where), where)
    if device.name != path.stem:
        raise HarnessError(f"{where}: name: must equal the file name '{path.stem}', "
                           f"got '{device.name}'")
    return device


def parse_device(raw: Any, where: str = "device") -> DeviceProfile:
    """Validate a device mapping into a DeviceProfile."""
    top_mapping(raw, where, DEVICE_KEYS, DEVICE_KEYS)
    words = {key: check_type(f"{where}: {key}", raw[key], "str")
             for key in ("name", "kind", "accelerator")}
    check_name(words["name"], f"{where}: name")
    for key, allowed in (("kind", DEVICE_KINDS), ("accelerator", ACCELERATORS)):
        if words[key] not in allowed:
            raise HarnessError(f"{where}: {key}: must be one of {', '.join(allowed)}, "
                               f"got {words[key]!r}")
    numbers = {key: check_type(f"{where}: {key}", raw[key], "float") for key in DEVICE_NUMBERS}
    peak, efficiency = numbers["peak_gflops"], numbers["efficiency"]
    if not (math.isfinite(peak) and peak > 0):
        raise HarnessError(f"{where}: peak_gflops: must be > 0, got {peak:g}")
    if not 0 < efficiency <= 1:
        raise HarnessError(f"{where}: efficiency: must be in (0, 1], got {efficiency:g}")
    return DeviceProfile(**words, **numbers, source=_sources(raw["source"], where))


def _sources(source: Any, where: str) -> dict:
    """The `source` map: every number states where it comes from, in a non-empty string."""
    if not isinstance(source, dict):
        raise HarnessError(f"{where}: source: expected a mapping of field -> where the number "
                           "comes from")
    for key in DEVICE_NUMBERS:
        if key not in source:
            raise HarnessError(f"{where}: source.{key}: missing (every number needs a source)")
        if not isinstance(source[key], str) or not source[key].strip():
            raise HarnessError(f"{where}: source.{key}: expected a non-empty string, "
                               f"got {source[key]!r}")
    return dict(source)


def _shown(path: Path) -> str:
    """A profile's path as errors show it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _num(value: float) -> str:
    """GFLOP/s for humans: one decimal at most, no trailing zeros (48, 4.8, 5495)."""
    return f"{round(value, 1):g}"
