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
real one). The auto dilation keeps every target at least PACE_MARGIN times the host's real
step time, so overruns stay rare. Link, TCP and pipeline behaviour remain fully emulated; what
pacing gives up is the CPU contention between a worker's compute and its own network work.
"""
from __future__ import annotations

import dataclasses

from harness.analysis.tables import part_label
from harness.config import Case
from harness.errors import HarnessError

# Target / real step time that the dilation keeps at least: real steps vary by about +-20%
# around their cached cost on this machine (see above), so 1.5 leaves room for that drift and
# for two hosts computing at once.
PACE_MARGIN = 1.5

# The compute spans of each method's workers, by role and phase (harness.workers.edge/cloud).
PACED_STEPS = {"hierarchical": {"edge": ("step",), "cloud": ("step",)},
               "split": {"edge": ("forward", "backward"), "cloud": ("step",)},
               "cloud": {"cloud": ("step",)},
               "edge": {"edge": ("step",)}}


def pace_targets(case: Case) -> dict:
    """{role: {phase: seconds}} of each compute span of the case's method: the runtime model's
    per-batch costs (predict.splits.case_costs) of the virtual device under the dilation."""
    from harness.predict.runtime import costs_from_profile
    from harness.predict.splits import case_costs
    profs, edge_cores, cloud_cores = case_costs(case)
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
