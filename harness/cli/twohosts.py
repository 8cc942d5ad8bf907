"""Two real machines: export a case as a bundle, collect the two sides back into a run.

    python run_bench.py export scenarios/ci.yaml --case 0 --out bundle/
    python run_bench.py collect bundle/edge bundle/cloud --out results/two_machines/first
"""
from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--case", "index", type=int, default=0, show_default=True,
              help="which case of the scenario's matrix (or of the run's case directories)")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def export(source: Path, index: int, out: Path) -> None:
    """Write one case of SOURCE (a scenario file or a run directory) as a two-machine bundle:
    edge/ and cloud/ with the case, a fresh secret and README.txt with each side's command."""
    from harness.run.twohosts import export_case
    export_case(source, index, out)
    click.echo((out / "README.txt").read_text().rstrip())


@click.command("collect")
@click.argument("edge_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("cloud_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the run directory to create (new or empty)")
@click.option("--link", default="real", show_default=True,
              help="the name the link gets in the tables")
def collect(edge_dir: Path, cloud_dir: Path, out: Path, link: str) -> None:
    """Assemble a run directory from the edge's and the cloud's files of a two-machine run;
    totals, plot, check and report then read it as any run."""
    from harness.config import check_name
    from harness.run.twohosts import collect as collect_run
    run_dir = collect_run(edge_dir, cloud_dir, out, check_name(link, "--link"))
    click.echo(f"run directory: {run_dir}")


COMMANDS = (export, collect)
