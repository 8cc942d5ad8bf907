"""Commands that train or inspect without emulation: train, splits, pair, wire-bench, totals.

    python run_bench.py train --model resnet18 --split layer2.1 --epochs 1
"""
from __future__ import annotations

import sys

import click

from harness.files import write_json
from harness.catalog import DEFAULT_SPLIT, METHODS
from harness.errors import HarnessError


def _methods(text: str) -> list[str]:
    return list(METHODS) if text == "all" else [t.strip() for t in text.split(",") if t.strip()]


@click.command()
@click.option("--dataset", default="fashion_mnist", show_default=True,
              help="fashion_mnist, cifar10, tiny_imagenet (fake: unit tests only)")
@click.option("--data-root", default=None, help="dataset directory (CIFAR-10, Tiny ImageNet)")
@click.option("--model", "arch", default="vgg16", show_default=True, help="vgg16 or resnet18")
@click.option("--split", default=None, help="separation point (default: conv4 / layer2.1)")
@click.option("--width", default=0.25, show_default=True, type=float)
@click.option("--epochs", default=1, show_default=True, type=int)
@click.option("--max-batches", default=None, type=int, help="cap on batches per epoch")
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--lr", default=0.05, show_default=True, type=float)
@click.option("--subset", default=None, type=int, help="training samples to keep (seeded)")
@click.option("--test-subset", default=None, type=int, help="test samples to keep (seeded)")
@click.option("--methods", default="all", show_default=True,
              help="comma list of hierarchical,split,cloud,edge or 'all'")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--threads", default=2, show_default=True, type=int, help="torch threads")
@click.option("--csv", "csv_path", default=None, help="also write the table to this CSV file")
def train(dataset, data_root, arch, split, width, epochs, max_batches, batch_size, lr, subset,
          test_subset, methods, seed, threads, csv_path) -> None:
    """Train methods in one process (no network) and print accuracy and speed."""
    import pandas as pd
    import torch
    from tqdm import tqdm

    from harness.config import parse_scenario
    from harness.train.batches import batches_per_epoch, load_case_data
    from harness.train.reference import run_local

    split = split or DEFAULT_SPLIT.get(arch, "conv4")
    raw = {"name": "train", "dataset": {"name": dataset, "root": data_root, "subset": subset,
                                        "test_subset": test_subset},
           "model": {"arch": arch, "split": split, "width": width},
           "training": {"epochs": epochs, "max_batches": max_batches, "batch_size": batch_size,
                        "lr": lr, "seed": seed},
           "methods": _methods(methods), "links": "none"}
    scenario = parse_scenario(raw, "train")
    if threads < 1:
        raise HarnessError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    cases = scenario.cases()
    train_data, test_data = load_case_data(cases[0])
    rows = []
    for case in cases:
        total = batches_per_epoch(case, len(train_data)) * case.training.epochs
        with tqdm(total=total, desc=f"{case.method:>12}", unit="batch", file=sys.stderr,
                  leave=False, disable=None) as bar:
            result, _ = run_local(case, train_data, test_data, on_step=bar.update)
        rows.append({"method": result.method, "final_acc": result.final_acc,
                     "edge_exit_acc": result.edge_exit_acc, "wall_s": result.wall_s,
                     "samples_per_s": result.samples_per_s, "steps": result.steps})
        click.echo(f"done {case.method}: final {result.final_acc:.4f} in {result.wall_s:.1f} s",
                   err=True)
    table = pd.DataFrame(rows)
    click.echo(f"{arch} width {width} split {split} on {dataset} "
               f"({len(train_data)} train / {len(test_data)} test samples, {epochs} epoch(s), "
               f"in one process, {threads} threads)")
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-"))
    if csv_path:
        table.to_csv(csv_path, index=False)


@click.command()
@click.option("--model", "arch", default="vgg16", show_default=True)
@click.option("--width", default=1.0, show_default=True, type=float)
@click.option("--channels", default=3, show_default=True, type=int)
@click.option("--classes", default=10, show_default=True, type=int)
@click.option("--image-size", default=32, show_default=True, type=int)
def splits(arch, width, channels, classes, image_size) -> None:
    """Per separation point: activation size, parameters and forward FLOPs of each part."""
    import pandas as pd

    from harness.train.models import split_report

    rows = split_report(arch, width=width, in_channels=channels, num_classes=classes,
                        image_size=image_size)
    table = pd.DataFrame([{
        "split": r.split, "act_shape": "x".join(map(str, r.activation_shape)),
        "act_bytes/sample": r.activation_bytes, "edge_params": r.edge_params,
        "head_params": r.head_params, "cloud_params": r.cloud_params,
        "edge_MFLOPs": r.edge_flops / 1e6, "head_MFLOPs": r.head_flops / 1e6,
        "cloud_MFLOPs": r.cloud_flops / 1e6} for r in rows])
    click.echo(f"{arch} width {width}, {channels}x{image_size}x{image_size} input, "
               f"fp32 activations, forward FLOPs per sample (conv + linear)")
    click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


