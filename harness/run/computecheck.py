"""Compute calibration: each host's per-batch training time under its CPU share, measured in
the emulated host, set to a device profile's target.

    compute: {edge_device: rpi4}      # in a scenario; `run` calibrates after the first link's

A device's target per batch is its part's training FLOPs over its sustained rate
(predict.targets): the edge part and exit head for the edge, the cloud part for the cloud, at
each (model, split) of the scenario. A probe (harness.train.steptime) imports torch outside the
host's cgroup, is moved into it, and times the hierarchical worker's step of that part. Per
host and (model, split): a round at one full core, then the share set to (that time / target)
cores and measured; off the target by more than `tolerances.compute_rel`, the share is scaled
by the ratio and measured again, up to `SHARE_ROUNDS` rounds in all (each recorded); still
off, the run stops with the figures (written to computecheck.json). Why more than one: a
small share costs more CPU per batch than a full core, so the first scaled share lands slow
(measured: +9% to +63% at 0.03 core). A share under `MIN_SHARE_CORES` is refused before its
rounds, naming compute.pace: true instead: there the CPU per batch moves by more than the
tolerance from round to round (`SMALL_SHARE_NOISE`). Each case
then runs at its model's share (one share does not fit two models: measured 0.195 core gave
ResNet-18 +8% and VGG-16 +29% against their targets). CFS needs at least
1 ms of quota per period, so a share under 0.1 core gets a longer period. Under time dilation
k (harness.emulation.dilation) every target is k times the device's time, so a device k times
faster than the cores this machine can give a host still fits; one faster than that is
refused with the cores it would need.

Every emulated run (devices or not) also measures how the model's compute estimates fit the
shares (harness.run.factors), on the same hosts right after the calibration. All of this runs
once per run, on the first link's hosts (shares are this machine's cores, not a link's), and
is written to each links/<link>/computecheck.json.
"""
from __future__ import annotations

from pathlib import Path

from harness.config import dilation_of
from harness.files import write_json
from harness.emulation.devices import load_device
from harness.emulation.dilation import HOST_CORES_LEFT
from harness.errors import HarnessError
from harness.predict.targets import part_targets
from harness.run.computeprobe import PROBE_BATCHES, Probe, set_share

ROLE_PARTS = {"edge": ("edge", "head"), "cloud": ("cloud",)}
SHARE_ROUNDS = 4                  # rounds at a calibrated share, at most (after the full core)
MIN_SHARE_CORES = 0.1             # below it a share is refused: too noisy to calibrate
SMALL_SHARE_NOISE = ("measured for an rpi4 edge, VGG-16 conv7, batch 32: 36-50 ms of CPU per "
                     "batch at 0.028-0.049 core in 1 ms quotas, round medians 0.80-1.63 s "
                     "where 1.0 s was wanted, against 28-36 ms at a full core")


def devices_of(compute) -> dict:
    """{role: DeviceProfile} for the roles whose compute.<role>_device is set."""
    out = {}
    for role in ("edge", "cloud"):
        name = getattr(compute, f"{role}_device")
        if name is not None:
            try:
                out[role] = load_device(name)
            except HarnessError as exc:
                raise HarnessError(f"compute.{role}_device: {exc}") from None
    return out


def _target(device, scenario, arch: str, split: str, role: str) -> float:
    """The host's per-batch target: the device's modelled time, x k under time dilation."""
    t = part_targets(device, arch, scenario.model.width, scenario.dataset.name,
                     scenario.training.batch_size, split, scenario.model.exit_head)
    return sum(t[part]["target_s"] for part in ROLE_PARTS[role]) * dilation_of(scenario.compute)


def calibrate_pair(link, scenario, role: str, device, max_cores: float, arch: str,
                   split: str) -> dict:
    """Find and check the share that makes this host compute `arch`@`split` like `device`."""
    tol = scenario.tolerances.compute_rel
    target = _target(device, scenario, arch, split, role)
    full_cores = min(1.0, max_cores)
    k = dilation_of(scenario.compute)
    row = {"arch": arch, "split": split, "parts": "+".join(ROLE_PARTS[role]),
           "target_s": target, "dilation": k, "device_target_s": target / k, "rounds": []}
    probe = Probe(link, role, scenario, arch, split, getattr(scenario.compute, f"{role}_threads"))
    try:
        set_share(role, full_cores)
        full = probe.measure()
        row["rounds"].append({"cores": full_cores, "median_s": full})
        wanted = full * full_cores / target
        if wanted > max_cores:
            raise HarnessError(
                f"compute.{role}_device: {device.name} would need {wanted:.2f} cores of this "
                f"machine for {arch}@{split} (target {target * 1e3:.3g} ms per batch at time "
                f"dilation x{k:g}, {full * 1e3:.3g} ms at {full_cores:g} core); at most "
                f"{max_cores:.2f} can be given to the {role}: set a larger compute.dilation "
                f"(up to compute.max_dilation), or choose a slower device")
        if wanted < MIN_SHARE_CORES:
            raise HarnessError(
                f"compute.{role}_device: {device.name} would get {wanted:.3f} core of this "
                f"machine for {arch}@{split} (target {target * 1e3:.4g} ms per batch, "
                f"{full * 1e3:.3g} ms at {full_cores:g} core); under a CFS share below "
                f"{MIN_SHARE_CORES:g} core a batch's CPU time moves by more than the "
                f"{tol:.0%} tolerance ({SMALL_SHARE_NOISE}): set compute.pace: true (each step "
                f"waits out the device's modelled time)")
        share = set_share(role, wanted)
        for attempt in range(SHARE_ROUNDS):     # the share, then scaled by each round's miss
            measured = probe.measure()
            ratio = measured / target
            row["rounds"].append({**share, "median_s": measured, "ratio": ratio})
            if abs(ratio - 1) <= tol or attempt == SHARE_ROUNDS - 1:
                break
            share = set_share(role, min(max_cores, share["cores"] * ratio))
    finally:
        probe.close()
    return {**row, "measured_s": measured, "ratio": ratio, "ok": abs(ratio - 1) <= tol, **share}


