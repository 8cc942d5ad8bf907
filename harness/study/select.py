"""The separation point under an accuracy budget (`model.split: auto`): per model and link, the
fastest split whose accuracy drop, measured by this machine's accuracy study, is within budget.

    python run_bench.py run scenarios/quick.yaml --set model.split=auto --set selection.by=runtime

A candidate is a split point the study trained hierarchically with the benchmark's exit head,
every seed cached under the current training code (harness.study.reuse); its drop is the
median over seeds of end-to-end minus hierarchical final-exit accuracy, paired by seed. Among
the candidates within `selection.max_accuracy_drop`, the fastest by the runtime model for the
benchmark's own case on that link wins. Without a cached study there is nothing to choose
from, and the run says so before any work, naming the command that trains it.

`selection: {by: runtime}` picks by the runtime model alone: the split predicted fastest for
hierarchical training on that link, accuracy not considered (where no accuracy can be
measured, e.g. generated data). Fixed splits listed beside `auto` run on every link as well;
the picks are kept in the run's meta.json (`picked_splits`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from harness.catalog import split_points
from harness.config import Case, Scenario
from harness.errors import HarnessError


@dataclass(frozen=True)
class Candidate:
    split: str
    drop: float               # end-to-end minus hierarchical final accuracy (median, paired)
    drop_ci: float
    runtime_s: float          # modelled, for the benchmark's own case on the link


def choose(candidates: list[Candidate], budget: float) -> tuple[Candidate | None, str]:
    """The fastest candidate whose drop is within `budget`, and why (one line)."""
    within = [c for c in candidates if c.drop <= budget]
    if not within:
        shown = ", ".join(f"{c.split} {100 * c.drop:.2f}" for c in candidates)
        return None, (f"no split within a drop of {100 * budget:.2f} points (measured drops: "
                      f"{shown or 'none'})")
    best = min(within, key=lambda c: c.runtime_s)
    rejected = [c for c in candidates if c.drop > budget and c.runtime_s < best.runtime_s]
    why = (f"{best.split}: {best.runtime_s:.1f} s modelled, accuracy drop "
           f"{100 * best.drop:.2f} ± {100 * best.drop_ci:.2f} points (budget "
           f"{100 * budget:.2f}), fastest of {len(within)} within budget")
    if rejected:
        why += "; faster but over budget: " + ", ".join(
            f"{c.split} ({c.runtime_s:.1f} s, drop {100 * c.drop:.2f})" for c in rejected)
    return best, why


def candidates_for(scenario: Scenario, arch: str, link_name: str, link) -> list[Candidate]:
    """Every split of `arch` the study cache covers, with its drop and modelled runtime."""
    from harness.predict.splits import predict_case
    from harness.study.reuse import converged_for
    out, bbr = [], _cc(scenario) == "bbr"
    for split in split_points(arch):
        model = dataclasses.replace(scenario.model, arch=arch, split=split)
        case = Case(scenario.dataset, model, scenario.training, scenario.compute,
                    "hierarchical", scenario.codecs[0], link_name)
        conv = converged_for(case)
        if conv is None or conv["gap"] != conv["gap"]:
            continue
        runtime = predict_case(case, link, budget_batches(scenario), scenario.training.epochs,
                               bbr=bbr).total_s
        out.append(Candidate(split, -conv["gap"], conv["gap_ci"], runtime))
    return out


def by_runtime(scenario: Scenario, arch: str, link_name: str, link) -> tuple[str, str]:
    """The split the runtime model predicts fastest for hierarchical training (selection:
    {by: runtime}; no accuracy constraint) and why (one line)."""
    from harness.predict.splits import predict_case
    times, cc = {}, _cc(scenario)
    for split in split_points(arch):
        model = dataclasses.replace(scenario.model, arch=arch, split=split)
        case = Case(scenario.dataset, model, scenario.training, scenario.compute,
                    "hierarchical", scenario.codecs[0], link_name)
        times[split] = predict_case(case, link, budget_batches(scenario), scenario.training.epochs,
                                    bbr=cc == "bbr").total_s
    best = min(times, key=times.get)
    runner_up = sorted(times.values())[1] if len(times) > 1 else float("nan")
    return best, (f"{best}: {times[best]:.1f} s modelled with TCP {cc}, fastest of "
                  f"{len(times)} splits by the runtime model (next {runner_up:.1f} s; accuracy "
                  f"not considered)")


def _cc(scenario: Scenario) -> str:
    """The congestion control the workers will use: the scenario's, or the kernel's default
    (a dilated run then picks again under reno: harness.run.virtual.picks_under_cc)."""
    from harness.emulation.plan import workers_cc
    return workers_cc(scenario.tcp_cc)


def budget_batches(scenario: Scenario) -> int:
    """Batches per epoch of the scenario's full training budget."""
    from harness.train.data import SPECS
    batch = scenario.training.batch_size
    n = (scenario.dataset.subset or SPECS[scenario.dataset.name].train_samples) // batch
    return min(n, scenario.training.max_batches or n)


def resolver(echo, loopback: bool):
    """What a run calls once its link profiles are known: `auto` resolved, else unchanged."""
    def resolve(scenario: Scenario, profiles: dict) -> Scenario:
        if "auto" not in scenario.splits:
            return scenario
        if loopback:
            raise HarnessError("model.split: auto chooses per link profile: not with --loopback")
        return resolve_auto(scenario, profiles, echo)
    return resolve


def resolve_auto(scenario: Scenario, profiles: dict, echo) -> Scenario:
    """The scenario with `auto` replaced by the chosen split per (model, link)."""
    fixed = [s for s in scenario.splits if s != "auto"]
    picked, chosen = [], []
    for arch in scenario.archs:
        for link_name in scenario.links:
            if scenario.selection.get("by") == "runtime":
                best, why = by_runtime(scenario, arch, link_name, profiles[link_name])
            else:
                best, why = _within_budget(scenario, arch, link_name, profiles[link_name])
            echo(f"split for {arch} over {link_name}: {why}")
            picked.append((arch, link_name, best))
            chosen += [(arch, link_name, s) for s in dict.fromkeys([best, *fixed])
                       if s in split_points(arch)]
    return dataclasses.replace(scenario, chosen_splits=tuple(chosen), picked_splits=tuple(picked),
                               splits=tuple(dict.fromkeys(s for _, _, s in chosen)))


def _within_budget(scenario: Scenario, arch: str, link_name: str, link) -> tuple[str, str]:
    """The fastest split within selection.max_accuracy_drop (choose), and why."""
    budget = scenario.selection.get("max_accuracy_drop")
    cands = candidates_for(scenario, arch, link_name, link)
    if not cands:
        raise HarnessError(
            f"model.split: auto: no split of {arch} has a cached accuracy-study result "
            f"for every seed on this machine (exit head {scenario.model.exit_head}); "
            f"run 'run_bench.py run scenarios/accuracy.yaml' first")
    best, why = choose(cands, budget)
    if best is None:
        raise HarnessError(f"model.split: auto: {arch} over {link_name}: {why}")
    return best.split, why
