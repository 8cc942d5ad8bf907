"""Virtual speeds: the time dilation factor a run uses, resolved before any work.

    python run_bench.py run scenarios/quick.yaml --set compute.cloud_cores=4   # prints x4

`compute.dilation: auto` becomes the smallest whole factor at which both hosts fit this
machine (harness.emulation.dilation); a device's virtual cores come from the runtime model's
timed block costs and the device's sustained rate. The resolved factor is what every case
carries, so workers, the summary and `--resume` see one number. A dilated run does not use
BBR (its PROBE_RTT does not dilate): tcp_cc unset becomes reno, said so; tcp_cc: bbr is
refused with the reason.
"""
from __future__ import annotations

import dataclasses
import os

from harness.config import Scenario, dilation_of
from harness.emulation.dilation import (FACTOR_STEP, check_rtt, choose_factor, factor_needed,
                                        round_up)
from harness.errors import HarnessError
from harness.run.pacing import PACE_MARGIN


def resolve_dilation(scenario: Scenario, profiles: dict, opts) -> Scenario:
    """The scenario with compute.dilation a number: 'auto' becomes the smallest factor (in
    tenths) that fits this machine (devices: the cores the runtime model's timed costs say they need,
    plus the calibration's tolerance); refused above compute.max_dilation or when it would
    stretch a link's RTT past the workers' handshake budget."""
    c = scenario.compute
    if not opts.emulate:
        if c.dilation not in (None, 1):
            raise HarnessError("compute.dilation: time dilation needs emulated links and CPU "
                               "shares; --loopback has neither")
        return dataclasses.replace(scenario, compute=dataclasses.replace(c, dilation=1.0))
    k, how = c.dilation, "set in the scenario"
    threads = {"edge": c.edge_threads, "cloud": c.cloud_threads}
    margin = PACE_MARGIN if c.pace else 1.0
    cores, why = _virtual_cores(scenario) if c.pace or k is None else ({}, {})
    modelled = modelled_roles(c, cores, threads, margin, c.max_dilation if k is None else k)
    for role in modelled:       # no real compute: it takes none of this machine's cores
        cores[role] = 0.0
    if k is None:
        need = factor_needed(cores, threads, os.cpu_count() or 1, margin)
        if c.over_ceiling == "cap" and need > c.max_dilation:
            k, how = c.max_dilation, (f"compute.max_dilation; x{need:.3g} would be needed: "
                                      f"{'; '.join(why.values()) or 'the cores of both hosts'}")
        else:
            k = choose_factor(cores, threads, os.cpu_count() or 1, c.max_dilation, why, margin)
            how = (f"chosen automatically: the smallest factor in steps of {FACTOR_STEP:g} that "
                   f"fits this machine") + (
                f", a paced device's whole network given {PACE_MARGIN:g}x this machine's timed "
                f"cost for it" if c.pace else "")
    elif c.pace and c.over_ceiling != "cap":
        short = [r for r, n in cores.items() if n * PACE_MARGIN / k > threads[r] + 1e-9]
        if short:
            opts.echo(f"warning: compute.dilation x{k:g} leaves the paced {' and '.join(short)} "
                      f"less than {PACE_MARGIN:g}x its whole network's real time: expect overruns "
                      f"(counted per case); 'auto' would choose a factor that fits")
    for profile in profiles.values():
        check_rtt(profile, k)
    scenario = _dilated_cc(scenario, k, opts)
    if k != 1 or not opts.quiet:
        opts.echo(f"time dilation x{k:g} ({how})" + ("" if k == 1 else
                  f": link rates / {k:g}, delays x {k:g}, CPU shares / {k:g}, times reported "
                  f"/ {k:g}"))
    resolved = dataclasses.replace(scenario, compute=dataclasses.replace(
        c, dilation=k, modelled=modelled))
    for role in modelled:
        opts.echo(modelled_line(resolved, role, why[role]))
    for line in capped_lines(resolved):
        opts.echo(line)
    return resolved


def settle(scenario: Scenario, unpicked: Scenario, profiles: dict, opts) -> Scenario:
    """The scenario as it runs: dilation resolved, splits picked under the workers' TCP, and
    how close its paced steps sit to their targets on this machine (pace_line)."""
    resolved = picks_under_cc(resolve_dilation(scenario, profiles, opts), unpicked, profiles, opts)
    line = pace_line(resolved) if opts.emulate else None
    if line and (not opts.quiet or line.startswith("warning")):
        opts.echo(line)
    return resolved


def pace_line(scenario: Scenario) -> str | None:
    """'paced steps: target / this machine's timed cost from x1.20 (vgg16@conv4 split
    learning's edge forward) to x1.72 ...', or a warning naming the steps whose target is below
    their timed cost (each will overrun); None when nothing is paced."""
    from harness.run.pacing import step_margins
    margins = step_margins(scenario.cases())
    if not margins:
        return None
    k = dilation_of(scenario.compute)
    short = [(m, name) for m, name in margins if m < 1]
    if short:
        return (f"warning: paced steps under dilation x{k:g} whose target is below this "
                f"machine's timed cost for them (each will overrun, counted per case): "
                + "; ".join(f"{name} x{m:.2f}" for m, name in short)
                + f"; compute.dilation x{round_up(k / short[0][0]):g} or more would fit them")
    (low, low_name), (high, high_name) = margins[0], margins[-1]
    return (f"paced steps: target / this machine's timed cost (cached block costs) from "
            f"x{low:.2f} ({low_name}) to x{high:.2f} ({high_name}) under dilation x{k:g}; a "
            f"step over its target is an overrun, counted per case")