def calibrate_compute(link, scenario) -> dict | None:
    """Compute calibration of each host with a device profile, per (model, split) of the
    scenario (None when no device is named): one share does not fit every model, since the
    FLOP count leaves out memory-bound work whose share differs between models."""
    devices = devices_of(scenario.compute)
    if not devices:
        return None
    ncpu = link.emulation.get("cpu_count", 1)
    pairs = sorted({(c.model.arch, c.model.split) for c in scenario.cases()})
    result = {"roles": {}, "method": f"the worker's step timed in the host under its CFS "
                                      f"share, median of {PROBE_BATCHES} batches"}
    for role, device in devices.items():
        other = "cloud" if role == "edge" else "edge"
        others = 0.0 if other in devices else scenario.compute.host_cores(other)
        threads = getattr(scenario.compute, f"{role}_threads")
        max_cores = max(0.0, min(threads, ncpu - HOST_CORES_LEFT - others))
        rows = [calibrate_pair(link, scenario, role, device, max_cores, arch, split)
                for arch, split in pairs]
        result["roles"][role] = {"device": device.to_dict(), "threads": threads, "rows": rows,
                                 "ok": all(r["ok"] for r in rows),
                                 "tolerance_rel": scenario.tolerances.compute_rel}
    result["ok"] = all(r["ok"] for r in result["roles"].values())
    return result


def share_setter(result: dict, link):
    """A function giving each host, before a case, the share calibrated for its model."""
    shares = {(role, row["arch"], row["split"]): row["cores"]
              for role, r in result["roles"].items() for row in r["rows"]}

    def apply(case) -> None:
        for role in result["roles"]:
            share = set_share(role, shares[(role, case.model.arch, case.model.split)])
            link.emulation[f"{role}_cfs_cores"] = share["cores"]
    return apply


def check_compute(link, scenario, link_dir: Path, opts, memo: dict):
    """Device shares (calibrated) and the model's compute factors (measured), once per run on
    the first link's hosts and reused on the others (the shares are numbers of this machine's
    cores, not properties of a link); written to each link's computecheck.json. Stops the run
    when a device is off target; returns the per-case share setter (None without devices)."""
    if "result" not in memo:
        # Paced hosts compute at full speed and wait out a device's modelled time: no share
        # to calibrate (harness.run.pacing).
        result = (None if scenario.compute.pace else calibrate_compute(link, scenario)) or {
            "roles": {}, "ok": True}
        if not opts.quiet:
            for line in summary_lines(result):
                opts.echo(line + ("" if dilation_of(scenario.compute) == 1 else
                                  " (targets and times in real seconds, x the dilation)"))
        if not result["ok"]:            # the figures stay with the stopped run
            write_json(link_dir / "computecheck.json", result, indent=2)
        require_ok(result)
        setter = share_setter(result, link) if result["roles"] else None
        from harness.analysis.tables import factor_lines
        from harness.run.factors import share_factors
        result["model_factors"] = share_factors(link, scenario, setter)
        result["measured_on_link"] = link.profile.name
        memo["result"] = result
        k = dilation_of(scenario.compute)
        real = "" if k == 1 else f" (real seconds under time dilation x{k:g})"
        if scenario.compute.pace:         # the same probes, read as real time vs pace target
            from harness.run.pacing import pace_lines, require_paceable
            if not opts.quiet:
                for line in pace_lines(result["model_factors"]):
                    opts.echo(line + real)
            write_json(link_dir / "computecheck.json", result, indent=2)   # kept if refused
            require_paceable(result["model_factors"])
        elif not opts.quiet:
            for line in factor_lines(result["model_factors"]):
                opts.echo(line + real)
    result = memo["result"]
    write_json(link_dir / "computecheck.json", result, indent=2)
    return share_setter(result, link) if result["roles"] else None


def summary_lines(result: dict) -> list[str]:
    """'compute edge = rpi4: vgg16@conv4 edge+head target 527 ms, measured 540 ms at 0.165
    core (+2.5%): ok' per (role, model)."""
    lines = []
    for role, r in result["roles"].items():
        for row in r["rows"]:
            lines.append(f"compute {role} = {r['device']['name']}: {row['arch']}@{row['split']} "
                         f"{row['parts']} target {row['target_s'] * 1e3:.4g} ms/batch, measured "
                         f"{row['measured_s'] * 1e3:.4g} ms at {row['cores']:.3f} core "
                         f"({row['ratio'] - 1:+.1%}): {'ok' if row['ok'] else 'OUT OF TOLERANCE'}")
    return lines


def require_ok(result: dict) -> None:
    """HarnessError naming each (role, model) off its device's target."""
    bad = [line for line in summary_lines(result) if line.endswith("OUT OF TOLERANCE")]
    if bad:
        raise HarnessError("compute calibration failed: " + "; ".join(
            b.replace(": OUT OF TOLERANCE", "") for b in bad)
            + f" (want within {100 * next(iter(result['roles'].values()))['tolerance_rel']:g}%)")
