"""Predicted training time of each method from measured per-batch costs and a link profile.

    python run_bench.py predict --model vgg16 --width 0.25 --links 3g,4g,wifi

Assumptions (each one a term the emulation may show to be missing):
- Per-batch compute is the sum of the profiled per-block forward and backward+step times
  (plus preprocessing where the raw data is, and the exit head on the hierarchical edge), and
  is the same for every batch. A worker limited to `cores` (< its thread count) runs
  threads/cores times slower (CFS quota); workers do not contend beyond their quotas.
- A transfer of b payload bytes takes (b + framing) / (rate x 1448/1514 x (1 - loss)) s (HTB
  shapes 1514-byte frames carrying 1448 payload bytes; each lost segment is sent again) and
  pays the one-way delay once.
- Loss also costs time where nothing overlaps it: a stop-and-wait message (split learning)
  completes when its last lost segment has been sent again. A segment sent at t (of the
  message's send time T) with three more behind it is found lost when their SACKs return
  (RACK), about t + RTT + 3 segment times, and resent: the message ends that much after T,
  if later; a loss among the last three waits out RACK's reordering window (t + 1.25 RTT),
  the last segment the tail loss probe (T + 2 RTT). The expectation runs over the position
  of the last lost segment: on a short path a loss found while the rest is still being sent
  costs nothing (4g_loss1's 262 kB activations: 0.40-0.47 s, 0.41 s without a loss), on a
  long one up to a round trip. Streams hide it.
- A fresh TCP connection starts with a 10-segment window: the first message pays one round
  trip per doubling until the window covers min(message, bandwidth-delay product).
- A fresh connection's pipelined stream (hierarchical, cloud-only) is carried at the rate its
  window allows while it grows: the window doubles each round trip from 10 segments until it
  covers the bandwidth-delay product, so batch k arrives when that curve has delivered k + 1
  messages (never before it was made and sent at the link's rate), taken in order (600 ms
  RTT, 5 Mbit/s: the first five 51 kB uploads took 2.8-3.4 s, not one message's 1.5 s). A
  start-up round with a lost segment costs a round trip more (resent a round trip later, what
  is behind it waits, BBR in recovery holds the window a round): 1 - (1 - p)^segments round
  trips per round in expectation (geo_lossy, 13 hierarchical and 15 cloud-only repetitions:
  median error -4.1% and -8.1% without the term, -2.8% and -3.4% with).
- Restart after idle, BBR (this kernel's default; tcp_slow_start_after_idle does not apply):
  a stop-and-wait message (split learning, both ways) follows an idle gap and every rate
  sample of its flow is app-limited, so BBR never leaves STARTUP (pacing gain g = 2/ln 2)
  and its bandwidth estimate settles where a message's sample, b / (RTT + b / (g x bw)),
  equals bw: bw = b (1 - 1/g) / RTT. Paced at g x bw, a message takes
  max(b / rate, RTT / (g - 1)) (262 kB bursts, 600 ms RTT, 20 Mbit/s: estimate 2.27 Mbit/s,
  2.29 from this; 0.316 s each, 0.318). On a lossy direction BBR leaves STARTUP within a few
  messages: a retransmission follows the message's first acknowledgement, so its rate sample
  is not app-limited and counts what its round trip delivered, at most b / RTT; three rounds
  without growth end STARTUP. In PROBE_BW a flow restarting from idle is paced at that
  estimate, so a message takes max(b / rate, RTT) (geo_lossy: 262 kB gradients 0.63 s
  without a loss from the tenth on, not 0.32 s; ss: estimate 2.95-3.12 Mbit/s, b / RTT =
  3.5); the first messages, before STARTUP ends, at that pace too.
  Under cubic/reno, split learning's idle gaps reset the window each batch: not modelled.
- BBR's PROBE_RTT: a flow whose minimum-RTT estimate is 10 s old holds 4 packets in flight
  for 200 ms plus a round trip. Every transfer time is stretched by 1 + (0.2 s + RTT) / 10 s
  (measured on a busy flow: 0.31 s lost per 10 s on 3g, 0.26 s on 4g; modelled 0.35, 0.26).
  An app-limited flow that sees its true RTT between messages may skip the probe: the term
  is then slightly pessimistic, in proportion to transfer time only.
- Still ignored: queueing behind one's own earlier messages beyond the rate term, BBR's
  probing and a STARTUP ended early by loss, a stream's head-of-line waits after start-up,
  PROBE_RTT entered while a message is still being sent (about 2 round trips), timeouts, a lost
  retransmission, ACK loss, jitter, the kernel's network work, Python outside the blocks.
- hierarchical: a three-stage pipeline (edge compute, uplink, cloud compute) with a queue,
  batch by batch through the start-up (above), then (N-1) x max(t_e, s_a/R_up, t_c).
- split: sequential, N x (t_e_fwd + s_a/R_up + d_up + t_c + s_g/R_down + d_down + t_e_bwd).
  cloud: upload pipelined with cloud compute (hierarchical with nothing to make), later
  epochs from its cache, N x t_F_cloud each. edge: N x t_F_edge.
Times are seconds, sizes bytes, rates bytes/s. No torch here: profiles are plain dicts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.catalog import head_key
from harness.emulation.links import INITIAL_WINDOW_B, MSS_B, WIRE_EFFICIENCY

FRAME_OVERHEAD_B = 28 + 160       # wire header + typical JSON meta, bytes per message
BBR_PROBE_RTT_S = 0.2             # BBR's PROBE_RTT lasts this long (and at least one RTT) ...
BBR_MIN_RTT_WINDOW_S = 10.0       # ... once its min-RTT estimate is this old
BBR_STARTUP_GAIN = 2 / math.log(2)  # BBR's STARTUP pacing gain (Linux: 2885/1000)
DUPTHRESH = 3                     # SACKed segments behind a hole that mark it lost at once
RACK_REORDER_RTTS = 0.25          # RACK's reordering window with fewer behind it (min_rtt / 4)
TLP_RTTS = 2.0                    # the tail loss probe fires 2 SRTT after the last segment
LABEL_B = 8                       # int64 label per sample
CODEC_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Costs:
    """Per-batch compute seconds on the device that runs each part (CPU share applied)."""
    edge_fwd_s: float        # preprocessing + f_e forward, on the edge
    edge_bwd_s: float        # f_e backward + step
    head_s: float            # exit head forward + backward + step
    cloud_s: float           # f_c forward + backward + step, on the cloud
    full_edge_s: float       # preprocessing + whole network step on the edge
    full_cloud_s: float      # preprocessing + whole network step on the cloud


def scaled(c: Costs, edge: float, cloud: float) -> Costs:
    """Costs with each side's compute multiplied by a measured factor: per-batch time under
    the host's CPU share over the model's linear estimate of it (run.computecheck)."""
    return Costs(c.edge_fwd_s * edge, c.edge_bwd_s * edge, c.head_s * edge, c.cloud_s * cloud,
                 c.full_edge_s * edge, c.full_cloud_s * cloud)


@dataclass(frozen=True)
class Sizes:
    """Bytes per batch on the wire (payload + framing)."""
    act_b: float             # activations + labels up (hierarchical, split)
    grad_b: float            # dL/da down (split), fp32
    raw_b: float             # stored images + labels + indices up (cloud-only)


@dataclass(frozen=True)
class LinkRates:
    up_Bps: float            # payload goodput after framing and retransmissions, bytes/s
    down_Bps: float
    d_up_s: float
    d_down_s: float
    loss_up: float = 0.0     # fraction of packets lost edge -> cloud
    loss_down: float = 0.0
    probe_rtt_s: float = 0.0  # seconds a busy BBR flow loses per 10 s (0: not modelled)
    bbr: bool = False         # BBR: a message after idle is paced (idle_paced_s)

    @property
    def rtt_s(self) -> float:
        return self.d_up_s + self.d_down_s

    @property
    def stretch(self) -> float:
        """Factor on every transfer time for BBR's PROBE_RTT (1 when not modelled)."""
        return 1 + self.probe_rtt_s / BBR_MIN_RTT_WINDOW_S

    def start_up_s(self, first_message_b: float) -> float:
        """Extra seconds the first message on a fresh connection spends growing the window."""
        need = min(first_message_b, self.up_Bps * self.rtt_s)
        if need <= INITIAL_WINDOW_B:
            return 0.0
        return (math.ceil(math.log2(need / INITIAL_WINDOW_B + 1)) - 1) * self.rtt_s

    def delivered_by_s(self, total_b: float) -> float:
        """Seconds from a fresh connection's first send until `total_b` bytes have arrived:
        the window doubles each round trip from INITIAL_WINDOW_B until it covers the
        bandwidth-delay product, a round with a lost segment taking one more (in expectation:
        P(a loss among its segments), module docstring), then the link's rate carries the rest."""
        bdp, sent, t, window = self.up_Bps * self.rtt_s, 0.0, 0.0, INITIAL_WINDOW_B
        while window < bdp and sent + window < total_b:
            again = 1 - (1 - self.loss_up) ** (window / MSS_B)
            sent, t, window = sent + window * (1 + again), t + self.rtt_s * (1 + again), window * 2
        return t + max(0.0, total_b - sent) / self.up_Bps * self.stretch + self.d_up_s

    def message_s(self, message_b: float, rate_Bps: float, loss: float = 0.0) -> float:
        """Seconds a stop-and-wait message spends being sent: its size at the rate, stretched
        for PROBE_RTT, or under BBR at least the paced time after idle: RTT / (g - 1) while
        STARTUP lasts, one round trip once a lossy direction has ended it (module docstring)."""
        t = message_b / rate_Bps * self.stretch
        if not self.bbr:
            return t
        return max(t, self.rtt_s if loss > 0 else self.rtt_s / (BBR_STARTUP_GAIN - 1))

    def recovery_s(self, message_b: float, loss: float, send_s: float) -> float:
        """Expected extra seconds a stop-and-wait message sent over `send_s` spends waiting for
        its last lost segment to be found and sent again (module docstring)."""
        if loss <= 0:
            return 0.0
        n = max(1, math.ceil(message_b / MSS_B))
        gap, rtt, extra = send_s / n, self.rtt_s, 0.0
        for j in range(n):                  # j: the last segment lost
            sent = j * gap
            found = (sent + rtt + DUPTHRESH * gap if j < n - DUPTHRESH else
                     sent + (1 + RACK_REORDER_RTTS) * rtt if j < n - 1 else send_s + TLP_RTTS * rtt)
            extra += loss * (1 - loss) ** (n - 1 - j) * max(0.0, found - send_s)
        return extra

    @classmethod
    def from_profile(cls, p, bbr: bool = True) -> "LinkRates":
        """A profile's rates; `bbr`: the workers' congestion control is BBR (PROBE_RTT)."""
        up, down = p.loss_pct / 100, getattr(p, "down_loss_pct", 0.0) / 100
        rtt_s = (p.up_delay_ms + p.down_delay_ms) / 1e3
        return cls(p.up_mbps * 1e6 / 8 * WIRE_EFFICIENCY * (1 - up),
                   p.down_mbps * 1e6 / 8 * WIRE_EFFICIENCY * (1 - down),
                   p.up_delay_ms / 1e3, p.down_delay_ms / 1e3, up, down,
                   BBR_PROBE_RTT_S + rtt_s if bbr else 0.0, bbr)


