"""The runtime model on a time-varying link: capacity integrated over the case's own time.

    python -c "from harness.predict.varying import rates_over; print(rates_over.__doc__)"

A trace-driven direction (harness.emulation.tracelink) offers a different rate every second;
a case that starts at the trace's time zero and lasts T seconds sees, on a link-bound stage,
the trace's mean over [0, T). The model therefore predicts with the profile's mean, takes the
predicted T, and predicts again with each trace's mean over [0, T), a few times (a fixed
point: T depends on the rates it is predicted with). Outages are added as stalls: every method
that sends on the direction waits out the part of each outage that falls inside its run (the
edge's queue of batches absorbs less than one batch; TCP's recovery once the queue drains is
left out). Not modelled: a stop-and-wait transfer smaller than a second sees the rate of its
own second, not the window's mean (split learning on a strongly varying trace is predicted
as if the rate were smooth), and the seconds between a case's launch and its first batch.
"""
from __future__ import annotations

import dataclasses

from harness.emulation.links import WIRE_EFFICIENCY, LinkProfile, daemon_link
from harness.emulation.tracelink import window_mbps
from harness.predict.runtime import LinkRates, Prediction

FIXED_POINT_STEPS = 4
USES = {"hierarchical": ("up",), "split": ("up", "down"), "cloud": ("up",), "edge": ()}


def rates_over(link: LinkProfile, rates: LinkRates, seconds: float) -> LinkRates:
    """`rates` with each trace-driven direction's goodput at its mean over [0, seconds)."""
    out = {}
    for d in ("up", "down"):
        spec = daemon_link(link, d)
        if spec and spec["trace"] and seconds > 0:
            loss = rates.loss_up if d == "up" else rates.loss_down
            mbps = window_mbps(spec, 0.0, seconds)
            out[f"{d}_Bps"] = mbps * 1e6 / 8 * WIRE_EFFICIENCY * (1 - loss)
    return dataclasses.replace(rates, **out)


def stall_s(link: LinkProfile, method: str, seconds: float) -> float:
    """Seconds of outage, on the directions the method sends on, inside [0, seconds)."""
    k = link.trace_scale
    windows = {(s * k, d * k) for direction in USES[method]
               for s, d in link.outage_windows(direction)}
    return sum(max(0.0, min(s + d, seconds) - s) for s, d in windows if s < seconds)


def predict_varying(link: LinkProfile, method: str, run, bbr: bool = True) -> Prediction:
    """`run(rates)` -> Prediction, integrated over the link's time (see the module's doc)."""
    base = LinkRates.from_profile(link, bbr)
    pred = run(base)
    for _ in range(FIXED_POINT_STEPS):
        pred = run(rates_over(link, base, pred.total_s))
    stall = stall_s(link, method, pred.total_s)
    for _ in range(FIXED_POINT_STEPS):       # an outage lengthens the run into later ones
        stall = stall_s(link, method, pred.total_s + stall)
    return dataclasses.replace(pred, total_s=pred.total_s + stall)
