"""The runtime model on a time-varying link: capacity integrated over the case's own time.

    python -c "from harness.predict.varying import rates_over; print(rates_over.__doc__)"

A trace-driven direction (harness.emulation.tracelink) offers a different rate every second;
a case that starts at the trace's time zero and lasts T seconds sees, on a link-bound stage,
the trace's mean over [0, T). The model therefore predicts with the profile's mean, takes the
predicted T, and predicts again with each trace's mean over [0, T), a few times (a fixed
point: T depends on the rates it is predicted with). Outages are added as stalls: every method
that sends on the direction waits out each outage that starts before its run would end (the
edge's queue of batches absorbs less than one batch; TCP's recovery once the queue drains,
measured at 0.5-2.2 s after a 10 s or 60 s outage on 3g, is left out). Not modelled: a stop-and-wait transfer smaller than a second sees the rate of its
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
    """Seconds a run of `seconds` (without outages) waits out the outages on the directions
    the method sends on: each one that starts before the run, so lengthened, would have
    ended lasts in full (the method still has data to send when it starts)."""
    k, stall = link.trace_scale, 0.0
    for start, duration in sorted({(s * k, d * k) for direction in USES[method]
                                   for s, d in link.outage_windows(direction)}):
        if start < seconds + stall:
            stall += max(0.0, start + duration - max(start, 0.0))
    return stall


def predict_varying(link: LinkProfile, method: str, run, bbr: bool = True) -> Prediction:
    """`run(rates)` -> Prediction, integrated over the link's time (see the module's doc)."""
    base = LinkRates.from_profile(link, bbr)
    pred = run(base)
    for _ in range(FIXED_POINT_STEPS):
        pred = run(rates_over(link, base, pred.total_s))
    return dataclasses.replace(pred, total_s=pred.total_s + stall_s(link, method, pred.total_s))