@dataclass(frozen=True)
class Prediction:
    method: str
    total_s: float
    busy: dict               # edge_compute_s, uplink_s, cloud_compute_s, downlink_s
    bottleneck: str          # the stage that sets the pace


def slowdown(threads: int, cores: float) -> float:
    return max(1.0, threads / cores)


def costs_from_profile(edge_prof: dict, cloud_prof: dict, split: str, edge_cores: float,
                       cloud_cores: float, head: str = "dgl") -> Costs:
    """Sum a profile's blocks on each side of `split` (exit head of design `head`) and apply
    each side's CPU share."""
    se = slowdown(edge_prof["threads"], edge_cores)
    sc = slowdown(cloud_prof["threads"], cloud_cores)
    names = [b["block"] for b in edge_prof["blocks"]]
    cut = names.index(split) + 1

    def part(prof, lo, hi, key):
        return sum(b[key] for b in prof["blocks"][lo:hi])

    n = len(names)
    head = edge_prof["heads"][head_key(split, head)]
    full_e = part(edge_prof, 0, n, "forward_s") + part(edge_prof, 0, n, "backward_step_s")
    full_c = part(cloud_prof, 0, n, "forward_s") + part(cloud_prof, 0, n, "backward_step_s")
    return Costs(
        edge_fwd_s=se * (edge_prof["preprocess_s"] + part(edge_prof, 0, cut, "forward_s")),
        edge_bwd_s=se * part(edge_prof, 0, cut, "backward_step_s"),
        head_s=se * (head["forward_s"] + head["backward_step_s"]),
        cloud_s=sc * (part(cloud_prof, cut, n, "forward_s")
                      + part(cloud_prof, cut, n, "backward_step_s")),
        full_edge_s=se * (edge_prof["preprocess_s"] + full_e),
        full_cloud_s=sc * (cloud_prof["preprocess_s"] + full_c))


