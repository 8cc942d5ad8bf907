"""Link profiles: YAML in `topologies/`, validated into frozen dataclasses, turned into tc params.

    .venv/bin/python -c "from harness.emulation.links import load_profile; print(load_profile('3g'))"

"up" is edge -> cloud, "down" is cloud -> edge. Each delay applies to its own direction only.
`jitter_ms` and `loss_pct` apply to the up direction; the optional `down_jitter_ms` and
`down_loss_pct` (default 0) to the down direction, which carries split learning's gradients and
every TCP acknowledgement. Each impairment is set on one side only: TCLink would otherwise
put it on both interfaces and double it over a round trip.
`link_params` is the only place that turns a profile into per-interface numbers.

Time-varying links (issue: time-varying links): `up_trace` / `down_trace` name a Mahimahi
trace (a path relative to the profile's own folder, or absolute), or `up_steps` /
`down_steps` list rate steps ([{mbps, seconds}], repeating), in place of `up_mbps` /
`down_mbps`, which then hold the mean frame rate (`harness.emulation.tracelink`), and
`outages` lists windows {start_s, duration_s, direction: up | down | both}, seconds from the
start of each case (and of each calibration). A direction with a trace or an outage is served
by its receiver's delay daemon (the link and its queue); HTB on the sender only caps it at
`TRACE_HTB_MBPS`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config import Scenario, check_name, link_is_path
from harness.errors import HarnessError
from harness.fields import check_type, top_mapping
from harness.paths import TOPOLOGIES
from harness.emulation.profilekeys import MAX_MBPS, outage_list, rate_steps, trace_path
from harness.emulation.tracelink import steps_mean_mbps, trace_mean_mbps

# TCP payload per Ethernet frame that HTB counts (MSS 1448 with timestamps, 1514 on the wire):
# goodput over a shaped link is this fraction of its configured rate.
WIRE_EFFICIENCY = 1448 / 1514
MSS_B = 1448                      # TCP payload per segment (MSS with timestamps)
INITIAL_WINDOW_B = 10 * MSS_B     # Linux's initial congestion window: 10 segments
NUMBERS = ("up_mbps", "down_mbps", "up_delay_ms", "down_delay_ms", "jitter_ms", "loss_pct",
           "queue_packets")
OPTIONAL_KEYS = {"down_jitter_ms": 0.0, "down_loss_pct": 0.0}     # absent: no impairment down
VARYING_KEYS = ("up_trace", "down_trace", "up_steps", "down_steps", "outages")
KEYS = ("name",) + NUMBERS + tuple(OPTIONAL_KEYS) + VARYING_KEYS + ("source",)
TRACE_HTB_MBPS = 1000.0           # a trace-driven direction's sender cap (the daemon is the link)


@dataclass(frozen=True)
class LinkProfile:
    name: str
    up_mbps: float           # edge -> cloud rate, Mbit/s (10^6 bit/s, link layer)
    down_mbps: float         # cloud -> edge rate, Mbit/s
    up_delay_ms: float       # one-way delay edge -> cloud, ms
    down_delay_ms: float     # one-way delay cloud -> edge, ms
    jitter_ms: float         # uniform +- jitter on the up delay, ms (packet order is kept)
    loss_pct: float          # random loss on the up direction, percent of packets
    queue_packets: int       # bottleneck queue per direction, packets
    down_jitter_ms: float = 0.0   # uniform +- jitter on the down delay, ms
    down_loss_pct: float = 0.0    # random loss on the down direction, percent of packets
    up_trace: str | None = None   # Mahimahi trace file of the up direction (up_mbps: its mean)
    down_trace: str | None = None
    up_steps: str | None = None   # rate steps 'MBPS:SECONDS,...', repeating (up_mbps: their mean)
    down_steps: str | None = None
    outages: tuple = ()           # (start_s, duration_s, direction) from each case's start
    trace_scale: float = 1.0      # time dilation applied to traces and outages
    source: dict = field(default_factory=dict, compare=False)  # where each number comes from

    def varying(self, direction: str) -> bool:
        """Whether a direction ("up"/"down") is served by the delay daemon's trace link."""
        return self.schedule(direction) is not None or any(
            o[2] in (direction, "both") for o in self.outages)

    def schedule(self, direction: str) -> str | None:
        """The direction's trace file or rate steps, None at a fixed rate."""
        return getattr(self, f"{direction}_trace") or getattr(self, f"{direction}_steps")

    @property
    def time_varying(self) -> bool:
        """Either direction is served by a trace link (a trace, or outages)."""
        return self.varying("up") or self.varying("down")

    def outage_windows(self, direction: str) -> list[tuple[float, float]]:
        """(start_s, duration_s) of the outages on a direction, undilated."""
        return [(o[0], o[1]) for o in self.outages if o[2] in (direction, "both")]

    @property
    def rtt_ms(self) -> float:
        """Round-trip propagation delay, ms (no queueing, no serialization)."""
        return self.up_delay_ms + self.down_delay_ms

    def to_dict(self) -> dict:
        """Plain data for run directories (includes rtt_ms)."""
        return {**asdict(self), "rtt_ms": self.rtt_ms}


