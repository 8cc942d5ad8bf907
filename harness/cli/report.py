"""The report command: one self-contained HTML page for a run, or two runs compared.

    python run_bench.py report results/quick/<run>/
    python run_bench.py report RUN_A RUN_B --out compare.html
    python run_bench.py paper results/paper_regime/<run>/
"""
from __future__ import annotations

from pathlib import Path

import click

from harness.errors import HarnessError


@click.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.argument("run_b", required=False, type=click.Path(file_okay=False, path_type=str))
@click.option("--out", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="where to write the page (default: RUN_DIR/report.html, or "
                   "RUN_DIR/compare-<RUN_B>.html)")
def report(run_dir, run_b, out) -> None:
    """Write one self-contained HTML page for a run (plots embedded), or compare two runs."""
    from harness.analysis.report import compare_page, write_report
    from harness.cli.bench import _summary
    summary, _ = _summary(run_dir)
    if run_b is None:
        path = write_report(Path(run_dir), summary, Path(out) if out else None)
    else:
        other, _ = _summary(run_b)
        path = Path(out) if out else Path(run_dir) / f"compare-{Path(run_b).name}.html"
        try:
            path.write_text(compare_page(Path(run_dir), summary, Path(run_b), other),
                            encoding="utf-8")
        except OSError as exc:
            raise HarnessError(f"{path}: cannot write ({exc.strerror})") from None
    click.echo(str(path))


@click.command("paper")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
def paper(run_dir) -> None:
    """The paper-regime table of a run (scenarios/paper_regime.yaml): hierarchical per model,
    link and split, its baselines, its runtime change beside the paper's."""
    from harness.analysis.paper import paper_notes, paper_table, picked_splits
    from harness.cli.bench import _summary
    summary, _ = _summary(run_dir)
    table = paper_table(summary, picked_splits(Path(run_dir)))
    click.echo(table.to_string(index=False))
    for line in paper_notes(summary, Path(run_dir)):
        click.echo(line)


COMMANDS = (report, paper)
