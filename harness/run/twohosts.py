"""Edge and cloud on two real machines: a case exported as a bundle, the two sides' files
collected back into a run directory that `totals`, `plot`, `check` and `report` read as they
read an emulated one.

    python run_bench.py export scenarios/ci.yaml --case 0 --out bundle/
    python run_bench.py collect bundle/edge bundle/cloud --out results/real/<name>

The workers write all a run needs on their own, with no harness watching: every event with
its time, `wire_totals` (bytes each way), `clock` (offset to the peer and round trip, at the
start and at the end: the drift), then `end` on success or `error` with the reason. A worker
killed outright writes neither: collect then says the case failed and why it thinks so.
`collect` derives the rest with the functions an emulated run uses: totals, the steady-state
estimate, accuracy from the saved parts (this machine's copy of the dataset) and, in place of
a link calibration, the link as the workers saw it: round trip and clock offset from their
clock sync, goodput per direction from the largest messages.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from harness.config import case_from_dict
from harness.errors import HarnessError
from harness.files import write_json

ROLES = ("edge", "cloud")
COPIED = ("jsonl", "log")
PART_FILES = ("edge_part.pt", "cloud_part.pt", "exit_head.pt")
RUN_NAME = "two_machines"


def _case_source(source: Path, index: int) -> dict:
    """Case `index` of a scenario file (its expanded matrix) or of a run directory."""
    if source.is_dir():
        dirs = sorted(d for d in source.iterdir() if (d / "case.json").is_file())
        if not 0 <= index < len(dirs):
            raise HarnessError(f"--case {index}: {source} has cases 0 to {len(dirs) - 1}")
        return json.loads((dirs[index] / "case.json").read_text())
    from harness.config import load_scenario
    cases = load_scenario(source)[0].cases()
    if not 0 <= index < len(cases):
        raise HarnessError(f"--case {index}: {source} expands to cases 0 to {len(cases) - 1}")
    return cases[index].to_dict()


def export_case(source: Path, index: int, out: Path) -> Path:
    """OUT/edge/case.json, OUT/cloud/case.json (the same bytes), a fresh secret and
    OUT/README.txt with each side's command. On real machines the compute is their own:
    pacing, time dilation and device profiles are taken out (the README says which were)."""
    from harness.workers.auth import write_secret
    raw = _case_source(Path(source), index)
    case = case_from_dict(raw)
    compute = dataclasses.replace(case.compute, pace=False, pace_s=None, dilation=1.0,
                                  edge_device=None, cloud_device=None, modelled=())
    real = dataclasses.replace(case, compute=compute, link=None)
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"--out {out}: exists and is not empty")
    text = json.dumps(real.to_dict(), indent=2)
    for role in ROLES:
        (out / role).mkdir(parents=True, exist_ok=True)
        (out / role / "case.json").write_text(text)
    write_secret(out / "hierbench.secret")
    dropped = [f"{k}={getattr(case.compute, k)!r}" for k in ("pace", "dilation", "edge_device",
                                                            "cloud_device", "modelled")
               if getattr(case.compute, k) != getattr(compute, k)]
    (out / "README.txt").write_text(
        f"hierbench case {real.label} on two machines (case {index} of {source}).\n"
        f"Copy edge/ to the edge machine, cloud/ to the cloud machine, and hierbench.secret "
        f"to both (over SSH; mode 0600).\n"
        f"cloud: HIERBENCH_SECRET_FILE=hierbench.secret .venv/bin/python -m "
        f"harness.workers.cloud --case-dir cloud/ --listen 0.0.0.0:5555\n"
        f"edge:  HIERBENCH_SECRET_FILE=hierbench.secret .venv/bin/python -m "
        f"harness.workers.edge --case-dir edge/ --connect CLOUD_IP:5555\n"
        f"the link, measured from the edge while the cloud runs iperf3 -s (optional; collect "
        f"reads the files): iperf3 -c CLOUD_IP -t 10 -J > edge/iperf3_up.json; iperf3 -c "
        f"CLOUD_IP -t 10 -R -J > edge/iperf3_down.json; ping -c 20 -i 0.2 CLOUD_IP > "
        f"edge/ping.txt\n"
        f"then bring both directories to one machine and run: .venv/bin/python run_bench.py "
        f"collect edge/ cloud/ --out results/{RUN_NAME}/<name>\n"
        + (f"Taken out for real hardware: {', '.join(dropped)}.\n" if dropped else ""))
    return out


def worker_status(events, role: str) -> tuple[str, str]:
    """ok, or failed with the worker's own reason (its `error` event, else what is missing)."""
    mine = events[events["role"] == role]
    errors = mine[mine["event"] == "error"]
    if len(errors):
        return "failed", f"{role}: {errors.iloc[-1].get('message', '')}"
    if mine.empty:
        return "failed", f"no {role}.jsonl: the {role} worker did not run or its log was not copied"
    if not (mine["event"] == "end").any():
        return "failed", (f"{role}.jsonl has no 'end' event: the {role} worker was killed or "
                          f"is still running")
    return "ok", ""


