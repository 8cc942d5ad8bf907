"""The runtime model's compute corrections, measured under the run's CPU shares.

    python run_bench.py run scenarios/quick.yaml     # prints 'compute under the CPU shares, ...'

The runtime model scales one-core costs linearly by threads / cores, but CFS throttling makes
a half-core step 7-28% slower than twice a full-core one (measured), and two hosts busy at
once slow each other (shared caches and memory bandwidth, the kernel's network work on the
same cores). So every emulated run times the hosts' training steps in compute probes
(harness.run.computeprobe.Probe) under their shares, the three ways the methods compute
(FACTOR_ROUNDS): both hosts at once (hierarchical), one host while the other idles (split
learning's turns), and the whole network on one host (edge-only, cloud-only). Each round's
measured / modelled ratio is a factor; each method's predictions are scaled by its round's
factors (METHOD_ROUND); a round no method of the scenario uses is not measured. Once per
run, on the first link's hosts, beside the compute calibration, in computecheck.json under
`model_factors`.
"""
from __future__ import annotations

import math

from harness.run.computeprobe import Probe

FACTOR_BATCHES = 6             # timed batches per round (their median is the figure)

# How each method's workers compute, so which measurement corrects its prediction: the
# hierarchical edge and cloud train at the same time; split learning's take turns; edge-only
# and cloud-only train the whole network on one host while the other idles.
FACTOR_ROUNDS = {"both at once": {"edge": "edge", "cloud": "cloud"},
                 "alone": {"edge": "edge", "cloud": "cloud"},
                 "whole network alone": {"edge": "full", "cloud": "full"}}
WHOLE = "whole network alone"
METHOD_ROUND = {"hierarchical": "both at once", "split": "alone", "edge": "whole network alone",
                "cloud": "whole network alone"}
METHOD_ROLES = {"edge": ("edge",), "cloud": ("cloud",)}     # the others compute on both hosts


def needed_rounds(scenario) -> dict[str, set]:
    """The rounds the scenario's methods compute in, each with the hosts that compute in it
    (edge-only: the edge's whole network; cloud-only: the cloud's). Paced hosts own a core
    each, so split learning's "alone" is measured in "both at once"."""
    needed: dict[str, set] = {}
    for method in scenario.methods:
        name = METHOD_ROUND[method]
        if scenario.compute.pace and name == "alone":
            name = "both at once"
        needed.setdefault(name, set()).update(METHOD_ROLES.get(method, ("edge", "cloud")))
    return needed


def share_factors(link, scenario, setter) -> dict:
    """Per (model, split) and round of FACTOR_ROUNDS: each host's training step timed under
    its share (both hosts at once, or one while the other idles) over the runtime model's
    estimate, which scales a one-core cost linearly by threads / cores. The measured ratio
    (`factor`) corrects the predictions of the methods that compute that way (METHOD_ROUND).
    Only the rounds and hosts the scenario's methods compute with are measured. The whole
    network is the same at every split: unless a split has a share of its own (`setter`:
    calibrated per model and split), its round is measured at a model's first split and the
    others name it (`measured_with`)."""
    from harness.predict.splits import role_steps
    out, needed, whole = {}, needed_rounds(scenario), {}
    for case in {(c.model.arch, c.model.split): c for c in scenario.cases()}.values():
        arch, split = case.model.arch, case.model.split
        if setter is not None:
            setter(case)
        model = role_steps(case)
        probes, rounds = {}, {}
        todo = {name: hosts for name, hosts in needed.items()
                if not (name == WHOLE and arch in whole)}
        if WHOLE in needed and arch in whole:
            rounds[WHOLE] = {role: {**r, "measured_with": whole[arch][0]}
                             for role, r in whole[arch][1].items()}
        try:
            for role in ("edge", "cloud"):
                if role in scenario.compute.modelled or not any(role in r for r in todo.values()):
                    continue      # modelled (no real step: workers.modelled) or never computes
                probes[role] = Probe(link, role, scenario, arch, split,
                                     getattr(scenario.compute, f"{role}_threads"))
            for name, parts in FACTOR_ROUNDS.items():
                hosts = {r: p for r, p in probes.items() if r in todo.get(name, ())}
                if not hosts:
                    continue      # no method of this scenario computes this way (or measured)
                if name == "both at once":
                    for role, probe in hosts.items():
                        probe.start_round(FACTOR_BATCHES, parts[role])
                    measured = {role: probe.result() for role, probe in hosts.items()}
                else:
                    measured = {role: probe.measure(FACTOR_BATCHES, parts[role])
                                for role, probe in hosts.items()}
                rounds[name] = {role: {"part": parts[role], "measured_s": measured[role],
                                       "model_s": model[(role, parts[role])],
                                       "factor": measured[role] / model[(role, parts[role])]}
                                for role in hosts}
        finally:
            for probe in probes.values():
                probe.close()
        if WHOLE in rounds and arch not in whole and setter is None:
            whole[arch] = (f"{arch}@{split}", rounds[WHOLE])
        out[f"{arch}@{split}"] = {name: rounds[name] for name in FACTOR_ROUNDS if name in rounds}
    return out


def model_factors(memo: dict, case) -> dict | None:
    """{"edge": f, "cloud": f} measured for the case's (model, split) the way its method
    computes (METHOD_ROUND), None if not measured or when compute is paced (a paced step
    lasts the model's time: the probes then measure the margin, not a correction)."""
    if case.compute.pace:
        return None
    pairs = memo.get("result", {}).get("model_factors", {})
    found = pairs.get(f"{case.model.arch}@{case.model.split}", {}).get(METHOD_ROUND[case.method])
    return {role: r["factor"] for role, r in found.items()} if found else None


def case_predictions(case, link_profile, measured_steps: int, per_epoch: int, memo: dict,
                     tcp_cc: str = "bbr") -> dict:
    """The runtime model's predictions for a case: its measured window (`predicted_s`) and its
    full budget (`predicted_full_s`), with the bottleneck and busy times, and what the compute
    terms are (the pace targets, or costs scaled by the factors measured under the shares)."""
    from harness.predict.splits import predict_case
    gpu = [r for r in ("edge", "cloud") if getattr(case.compute, f"{r}_backend") != "cpu"]
    if gpu:                # a real GPU's step time is measured; the model has no such device
        return {"predicted_s": math.nan, "predicted_full_s": math.nan,
                "predicted_bottleneck": "", "predicted_busy": {},
                "predicted_by": f"not modelled: the {' and '.join(gpu)} trained on CUDA"}
    out = {}
    for key, n, epochs in (("predicted_s", measured_steps, 1),
                           ("predicted_full_s", per_epoch, case.training.epochs)):
        pred = predict_case(case, link_profile, n, epochs, model_factors(memo, case),
                            bbr=tcp_cc == "bbr")
        out[key] = pred.total_s
    from harness.predict.splits import capped_roles
    if capped_roles(case):      # the model's runtime for the devices as specified, uncapped
        out["predicted_device_full_s"] = predict_case(
            case, link_profile, per_epoch, case.training.epochs, as_specified=True,
            bbr=tcp_cc == "bbr").total_s
    how = ("compute = the pace targets the workers waited out" if case.compute.pace else
           "compute scaled by the factors measured under the CPU shares (computecheck.json)")
    return {**out, "predicted_bottleneck": pred.bottleneck, "predicted_busy": pred.busy,
            "predicted_by": f"runtime model (harness/predict/runtime.py), {how}"}
