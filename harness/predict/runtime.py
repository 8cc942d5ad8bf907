"""Predicted training time of each method from measured per-batch costs and a link profile.

    python run_bench.py predict --model vgg16 --width 0.25 --links 3g,4g,wifi

Assumptions (each one a term the emulation may show to be missing):
- Per-batch compute is the sum of the profiled per-block forward and backward+step times
  (plus preprocessing where the raw data is, and the exit head on the hierarchical edge), and
  is the same for every batch. A worker limited to `cores` (< its thread count) runs
  threads/cores times slower (CFS quota); workers do not contend beyond their quotas.
- Transfers (TCP's window growth, restart after idle, loss recovery, BBR): see
  harness.predict.transfer, which gives a message's seconds on a link (LinkRates).
- hierarchical: a three-stage pipeline (edge compute, uplink, cloud compute) with a queue,
  batch by batch through a fresh connection's start-up (transfer), then
  (N-1) x max(t_e, s_a/R_up, t_c).
- split: sequential, N x (t_e_fwd + s_a/R_up + d_up + t_c + s_g/R_down + d_down + t_e_bwd),
  each message as long as its direction's TCP makes it after the batch's idle gap (transfer).
  cloud: upload pipelined with cloud compute (hierarchical with nothing to make), later
  epochs from its cache, N x t_F_cloud each. edge: N x t_F_edge.
Times are seconds, sizes bytes, rates bytes/s. No torch here: profiles are plain dicts.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.catalog import head_key
from harness.predict.transfer import LinkRates

FRAME_OVERHEAD_B = 28 + 160       # wire header + typical JSON meta, bytes per message
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
    t_e = c.edge_fwd_s + c.edge_bwd_s
    # each direction is silent while the rest of the batch happens (at the rates alone)
    round_s = t_e + link.rtt_s + c.cloud_s + s.act_b / link.up_Bps + s.grad_b / link.down_Bps
    idle_up, idle_down = round_s - s.act_b / link.up_Bps, round_s - s.grad_b / link.down_Bps
    up = link.message_s(s.act_b, link.up_Bps, link.loss_up, idle_up)
    up += link.recovery_s(s.act_b, link.loss_up, up)
    down = link.message_s(s.grad_b, link.down_Bps, link.loss_down, idle_down)
    down += link.recovery_s(s.grad_b, link.loss_down, down)
    per = t_e + up + link.d_up_s + c.cloud_s + down + link.d_down_s
    parts = {"edge_compute": t_e, "uplink": up + link.d_up_s, "cloud_compute": c.cloud_s,
             "downlink": down + link.d_down_s}
    # the first message starts a fresh connection: from the initial window, as after a long gap
    first = (link.restart_s(s.act_b, link.up_Bps)
             - link.message_s(s.act_b, link.up_Bps, 0.0, idle_up)
             if link.restart else link.start_up_s(s.act_b))
    return Prediction("split", total_n * per + first,
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
