"""The runtime-model command: rank split points per link, paper-scale predictions.

    python run_bench.py predict --paper
"""
from __future__ import annotations

import click



@click.command()
@click.option("--model", "archs", multiple=True, default=("vgg16", "resnet18"), show_default=True)
@click.option("--width", default=0.25, show_default=True, type=float)
@click.option("--dataset", default="fashion_mnist", show_default=True)
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--batches", default=100, show_default=True, type=int, help="batches per epoch")
@click.option("--links", default="3g,4g,wifi", show_default=True)
@click.option("--codecs", default="fp32", show_default=True, help="comma list: fp32,fp16,int8")
@click.option("--edge-cores", default=0.5, show_default=True, type=float)
@click.option("--cloud-cores", default=1.0, show_default=True, type=float)
@click.option("--edge-device", default=None, help="device profile (name or .yaml path) for "
              "the edge: replaces --edge-cores with the device's modelled speed")
@click.option("--cloud-device", default=None, help="device profile for the cloud: replaces "
              "--cloud-cores")
@click.option("--max-edge-mib", default=None, type=float, help="edge memory limit (MiB)")
@click.option("--paper", is_flag=True,
              help="paper scale: full-width models, CIFAR-10, 50,000 samples (781 batches)")
@click.option("--plot", "plot_path", default=None, help="PNG: runtime vs split point per link")
def predict(archs, width, dataset, batch_size, batches, links, codecs, edge_cores,
            cloud_cores, edge_device, cloud_device, max_edge_mib, paper, plot_path) -> None:
    """Model prediction: rank split points per link; predicted runtime and gains."""
    from harness.emulation.devices import load_device
    from harness.predict.report import report
    devices = tuple(load_device(d) if d else None for d in (edge_device, cloud_device))
    if paper:
        width, dataset, batches = 1.0, "cifar10", 50_000 // batch_size
    report(list(archs), width, dataset, batch_size, batches, links.split(","),
           codecs.split(","), edge_cores, cloud_cores, max_edge_mib, paper, plot_path,
           echo=click.echo, devices=devices)


@click.command("device-profile")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="the profile to write (.yaml; its file name is the profile's name)")
@click.option("--model", "archs", multiple=True, default=("vgg16", "resnet18"), show_default=True)
@click.option("--width", default=0.25, show_default=True, type=float)
@click.option("--dataset", default="fashion_mnist", show_default=True)
@click.option("--batch", default=64, show_default=True, type=int)
@click.option("--steps", default=20, show_default=True, type=int, help="timed steps per model")
@click.option("--warmup", default=3, show_default=True, type=int)
@click.option("--backend", default="cpu", show_default=True, help="cpu, cuda or cuda:N")
@click.option("--threads", default=1, show_default=True, type=int, help="torch threads (CPU)")
def device_profile(out, archs, width, dataset, batch, steps, warmup, backend, threads) -> None:
    """Measure this machine's sustained training rate; write it as a device profile."""
    from pathlib import Path

    from harness.config import backend_ok, check_name
    from harness.errors import HarnessError
    from harness.predict.devicerate import measure_profile, write_profile
    path = Path(out)
    if path.suffix not in (".yaml", ".yml"):
        raise HarnessError(f"--out {out}: expected a .yaml file")
    if not backend_ok(backend):
        raise HarnessError(f"--backend: expected cpu, cuda or cuda:N, got {backend!r}")
    name = check_name(path.stem, "--out: the file name (the profile's name)")
    doc = measure_profile(name, list(archs), width, dataset, batch, steps, warmup, backend,
                          threads)
    for arch, rate in doc["measured"].items():
        click.echo(f"{arch}: {rate['gflops']:.2f} GFLOP/s sustained "
                   f"({rate['step_s'] * 1e3:.1f} ms per training step)")
    click.echo(f"wrote {write_profile(doc, path)}: {doc['peak_gflops']:.2f} GFLOP/s "
               f"(measured; use it as compute.edge_device: {path})")


COMMANDS = (predict, device_profile)