def sizes_for(act_bytes_fp32: int, stored_bytes: int, batch: int, codec: str) -> Sizes:
    """Per-batch message sizes for an activation of `act_bytes_fp32` bytes per sample."""
    act = batch * (act_bytes_fp32 // 4 * CODEC_BYTES[codec] + LABEL_B) + FRAME_OVERHEAD_B
    grad = batch * act_bytes_fp32 + FRAME_OVERHEAD_B
    raw = batch * (stored_bytes + 2 * LABEL_B) + FRAME_OVERHEAD_B
    return Sizes(act, grad, raw)


def _streamed(produce_s: float, up_s: float, consume_s: float, message_b: float,
              link: LinkRates, n: int) -> float:
    """When the last of n batches is done: each is made produce_s after the one before (the
    first sent then), arrives once a fresh connection has delivered it (delivered_by_s) and
    no sooner than made + up_s + the delay, and is consumed in order, consume_s each. Batch
    by batch until the window is open and the pipeline's pace is its slowest stage's, then
    that pace for the rest."""
    interval, done, open_b = max(produce_s, up_s, consume_s), 0.0, link.up_Bps * link.rtt_s
    for k in range(n):
        arrive = max(produce_s + link.delivered_by_s((k + 1) * message_b),
                     (k + 1) * produce_s + up_s + link.d_up_s)
        finish = max(done, arrive) + consume_s
        if k and (k + 1) * message_b > 2 * open_b and abs(finish - done - interval) < 1e-9:
            return finish + (n - 1 - k) * interval
        done = finish
    return done


def _slowest(stages: dict[str, float]) -> str:
    return max(stages, key=stages.get)


def _busy(n: int, edge: float = 0.0, up: float = 0.0, cloud: float = 0.0, down: float = 0.0) -> dict:
    return {"edge_compute_s": n * edge, "uplink_s": n * up, "cloud_compute_s": n * cloud,
            "downlink_s": n * down}


def _hierarchical(c: Costs, s: Sizes, link: LinkRates, n: int, epochs: int) -> Prediction:
    total_n = n * epochs
    t_e, up = c.edge_fwd_s + c.edge_bwd_s + c.head_s, s.act_b / link.up_Bps * link.stretch
    total = _streamed(t_e, up, c.cloud_s, s.act_b, link, total_n)
    neck = _slowest({"edge_compute": t_e, "uplink": up, "cloud_compute": c.cloud_s})
    return Prediction("hierarchical", total, _busy(total_n, t_e, up, c.cloud_s), neck)


def _split(c: Costs, s: Sizes, link: LinkRates, n: int, epochs: int) -> Prediction:
    total_n = n * epochs
    up = link.message_s(s.act_b, link.up_Bps, link.loss_up)
    up += link.recovery_s(s.act_b, link.loss_up, up)
    down = link.message_s(s.grad_b, link.down_Bps, link.loss_down)
    down += link.recovery_s(s.grad_b, link.loss_down, down)
    t_e = c.edge_fwd_s + c.edge_bwd_s
    per = t_e + up + link.d_up_s + c.cloud_s + down + link.d_down_s
    parts = {"edge_compute": t_e, "uplink": up + link.d_up_s, "cloud_compute": c.cloud_s,
             "downlink": down + link.d_down_s}
    return Prediction("split", total_n * per + link.start_up_s(s.act_b),
                      _busy(total_n, t_e, up, c.cloud_s, down),
                      max(parts, key=parts.get) + " (sequential)")


def _cloud(c: Costs, s: Sizes, link: LinkRates, n: int, epochs: int) -> Prediction:
    """Epoch 0 uploads pipelined with training; later epochs train from the cloud's cache."""
    up = s.raw_b / link.up_Bps * link.stretch
    total = _streamed(0.0, up, c.full_cloud_s, s.raw_b, link, n)
    neck = _slowest({"uplink": up, "cloud_compute": c.full_cloud_s})
    total += (epochs - 1) * n * c.full_cloud_s
    busy = _busy(n, up=up)
    busy["cloud_compute_s"] = n * epochs * c.full_cloud_s
    return Prediction("cloud", total, busy, neck)


def _edge(c: Costs, s: Sizes, link: LinkRates, n: int, epochs: int) -> Prediction:
    total_n = n * epochs
    return Prediction("edge", total_n * c.full_edge_s, _busy(total_n, c.full_edge_s),
                      "edge_compute")


PREDICTORS = {"hierarchical": _hierarchical, "split": _split, "cloud": _cloud, "edge": _edge}


def predict(method: str, c: Costs, s: Sizes, link: LinkRates, n: int, epochs: int = 1) -> Prediction:
    """Predicted training wall time for n batches per epoch (model, not measurement)."""
    if method not in PREDICTORS:
        raise ValueError(f"unknown method {method}")
    return PREDICTORS[method](c, s, link, n, epochs)
