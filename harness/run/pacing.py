"""Paced compute: each training step lasts the runtime model's time for it on the virtual device.

    run_bench.py run scenarios/quick.yaml          # compute.pace: true there

With CPU shares (compute.pace false) a host's step time is whatever this machine's cores give
under the cgroup quota, and this machine's speed drifts: one-thread steps of the same VGG-16
measured 124-190 ms per batch in 20-batch blocks a minute apart on an idle 2-core VM (no CPU
steal recorded). Cases bound by compute then move 10-30% between two runs, and no statistic
over one run can see it. Paced, the step runs at full speed (the host's share is a core per
thread) and the worker then waits until the step's target has passed (workers.events.span):
the target is the runtime model's per-batch time of that step on the virtual device (this
machine's cached block costs at compute.*_cores, or a device profile's FLOPs / sustained rate),
times the dilation k. Real compute time is recorded beside it (`busy_s`); a step whose real
compute exceeds its target is an overrun, counted per case and reported (its time is then the
real one). The auto dilation gives each paced device's whole network a target PACE_MARGIN
times this machine's timed cost for it, so overruns stay rare; a part's target can sit closer,
since this machine is not equally fast on every layer while a device's model is FLOPs at one
rate (VGG-16's first four convolutions run forward at 1.08x a Jetson Nano's modelled time
here, the whole network at 0.70x), and the run prints its tightest span (step_margins). Link,
TCP and pipeline behaviour remain fully emulated; what pacing gives up is the CPU contention between a worker's compute and its own network work.
"""
from __future__ import annotations

import dataclasses

from harness.analysis.tables import part_label
from harness.config import Case
from harness.errors import HarnessError

# Target / real time of a device's whole network that the dilation keeps at least: real steps
# vary by about +-20% around their cached cost on this machine (see above), so 1.5 leaves room
# for that drift, for two hosts computing at once, and for parts slower here than the whole.
PACE_MARGIN = 1.5

# The compute spans of each method's workers, by role and phase (harness.workers.edge/cloud).
PACED_STEPS = {"hierarchical": {"edge": ("step",), "cloud": ("step",)},
               "split": {"edge": ("forward", "backward"), "cloud": ("step",)},
               "cloud": {"cloud": ("step",)},
               "edge": {"edge": ("step",)}}
METHOD_NAMES = {"hierarchical": "hierarchical training", "split": "split learning",
                "cloud": "cloud-only", "edge": "edge-only"}


def pace_targets(case: Case) -> dict:
    """{role: {phase: seconds}} of each compute span of the case's method: the runtime model's
    per-batch costs (predict.splits.case_costs) of the virtual device under the dilation."""
    from harness.predict.splits import case_costs
    profs, edge_cores, cloud_cores = case_costs(case)
    return _spans(case, profs, edge_cores, cloud_cores)


def host_seconds(case: Case) -> dict:
    """pace_targets' spans as this machine computes them at full speed (its timed block costs
    at each host's thread count, no share): what a paced step really takes here."""
    from harness.predict.splits import profiles_for
    c, m = case.compute, case.model
    profs = profiles_for(m.arch, m.width, case.dataset.name, case.training.batch_size,
                         c.edge_threads, c.cloud_threads)
    return _spans(case, profs, float(c.edge_threads), float(c.cloud_threads))


def _spans(case: Case, profs, edge_cores: float, cloud_cores: float) -> dict:
    from harness.predict.runtime import costs_from_profile
    c = costs_from_profile(profs[0], profs[1], case.model.split, edge_cores, cloud_cores,
                           case.model.exit_head)
    seconds = {("hierarchical", "edge", "step"): c.edge_fwd_s + c.edge_bwd_s + c.head_s,
               ("hierarchical", "cloud", "step"): c.cloud_s,
               ("split", "edge", "forward"): c.edge_fwd_s,
               ("split", "edge", "backward"): c.edge_bwd_s,
               ("split", "cloud", "step"): c.cloud_s,
               ("cloud", "cloud", "step"): c.full_cloud_s,
               ("edge", "edge", "step"): c.full_edge_s}
    return {role: {phase: round(seconds[(case.method, role, phase)], 6) for phase in phases}
            for role, phases in PACED_STEPS[case.method].items()
            if getattr(case.compute, f"{role}_backend") == "cpu"}   # a GPU's time is its own


def step_margins(cases) -> list[tuple[float, str]]:
    """(target / this machine's timed cost, 'vgg16@conv4 split learning's edge forward') of
    every distinct paced span of `cases` (modelled roles compute nothing), tightest first. The
    auto dilation sizes each device's whole network; a part can sit closer to its target,
    since this machine is not equally fast on every layer while a device's model is FLOPs at
    one rate."""
    out, seen = {}, set()
    for case in cases:      # links and repetitions share a span: each is costed once
        key = (case.model.arch, case.model.split, case.method)
        if not case.compute.pace or key in seen:
            continue
        seen.add(key)
        host = host_seconds(case)
        for role, phases in pace_targets(case).items():
            if role in case.compute.modelled:
                continue
            for phase, target in phases.items():
                name = (f"{case.model.arch}@{case.model.split} {METHOD_NAMES[case.method]}'s "
                        f"{role} {phase}")
                out[name] = target / max(host[role][phase], 1e-9)
    return sorted((margin, name) for name, margin in out.items())


def paced(case: Case) -> Case:
    """The case with its pace targets filled in when its scenario paces compute."""
    if not case.compute.pace:
        return case
    return dataclasses.replace(case, compute=dataclasses.replace(case.compute,
                                                                 pace_s=pace_targets(case)))


def pace_lines(factors: dict) -> list[str]:
    """'paced compute, vgg16@conv7, both at once: edge 160 ms/batch real, 640 ms target
    (x4.00 margin), ...' per (model, split) and probe round (harness.run.factors): under
    pacing a probe's model time is the step's target, so target / real is the margin."""
    return [f"paced compute, {pair}, {name}: " + ", ".join(
                f"{role}{part_label(r)} "
                f"{r['measured_s'] * 1e3:.4g} ms/batch real, {r['model_s'] * 1e3:.4g} target "
                f"(x{1 / r['factor']:.2f} margin)" for role, r in roles.items())
            for pair, rounds in factors.items() for name, roles in rounds.items()]


def require_paceable(factors: dict) -> None:
    """HarnessError naming each host whose real step is slower than its pace target (pacing
    cannot shorten a step: its time would be the machine's, drift and all)."""
    slow = [f"{pair} {name}: {role} {r['measured_s'] * 1e3:.4g} ms real > "
            f"{r['model_s'] * 1e3:.4g} ms target"
            for pair, rounds in factors.items() for name, roles in rounds.items()
            for role, r in roles.items() if r["factor"] > 1]
    if slow:
        raise HarnessError("paced compute: steps slower than their targets (" + "; ".join(slow)
                           + "): set a larger compute.dilation, or 'auto'")
