"""Predicted training time of each method from measured per-batch costs and a link profile.

    python run_bench.py predict --model vgg16 --width 0.25 --links 3g,4g,wifi

Assumptions (each one a term the emulation may show to be missing):
- Per-batch compute is the sum of the profiled per-block forward and backward+step times
  (plus preprocessing where the raw data is, and the exit head on the hierarchical edge), and
  is the same for every batch. A worker limited to `cores` (< its thread count) runs
  threads/cores times slower (CFS quota); workers do not contend beyond their quotas.
- A transfer of b payload bytes takes (b + framing) / (rate x 1448/1514) seconds: HTB shapes
  whole Ethernet frames, and TCP carries 1448 payload bytes per 1514-byte frame. Each message
  also pays the one-way delay once. TCP slow start, loss and queueing are not modelled.
- A fresh TCP connection starts with a 10-segment window: the first message pays one round
  trip per doubling until the window covers min(message, bandwidth-delay product). Later
  messages are assumed to find the window open (no restart after idle is modelled).
- hierarchical: a three-stage pipeline (edge compute, uplink, cloud compute) with a queue:
  fill + (N-1) x max(t_e, s_a/R_up, t_c), fill = t_e + s_a/R_up + d_up + t_c.
- split: strictly sequential: N x (t_e_fwd + s_a/R_up + d_up + t_c + s_g/R_down + d_down + t_e_bwd).
- cloud: upload pipelined with cloud compute: fill + (N-1) x max(s_x/R_up, t_F_cloud), later
  epochs from the cloud's cache: N x t_F_cloud each. edge: N x t_F_edge.
Times are seconds, sizes bytes, rates bytes/s. No torch here: profiles are plain dicts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

WIRE_EFFICIENCY = 1448 / 1514     # TCP payload per Ethernet frame (MSS with timestamps)
FRAME_OVERHEAD_B = 28 + 160       # wire header + typical JSON meta, bytes per message
LABEL_B = 8                       # int64 label per sample
CODEC_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
INITIAL_WINDOW_B = 10 * 1448      # Linux initial congestion window: 10 segments


@dataclass(frozen=True)
class Costs:
    """Per-batch compute seconds on the device that runs each part (CPU share applied)."""
    edge_fwd: float          # preprocessing + f_e forward, on the edge
    edge_bwd: float          # f_e backward + step
    head: float              # exit head forward + backward + step
    cloud: float             # f_c forward + backward + step, on the cloud
    full_edge: float         # preprocessing + whole network step on the edge
    full_cloud: float        # preprocessing + whole network step on the cloud


@dataclass(frozen=True)
class Sizes:
    """Bytes per batch on the wire (payload + framing)."""
    act: float               # activations + labels up (hierarchical, split)
    grad: float              # dL/da down (split), fp32
    raw: float               # stored images + labels + indices up (cloud-only)


@dataclass(frozen=True)
class LinkRates:
    up_Bps: float
    down_Bps: float
    d_up_s: float
    d_down_s: float

    @property
    def rtt_s(self) -> float:
        return self.d_up_s + self.d_down_s

    def start_up_s(self, first_message_b: float) -> float:
        """Extra seconds the first message on a fresh connection spends growing the window."""
        need = min(first_message_b, self.up_Bps * self.rtt_s)
        if need <= INITIAL_WINDOW_B:
            return 0.0
        return (math.ceil(math.log2(need / INITIAL_WINDOW_B + 1)) - 1) * self.rtt_s

    @classmethod
    def from_profile(cls, p) -> "LinkRates":
        return cls(p.up_mbps * 1e6 / 8 * WIRE_EFFICIENCY, p.down_mbps * 1e6 / 8 * WIRE_EFFICIENCY,
                   p.up_delay_ms / 1e3, p.down_delay_ms / 1e3)


@dataclass(frozen=True)
class Prediction:
    method: str
    total_s: float
    busy: dict               # edge_compute_s, uplink_s, cloud_compute_s, downlink_s
    bottleneck: str          # the stage that sets the pace


def slowdown(threads: int, cores: float) -> float:
    return max(1.0, threads / cores)


def costs_from_profile(edge_prof: dict, cloud_prof: dict, split: str, edge_cores: float,
                       cloud_cores: float) -> Costs:
    """Sum a profile's blocks on each side of `split` and apply each side's CPU share."""
    se = slowdown(edge_prof["threads"], edge_cores)
    sc = slowdown(cloud_prof["threads"], cloud_cores)
    names = [b["block"] for b in edge_prof["blocks"]]
    cut = names.index(split) + 1

    def part(prof, lo, hi, key):
        return sum(b[key] for b in prof["blocks"][lo:hi])

    n = len(names)
    head = edge_prof["heads"][split]
    full_e = part(edge_prof, 0, n, "forward_s") + part(edge_prof, 0, n, "backward_step_s")
    full_c = part(cloud_prof, 0, n, "forward_s") + part(cloud_prof, 0, n, "backward_step_s")
    return Costs(
        edge_fwd=se * (edge_prof["preprocess_s"] + part(edge_prof, 0, cut, "forward_s")),
        edge_bwd=se * part(edge_prof, 0, cut, "backward_step_s"),
        head=se * (head["forward_s"] + head["backward_step_s"]),
        cloud=sc * (part(cloud_prof, cut, n, "forward_s") + part(cloud_prof, cut, n, "backward_step_s")),
        full_edge=se * (edge_prof["preprocess_s"] + full_e),
        full_cloud=sc * (cloud_prof["preprocess_s"] + full_c))


def sizes_for(act_bytes_fp32: int, stored_bytes: int, batch: int, codec: str) -> Sizes:
    """Per-batch message sizes for an activation of `act_bytes_fp32` bytes per sample."""
    act = batch * (act_bytes_fp32 // 4 * CODEC_BYTES[codec] + LABEL_B) + FRAME_OVERHEAD_B
    grad = batch * act_bytes_fp32 + FRAME_OVERHEAD_B
    raw = batch * (stored_bytes + 2 * LABEL_B) + FRAME_OVERHEAD_B
    return Sizes(act, grad, raw)


def _pipeline(stages: dict[str, float], delay: float, n: int) -> tuple[float, str]:
    """Fill (one batch through every stage, plus the delay) + (n-1) x the slowest stage."""
    slowest = max(stages, key=stages.get)
    return sum(stages.values()) + delay + (n - 1) * stages[slowest], slowest


def predict(method: str, c: Costs, s: Sizes, link: LinkRates, n: int, epochs: int = 1,
            cached_epochs: bool = True) -> Prediction:
    """Predicted training wall time for n batches per epoch."""
    total_n = n * epochs
    if method == "hierarchical":
        t_e, up = c.edge_fwd + c.edge_bwd + c.head, s.act / link.up_Bps
        total, neck = _pipeline({"edge_compute": t_e, "uplink": up, "cloud_compute": c.cloud},
                                link.d_up_s + link.start_up_s(s.act), total_n)
        busy = {"edge_compute_s": total_n * t_e, "uplink_s": total_n * up,
                "cloud_compute_s": total_n * c.cloud, "downlink_s": 0.0}
        return Prediction(method, total, busy, neck)
    if method == "split":
        up, down = s.act / link.up_Bps, s.grad / link.down_Bps
        per = c.edge_fwd + up + link.d_up_s + c.cloud + down + link.d_down_s + c.edge_bwd
        parts = {"edge_compute": c.edge_fwd + c.edge_bwd, "uplink": up + link.d_up_s,
                 "cloud_compute": c.cloud, "downlink": down + link.d_down_s}
        busy = {"edge_compute_s": total_n * (c.edge_fwd + c.edge_bwd), "uplink_s": total_n * up,
                "cloud_compute_s": total_n * c.cloud, "downlink_s": total_n * down}
        return Prediction(method, total_n * per + link.start_up_s(s.act), busy,
                          max(parts, key=parts.get) + " (sequential)")
    if method == "cloud":
        up = s.raw / link.up_Bps
        uploads = n if cached_epochs else total_n
        total, neck = _pipeline({"uplink": up, "cloud_compute": c.full_cloud},
                                link.d_up_s + link.start_up_s(s.raw), uploads)
        total += (total_n - uploads) * c.full_cloud
        busy = {"edge_compute_s": 0.0, "uplink_s": uploads * up,
                "cloud_compute_s": total_n * c.full_cloud, "downlink_s": 0.0}
        return Prediction(method, total, busy, neck)
    if method == "edge":
        busy = {"edge_compute_s": total_n * c.full_edge, "uplink_s": 0.0,
                "cloud_compute_s": 0.0, "downlink_s": 0.0}
        return Prediction(method, total_n * c.full_edge, busy, "edge_compute")
    raise ValueError(f"unknown method {method}")
