"""A `kind: accuracy` scenario as a list of trainings, model by model and seed by seed, so
every finished seed of a model is a complete table.

    python -c "from harness.config import load_scenario; from harness.study.plan import trainings; print(len(trainings(load_scenario('scenarios/accuracy.yaml')[0])))"

Per seed and model: end-to-end training once (its weights do not depend on the split point:
the network is built from the seed alone, and split, cloud-only and edge-only reach the same
weights, tested), then hierarchical training at every split point and exit head of the
scenario. The end-to-end run is the reference every hierarchical run is paired with by seed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.catalog import split_points
from harness.config import Case, Scenario

E2E = "end-to-end"
HIERARCHICAL = "hierarchical"


@dataclass(frozen=True)
class Training:
    kind: str                 # end-to-end or hierarchical
    case: Case                # method edge (end-to-end, one process) or hierarchical

    @property
    def label(self) -> str:
        m = self.case.model
        where = f"{m.split}-{m.exit_head}" if self.kind == HIERARCHICAL else "e2e"
        return f"{m.arch}-{where}-seed{self.case.training.seed}"


def trainings(scenario: Scenario) -> list[Training]:
    """Every training of the study, in the order it runs: model by model, and within a model
    seed by seed, so a study cut short holds complete seeds of the first models."""
    out = []
    for arch in scenario.archs:
        splits = [s for s in scenario.splits if s in split_points(arch)]
        for seed in scenario.seeds:
            training = dataclasses.replace(scenario.training, seed=seed)
            base = dataclasses.replace(scenario.model, arch=arch, split=splits[0],
                                       exit_head=scenario.heads[0])
            out.append(Training(E2E, Case(scenario.dataset, base, training, scenario.compute,
                                          "edge")))
            for split in splits:
                for head in scenario.heads:
                    model = dataclasses.replace(base, split=split, exit_head=head)
                    out.append(Training(HIERARCHICAL, Case(scenario.dataset, model, training,
                                                           scenario.compute, "hierarchical")))
    return out
