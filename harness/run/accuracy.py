"""The accuracy pass: each model/split/codec/method trained once, unshaped, on the full budget.

    python run_bench.py run scenarios/quick.yaml        # runs this before the timing pass

Accuracy does not depend on the link (with a bounded queue the sequence of weight updates is
the same on every link; a root test checks it), so it is measured once, off the emulation.
fp32 cases whose edge and cloud use one thread count train in a process of their own at that
count: floating-point reduction order depends on threads, so only then are the updates the
workers' own (a test shows the one-process run ends with the two-process run's weights).
split, cloud and edge are end-to-end training with identical updates (tested bitwise), so
they are trained once and share the result, which says so. Independent trainings run side by
side, one per `threads` cores. Other codecs, or unequal thread counts, run as two processes
over loopback, one after the other.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from harness.files import write_json
from harness.analysis.summary import wilson_half_width_one
from harness.config import Case, case_from_dict
from harness.run.case import evaluate_case, run_case
from harness.run.launchers import LocalLauncher
from harness.train.batches import batches_per_epoch

END_TO_END = ("split", "cloud", "edge")


def _kind(method: str) -> str:
    return "end-to-end" if method in END_TO_END else method


def train_once(case_raw: dict, threads: int, curve_every: int = 0) -> dict:
    """In a fresh process: train one case in one process at `threads`; both exits' accuracy,
    and every `curve_every` batches (off the clock) the curve of both."""
    import torch

    from harness.train.batches import load_case_data
    from harness.train.reference import run_local
    torch.set_num_threads(threads)
    case = case_from_dict(case_raw)
    train, test = load_case_data(case)
    result, _ = run_local(case, train, test, curve_every=curve_every)
    return {"final_acc": result.final_acc, "edge_exit_acc": result.edge_exit_acc,
            "train_wall_s": result.wall_s, "curve": result.curve, "curve_every": curve_every}


def accuracy_key(case: Case) -> tuple:
    """What the accuracy pass keys its results by: (arch, split, codec, method)."""
    return case.model.arch, case.model.split, case.codec, case.method


def _one_process(case: Case) -> bool:
    return case.codec == "fp32" and case.compute.edge_threads == case.compute.cloud_threads


def not_measured(case: Case) -> dict | None:
    """The accuracy record of a case that trains on generated data (no dataset given: its
    accuracy would be noise's), else None."""
    d = case.dataset
    if d.root is not None or d.missing != "shaped":
        return None
    from harness.train.shaped import why_not_measured
    return {"final_acc": None, "edge_exit_acc": None, "test_samples": None,
            "acc_source": f"not measured: {why_not_measured(d.name)}"}


def accuracy_keys(scenario) -> set[tuple]:
    """What the accuracy pass measures: nothing when cases train their full budget for real
    (a modelled side trains nothing: harness.workers.modelled) or on generated data."""
    full = scenario.measure.timing_batches is None and not scenario.compute.modelled
    cases = scenario.cases()
    if full or (cases and not_measured(cases[0])):
        return set()
    return {accuracy_key(c) for c in cases}


def accuracy_pass(cases: list[Case], run_dir: Path, train, test, progress,
                  curve_every: int = 0) -> dict:
    """(arch, split, codec, method) -> accuracy dict, each written to accuracy/<nn>-<case>/.
    One-process trainings also record the accuracy curve (`curve`: both exits every
    `curve_every` batches); two-process ones only the end point, and say so."""
    keys = {}
    for case in cases:
        keys.setdefault(accuracy_key(case), dataclasses.replace(case, link=None))
    groups: dict[tuple, Case] = {}
    for key, case in keys.items():
        if _one_process(case):
            groups.setdefault((*key[:3], _kind(case.method)), case)
    trained = _train_groups(groups, progress, curve_every)
    results = {}
    for i, (key, case) in enumerate(keys.items()):
        case_dir = run_dir / "accuracy" / f"{i:02d}-{case.label}"
        steps = batches_per_epoch(case, len(train)) * case.training.epochs
        if _one_process(case):
            case_dir.mkdir(parents=True)
            write_json(case_dir / "case.json", case.to_dict(), indent=2)
            acc = dict(trained[(*key[:3], _kind(case.method))])
            how = f"one-process run at the workers' {case.compute.edge_threads} thread(s)"
            if "cuda" in (case.compute.edge_backend + case.compute.cloud_backend):
                how += " on the CPU (the CUDA worker's floating-point order differs)"
            if case.method in END_TO_END:
                how += ", trained once for split, cloud and edge (identical updates, tested)"
        else:
            run_case(case, case_dir, LocalLauncher(), on_poll=None)
            acc = evaluate_case(case, case_dir, train, test)
            how = "two processes over loopback"
            acc["curve_note"] = "no curve: two-process runs are evaluated at the end only"
        acc["test_samples"] = len(test)
        acc["acc_source"] = (f"measured: unshaped {how}, full budget of {steps} batches, "
                             f"{len(test)} test samples")
        acc["acc_source"] += (f"; a short-budget figure ({steps} batches, seed "
                              f"{case.training.seed}), not a converged accuracy")
        write_json(case_dir / "accuracy.json", acc)
        results[key] = acc
        progress.finish(f"accuracy {case.label}: final {acc['final_acc']:.4f} "
                        f"± {wilson_half_width_one(acc['final_acc'], len(test)):.4f}")
    return results


def _train_groups(groups: dict[tuple, Case], progress, curve_every: int) -> dict:
    """Train every group, side by side where cores allow; fresh (spawned) processes."""
    if not groups:
        return {}
    threads = max(c.compute.edge_threads for c in groups.values())
    workers = max(1, min(len(groups), (os.cpu_count() or 1) // threads))
    if not progress.opts.quiet:
        progress.opts.echo(f"accuracy pass: {len(groups)} training(s) of the full budget, "
                           f"{workers} at a time")
    ctx = multiprocessing.get_context("spawn")     # torch's thread pools do not survive fork
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = {key: pool.submit(train_once, case.to_dict(), case.compute.edge_threads,
                                    curve_every)
                   for key, case in groups.items()}
        return {key: future.result() for key, future in futures.items()}
