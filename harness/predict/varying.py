"""The runtime model on a time-varying link: capacity integrated over the case's own time.

    python -c "from harness.predict.varying import rates_over; print(rates_over.__doc__)"

A trace-driven direction (harness.emulation.tracelink) offers a different rate every second;
a case starts at the trace's time zero (its first step).

Pipelined methods (hierarchical, cloud-only): a link-bound stage that lasts T seconds sees
the trace's mean over [0, T). The model predicts with the profile's mean, takes the predicted
T, and predicts again with each trace's mean over [0, T), a few times (a fixed point: T
depends on the rates it is predicted with). Outages are added as stalls: every such method
that sends on the direction waits out each outage that starts before its run would end (the
edge's queue of batches absorbs less than one batch; TCP's recovery once the queue drains,
measured at 0.5-2.2 s after a 10 s or 60 s outage on 3g, is left out).

Split learning (stop and wait): a mean would be wrong, as each message sees the rate of its
own seconds (a message sent into a fade takes longer, and nothing overlaps it). Its steps are
laid on the link's timeline one after another (`split_timeline`): each transfer ends when the
trace's opportunities from its start carry its frames (outages included: none are offered
then), then under cubic/reno a message after an idle gap pays the slow-start restart of
harness.predict.transfer (at the trace's mean rate), then the PROBE_RTT stretch and loss
recovery. Measured on 3g_trace
(one run, 40 messages): 33 of them within 0.01 s of this, the others up to 0.45 s longer.

Not modelled: the seconds between a case's launch and its first batch, and how far after
its first step the link's time zero was set (schedule.json records it).
"""
from __future__ import annotations

import dataclasses
import math

from harness.emulation.links import WIRE_EFFICIENCY, LinkProfile, daemon_link
from harness.emulation.tracelink import TraceLink, link_of, window_mbps
from harness.predict.runtime import Costs, Prediction, Sizes, predict
from harness.predict.transfer import LinkRates

FIXED_POINT_STEPS = 4
FINISH_STEPS = 48             # bisection steps for a transfer's end (to ~1e-14 of its span)
USES = {"hierarchical": ("up",), "split": ("up", "down"), "cloud": ("up",), "edge": ()}


def rates_over(link: LinkProfile, rates: LinkRates, seconds: float) -> LinkRates:
    """`rates` with each trace-driven direction's goodput at its mean over [0, seconds)."""
    out = {}
    for d in ("up", "down"):
        spec = daemon_link(link, d)
        if spec and (spec["trace"] or spec.get("steps")) and seconds > 0:
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


def finish_s(link: TraceLink, t0: float, frame_b: float) -> float:
    """When a transfer of `frame_b` frame bytes that starts at `t0` has been carried: the
    first time by which the link's opportunities in [t0, t) hold them (fluid: a message
    shares no opportunity with another, as split learning's never do)."""
    if frame_b <= 0:
        return t0
    span = 1.0
    while link.capacity_b(t0, t0 + span) < frame_b:     # a fade or an outage: look further
        span *= 2
    lo, hi = t0, t0 + span
    for _ in range(FINISH_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if link.capacity_b(t0, mid) >= frame_b else (mid, hi)
    return hi


def split_timeline(link: LinkProfile, c: Costs, s: Sizes, rates: LinkRates, n: int) -> Prediction:
    """Split learning's n steps laid one after another on the link's time (module doc)."""
    links = {}
    for d in ("up", "down"):
        spec = daemon_link(link, d)
        if spec:
            links[d] = link_of(spec)
            links[d].restart(0.0, outages=True)

    last = {"up": -math.inf, "down": -math.inf}     # when each direction last finished sending

    def transfer(t: float, d: str, payload_b: float) -> float:
        loss, rate = (rates.loss_up, rates.up_Bps) if d == "up" else (rates.loss_down, rates.down_Bps)
        if d in links:
            took = finish_s(links[d], t, payload_b / (WIRE_EFFICIENCY * (1 - loss))) - t
        else:
            took = payload_b / rate
        if rates.idle_restarts(t - last[d]):     # cubic/reno: slow start again, at the mean rate
            took += rates.restart_s(payload_b, rate, t - last[d]) - payload_b / rate
        took = took * rates.stretch + rates.recovery_s(payload_b, loss, took * rates.stretch)
        last[d] = t + took
        return took

    t_e = c.edge_fwd_s + c.edge_bwd_s
    t = 0.0 if rates.restart else rates.start_up_s(s.act_b)     # else in each transfer
    busy = {"edge_compute_s": 0.0, "uplink_s": 0.0, "cloud_compute_s": 0.0, "downlink_s": 0.0}
    for _ in range(n):
        t += c.edge_fwd_s
        up = transfer(t, "up", s.act_b)
        t += up + rates.d_up_s + c.cloud_s
        down = transfer(t, "down", s.grad_b)
        t += down + rates.d_down_s + c.edge_bwd_s
        for key, value in (("edge_compute_s", t_e), ("uplink_s", up),
                           ("cloud_compute_s", c.cloud_s), ("downlink_s", down)):
            busy[key] += value
    neck = max(("edge_compute", "uplink", "cloud_compute", "downlink"),
               key=lambda k: busy[f"{k}_s"])
    return Prediction("split", t, busy, f"{neck} (sequential, on the link's timeline)")


def predict_varying(link: LinkProfile, method: str, c: Costs, s: Sizes, n: int, epochs: int = 1,
                    bbr: bool = True) -> Prediction:
    """The prediction for `method` on a time-varying link (see the module's doc)."""
    base = LinkRates.from_profile(link, bbr)
    if method == "split":
        return split_timeline(link, c, s, base, n * epochs)
    pred = predict(method, c, s, base, n, epochs)
    for _ in range(FIXED_POINT_STEPS):
        pred = predict(method, c, s, rates_over(link, base, pred.total_s), n, epochs)
    return dataclasses.replace(pred, total_s=pred.total_s + stall_s(link, method, pred.total_s))
