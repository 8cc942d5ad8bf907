"""Emulation commands: doctor (what this machine can emulate), clean (leftovers of a crash,
runs left `running` by a dead harness).

    sudo .venv/bin/python run_bench.py doctor
"""
from __future__ import annotations

import click


@click.command()
def doctor() -> None:
    """Check what emulation needs on this machine, with fixes for what is missing."""
    from harness.emulation.doctor import all_ok, checks, format_report
    rows = checks()
    click.echo(format_report(rows))
    if not all_ok(rows):
        raise click.exceptions.Exit(1)

@click.command()
@click.option("--runs-only", is_flag=True,
              help="only mark abandoned runs under results/; leave the network alone")
def clean(runs_only) -> None:
    """Mark runs whose harness died as abandoned; remove leftovers of crashed emulations:
    namespaces, links, daemons, rules, workers."""
    from harness.run.rundir import mark_abandoned
    lines = mark_abandoned()
    if not runs_only:
        from harness.emulation.netclean import clean as do_clean
        lines += do_clean()
    click.echo("\n".join(lines) if lines else "nothing to clean")


COMMANDS = (doctor, clean)