def observed_link(events) -> dict:
    """The link as the workers saw it: RTT and clock offset from the edge's clock sync (start,
    end: the drift), goodput per direction from the largest message (bytes over its send
    start to its receive end, so it includes one one-way delay)."""
    clocks = events[(events["role"] == "edge") & (events["event"] == "clock")]
    out: dict = {"measured_by": "the workers' own events (clock sync and messages); no "
                                "ping or iperf3 run"}
    for _, c in clocks.iterrows():
        out[f"rtt_{c['phase']}_ms"] = 1000 * float(c.get("rtt_s", float("nan")))
        out[f"clock_offset_{c['phase']}_s"] = float(c.get("offset_s", float("nan")))
    if {"clock_offset_start_s", "clock_offset_end_s"} <= out.keys() and len(clocks) == 2:
        span = float(clocks["t"].iloc[1] - clocks["t"].iloc[0])
        out["clock_drift_ppm"] = 1e6 * (out["clock_offset_end_s"] - out["clock_offset_start_s"]) / span
    sends = events[events["event"] == "send"]
    recvs = events[events["event"] == "recv"]
    for direction, sender, receiver in (("up", "edge", "cloud"), ("down", "cloud", "edge")):
        s = sends[sends["role"] == sender].dropna(subset=["step"])
        r = recvs[recvs["role"] == receiver].dropna(subset=["step"])
        if s.empty or r.empty:
            continue
        big = s.loc[s["bytes_payload"].idxmax()]
        got = r[r["step"] == big["step"]]
        if len(got):
            seconds = float(got["t_end"].iloc[0] - big["t_start"])
            size = float(big["bytes_payload"] + big.get("bytes_framing", 0))
            out[f"{direction}_message_mbps"] = size * 8 / seconds / 1e6 if seconds > 0 else None
            out[f"{direction}_message_bytes"] = int(size)
    return out


TOOL_FILES = {"up": "iperf3_up.json", "down": "iperf3_down.json", "ping": "ping.txt"}
MAX_TOOL_FILE_B = 4 << 20


