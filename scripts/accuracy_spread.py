#!/usr/bin/env python3
"""Measure the seed-to-seed spread of the accuracy test's configuration (tests/test_accuracy.py).

    .venv/bin/python scripts/accuracy_spread.py --seeds 0 1 2 --jobs 2

Trains hierarchical and split learning (end to end) in one process, at the workers' one torch
thread, for each architecture and seed, with the study's recipe shortened to one epoch of a
20,000-image subset (one-cycle, Nesterov, batch 128), and prints final and edge-exit accuracy
per run, then per (arch, method) mean, sd and min, and the paired gap (hierarchical - split,
same seed). The test's thresholds come from this table (its docstring holds the numbers).
Seeds change the initial weights, the batch order and the subset; a different CPU changes
floating-point reduction order, which moves a short training by a comparable amount.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIGS = (("vgg16", "conv2"), ("resnet18", "layer1.1"))   # shallow cuts: local learning's worst
RECIPE = {"batch_size": 128, "lr": 0.1, "nesterov": True, "schedule": "onecycle", "warmup": 0.15}
SUBSET, TEST_SUBSET = 20_000, 5_000


def one(arch: str, split: str, method: str, seed: int) -> dict:
    import torch

    from harness.config import Case, ComputeConfig, DatasetConfig, ModelConfig, TrainConfig
    from harness.train.batches import load_case_data
    from harness.train.reference import run_local
    torch.set_num_threads(1)
    case = Case(DatasetConfig("fashion_mnist", subset=SUBSET, test_subset=TEST_SUBSET),
                ModelConfig(arch, 0.25, split), TrainConfig(seed=seed, **RECIPE), ComputeConfig(),
                method)
    train, test = load_case_data(case)
    result, _ = run_local(case, train, test)
    return {"arch": arch, "method": method, "seed": seed, "final_acc": result.final_acc,
            "edge_exit_acc": result.edge_exit_acc, "steps": result.steps, "wall_s": result.wall_s}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    jobs = [(a, s, m, seed) for a, s in CONFIGS for m in ("hierarchical", "split")
            for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(one, *zip(*jobs)))
    for row in rows:
        print(json.dumps(row))
    for arch, _ in CONFIGS:
        for method in ("hierarchical", "split"):
            for key in ("final_acc", "edge_exit_acc"):
                vals = [r[key] for r in rows if r["arch"] == arch and r["method"] == method
                        and r[key] is not None]
                if len(vals) >= 2:
                    print(f"{arch:<9} {method:<12} {key:<13} mean {statistics.fmean(vals):.4f} "
                          f"sd {statistics.stdev(vals):.4f} min {min(vals):.4f} "
                          f"max {max(vals):.4f} (n={len(vals)})")
        acc = {(r["method"], r["seed"]): r["final_acc"] for r in rows if r["arch"] == arch}
        gaps = [acc["hierarchical", s] - acc["split", s] for s in args.seeds]
        print(f"{arch:<9} paired gap (hierarchical - split): "
              f"{', '.join(f'{g:+.4f}' for g in gaps)}; mean {statistics.fmean(gaps):+.4f} "
              f"sd {statistics.stdev(gaps) if len(gaps) > 1 else float('nan'):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
