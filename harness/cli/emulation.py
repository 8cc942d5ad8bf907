"""Emulation commands: doctor (what this machine can emulate), clean (leftovers of a crash).

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
def clean() -> None:
    """Remove leftovers of crashed runs: namespaces, links, daemons, rules, workers."""
    from harness.emulation.netclean import clean as do_clean
    removed = do_clean()
    click.echo("\n".join(removed) if removed else "nothing to clean")


COMMANDS = (doctor, clean)