@click.command()
@click.option("--dataset", default="fashion_mnist", show_default=True)
@click.option("--data-root", default=None)
@click.option("--model", "arch", default="vgg16", show_default=True)
@click.option("--split", default=None, help="separation point (default: conv4 / layer2.1)")
@click.option("--width", default=0.25, show_default=True, type=float)
@click.option("--max-batches", default=20, show_default=True, type=int)
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--subset", default=None, type=int)
@click.option("--test-subset", default=1000, show_default=True, type=int)
@click.option("--methods", default="all", show_default=True)
@click.option("--codec", default="fp32", show_default=True, help="fp32, fp16 or int8")
@click.option("--queue-size", default=2, show_default=True, type=int)
@click.option("--threads", default=1, show_default=True, type=int, help="torch threads per worker")
def pair(dataset, data_root, arch, split, width, max_batches, batch_size, subset, test_subset,
         methods, codec, queue_size, threads) -> None:
    """Run methods as an edge process and a cloud process over loopback TCP; print totals."""
    from harness.config import parse_scenario
    from harness.run.case import evaluate_case, run_case
    from harness.run.rundir import new_run_dir
    from harness.train.batches import load_case_data

    split = split or DEFAULT_SPLIT.get(arch, "conv4")
    raw = {"name": "pair", "dataset": {"name": dataset, "root": data_root, "subset": subset,
                                       "test_subset": test_subset},
           "model": {"arch": arch, "split": split, "width": width}, "codec": codec,
           "training": {"max_batches": max_batches, "batch_size": batch_size,
                        "queue_size": queue_size},
           "compute": {"edge_threads": threads, "cloud_threads": threads},
           "methods": _methods(methods), "links": "loopback"}
    cases = parse_scenario(raw, "pair").cases()
    train_data, test_data = load_case_data(cases[0])
    run_dir = new_run_dir("pair", extra_meta={"emulation": "none: loopback TCP, no shaping"})
    click.echo(f"run directory: {run_dir}", err=True)
    for i, case in enumerate(cases):
        case_dir = run_dir / f"{i:02d}-{case.label}"
        result = run_case(case, case_dir)
        acc = evaluate_case(case, case_dir, train_data, test_data)
        write_json(case_dir / "accuracy.json", acc)
        click.echo(f"done {case.method}: {result['wall_s']:.2f} s training wall time", err=True)
    _print_totals(run_dir)


@click.command("wire-bench")
@click.option("--mib", default=4, show_default=True, type=int, help="tensor size")
@click.option("--repeats", default=50, show_default=True, type=int)
def wire_bench(mib, repeats) -> None:
    """Framing throughput: one float32 tensor, encode+send+receive+decode over loopback TCP."""
    from harness.workers.wire import bench
    if mib < 1 or repeats < 1:
        raise HarnessError("--mib and --repeats must be >= 1")
    r = bench(mib, repeats)
    click.echo(f"wire framing, {mib} MiB float32 tensor over loopback TCP: median "
               f"{r['median_s'] * 1e3:.2f} ms per frame = {r['gb_per_s']:.2f} GB/s "
               f"(encode+send+receive+decode; {repeats} frames after 5 warm-up)")


@click.command("totals")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
def totals_cmd(run_dir) -> None:
    """Print the per-case totals of a run directory (wall, busy per stage, bytes)."""
    _print_totals(run_dir)


def _print_totals(run_dir) -> None:
    from pathlib import Path

    from harness.analysis.summary import build_summary
    if not Path(run_dir).is_dir():
        raise HarnessError(f"run directory not found: {run_dir}")
    table = build_summary(Path(run_dir))
    cols = [c for c in ("method", "codec", "link", "status", "steps", "wall_s", "edge_compute_s",
                        "uplink_s", "cloud_compute_s", "downlink_s", "bytes_up_total",
                        "bytes_down_total", "raw_bytes_to_cloud", "final_acc",
                        "edge_exit_acc") if c in table]
    click.echo(f"{run_dir}: training-phase totals per case (seconds, bytes; accuracy off the clock)")
    click.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))


COMMANDS = (train, splits, pair, wire_bench, totals_cmd)
