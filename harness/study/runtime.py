"""Modelled runtime of every method at every split of a study, per link: where accuracy meets
time (the runtime-accuracy plot and split selection).

    python run_bench.py run scenarios/accuracy.yaml     # writes study_runtime.csv

These are MODEL PREDICTIONS (harness.predict: per-block costs measured on this machine, the
scenario's compute shares or device profiles, the link profile), for the study's own recipe
(its batch size and epochs), never measurements; every row says so in `runtime_source`.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from harness.catalog import split_points
from harness.config import Case
from harness.emulation.links import resolve_links
from harness.predict.splits import predict_case

SOURCE = ("modelled: runtime model from this machine's per-block costs, the scenario's "
          "compute and the link profile (not emulated)")


def modelled_runtimes(scenario, n_per_epoch: int) -> pd.DataFrame:
    """One row per (arch, split, exit head, method, link): predicted seconds for the study's
    epochs of n_per_epoch batches."""
    scenario, profiles = resolve_links(scenario)
    rows = []
    for arch in scenario.archs:
        splits = [s for s in scenario.splits if s in split_points(arch)]
        for link_name, link in profiles.items():
            for split in splits:
                for head in scenario.heads:
                    for method in scenario.methods:
                        if method != "hierarchical" and head != scenario.heads[0]:
                            continue       # only hierarchical training has an exit head
                        model = dataclasses.replace(scenario.model, arch=arch, split=split,
                                                    exit_head=head)
                        case = Case(scenario.dataset, model, scenario.training,
                                    scenario.compute, method, "fp32", link_name)
                        p = predict_case(case, link, n_per_epoch, scenario.training.epochs)
                        rows.append({"arch": arch, "split": split,
                                     "exit_head": head if method == "hierarchical" else "-",
                                     "method": method, "link": link_name,
                                     "predicted_s": p.total_s, "bottleneck": p.bottleneck,
                                     "runtime_source": SOURCE})
    return pd.DataFrame(rows)
