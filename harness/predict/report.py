"""The `predict` command's report: split-point ranking per link and paper-scale predictions.

    python run_bench.py predict --paper
"""
from __future__ import annotations

import pandas as pd

from harness.catalog import ARCHS, PAPER_CHANGE
from harness.emulation.links import load_profile
from harness.errors import HarnessError
from harness.predict.splits import profiles_for, rank_splits
from harness.predict.targets import cores_needed, device_costs, host_gflops
from harness.train.data import SPECS
from harness.train.models import split_report

LABEL = ("MODEL PREDICTION (not a measurement): per-block compute measured on this machine "
         "(medians, cached) or, for a named device, FLOPs / its sustained rate; link rates and "
         "delays from the profiles; formulas of harness/predict/runtime.py")


def report(archs, width, dataset, batch, n, links, codecs, edge_cores, cloud_cores,
           max_edge_mib, paper, plot_path, echo=print, devices=(None, None)) -> pd.DataFrame:
    """Print the ranking of split points per (arch, link, codec); return all predictions.

    `devices` (edge, cloud): a DeviceProfile replaces that side's measured block costs with
    FLOPs / the device's sustained rate, and its CPU share with the device itself."""
    for arch in archs:
        if arch not in ARCHS:
            raise HarnessError(f"unknown model '{arch}' (known: {', '.join(ARCHS)})")
    if dataset not in SPECS:
        raise HarnessError(f"unknown dataset '{dataset}'")
    profiles = {name: load_profile(name) for name in links}
    spec = SPECS[dataset]
    echo(LABEL)
    sides = [f"{role} device {d.name} ({d.sustained_gflops:g} GFLOP/s sustained, modelled)"
             if d else f"{role} {cores:g} core(s) of this machine"
             for role, d, cores in (("edge", devices[0], edge_cores), ("cloud", devices[1], cloud_cores))]
    echo(f"{dataset}, width {width:g}, batch {batch}, {n} batches, {sides[0]}, {sides[1]}")
    edge_cores, cloud_cores = (1.0 if devices[0] else edge_cores), (1.0 if devices[1] else cloud_cores)
    rows = []
    for arch in archs:
        profs = _with_devices(profiles_for(arch, width, dataset, batch, 1, 1), devices, arch, echo)
        params = {r.split: (r.edge_params, r.head_params) for r in split_report(
            arch, width=width, in_channels=spec.channels, num_classes=spec.num_classes,
            image_size=spec.image_size)}
        for link_name, link in profiles.items():
            for codec in codecs:
                ranked = rank_splits(arch, profs, dataset, codec, link, edge_cores, cloud_cores,
                                     batch, n, params,
                                     max_edge_mem=int(max_edge_mib * 2**20) if max_edge_mib else None)
                if not ranked:
                    echo(f"{arch} {link_name} {codec}: no split point fits the edge memory limit")
                    continue
                rows += [_row(arch, link_name, codec, r, i) for i, r in enumerate(ranked)]
                _echo_choice(echo, arch, link_name, codec, ranked)
    table = pd.DataFrame(rows)
    if paper and len(table):
        _echo_paper(echo, table)
    if plot_path and len(table):
        _plot(table, plot_path)
        echo(f"plot: {plot_path}")
    return table


def _with_devices(profs: tuple[dict, dict], devices, arch: str, echo) -> tuple[dict, dict]:
    """Each side's block costs from its device profile, when one is named; says what that
    device would need of this machine."""
    out = list(profs)
    for i, device in enumerate(devices):
        if device is not None:
            echo(f"{arch}: {device.name} = {cores_needed(device, profs[i]):.2f} cores of this "
                 f"machine (which trains {arch} at {host_gflops(profs[i]):.1f} GFLOP/s per core, "
                 f"measured)")
            out[i] = device_costs(profs[i], device)
    return out[0], out[1]


def _row(arch, link, codec, r, rank) -> dict:
    return {"arch": arch, "link": link, "codec": codec, "split": r.split, "rank": rank + 1,
            "hierarchical_s": r.hierarchical_s, "split_s": r.baselines["split"],
            "cloud_s": r.baselines["cloud"], "edge_s": r.baselines["edge"],
            "bottleneck": r.bottleneck, "edge_mem_mib": r.edge_mem_bytes / 2**20}


def _echo_choice(echo, arch, link, codec, ranked) -> None:
    best, worst = ranked[0], ranked[-1]
    gains = ", ".join(f"vs {m} {1 - best.hierarchical_s / s:+.0%}" for m, s in best.baselines.items())
    echo(f"{arch:<9} {link:<5} {codec}: best split {best.split} ({best.hierarchical_s:.1f} s, "
         f"bottleneck {best.bottleneck}; gain {gains}); worst {worst.split} "
         f"({worst.hierarchical_s:.1f} s, {worst.bottleneck})")


def _echo_paper(echo, table: pd.DataFrame) -> None:
    best = table[table["rank"] == 1]
    echo("\npaper-scale prediction at the best split per link (1 epoch of CIFAR-10), "
         "next to the paper's reported runtime change on 3G:")
    out = best.assign(
        gain_vs_split=1 - best["hierarchical_s"] / best["split_s"],
        gain_vs_cloud=1 - best["hierarchical_s"] / best["cloud_s"],
        gain_vs_edge=1 - best["hierarchical_s"] / best["edge_s"],
        paper_runtime_change=best["arch"].map(PAPER_CHANGE))
    cols = ["arch", "link", "codec", "split", "hierarchical_s", "split_s", "cloud_s", "edge_s",
            "gain_vs_split", "gain_vs_cloud", "gain_vs_edge", "paper_runtime_change"]
    echo(out[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    echo("(gain = 1 - predicted hierarchical / predicted baseline; the paper's -29% / -61% is a "
         "runtime change of hierarchical vs an unstated baseline, measured on its own hardware)")


def _plot(table: pd.DataFrame, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    archs = list(dict.fromkeys(table["arch"]))
    fig, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 4.2), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        sub = table[table["arch"] == arch]
        for (link, codec), grp in sub.groupby(["link", "codec"], sort=False):
            order = {s: i for i, s in enumerate(dict.fromkeys(table[table["arch"] == arch]["split"]))}
            grp = grp.assign(pos=grp["split"].map(order)).sort_values("pos")
            ax.plot(grp["split"], grp["hierarchical_s"], marker="o", label=f"{link} {codec}")
        ax.set_yscale("log")
        ax.set_title(f"{arch}: predicted hierarchical runtime vs split point")
        ax.set_xlabel("separation point")
        ax.set_ylabel("predicted training time (s, model)")
        ax.tick_params(axis="x", rotation=60)
        ax.legend(fontsize=8)
    fig.suptitle("Model prediction, not a measurement", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
