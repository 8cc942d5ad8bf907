"""The keys of a link profile that make it vary over time, validated (harness.emulation.links).

    python -c "from harness.emulation.profilekeys import rate_steps; print(rate_steps([{'mbps': 1, 'seconds': 2}], 'x'))"

`up_trace` / `down_trace` (a Mahimahi file), `up_steps` / `down_steps` (rate steps) and
`outages`; every error is one line naming the field (and the entry).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.fields import check_type, top_mapping
from harness.paths import TOPOLOGIES

MAX_MBPS = 1000.0  # Mininet's TCIntf.bwParamMax: above it Mininet ignores the rate silently
OUTAGE_DIRECTIONS = ("up", "down", "both")


def rate_steps(raw: Any, where: str) -> str:
    """Rate steps [{mbps, seconds}, ...] as 'MBPS:SECONDS,...' (each rate held that many
    whole seconds, repeating after the last); errors name the step."""
    if not isinstance(raw, list) or not raw:
        raise HarnessError(f"{where}: expected a list of {{mbps, seconds}}")
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        top_mapping(item, at, ("mbps", "seconds"), ("mbps", "seconds"))
        mbps = check_type(f"{at}.mbps", item["mbps"], "float")
        seconds = check_type(f"{at}.seconds", item["seconds"], "float")
        if not 0 <= mbps <= MAX_MBPS or seconds < 1 or not float(seconds).is_integer():
            raise HarnessError(f"{at}: mbps must be in [0, {MAX_MBPS:g}] and seconds a whole "
                               f"number >= 1, got {mbps:g} and {seconds:g}")
        out.append(f"{mbps!r}:{int(seconds)}")
    if not any(float(step.split(":")[0]) for step in out):
        raise HarnessError(f"{where}: every step has rate 0 (a link that never delivers)")
    return ",".join(out)


def trace_path(value: Any, where: str, direction: str) -> str:
    """A trace file's path: absolute, or relative to the profile's folder (shipped ones)."""
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise HarnessError(f"{where}: {direction}_trace: expected a trace file's path")
    folder = Path(where).parent if Path(where).suffix in (".yaml", ".yml") else TOPOLOGIES
    path = Path(value) if Path(value).is_absolute() else folder / value
    if not path.is_file():
        raise HarnessError(f"{where}: {direction}_trace: no such file: {path}")
    return str(path.resolve())


def outage_list(raw: Any, where: str) -> tuple:
    """[(start_s, duration_s, direction)] from a list of mappings; errors name the entry."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise HarnessError(f"{where}: outages: expected a list of {{start_s, duration_s, direction}}")
    out = []
    for i, item in enumerate(raw):
        at = f"{where}: outages[{i}]"
        top_mapping(item, at, ("start_s", "duration_s", "direction"), ("start_s", "duration_s"))
        start = check_type(f"{at}.start_s", item["start_s"], "float")
        duration = check_type(f"{at}.duration_s", item["duration_s"], "float")
        direction = item.get("direction", "up")
        if start < 0 or duration <= 0:
            raise HarnessError(f"{at}: start_s must be >= 0 and duration_s > 0")
        if direction not in OUTAGE_DIRECTIONS:
            raise HarnessError(f"{at}.direction: expected one of {', '.join(OUTAGE_DIRECTIONS)}, "
                               f"got {direction!r}")
        out.append((start, duration, direction))
    return tuple(sorted(out))
