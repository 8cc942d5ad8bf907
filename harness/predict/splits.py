"""Predictions for cases and split-point selection, from cached profiles and link profiles.

    python run_bench.py predict --model vgg16 --model resnet18 --links 3g,4g,wifi

Everything printed here is a MODEL PREDICTION from per-block costs measured on this machine,
never a measurement; the emulated runs carry the measurement next to it (`predicted_s`).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.config import Case, dilation_of
from harness.emulation.links import LinkProfile
from harness.predict.costs import load_or_measure
from harness.emulation.devices import load_device
from harness.predict.targets import CAP_MARGIN, capped_costs, device_costs
from harness.predict.runtime import Prediction, costs_from_profile, predict, scaled, sizes_for
from harness.predict.transfer import LinkRates
from harness.train.data import SPECS



def profiles_for(arch: str, width: float, dataset: str, batch: int, edge_threads: int,
                 cloud_threads: int) -> tuple[dict, dict]:
    edge = load_or_measure(arch, width, dataset, batch, edge_threads)
    cloud = edge if cloud_threads == edge_threads else load_or_measure(arch, width, dataset,
                                                                         batch, cloud_threads)
    return edge, cloud


def act_bytes(profile: dict, split: str) -> int:
    return next(b["out_bytes_per_sample"] for b in profile["blocks"] if b["block"] == split)


def stored_bytes(dataset: str) -> int:
    spec = SPECS[dataset]
    return spec.channels * spec.stored_side ** 2


def predict_for(arch_prof: tuple[dict, dict], split: str, dataset: str, method: str, codec: str,
                link: LinkProfile, edge_cores: float, cloud_cores: float, batch: int,
                n: int, epochs: int = 1, factors: dict | None = None, bbr: bool = True,
                head: str = "dgl") -> Prediction:
    """Predicted wall time of one method at one split over one link, for n batches/epoch;
    `factors` ({"edge": f, "cloud": f}) scale each side's compute by a measured correction;
    `bbr`: the workers' TCP runs BBR (its PROBE_RTT is modelled; other algorithms: not)."""
    edge_prof, cloud_prof = arch_prof
    costs = costs_from_profile(edge_prof, cloud_prof, split, edge_cores, cloud_cores, head)
    if factors:
        costs = scaled(costs, factors.get("edge", 1.0), factors.get("cloud", 1.0))
    sizes = sizes_for(act_bytes(edge_prof, split), stored_bytes(dataset), batch, codec)
    if link.time_varying:   # capacity integrated over its time
        from harness.predict.varying import predict_varying
        return predict_varying(link, method, costs, sizes, n, epochs, bbr)
    return predict(method, costs, sizes, LinkRates.from_profile(link, bbr), n, epochs)


def case_costs(case: Case, as_specified: bool = False) -> tuple[tuple[dict, dict], float, float]:
    """(block costs per side, edge cores, cloud cores) the model uses for a case: measured on
    this machine, or a named device's modelled times (then its side counts as one core) --
    capped, under compute.over_ceiling: cap, at what this machine holds as a paced step
    (predict.targets.capped_costs), unless `as_specified` (the device's own times)."""
    c, m = case.compute, case.model
    profs = list(profiles_for(m.arch, m.width, case.dataset.name, case.training.batch_size,
                              c.edge_threads, c.cloud_threads))
    k = dilation_of(c)            # under time dilation every host computes k times slower
    cores = [c.host_cores("edge"), c.host_cores("cloud")]
    for i, name in enumerate((c.edge_device, c.cloud_device)):
        if name is not None:      # the device's modelled times, as its host is calibrated to
            host, profs[i] = profs[i], device_costs(profs[i], load_device(name))
            if c.over_ceiling == "cap" and not as_specified:
                profs[i] = capped_costs(profs[i], host, k, CAP_MARGIN)
            cores[i] = 1.0 / k
    return (profs[0], profs[1]), cores[0], cores[1]


def capped_roles(case: Case, at_least: float = 1.01) -> dict:
    """{role: how many times slower than the device's own its capped whole network runs},
    for the device roles that compute.over_ceiling: cap slows by at least `at_least`."""
    if case.compute.over_ceiling != "cap":
        return {}
    profs = case_costs(case)[0]
    return {role: prof["capped_by"] for role, prof in zip(("edge", "cloud"), profs)
            if prof.get("capped_by", 1.0) >= at_least}


def role_steps(case: Case) -> dict:
    """The model's per-batch seconds of each worker's step for a case, by (role, part): `edge`
    is the hierarchical edge (preprocessing, edge part, exit head), `cloud` the cloud part,
    `full` the whole network with preprocessing (edge-only on the edge, cloud-only in the
    cloud)."""
    profs, edge_cores, cloud_cores = case_costs(case)
    c = costs_from_profile(profs[0], profs[1], case.model.split, edge_cores, cloud_cores,
                           case.model.exit_head)
    return {("edge", "edge"): c.edge_fwd_s + c.edge_bwd_s + c.head_s,
            ("cloud", "cloud"): c.cloud_s,
            ("edge", "full"): c.full_edge_s, ("cloud", "full"): c.full_cloud_s}


def predict_case(case: Case, link: LinkProfile, n: int, epochs: int = 1,
                 factors: dict | None = None, as_specified: bool = False,
                 bbr: bool = True) -> Prediction:
    """The prediction for an emulated case of n batches per epoch (cloud-only's later epochs
    train from its cache); `as_specified`: its devices uncapped (case_costs)."""
    profs, edge_cores, cloud_cores = case_costs(case, as_specified)
    return predict_for(profs, case.model.split, case.dataset.name, case.method, case.codec, link,
                       edge_cores, cloud_cores, case.training.batch_size, n, epochs, factors,
                       bbr, case.model.exit_head)


@dataclass(frozen=True)
class Ranked:
    split: str
    hierarchical_s: float
    bottleneck: str
    edge_mem_bytes: int
    baselines: dict          # method -> predicted seconds


def edge_memory(profile: dict, split: str, batch: int, edge_params: int, head_params: int) -> int:
    """Parameters (weights, grads, momentum: 3 x 4 B) + activations kept for backward (fp32)."""
    names = [b["block"] for b in profile["blocks"]]
    kept = sum(b["out_bytes_per_sample"] for b in profile["blocks"][:names.index(split) + 1])
    return 12 * (edge_params + head_params) + batch * kept


def rank_splits(arch: str, profs: tuple[dict, dict], dataset: str, codec: str, link: LinkProfile,
                edge_cores: float, cloud_cores: float, batch: int, n: int,
                params: dict[str, tuple[int, int]], max_edge_mem: int | None = None,
                min_edge_acc: dict[str, float] | None = None, min_acc: float = 0.0) -> list[Ranked]:
    """Split points by predicted hierarchical runtime, fastest first, after the constraints."""
    out = []
    for split, (edge_params, head_params) in params.items():
        mem = edge_memory(profs[0], split, batch, edge_params, head_params)
        if max_edge_mem is not None and mem > max_edge_mem:
            continue
        if min_edge_acc and split in min_edge_acc and min_edge_acc[split] < min_acc:
            continue
        args = (profs, split, dataset)
        rest = (codec, link, edge_cores, cloud_cores, batch, n)
        h = predict_for(*args, "hierarchical", *rest)
        base = {mth: predict_for(*args, mth, *rest).total_s for mth in ("split", "cloud", "edge")}
        out.append(Ranked(split, h.total_s, h.bottleneck, mem, base))
    return sorted(out, key=lambda r: r.hierarchical_s)