def list_profiles(directory: Path = TOPOLOGIES) -> list[str]:
    """Names of the profiles shipped in `topologies/`, sorted."""
    return sorted(p.stem for p in Path(directory).glob("*.yaml"))


def profile_file(name_or_path: str | Path, folder: Path, what: str, known: list[str]) -> Path:
    """The YAML file of a profile given by name (a file in `folder`) or by path (what
    `link_is_path` says is one); errors name it and list the `known` names."""
    text = str(name_or_path)
    if link_is_path(text):
        path = Path(text)
        if "\0" in text or not path.is_file():
            raise HarnessError(f"{what} {text}: no such file (known: {', '.join(known)})")
        return path
    check_name(text, what)
    path = Path(folder) / f"{text}.yaml"
    if not path.is_file():
        raise HarnessError(f"{what} '{text}': unknown (known: {', '.join(known)})")
    return path


def read_yaml(path: Path, where: str) -> Any:
    """A YAML file's content; a syntax error is one line naming `where`."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise HarnessError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_profile(name_or_path: str | Path) -> LinkProfile:
    """Load a profile by name (`3g`) or by path to a .yaml file; errors name the field.

    Results of a profile go under its own `name` field (`links/<name>/`, case labels), so that
    name must be one safe path component, whichever way the profile was given."""
    path = profile_file(name_or_path, TOPOLOGIES, "link profile", list_profiles())
    profile = parse_profile(read_yaml(path, str(path)), str(path))
    check_name(profile.name, f"{path}: name")
    return profile


def parse_profile(raw: Any, where: str = "profile") -> LinkProfile:
    """Validate a profile mapping into a LinkProfile."""
    traced = {d for d in ("up", "down") for how in ("trace", "steps")
              if isinstance(raw, dict) and f"{d}_{how}" in raw}
    required = [key for key in KEYS if key not in OPTIONAL_KEYS and key not in VARYING_KEYS
                and key not in {f"{d}_mbps" for d in traced}]
    top_mapping(raw, where, KEYS, required)
    if not isinstance(raw["name"], str) or not raw["name"].strip():
        raise HarnessError(f"{where}: name: expected a non-empty string")
    if not isinstance(raw["source"], dict):
        raise HarnessError(f"{where}: source: expected a mapping of field -> where the number comes from")
    varying = {}
    for d in traced:
        given = [key for key in (f"{d}_mbps", f"{d}_trace", f"{d}_steps") if key in raw]
        if len(given) > 1:
            raise HarnessError(f"{where}: {given[1]}: give one of {d}_mbps, {d}_trace or "
                               f"{d}_steps, not {' and '.join(given)}")
        raw = dict(raw)
        if f"{d}_trace" in raw:
            varying[f"{d}_trace"] = trace_path(raw[f"{d}_trace"], where, d)
            raw[f"{d}_mbps"] = trace_mean_mbps(varying[f"{d}_trace"])
        else:
            varying[f"{d}_steps"] = rate_steps(raw[f"{d}_steps"], f"{where}: {d}_steps")
            raw[f"{d}_mbps"] = steps_mean_mbps(varying[f"{d}_steps"])
    values = {key: check_type(f"{where}: {key}", raw.get(key, OPTIONAL_KEYS.get(key)), "float")
              for key in (*NUMBERS, *OPTIONAL_KEYS)}
    _check_ranges(values, where)
    values["queue_packets"] = int(values["queue_packets"])
    return LinkProfile(name=raw["name"], source=dict(raw["source"]), **values, **varying,
                       outages=outage_list(raw.get("outages"), where))


def _check_ranges(v: dict, where: str) -> None:
    rules = [
        ("up_mbps", 0 < v["up_mbps"] <= MAX_MBPS, f"must be > 0 and <= {MAX_MBPS:g}"),
        ("down_mbps", 0 < v["down_mbps"] <= MAX_MBPS, f"must be > 0 and <= {MAX_MBPS:g}"),
        ("up_delay_ms", v["up_delay_ms"] >= 0, "must be >= 0"),
        ("down_delay_ms", v["down_delay_ms"] >= 0, "must be >= 0"),
        ("jitter_ms", v["jitter_ms"] >= 0, "must be >= 0"),
        ("loss_pct", 0 <= v["loss_pct"] < 100, "must be in [0, 100)"),
        ("down_jitter_ms", v["down_jitter_ms"] >= 0, "must be >= 0"),
        ("down_loss_pct", 0 <= v["down_loss_pct"] < 100, "must be in [0, 100)"),
        ("queue_packets", v["queue_packets"] >= 1, "must be >= 1"),
        ("queue_packets", float(v["queue_packets"]).is_integer(), "must be a whole number"),
    ]
    for key, ok, message in rules:
        if not ok:
            raise HarnessError(f"{where}: {key}: {message}, got {v[key]:g}")


def link_params(profile: LinkProfile, netem: bool) -> tuple[dict, dict]:
    """Per-interface settings (edge-eth0, cloud-eth0) for a profile; the only such conversion.

    Each side is {"tc": TCIntf kwargs, "pfifo_limit": packets or None, "input": impairments
    for that host's INPUT chain or None}. Rates shape egress: up on edge, down on cloud.
    With netem, delay/jitter/loss ride the sender's netem (egress); without it, they go on
    the receiver's INPUT chain (NFQUEUE delay, iptables loss) and the queue is a pfifo.
    """
    p = profile
    netem = netem and not p.time_varying   # traces need the daemon
    # Offloads off so a packet is a packet: one loss draw, one queue slot, one delay entry.
    offloads = {"gro": False, "txo": False, "rxo": False}
    edge = {"tc": {"bw": p.up_mbps, **offloads}, "pfifo_limit": None, "input": None}
    cloud = {"tc": {"bw": p.down_mbps, **offloads}, "pfifo_limit": None, "input": None}
    if netem:
        edge["tc"].update(delay=f"{p.up_delay_ms:g}ms", max_queue_size=p.queue_packets)
        cloud["tc"].update(delay=f"{p.down_delay_ms:g}ms", max_queue_size=p.queue_packets)
        for side, jitter, loss in ((edge, p.jitter_ms, p.loss_pct),
                                   (cloud, p.down_jitter_ms, p.down_loss_pct)):
            if jitter > 0:
                side["tc"]["jitter"] = f"{jitter:g}ms"
            if loss > 0:
                side["tc"]["loss"] = loss
        return edge, cloud
    for side in (edge, cloud):
        side["pfifo_limit"] = p.queue_packets
    # Up direction lands on the cloud's INPUT chain, down on the edge's.
    cloud["input"] = {"delay_ms": p.up_delay_ms, "jitter_ms": p.jitter_ms, "loss_pct": p.loss_pct,
                      "link": daemon_link(p, "up")}
    edge["input"] = {"delay_ms": p.down_delay_ms, "jitter_ms": p.down_jitter_ms,
                     "loss_pct": p.down_loss_pct, "link": daemon_link(p, "down")}
    for side, d in ((edge, "up"), (cloud, "down")):    # the sender's HTB only caps a daemon link
        if p.varying(d):
            side["tc"]["bw"] = TRACE_HTB_MBPS
    return edge, cloud


def daemon_link(p: LinkProfile, direction: str) -> dict | None:
    """What the receiving delay daemon needs to be the link of a direction (None: HTB is)."""
    if not p.varying(direction):
        return None
    trace, steps = getattr(p, f"{direction}_trace"), getattr(p, f"{direction}_steps")
    rate = getattr(p, f"{direction}_mbps") * p.trace_scale      # undilated: `scale` dilates
    return {"trace": trace, "steps": steps, "rate_mbps": None if trace or steps else rate,
            "scale": p.trace_scale, "queue_packets": p.queue_packets,
            "outages": p.outage_windows(direction)}


def resolve_links(scenario: Scenario) -> tuple[Scenario, dict]:
    """Load each `links` entry (a profile name or a profile file's path); cases, directories
    and labels then carry the profile's own name. Returns (scenario, name -> profile)."""
    profiles, given = {}, {}
    for entry in scenario.links:
        profile = load_profile(entry)
        if profile.name in profiles:
            raise HarnessError(f"links: {given[profile.name]!r} and {entry!r} are both "
                               f"profile '{profile.name}' (results go under its name)")
        profiles[profile.name], given[profile.name] = profile, entry
    return dataclasses.replace(scenario, links=tuple(profiles)), profiles
