"""Per-case totals derived from the workers' JSONL events (harness.workers.events).

    python run_bench.py totals RUN_DIR

Spans carry t_start/t_end in seconds of the worker's monotonic clock; the edge records
the cloud clock's offset measured at connection set-up (`clock` event), and the loader maps
cloud times onto the edge clock. This module reads files only: it imports neither torch nor
the runner, so analysis runs anywhere.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.analysis.steady import completion_times, mean_ci, steady_state
from harness.catalog import FINAL_STAGE, SOURCE_STAGE
from harness.workers.events import COMPUTE, RECV, SEND, WAIT


def load_events(case_dir: str | Path) -> pd.DataFrame:
    """All events of one case, cloud times mapped onto the edge clock (column `t_*` aligned)."""
    case_dir = Path(case_dir)
    frames = []
    for role in ("edge", "cloud"):
        path = case_dir / f"{role}.jsonl"
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            frames.append(pd.DataFrame(rows))
    if not frames:
        return pd.DataFrame(columns=["role", "event", "step", "t_start", "t_end"])
    df = pd.concat(frames, ignore_index=True)
    for col in ("t_start", "t_end", "t", "step"):
        if col not in df:
            df[col] = float("nan")
    cloud = df["role"] == "cloud"
    for col in ("t_start", "t_end", "t"):
        df.loc[cloud, col] = df.loc[cloud, col] - clock_offset(df, df.loc[cloud, col])
    return df


def clock_offset(df: pd.DataFrame, cloud_t=None):
    """cloud_clock - edge_clock as the edge measured it (0 when there was no connection).

    One machine (Mininet, loopback): recorded as exactly 0. Two machines: measured at the
    start and at the end of the run; in between the drift is taken as linear, so each cloud
    time gets the offset interpolated at its own moment. Runs of earlier releases measured
    once: that offset applies throughout.
    """
    clock = df[(df["role"] == "edge") & (df["event"] == "clock")].sort_values("t")
    if clock.empty:
        return 0.0
    first, last = clock.iloc[0], clock.iloc[-1]
    if cloud_t is None or len(clock) < 2 or last["t"] <= first["t"]:
        return float(last["offset_s"])
    drift = (last["offset_s"] - first["offset_s"]) / (last["t"] - first["t"])    # s per s
    edge_t = cloud_t - first["offset_s"]
    return first["offset_s"] + drift * (edge_t - first["t"])


def _busy(df: pd.DataFrame, role: str, event: str) -> float:
    rows = df[(df["role"] == role) & (df["event"] == event)]
    return float((rows["t_end"] - rows["t_start"]).sum()) if len(rows) else 0.0


def _sum(df: pd.DataFrame, role: str, event: str, col: str) -> int:
    rows = df[(df["role"] == role) & (df["event"] == event)]
    return int(rows[col].fillna(0).sum()) if col in rows and len(rows) else 0


LINK_BUSY_DEFINITIONS = {
    "send_to_recv": "union over messages of [sender's send start, receiver's receive end]",
    "send_calls": "sender's time inside send calls (receiver's log missing or incomplete; "
                  "undercounts: a send returns once its bytes are in the socket buffer)",
    "none": "no messages in this direction",
}


def link_busy(df: pd.DataFrame, sender: str, receiver: str,
              until: float = math.inf) -> tuple[float, str]:
    """(seconds the link carried data one way, which definition applied).

    Preferred: the union over messages of [sender's send start, receiver's recv end]. A send
    call returns once its bytes are in the kernel's socket buffer, so send spans alone
    undercount; messages arrive in order (TCP), so the k-th send pairs with the k-th receive.
    Includes each message's propagation delay. When the counts differ (a peer's log is
    missing or cut short) it falls back to the sender's send calls, and says so.
    """
    kinds = ("batch", "grad")
    sends = df[(df["role"] == sender) & (df["event"] == SEND)].sort_values("t_start")
    recvs = df[(df["role"] == receiver) & (df["event"] == RECV)]
    if "kind" in recvs:
        recvs = recvs[recvs["kind"].isin(kinds)]
    recvs = recvs.sort_values("t_end")
    if sends.empty:
        return 0.0, "none"
    if recvs.empty or len(recvs) != len(sends):
        return _busy(df, sender, SEND), "send_calls"
    spans = sorted((a, min(b, until)) for a, b in zip(sends["t_start"], recvs["t_end"])
                   if a < until)
    total, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            total += (cur_end - cur_start) if cur_end is not None else 0.0
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    return total + (cur_end - cur_start if cur_end is not None else 0.0), "send_to_recv"


def totals(df: pd.DataFrame) -> dict:
    """Per-run totals: wall time, busy time per stage, bytes per direction.

    Wall time runs from the first batch's start (edge compute, or the edge's first upload for
    cloud-only) to the end of the last compute step on either side. Uplink busy time is the
    edge's time inside send calls (the kernel takes bytes at the link's pace once its socket
    buffer is full); downlink busy time is the cloud's. Uplink/downlink busy time is the
    time the link carried messages (`link_busy`); `*_send_s` keeps the time inside send calls.
    """
    work = df[df["event"].isin([COMPUTE, SEND])]
    if work.empty:
        return {"wall_s": float("nan"), "steps": 0}
    start = float(work["t_start"].min())
    # Batches trained to the end: the cloud's steps where it trains. A hierarchical edge's
    # steps computed past a timing window's STOP and dropped unsent never reach it, so they
    # count neither as steps nor in the wall time (an edge-bound pipeline's edge ends its
    # dropped step after the cloud's last: one batch more in the wall, measured -9.6%).
    trained = df[df["event"] == COMPUTE]
    cloud_steps = trained.loc[trained["role"] == "cloud", "step"]
    if len(cloud_steps):
        trained = trained[trained["step"].isin(set(cloud_steps))]
    end = float(trained["t_end"].max())
    steps = trained["step"].nunique()
    # Within the wall time: cloud-only's uploads buffered past a timing window's STOP are
    # received after the last training step and belong to no measured batch.
    uplink_s, uplink_def = link_busy(df, "edge", "cloud", end)
    downlink_s, downlink_def = link_busy(df, "cloud", "edge", end)
    return {
        "wall_s": end - start,
        "steps": int(steps),
        "edge_compute_s": _busy(df, "edge", COMPUTE),
        "uplink_s": uplink_s,
        "cloud_compute_s": _busy(df, "cloud", COMPUTE),
        "downlink_s": downlink_s,
        "uplink_definition": uplink_def,
        "downlink_definition": downlink_def,
        "edge_send_s": _busy(df, "edge", SEND),
        "cloud_send_s": _busy(df, "cloud", SEND),
        "edge_wait_s": _busy(df, "edge", WAIT),
        "cloud_wait_s": _busy(df, "cloud", WAIT),
        "bytes_up_payload": _sum(df, "edge", SEND, "bytes_payload"),
        "bytes_up_total": _sum(df, "edge", SEND, "bytes_payload") + _sum(df, "edge", SEND, "bytes_framing"),
        "bytes_down_payload": _sum(df, "cloud", SEND, "bytes_payload"),
        "bytes_down_total": _sum(df, "cloud", SEND, "bytes_payload") + _sum(df, "cloud", SEND, "bytes_framing"),
        "raw_bytes_to_cloud": _sum(df, "edge", SEND, "bytes_raw"),
        **paced_totals(df),
    }


def paced_totals(df: pd.DataFrame) -> dict:
    """Paced compute (harness.run.pacing): steps paced, how many overran their target (their
    real compute took longer), and the real compute seconds per side; modelled steps
    (harness.workers.modelled: no compute, the wait is the step) apart, with how many lasted
    longer than their modelled time and by how much at most. {} when not paced."""
    spans = df[df["event"] == COMPUTE]
    if "pace_s" not in spans or spans["pace_s"].isna().all():
        return {}
    paced = spans[spans["pace_s"].notna()]
    modelled = paced["modelled"].eq(True) if "modelled" in paced else paced["pace_s"].isna()
    real, waited = paced[~modelled], paced[modelled]
    out = {"paced_steps": int(len(real)),
           "pace_overruns": int(real["overrun"].astype(bool).sum())}
    if len(waited):       # no compute in their body: an overrun is the harness's bookkeeping
        over = waited[waited["overrun"].astype(bool)]
        out.update(modelled_steps=int(len(waited)), modelled_overruns=int(len(over)),
                   modelled_excess_max_s=float((over["busy_s"] - over["pace_s"]).max())
                   if len(over) else 0.0)
    for role in ("edge", "cloud"):
        out[f"{role}_compute_busy_s"] = float(paced.loc[paced["role"] == role, "busy_s"].sum())
    return out


def final_stage(df: pd.DataFrame, method: str, stages=FINAL_STAGE) -> pd.DataFrame:
    """The compute events that complete a batch for `method` (catalog.FINAL_STAGE), or of
    another stage table (catalog.SOURCE_STAGE); empty when the method has no such stage."""
    if method not in stages:
        return df.iloc[0:0]
    role, phase = stages[method]
    rows = df[(df["event"] == COMPUTE) & (df["role"] == role)]
    if phase is not None and "phase" in rows:
        rows = rows[rows["phase"] == phase]
    return rows


def steady(df: pd.DataFrame, n_full: int, method: str, cached_steps: int = 0,
           judged: int | None = None, judged_source: int | None = None) -> dict:
    """Fill, steady interval (95% CI) and full-budget estimate of one case's events.

    `cached_steps`: steps of the full budget that train from the cloud's cache (cloud-only,
    epochs after the first): they cost the cloud's measured compute per step, not an upload,
    so they are charged at the mean cloud compute time (CI: t over the measured steps).
    `judged`: the batches complete when the timing window wrote STOP; only those count.
    The ones completing after it are a pipeline's drain, not its steady state: the edge has
    stopped, so a late batch has no successor to catch up on (measured: ResNet-18 on 4g,
    intervals of 1.160 s to the millisecond, then a 1.421 s one after STOP when BBR's
    PROBE_RTT dip hit the last transfer: +3% on the estimate and its CI 0% -> 15%).
    `judged_source`: the source's batches the window saw then (a pipeline's first stage). The
    edge may make one more before it reads STOP, and when the two bounds are within a hair
    that one decides whose CI is shown (measured: VGG-16 on 4g, 1256.4 s either way, the
    paced edge's ±0.0% as judged, the link's ±19.7% with one source batch more).
    """
    work = df[df["event"].isin([COMPUTE, SEND])]
    compute = df[df["event"] == COMPUTE]
    last = final_stage(df, method)
    if work.empty or last.empty:
        return {}
    done = completion_times(zip(last["step"], last["t_end"]))
    if judged is not None and 2 <= judged < len(done):
        done = done[:judged]
    first = final_stage(df, method, SOURCE_STAGE)
    source = completion_times(zip(first["step"], first["t_end"])) if len(first) else None
    if source and judged_source is not None and 2 <= judged_source < len(source):
        source = source[:judged_source]
    out = steady_state(done, float(work["t_start"].min()), n_full - cached_steps, source)
    if cached_steps:
        cloud = compute[compute["role"] == "cloud"]
        step_s, step_ci = mean_ci(list(cloud["t_end"] - cloud["t_start"]))
        out["cached_steps"], out["cached_step_s"] = cached_steps, step_s
        out["est_s"] += cached_steps * step_s
        out["est_ci_s"] = math.hypot(out["est_ci_s"], cached_steps * step_ci)
    return out


def undilated(events: pd.DataFrame, k) -> pd.DataFrame:
    """A case's events with its times divided by its time dilation factor (1 when absent)."""
    k = 1.0 if k is None or k != k else float(k)
    if k == 1.0:
        return events
    cols = [c for c in ("t", "t_start", "t_end") if c in events]
    return events.assign(**{c: events[c] / k for c in cols})