def tool_measurements(edge_dir: Path) -> dict:
    """What iperf3 and ping measured between the machines, from the files the bundle's
    README has the edge write (each optional; a file that is not what it should be is named
    in a one-line error)."""
    out = {}
    for direction in ("up", "down"):
        path = edge_dir / TOOL_FILES[direction]
        if not path.is_file():
            continue
        try:
            if path.stat().st_size > MAX_TOOL_FILE_B:
                raise ValueError("too large")
            bps = json.loads(path.read_text())["end"]["sum_received"]["bits_per_second"]
            if isinstance(bps, bool) or not isinstance(bps, (int, float)) or not 0 < bps < 1e13:
                raise ValueError(bps)
        except (OSError, ValueError, KeyError, TypeError):
            raise HarnessError(f"{path}: not the JSON report of iperf3 -J (end.sum_received."
                               f"bits_per_second)") from None
        out[f"{direction}_iperf3_mbps"] = bps / 1e6
    ping = edge_dir / TOOL_FILES["ping"]
    if ping.is_file() and ping.stat().st_size <= MAX_TOOL_FILE_B:
        times = sorted(float(t) for t in re.findall(r"time=([0-9.]+) ms", ping.read_text()))
        if not times:
            raise HarnessError(f"{ping}: no 'time=... ms' line: not the output of ping")
        out["rtt_ping_ms"], out["ping_probes"] = times[len(times) // 2], len(times)
    return out


def observed_profile(observed: dict, link: str) -> dict | None:
    """A link profile with the numbers measured between the machines, for an emulated run of
    the same case to compare with: iperf3's goodput and ping's median round trip where the
    edge ran them, else the workers' own (message goodput, up's where down carried no
    message; the clock sync's round trip); None without an uplink rate or a round trip."""
    tools = observed.get("tools") or {}
    up = tools.get("up_iperf3_mbps") or observed.get("up_message_mbps")
    rtt = tools.get("rtt_ping_ms") or observed.get("rtt_start_ms")
    if not up or rtt is None or rtt != rtt:
        return None
    down = tools.get("down_iperf3_mbps") or observed.get("down_message_mbps")
    said = ("collect: iperf3 and ping between the machines" if tools else
            "collect: observed by the two-machine run's workers")
    what = {"up": "iperf3's goodput" if tools.get("up_iperf3_mbps") else
            "the largest uplink message's goodput",
            "down": "iperf3 -R's goodput" if tools.get("down_iperf3_mbps") else
            "the largest downlink message's goodput" if down else "not measured: the uplink's",
            "rtt": "half ping's median round trip" if tools.get("rtt_ping_ms") else
            "half the clock sync's round trip"}
    from harness.emulation.links import MAX_MBPS
    rates = {d: round(r, 3) for d, r in (("up", up), ("down", down or up))}
    for d, rate in rates.items():
        if rate > MAX_MBPS:        # the emulator's ceiling: said in the profile's source
            what[d] += f" ({rate:g} Mbit/s, capped at the emulator's {MAX_MBPS:g})"
            rates[d] = MAX_MBPS
    return {"name": f"{link}_observed", "up_mbps": rates["up"],
            "down_mbps": rates["down"], "up_delay_ms": round(rtt / 2, 3),
            "down_delay_ms": round(rtt / 2, 3), "jitter_ms": 0, "loss_pct": 0,
            "queue_packets": 1000, "source": {
                "up_mbps": f"{said}: {what['up']}", "down_mbps": f"{said}: {what['down']}",
                "up_delay_ms": f"{said}: {what['rtt']}", "down_delay_ms": f"{said}: {what['rtt']}",
                "jitter_ms": "not measured: 0", "loss_pct": "not measured: 0",
                "queue_packets": "chosen: large enough not to drop at these rates"}}


def collect(edge_dir: Path, cloud_dir: Path, out: Path, link: str = "real") -> Path:
    """Assemble OUT as a one-case run directory from the two workers' directories."""
    from harness.analysis.summary import build_summary
    from harness.analysis.totals import load_events, steady, totals
    from harness.run.rundir import run_meta, write_state
    from harness.train.batches import batches_per_epoch, load_case_data
    from harness.workers.common import load_case
    (case, edge_hash), (_, cloud_hash) = load_case(edge_dir), load_case(cloud_dir)
    if edge_hash != cloud_hash:
        raise HarnessError(f"{edge_dir}/case.json and {cloud_dir}/case.json differ: not one case")
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"--out {out}: exists and is not empty")
    case = dataclasses.replace(case, link=link)
    case_dir = out / f"000-{case.label}-r0"
    case_dir.mkdir(parents=True)
    write_json(case_dir / "case.json", case.to_dict(), indent=2)
    for role, src in zip(ROLES, (edge_dir, cloud_dir)):
        for name in [f"{role}.{ext}" for ext in COPIED] + list(PART_FILES):
            if (src / name).is_file() and not (case_dir / name).exists():
                shutil.copyfile(src / name, case_dir / name)
    events = load_events(case_dir)
    roles = ("edge",) if case.method == "edge" else ROLES
    verdicts = [worker_status(events, role) for role in roles]
    failed = [reason for status, reason in verdicts if status != "ok"]
    write_json(case_dir / "status.json", {"status": "failed" if failed else "ok",
                                          "reason": "; ".join(failed)})
    result = totals(events)
    write_json(case_dir / "totals.json", result, indent=2)
    train, test = load_case_data(case)
    n_full = batches_per_epoch(case, len(train)) * case.training.epochs
    write_json(case_dir / "case_info.json", {
        "rep": 0, "full_steps": n_full, "measured_steps": result["steps"],
        "budget_steps": n_full, "launcher": "two machines (collected)", "dilation": 1.0,
        "stopped_early": False, "steady": steady(events, n_full, case.method)})
    observed = observed_link(events)
    if tools := tool_measurements(edge_dir):
        observed["tools"] = tools
        observed["measured_by"] = ("tools: iperf3 and ping run from the edge; the rest: the "
                                   "workers' own events (clock sync and messages)")
    write_json(case_dir / "linkcheck.json", {"link": link, "observed": observed}, indent=2)
    if profile := observed_profile(observed, link):
        import yaml
        (out / "observed_profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    if not failed:
        from harness.run.case import evaluate_case
        acc = evaluate_case(case, case_dir, train, test)
        acc.update(test_samples=len(test), acc_source=f"measured: the two-machine run's final "
                                                       f"weights, {len(test)} test samples")
        write_json(case_dir / "accuracy.json", acc)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")   # host: the collector's
    write_json(out / "meta.json", run_meta(stamp, {
        "emulation": "none: two real machines", "scenario": RUN_NAME,
        "edge_dir": str(edge_dir), "cloud_dir": str(cloud_dir)}), indent=2)
    (out / "scenario.yaml").write_text(json.dumps({"name": RUN_NAME, "links": [link]}) + "\n")
    write_state(out, "complete", cases_total=1, cases_ok=0 if failed else 1,
                cases_failed=1 if failed else 0)
    build_summary(out, RUN_NAME).to_csv(out / "summary.csv", index=False)
    return out
