"""Time dilation: run a case k times slower so that compute faster than this machine's cores
can be emulated (DESIGN.md section 9; DieCast, NSDI 2008).

    python -c "from harness.emulation.dilation import dilate_profile; \
from harness.emulation.links import load_profile; print(dilate_profile(load_profile('3g'), 4))"

Under a factor k every link rate is divided by k, every one-way delay and jitter multiplied by
k, queues stay the same in packets and loss the same in percent; each host's CPU share is its
virtual speed (compute.*_cores, or a device's calibrated share) divided by k; the timing
window's time cap is multiplied by k. Everything then happens k times slower in real time,
and every time the harness reports is divided by k (labelled "dilated xk"). Gains and the
model's relative errors are ratios of two times measured under the same k: they need no
correction.

What does not dilate (kernel timers in real time): TCP's minimum RTO (200 ms), delayed ACKs
(up to 40 ms), the initial RTO (1 s), BBR's 10 s min-RTT window and probe intervals. They
matter only when a link loses packets or idles long enough to restart slow start; keep k small
enough that the dilated RTT stays well above them and validate with the same case at k = 1 and
k > 1. The workers' handshake deadlines are sized for a round trip of at most
`MAX_RTT_S`; a factor that would stretch a link's RTT past it is refused.
"""
from __future__ import annotations

import dataclasses
import math

from harness.emulation.links import LinkProfile
from harness.errors import HarnessError

HOST_CORES_LEFT = 0.5          # cores kept back from the hosts: delay daemons, harness
FACTOR_STEP = 0.1              # 'auto' rounds the factor needed up to this


def dilate_profile(profile: LinkProfile, k: float) -> LinkProfile:
    """The profile as configured under factor k: rates / k, delays and jitter x k."""
    if k == 1:
        return profile
    return dataclasses.replace(
        profile, up_mbps=profile.up_mbps / k, down_mbps=profile.down_mbps / k,
        up_delay_ms=profile.up_delay_ms * k, down_delay_ms=profile.down_delay_ms * k,
        jitter_ms=profile.jitter_ms * k, down_jitter_ms=profile.down_jitter_ms * k,
        trace_scale=profile.trace_scale * k,
        source={**profile.source, "dilation": f"time dilation x{k:g} of profile "
                                              f"'{profile.name}' (rates / k, delays x k)"})


def factor_needed(cores: dict, threads: dict, ncpu: int, margin: float = 1.0) -> float:
    """The smallest k at which hosts of `cores` virtual cores (role -> cores) fit: each within
    its torch thread count (with `margin` x its cores: paced compute needs its targets that
    much above its real steps, harness.run.pacing), together within the machine less
    HOST_CORES_LEFT."""
    room = ncpu - HOST_CORES_LEFT
    if room <= 0:
        raise HarnessError(f"time dilation: this machine has {ncpu} core(s); "
                           f"{HOST_CORES_LEFT} must stay free for the emulation itself")
    return max([1.0, sum(cores.values()) / room,
                *(margin * cores[role] / threads[role] for role in cores)])


def round_up(need: float) -> float:
    """`need` rounded up to a whole number of FACTOR_STEPs (1.248 -> 1.3)."""
    return round(math.ceil(need / FACTOR_STEP - 1e-9) * FACTOR_STEP, 6)


def choose_factor(cores: dict, threads: dict, ncpu: int, max_factor: float,
                  why: dict | None = None, margin: float = 1.0) -> float:
    """The smallest k in steps of FACTOR_STEP that fits (factor_needed rounded up); above
    `max_factor` the scenario is refused, naming what needs it (`why`: role -> how its cores
    were found). Not rounded to a whole k: a run lasts k times its virtual time (measured: the
    paper regime at x1.3, 42.4 min; rounded up to x2, 63.1 min, every runtime within 0.13%)."""
    k = round_up(factor_needed(cores, threads, ncpu, margin))
    if k > max_factor:
        parts = [f"{role} {cores[role]:.3g} core(s){f' ({why[role]})' if why and role in why else ''}"
                 for role in cores]
        raise HarnessError(f"time dilation x{k:g} would be needed ({', '.join(parts)} on "
                           f"{ncpu} cores, {HOST_CORES_LEFT:g} kept free), above "
                           f"compute.max_dilation = {max_factor:g}: raise it, or choose "
                           f"slower devices")
    return k


def check_rtt(profile: LinkProfile, k: float) -> None:
    """Refuse a factor that stretches the link's round trip past the handshake's budget."""
    from harness.workers.auth import MAX_RTT_S      # the workers' constant (imports torch)
    if profile.rtt_ms * k / 1e3 > MAX_RTT_S:
        raise HarnessError(f"compute.dilation: x{k:g} makes link '{profile.name}' a "
                           f"{profile.rtt_ms * k:.0f} ms RTT, above the {MAX_RTT_S * 1e3:.0f} ms "
                           f"the workers' handshake allows: use a smaller factor")


def label(k: float) -> str:
    """'' at k = 1, else ' (dilated xk: times / k)' for lines that print times."""
    return "" if k == 1 else f" (dilated x{k:g}: times / {k:g})"


def link_label(k: float) -> str:
    """'' at k = 1, else what a calibration line's numbers are: the link as set up."""
    return "" if k == 1 else f" (as set up under dilation x{k:g}: rates / {k:g}, delays x {k:g})"