def modelled_roles(c, cores: dict, threads: dict, margin: float, k_max: float) -> tuple:
    """The device roles this machine cannot pace even at dilation `k_max` (their cores x the
    pace margin beyond the host's threads x k_max): modelled under compute.over_ceiling: model
    with paced compute, in role order; () otherwise."""
    if not (c.pace and c.over_ceiling == "model"):
        return ()
    return tuple(r for r in ("edge", "cloud") if getattr(c, f"{r}_device") is not None
                 and margin * cores[r] / threads[r] > k_max * (1 + 1e-9))


def modelled_line(scenario: Scenario, role: str, why: str) -> str:
    """'modelled compute: cloud device a100 (...would need ~180 cores), beyond ...'."""
    from harness.emulation.devices import load_device
    c = scenario.compute
    device = load_device(getattr(c, f"{role}_device"))
    return (f"modelled compute: {role} ({why}) is beyond what this machine can pace under "
            f"compute.max_dilation x{c.max_dilation:g}: its steps wait their modelled time "
            f"(training FLOPs / {device.sustained_gflops:.4g} GFLOP/s sustained) with no real "
            f"compute, while every message keeps its real size on the emulated link; its "
            f"runtimes are MODELLED compute, not measured compute")


BBR_DILATED = ("BBR's PROBE_RTT runs on real-time timers, so a dilated BBR flow spends more of "
               "its virtual time there (measured, k = 4 against k = 1 over 3g: split +8.5%, "
               "cloud-only +8.7%, beyond the 5% dilation must hold); reno, clocked by "
               "acknowledgements, agreed within 2.0% (README, time dilation)")


def _dilated_cc(scenario: Scenario, k: float, opts) -> Scenario:
    """A dilated run (k != 1) never runs BBR: with tcp_cc unset (the kernel's default) its
    workers use reno, said in one line; with tcp_cc: bbr set, the run is refused."""
    if k == 1:
        return scenario
    if scenario.tcp_cc == "bbr":
        raise HarnessError(f"tcp_cc: bbr under time dilation x{k:g} is refused: {BBR_DILATED}; "
                           f"set tcp_cc: reno, or compute.dilation: 1")
    if scenario.tcp_cc is None and _kernel_cc() == "bbr":
        opts.echo(f"tcp_cc: reno for this run, not the kernel's default bbr: the run is dilated "
                  f"x{k:g} and {BBR_DILATED}")
        return dataclasses.replace(scenario, tcp_cc="reno")
    return scenario


def picks_under_cc(resolved: Scenario, unpicked: Scenario, profiles: dict, opts) -> Scenario:
    """model.split: auto picked again when dilation changed the workers' TCP (BBR to reno), so
    the runtime model's picks and figures are those for the TCP this run uses; the factor does
    not depend on the picks (devices' cores come from whole networks)."""
    if resolved.tcp_cc == unpicked.tcp_cc or not resolved.picked_splits:
        return resolved
    opts.echo(f"split: auto picked again with TCP {resolved.tcp_cc}, which this dilated run's "
              f"workers use:")
    again = opts.resolve(dataclasses.replace(unpicked, tcp_cc=resolved.tcp_cc), profiles)
    out = dataclasses.replace(resolved, splits=again.splits, chosen_splits=again.chosen_splits,
                              picked_splits=again.picked_splits)
    shown = set(capped_lines(resolved))
    for line in capped_lines(out):
        if line not in shown:
            opts.echo(line)
    return out


def capped_lines(scenario: Scenario) -> list[str]:
    """'capped: cloud device a100, vgg16@conv4: ...' for each device and (model, split) that
    compute.over_ceiling: cap slows below the device's own speed (harness.predict.splits)."""
    from harness.predict.splits import capped_roles, role_steps
    out, seen = [], set()
    for case in scenario.cases():
        pair = (case.model.arch, case.model.split)
        if pair in seen:
            continue
        seen.add(pair)
        for role, slower in capped_roles(case).items():
            full = role_steps(case)[(role, "full")] / dilation_of(case.compute)
            out.append(f"capped: {role} device {getattr(case.compute, f'{role}_device')}, "
                       f"{pair[0]}@{pair[1]}: its steps run x{slower:.3g} slower than the "
                       f"device's modelled speed (whole network {full * 1e3:.4g} ms/batch "
                       f"emulated, {full / slower * 1e3:.4g} ms modelled): the fastest this "
                       f"machine holds under dilation x{dilation_of(case.compute):g} "
                       f"(compute.over_ceiling: cap); the summary's predicted_device_full_s "
                       f"is the model's runtime for the device as specified")
    return out


def _virtual_cores(scenario: Scenario) -> tuple[dict, dict]:
    """(role -> virtual cores, role -> how found): compute.*_cores, or for a device the cores
    of this machine its sustained rate equals (timed block costs), the slowest model's."""
    from harness.predict.splits import profiles_for
    from harness.predict.targets import cores_needed
    from harness.run.computecheck import devices_of
    c, devices = scenario.compute, devices_of(scenario.compute)
    cores = {"edge": c.edge_cores, "cloud": c.cloud_cores}
    why = {}
    for i, (role, device) in enumerate((r, devices.get(r)) for r in ("edge", "cloud")):
        if device is None:
            continue
        need = max(cores_needed(device, profiles_for(
            arch, scenario.model.width, scenario.dataset.name, scenario.training.batch_size,
            c.edge_threads, c.cloud_threads)[i]) for arch in scenario.archs)
        cores[role] = need * (1 + scenario.tolerances.compute_rel)
        why[role] = f"compute.{role}_device: {device.name} would need ~{need:.3g} cores"
    return cores, why


def _kernel_cc() -> str:
    """This kernel's default TCP congestion control (what workers use without tcp_cc)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"
